//! The Redis bus: Redis Streams with consumer groups, `SET PX` keys and `INCR` counters,
//! for deployments with several server processes.
//!
//! Keys are `"{namespace}:stream:{name}"`, `"{namespace}:kv:{key}"` and
//! `"{namespace}:ctr:{key}"`: the kind in the key keeps a stream and a presence key of the
//! same name from colliding (the embedded bus keeps them in separate tables).
//!
//! Non-blocking commands share one multiplexed [`ConnectionManager`] (which reconnects on
//! its own); blocking reads use dedicated connections (see [`blocking`]). Redis decides
//! expiry, idleness and ids with its own clock.

mod blocking;
mod scripts;

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamReadReply;
use redis::{Client, RedisError, Value};

use crate::id::EntryId;
use crate::{Bus, BusError, BusResult, Entry, args};
use blocking::BlockingPool;
use scripts::Scripts;

/// The field holding an entry's payload (also named in the claim script).
const PAYLOAD_FIELD: &str = "p";
/// How long a non-blocking command may take before it fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest `BLOCK` we send (about 49 days; Redis rejects a timeout that overflows its
/// clock, and `BLOCK 0` would mean "forever"). A caller asking for longer sees an empty
/// read after this and simply reads again.
const MAX_BLOCK_MS: u64 = u32::MAX as u64;
/// Keys fetched per `SCAN` step in [`RedisBus::delete_namespace`].
const SCAN_COUNT: u64 = 1000;

/// The Redis-backed [`Bus`]. See the module docs.
pub struct RedisBus {
    manager: ConnectionManager,
    blocking: BlockingPool,
    scripts: Scripts,
    namespace: String,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL or client: they may hold a password.
        f.debug_struct("RedisBus")
            .field("namespace", &self.namespace)
            .field("blocking", &self.blocking)
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`, or
    /// `rediss://` if the redis crate was built with TLS) and checks it answers. Every key
    /// is prefixed `"{namespace}:"`.
    pub async fn connect(url: &str, namespace: &str) -> BusResult<Self> {
        args::namespace(namespace)?;
        // The parse error could quote the URL, password included: say only what is wrong.
        let client = Client::open(url)
            .map_err(|_| BusError::Invalid("the Redis URL does not parse".into()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let manager = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(redis_err)?;
        let bus = Self {
            manager,
            blocking: BlockingPool::new(client, CONNECT_TIMEOUT),
            scripts: Scripts::new(),
            namespace: namespace.to_owned(),
        };
        bus.ping().await?;
        Ok(bus)
    }

    /// Deletes every key of this bus's namespace (`SCAN MATCH "{namespace}:*"` + `DEL`);
    /// returns how many. For tests and operators retiring a namespace — never on a live
    /// deployment: it deletes streams, pending entries, presence and counters alike.
    pub async fn delete_namespace(&self) -> BusResult<u64> {
        let pattern = format!("{}:*", glob_escape(&self.namespace));
        let mut conn = self.manager.clone();
        let mut cursor = 0u64;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                deleted = deleted.saturating_add(n);
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    fn stream_key(&self, stream: &str) -> String {
        format!("{}:stream:{stream}", self.namespace)
    }

    fn kv_key(&self, key: &str) -> String {
        format!("{}:kv:{key}", self.namespace)
    }

    fn counter_key(&self, key: &str) -> String {
        format!("{}:ctr:{key}", self.namespace)
    }

    /// A handle on the shared connection (cheap: the manager is an `Arc` inside).
    fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }
}

#[async_trait]
impl Bus for RedisBus {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> BusResult<()> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    async fn append(&self, stream: &str, payload: &[u8], max_len: u64) -> BusResult<String> {
        args::name("stream", stream)?;
        args::max_len(max_len)?;
        // `~`: Redis trims whole macro-nodes only (about 100 entries each), so the stream
        // stays somewhat above `max_len`, cheaply. Unlike the embedded bus it also trims
        // entries still pending in a group; see `Bus::append`.
        redis::cmd("XADD")
            .arg(self.stream_key(stream))
            .arg("MAXLEN")
            .arg("~")
            .arg(max_len.min(i64::MAX.unsigned_abs()))
            .arg("*")
            .arg(PAYLOAD_FIELD)
            .arg(payload)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    async fn ensure_group(&self, stream: &str, group: &str) -> BusResult<()> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        let created = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream_key(stream))
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async::<()>(&mut self.conn())
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map_err(redis_err),
        }
    }

    async fn read_group(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> BusResult<Vec<Entry>> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        args::name("consumer", consumer)?;
        args::count("count", count)?;
        let key = self.stream_key(stream);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        let reply: Option<StreamReadReply> = if block.is_zero() {
            cmd.arg("STREAMS").arg(&key).arg(">");
            cmd.query_async(&mut self.conn())
                .await
                .map_err(|e| group_err(e, &key, group))?
        } else {
            // `BLOCK 0` is "forever" to Redis: a sub-millisecond block waits 1 ms.
            let block_ms = args::millis_floor(block).clamp(1, MAX_BLOCK_MS);
            cmd.arg("BLOCK").arg(block_ms);
            cmd.arg("STREAMS").arg(&key).arg(">");
            self.blocking
                .query(&cmd, Duration::from_millis(block_ms), |e| {
                    group_err(e, &key, group)
                })
                .await?
        };
        entries_of(reply)
    }

