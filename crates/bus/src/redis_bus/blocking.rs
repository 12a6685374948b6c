//! Connections for blocking reads.
//!
//! A blocking `XREADGROUP … BLOCK` occupies its connection on the server until it returns:
//! commands pipelined behind it on the same connection wait too. Sent through the shared
//! multiplexed [`redis::aio::ConnectionManager`], one consumer's 5-second wait would stall
//! every append, ack and presence update of the process. So each blocking read checks out
//! a connection of its own from this small pool and returns it when the read completes.
//! A read that fails, times out or is cancelled (its future dropped, e.g. on shutdown)
//! drops its connection instead, which closes it — so a connection in the pool never has
//! a command in flight. The pool keeps at most [`MAX_IDLE`] idle connections; bursts
//! above that open (and then close) extra ones.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, RedisError};

use super::redis_err;
use crate::{BusError, BusResult};

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 8;
/// How much longer than the requested block we wait for Redis to answer before giving
/// the connection up as dead.
const GRACE: Duration = Duration::from_secs(2);

/// A pool of dedicated connections for blocking commands.
pub(super) struct BlockingPool {
    client: Client,
    connect_timeout: Duration,
    /// Never held across an `.await`.
    idle: Mutex<Vec<MultiplexedConnection>>,
}

impl std::fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the client: its connection info may hold a password.
        f.debug_struct("BlockingPool")
            .field("idle", &self.idle_len())
            .finish_non_exhaustive()
    }
}

impl BlockingPool {
    pub(super) fn new(client: Client, connect_timeout: Duration) -> Self {
        Self {
            client,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs a command that blocks on the server for up to `block`, on a connection of its
    /// own. Redis errors go through `map_err`.
    pub(super) async fn query<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        block: Duration,
        map_err: impl FnOnce(RedisError) -> BusError,
    ) -> BusResult<T> {
        let mut conn = self.take().await?;
        let reply =
            tokio::time::timeout(block.saturating_add(GRACE), cmd.query_async(&mut conn)).await;
        match reply {
            Ok(Ok(value)) => {
                self.give_back(conn);
                Ok(value)
            }
            Ok(Err(e)) => {
                // A server error reply (NOGROUP…) leaves the connection usable; anything else
                // may mean the server went away, and the idle ones went with it.
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    self.clear();
                } else {
                    self.give_back(conn);
                }
                Err(map_err(e))
            }
            Err(_elapsed) => {
                self.clear();
                Err(BusError::Backend(format!(
                    "redis: no reply to a blocking read within {:?}",
                    block.saturating_add(GRACE)
                )))
            }
        }
    }

    async fn take(&self) -> BusResult<MultiplexedConnection> {
        let pooled = self.lock().pop();
        if let Some(conn) = pooled {
            return Ok(conn);
        }
        // No response timeout on the connection itself: `query` bounds each call by its
        // own block time instead.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(redis_err)
    }

    fn give_back(&self, conn: MultiplexedConnection) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn clear(&self) {
        self.lock().clear();
    }

    fn idle_len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<MultiplexedConnection>> {
        // The guarded Vec is valid whatever a panicking holder was doing.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
