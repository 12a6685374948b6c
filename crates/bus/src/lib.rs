//! The Tether bus: how server processes hand work to each other.
//!
//! Three things live here:
//! - **streams** with consumer groups (append, read as a group member, acknowledge,
//!   reclaim entries a dead consumer left pending) — commands, telemetry, the dead-letter
//!   queue and events between the api and gateway roles;
//! - **keys with a TTL** — device presence (which gateway holds a device's session);
//! - **windowed counters** — rate limits shared by every process.
//!
//! Two backends behave the same (one test suite runs against both): [`EmbeddedBus`], durable
//! in its own SQLite file under the data dir (the default), and [`RedisBus`] on Redis
//! Streams for deployments with several server processes. Every key and stream name is
//! prefixed with the bus's namespace so deployments (and tests) can share one Redis.
//!
//! Delivery is at-least-once: an entry stays pending for its group until acknowledged, and
//! [`Bus::claim_stale`] hands entries idle longer than a threshold to another consumer.
//! Time comes from the caller's clock where it decides expiry (TTL keys, counter windows)
//! in the embedded backend; Redis applies TTLs itself.
//!
//! Arguments are checked the same way by both backends: an empty stream, group, consumer
//! or key name, a zero `count`, `max_len`, TTL or window, a malformed entry id, and any
//! group operation on a group that was never created (call [`Bus::ensure_group`] first) are
//! [`BusError::Invalid`]. An unreachable backend is [`BusError::Backend`].

mod args;
mod embedded;
mod error;
mod id;
mod own_thread;
mod redis_bus;

use std::time::Duration;

use async_trait::async_trait;

pub use embedded::EmbeddedBus;
pub use error::BusError;
pub use own_thread::OwnThread;
pub use redis_bus::RedisBus;

/// Result alias for bus operations.
pub type BusResult<T> = Result<T, BusError>;

/// One stream entry as read by a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry id, unique and increasing within its stream (Redis form `ms-seq`).
    pub id: String,
    /// The payload (JSON or a signed frame).
    pub payload: Vec<u8>,
    /// How many times this entry has been delivered to a consumer of the group
    /// (1 on first delivery).
    pub deliveries: u64,
}

/// The bus.
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Which backend (`embedded` or `redis`).
    fn backend(&self) -> &'static str;

    /// Checks the connection.
    async fn ping(&self) -> BusResult<()>;

    /// Appends to a stream; returns the new entry's id. Creates the stream if needed.
    /// When the stream holds more than `max_len` entries the oldest ones may be trimmed
    /// (approximately): the embedded bus trims back to `max_len` once the stream is over it
    /// by `max_len / 64` (exactly at each append below 64), but never an entry still
    /// pending in a group (those go once acknowledged); Redis (`MAXLEN ~`) may keep
    /// up to ~100 entries more and trims pending entries too — so size `max_len` well
    /// above the backlog consumers can have. Entries outside the newest `max_len` that a
    /// lagging group has not read yet may be dropped by either backend.
    async fn append(&self, stream: &str, payload: &[u8], max_len: u64) -> BusResult<String>;

    /// Creates a consumer group reading from the start of the stream (idempotent).
    async fn ensure_group(&self, stream: &str, group: &str) -> BusResult<()>;

    /// How many of the stream's entries the group has not been delivered yet: its
    /// backlog (Redis: `XINFO GROUPS`'s `lag`, which Redis cannot always tell — after
    /// entries the group had not read were trimmed — and then this is 0). A missing group
    /// is [`BusError::Invalid`].
    async fn backlog(&self, stream: &str, group: &str) -> BusResult<u64>;

    /// Reads up to `count` (at least 1) entries never delivered to the group, oldest first,
    /// assigning them to `consumer` (each with `deliveries` 1); waits up to `block` for at
    /// least one to arrive (zero: do not wait). A blocked read does not hold up other
    /// operations on the same bus, and dropping its future cancels it cleanly.
    async fn read_group(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> BusResult<Vec<Entry>>;

    /// A fan-out read: up to `count` (at least 1) entries appended after the entry
    /// `after` (an id this bus returned, or [`last_id`](Bus::last_id)'s, `"0-0"` for the
    /// stream's start), oldest first, each with `deliveries` 1; waits up to `block` for at
    /// least one to arrive. Keeps no state on the bus (no group, nothing pending, no
    /// acknowledgement): every reader tracks its own position, so any number of readers
    /// see every entry. For events that only matter while someone is listening (Redis
    /// `XREAD`). A blocked read does not hold up other operations, and dropping its
    /// future cancels it cleanly.
    async fn read_after(
        &self,
        stream: &str,
        after: &str,
        count: usize,
        block: Duration,
    ) -> BusResult<Vec<Entry>>;

    /// The id of the stream's newest entry (`"0-0"` when it has none): where a
    /// [`read_after`](Bus::read_after) reader that wants only new entries starts.
    async fn last_id(&self, stream: &str) -> BusResult<String>;

    /// Acknowledges entries: they are no longer pending for the group. Returns how many
    /// were pending (ids not pending, or an unknown group, count 0).
    async fn ack(&self, stream: &str, group: &str, ids: &[String]) -> BusResult<u64>;

    /// Moves up to `count` entries pending longer than `min_idle` (on any consumer) to
    /// `consumer` and returns them, oldest first, with their delivery counts increased.
    /// A claim restarts the entries' idle time.
    async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> BusResult<Vec<Entry>>;

    /// How many entries are pending (delivered, not acknowledged) for the group.
    async fn pending_count(&self, stream: &str, group: &str) -> BusResult<u64>;

    /// How many entries the stream holds (0 for a stream that does not exist).
    async fn stream_len(&self, stream: &str) -> BusResult<u64>;

    /// Sets a key to a value that expires after `ttl` (rounded down to whole
    /// milliseconds, at least 1), replacing any value and TTL it had.
    async fn put_ttl(&self, key: &str, value: &[u8], ttl: Duration) -> BusResult<()>;

    /// A key's value if it exists and has not expired.
    async fn get(&self, key: &str) -> BusResult<Option<Vec<u8>>>;

    /// Deletes a key only if it still holds `value` (so a stale session cannot delete its
    /// successor's presence). Returns whether it was deleted.
    async fn delete_if(&self, key: &str, value: &[u8]) -> BusResult<bool>;

    /// Increments the counter `key` in the current fixed window of length `window` and
    /// returns the count including this increment. The first increment starts the window.
    async fn incr_window(&self, key: &str, window: Duration) -> BusResult<u64>;
}