    async fn read_after(
        &self,
        stream: &str,
        after: &str,
        count: usize,
        block: Duration,
    ) -> BusResult<Vec<Entry>> {
        args::name("stream", stream)?;
        args::count("count", count)?;
        // Checked here so a bad id is the same `Invalid` as on the embedded bus.
        let after: EntryId = after.parse()?;
        let key = self.stream_key(stream);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(count);
        let reply: Option<StreamReadReply> = if block.is_zero() {
            cmd.arg("STREAMS").arg(&key).arg(after.to_string());
            cmd.query_async(&mut self.conn()).await.map_err(redis_err)?
        } else {
            let block_ms = args::millis_floor(block).clamp(1, MAX_BLOCK_MS);
            cmd.arg("BLOCK").arg(block_ms);
            cmd.arg("STREAMS").arg(&key).arg(after.to_string());
            self.blocking
                .query(&cmd, Duration::from_millis(block_ms), redis_err)
                .await?
        };
        entries_of(reply)
    }

    async fn backlog(&self, stream: &str, group: &str) -> BusResult<u64> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        let key = self.stream_key(stream);
        let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| {
                // A stream that does not exist has no groups either.
                if e.to_string().contains("no such key") {
                    args::no_group(&key, group)
                } else {
                    redis_err(e)
                }
            })?;
        let found = groups
            .groups
            .into_iter()
            .find(|g| g.name == group)
            .ok_or_else(|| args::no_group(&key, group))?;
        Ok(found.lag.map_or(0, |n| n as u64))
    }

    async fn last_id(&self, stream: &str) -> BusResult<String> {
        args::name("stream", stream)?;
        let newest: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(self.stream_key(stream))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Ok(newest
            .ids
            .into_iter()
            .next()
            .map_or_else(|| EntryId::ZERO.to_string(), |e| e.id))
    }

    async fn ack(&self, stream: &str, group: &str, ids: &[String]) -> BusResult<u64> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        // Checked here so a bad id is the same `Invalid` as on the embedded bus.
        for id in ids {
            id.parse::<EntryId>()?;
        }
        if ids.is_empty() {
            return Ok(0);
        }
        redis::cmd("XACK")
            .arg(self.stream_key(stream))
            .arg(group)
            .arg(ids)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> BusResult<Vec<Entry>> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        args::name("consumer", consumer)?;
        args::count("count", count)?;
        let key = self.stream_key(stream);
        let claimed: Vec<(String, Vec<u8>, u64)> = self
            .scripts
            .claim
            .key(&key)
            .arg(group)
            .arg(consumer)
            .arg(args::millis_floor(min_idle).min(i64::MAX.unsigned_abs()))
            .arg(count)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| group_err(e, &key, group))?;
        Ok(claimed
            .into_iter()
            .map(|(id, payload, deliveries)| Entry {
                id,
                payload,
                deliveries,
            })
            .collect())
    }

    async fn pending_count(&self, stream: &str, group: &str) -> BusResult<u64> {
        args::name("stream", stream)?;
        args::name("group", group)?;
        let key = self.stream_key(stream);
        // The summary form: [count, smallest id, greatest id, [[consumer, count]…]].
        let summary: Vec<Value> = redis::cmd("XPENDING")
            .arg(&key)
            .arg(group)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| group_err(e, &key, group))?;
        match summary.into_iter().next() {
            Some(count) => redis::from_redis_value(count)
                .map_err(|e| BusError::Corrupt(format!("XPENDING summary: {e}"))),
            None => Ok(0),
        }
    }

    async fn stream_len(&self, stream: &str) -> BusResult<u64> {
        args::name("stream", stream)?;
        redis::cmd("XLEN")
            .arg(self.stream_key(stream))
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    async fn put_ttl(&self, key: &str, value: &[u8], ttl: Duration) -> BusResult<()> {
        args::name("key", key)?;
        let ttl = args::positive_millis("ttl", ttl)?;
        redis::cmd("SET")
            .arg(self.kv_key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    async fn get(&self, key: &str) -> BusResult<Option<Vec<u8>>> {
        args::name("key", key)?;
        redis::cmd("GET")
            .arg(self.kv_key(key))
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> BusResult<bool> {
        args::name("key", key)?;
        let deleted: u64 = self
            .scripts
            .delete_if
            .key(self.kv_key(key))
            .arg(value)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Ok(deleted > 0)
    }

    async fn incr_window(&self, key: &str, window: Duration) -> BusResult<u64> {
        args::name("key", key)?;
        let window = args::positive_millis("window", window)?;
        self.scripts
            .incr_window
            .key(self.counter_key(key))
            .arg(window)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)
    }
}

/// A Redis failure: unreachable, or it refused the command.
fn redis_err(e: RedisError) -> BusError {
    BusError::Backend(format!("redis: {e}"))
}

/// Maps Redis's `NOGROUP` (also when raised inside a script) to the same error the
/// embedded bus gives for a missing group.
fn group_err(e: RedisError, key: &str, group: &str) -> BusError {
    if e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP") {
        args::no_group(key, group)
    } else {
        redis_err(e)
    }
}

/// Escapes the `SCAN MATCH` glob characters in a literal.
fn glob_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The entries of an `XREAD`/`XREADGROUP` reply (none for a nil reply), each with
/// `deliveries` 1.
fn entries_of(reply: Option<StreamReadReply>) -> BusResult<Vec<Entry>> {
    let Some(reply) = reply else {
        return Ok(Vec::new());
    };
    reply
        .keys
        .into_iter()
        .flat_map(|stream| stream.ids)
        .map(|mut entry| {
            let payload = match entry.map.remove(PAYLOAD_FIELD) {
                Some(Value::BulkString(bytes)) => bytes,
                _ => {
                    return Err(BusError::Corrupt(format!(
                        "stream entry {} has no payload field",
                        entry.id
                    )));
                }
            };
            Ok(Entry {
                id: entry.id,
                payload,
                deliveries: 1,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_escape_quotes_pattern_characters() {
        assert_eq!(glob_escape("tether-1"), "tether-1");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
