//! The offline queue: telemetry collected while the server is unreachable, kept in
//! `queue.db` (SQLite) in the state directory until a session can deliver it.
//!
//! Each row is one envelope frame, signed when the sample was taken (so its `iat` and
//! `seq` are the collection's), then encrypted with AES-256-GCM under the 32-byte key in
//! `queue.key` (owner-only on Unix; sealed with DPAPI, machine scope, on Windows). The nonce is 96 random bits per row and the associated data binds the
//! ciphertext to its row (`seq`, `expires_at`), so rows cannot be swapped or
//! re-dated. The database holds no plaintext: only the order key, the expiry and the
//! ciphertext.
//!
//! ```text
//! frames(seq INTEGER PRIMARY KEY,   -- the frame's envelope seq: delivery order
//!        expires_at INTEGER,        -- iat + ttl, ms since the epoch
//!        nonce BLOB, ciphertext BLOB)
//! meta(k TEXT PRIMARY KEY, v INTEGER) -- auth_slot_used: the last auth seq taken below a head
//! ```
//!
//! **Bounds and drop policy.** At most `max_entries` rows and `max_bytes` of ciphertext;
//! when a new sample would pass either bound, the **oldest** rows are dropped first, so
//! what is delivered after a long outage is the most recent history.
//!
//! **Sequence numbers.** The gateway accepts only increasing `seq` within a session, and
//! the session's first frame is `auth`, sealed when the agent reconnects, after the
//! queued frames. So each queued frame is sealed with [`AUTH_SLOTS`] unused numbers
//! reserved just below its own; the auth of a session that will flush the queue takes
//! one of the head row's slots ([`Queue::take_auth_slot`], remembered here so a slot is
//! never used twice). Every queued frame then follows the auth in order, and everything
//! sent live after the flush is numbered above all of them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};
use tether_proto::UnixMillis;
use zeroize::Zeroizing;

use crate::error::AgentError;
use crate::random;
use crate::state::{StateDir, files};
use crate::wire::Sealed;

/// How many sequence numbers below each queued frame are kept for an `auth`.
pub const AUTH_SLOTS: u64 = 8;
/// Default bound on the number of queued frames.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
/// Default bound on the queued ciphertext, bytes.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The smallest byte bound accepted: one frame of the largest queued type must fit.
pub const MIN_MAX_BYTES: u64 = 64 * 1024;

/// Domain separation of the associated data.
const AAD_CONTEXT: &[u8] = b"tether-agent-queue-v1\n";
/// The schema version this agent writes (`PRAGMA user_version`, set in [`Queue::open`]).
const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS frames (
    seq INTEGER PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    k TEXT PRIMARY KEY,
    v INTEGER NOT NULL
);
";
const AUTH_SLOT_USED: &str = "auth_slot_used";

/// How much the queue may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Rows at most.
    pub max_entries: u64,
    /// Ciphertext bytes at most.
    pub max_bytes: u64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What the queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Rows.
    pub entries: u64,
    /// Ciphertext bytes.
    pub bytes: u64,
}

impl QueueStats {
    /// Whether the queue is at 90 % or more of either bound (heartbeats then say
    /// `degraded`).
    pub fn near_limit(&self, limits: &QueueLimits) -> bool {
        let near = |v: u64, max: u64| v.saturating_mul(10) >= max.saturating_mul(9);
        near(self.entries, limits.max_entries) || near(self.bytes, limits.max_bytes)
    }
}

/// A decrypted queued frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedFrame {
    /// Its envelope `seq` (the row's key).
    pub seq: u64,
    /// When the server stops accepting it.
    pub expires_at: UnixMillis,
    /// The signed frame.
    pub frame: String,
}

/// The open queue: one SQLite connection, used by one task.
pub struct Queue {
    conn: SqliteConnection,
    cipher: Aes256Gcm,
    limits: QueueLimits,
    path: PathBuf,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Renames a broken queue file, trying again for up to two seconds: on Windows a file
/// still open anywhere cannot be renamed ("sharing violation"), and the failed open's
/// connection, or a virus scanner, may hold it a moment longer.
async fn move_aside(from: &Path, to: &Path) -> Result<(), AgentError> {
    const TRIES: u32 = 20;
    for _ in 0..TRIES {
        match std::fs::rename(from, to) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AgentError::io(from)(e));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    std::fs::rename(from, to).map_err(AgentError::io(from))
}

/// Checks a queue file's schema version and brings its schema up to date.
async fn prepare(conn: &mut SqliteConnection, path: &Path) -> Result<(), AgentError> {
    let err = queue_err(path);
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(&err)?;
    if version > SCHEMA_VERSION {
        return Err(AgentError::Queue {
            path: path.to_path_buf(),
            reason: format!(
                "written by a newer agent (schema {version}); move it aside to start an \
                 empty queue"
            ),
        });
    }
    sqlx::raw_sql(SCHEMA)
        .execute(&mut *conn)
        .await
        .map_err(&err)?;
    sqlx::raw_sql("PRAGMA user_version = 1")
        .execute(&mut *conn)
        .await
        .map_err(&err)?;
    Ok(())
}

impl Queue {
    /// Opens (creating if needed) `queue.db` and its key in the state directory. A
    /// queue whose key is gone cannot be read: its rows are discarded, with a warning.
    pub async fn open(state: &StateDir, limits: QueueLimits) -> Result<Self, AgentError> {
        let path = state.path(files::QUEUE_DB);
        create_private_file(&path)?;
        let mut conn = connect(&path, false).await?;
        if let Err(e) = prepare(&mut conn, &path).await {
            // Closed before the error is returned, not dropped: a dropped connection
            // closes on its own thread a moment later, and until then Windows refuses to
            // move the file aside (`open_or_reset`: "sharing violation").
            let _ = conn.close().await;
            return Err(e);
        }
        let (key, created) = load_or_create_key(state)?;
        let cipher = Aes256Gcm::new_from_slice(key.as_slice()).map_err(|_| AgentError::Queue {
            path: path.clone(),
            reason: "the queue key is not 32 bytes".into(),
        })?;
        let mut q = Self {
            conn,
            cipher,
            limits,
            path,
        };
        if created {
            let stale = q.stats().await?.entries;
            if stale > 0 {
                tracing::warn!(
                    rows = stale,
                    "the offline queue's key was missing: its {stale} entries cannot be read \
                     and are discarded"
                );
                q.clear().await?;
            }
        }
        Ok(q)
    }

    /// [`open`](Self::open), and if the file cannot be used (damaged, or written by a
    /// newer agent), moves it aside as `queue.db.broken` and starts an empty queue:
    /// losing buffered telemetry is better than an agent that cannot connect.
    pub async fn open_or_reset(state: &StateDir, limits: QueueLimits) -> Result<Self, AgentError> {
        match Self::open(state, limits).await {
            Ok(q) => Ok(q),
            Err(e @ AgentError::Queue { .. }) => {
                say!(
                    "warning: {e}; moving it aside to {}.broken and starting an empty queue",
                    files::QUEUE_DB
                );
                for suffix in ["", "-wal", "-shm"] {
                    let from = state.path(&format!("{}{suffix}", files::QUEUE_DB));
                    let to = state.path(&format!("{}.broken{suffix}", files::QUEUE_DB));
                    if from.exists() {
                        move_aside(&from, &to).await?;
                    }
                }
                Self::open(state, limits).await
            }
            Err(e) => Err(e),
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }

    /// Adds a sealed frame, then drops the oldest rows while either bound is exceeded.
    /// Returns how many rows were dropped.
    pub async fn push(&mut self, sealed: &Sealed) -> Result<u64, AgentError> {
        let nonce = random::bytes::<12>();
        let aad = aad(sealed.seq, sealed.expires_at);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: sealed.frame.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| AgentError::Queue {
                path: self.path.clone(),
                reason: "encryption failed".into(),
            })?;
        let seq = to_i64(sealed.seq)?;
        let expires_at = to_i64(sealed.expires_at.0)?;
        let err = queue_err(&self.path);
        let mut tx = self.conn.begin().await.map_err(&err)?;
        sqlx::query("INSERT INTO frames (seq, expires_at, nonce, ciphertext) VALUES (?, ?, ?, ?)")
            .bind(seq)
            .bind(expires_at)
            .bind(nonce.as_slice())
            .bind(ciphertext.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(&err)?;
        let (mut entries, mut bytes) = stats_in(&mut tx).await.map_err(&err)?;
        let mut dropped = 0u64;
        while entries > self.limits.max_entries || bytes > self.limits.max_bytes {
            let Some(row) =
                sqlx::query("SELECT seq, length(ciphertext) AS n FROM frames ORDER BY seq LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(&err)?
            else {
                break;
            };
            let oldest: i64 = row.try_get("seq").map_err(&err)?;
            let n: i64 = row.try_get("n").map_err(&err)?;
            sqlx::query("DELETE FROM frames WHERE seq = ?")
                .bind(oldest)
                .execute(&mut *tx)
                .await
                .map_err(&err)?;
            entries = entries.saturating_sub(1);
            bytes = bytes.saturating_sub(u64::try_from(n).unwrap_or(0));
            dropped = dropped.saturating_add(1);
        }
        tx.commit().await.map_err(&err)?;
        Ok(dropped)
    }

    /// The oldest frame, decrypted. A row that does not decrypt (damaged, or not
    /// written with this key) is deleted with a warning and the next one is returned.
    pub async fn oldest(&mut self) -> Result<Option<QueuedFrame>, AgentError> {
        let err = queue_err(&self.path);
        loop {
            let Some(row) = sqlx::query(
                "SELECT seq, expires_at, nonce, ciphertext FROM frames ORDER BY seq LIMIT 1",
            )
            .fetch_optional(&mut self.conn)
            .await
            .map_err(&err)?
            else {
                return Ok(None);
            };
            let seq: i64 = row.try_get("seq").map_err(&err)?;
            let expires_at: i64 = row.try_get("expires_at").map_err(&err)?;
            let nonce: Vec<u8> = row.try_get("nonce").map_err(&err)?;
            let ciphertext: Vec<u8> = row.try_get("ciphertext").map_err(&err)?;
            let seq_u = u64::try_from(seq).unwrap_or(0);
            let expires = UnixMillis(u64::try_from(expires_at).unwrap_or(0));
            match self.decrypt(seq_u, expires, &nonce, &ciphertext) {
                Some(frame) => {
                    return Ok(Some(QueuedFrame {
                        seq: seq_u,
                        expires_at: expires,
                        frame,
                    }));
                }
                None => {
                    tracing::warn!(
                        seq,
                        "discarding an offline queue entry that does not decrypt"
                    );
                    self.remove_raw(seq).await?;
                }
            }
        }
    }

    fn decrypt(&self, seq: u64, expires_at: UnixMillis, nonce: &[u8], ct: &[u8]) -> Option<String> {
        if nonce.len() != 12 {
            return None;
        }
        let aad = aad(seq, expires_at);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .ok()?;
        String::from_utf8(plain).ok()
    }

    /// Deletes the row of `seq` (after its frame was written to the socket).
    pub async fn remove(&mut self, seq: u64) -> Result<(), AgentError> {
        self.remove_raw(to_i64(seq)?).await
    }

    async fn remove_raw(&mut self, seq: i64) -> Result<(), AgentError> {
        sqlx::query("DELETE FROM frames WHERE seq = ?")
            .bind(seq)
            .execute(&mut self.conn)
            .await
            .map_err(queue_err(&self.path))?;
        Ok(())
    }

    /// Deletes rows that expire before `deadline`; returns how many.
    pub async fn remove_expiring(&mut self, deadline: UnixMillis) -> Result<u64, AgentError> {
        let r = sqlx::query("DELETE FROM frames WHERE expires_at < ?")
            .bind(to_i64(deadline.0)?)
            .execute(&mut self.conn)
            .await
            .map_err(queue_err(&self.path))?;
        Ok(r.rows_affected())
    }

    /// Rows and bytes held.
    pub async fn stats(&mut self) -> Result<QueueStats, AgentError> {
        let (entries, bytes) = stats_in(&mut self.conn)
            .await
            .map_err(queue_err(&self.path))?;
        Ok(QueueStats { entries, bytes })
    }

    /// A sequence number for the `auth` of a session that will flush the queue: one of
    /// the head row's reserved slots not used before, recorded as used before it is
    /// returned. `None` when the queue is empty or the head's slots are used up (then
    /// the auth takes a fresh number and the flush re-seals what follows it).
    pub async fn take_auth_slot(&mut self) -> Result<Option<u64>, AgentError> {
        let err = queue_err(&self.path);
        let mut tx = self.conn.begin().await.map_err(&err)?;
        let head: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM frames")
            .fetch_one(&mut *tx)
            .await
            .map_err(&err)?;
        let Some(head) = head.and_then(|h| u64::try_from(h).ok()) else {
            return Ok(None);
        };
        let used: Option<i64> = sqlx::query_scalar("SELECT v FROM meta WHERE k = ?")
            .bind(AUTH_SLOT_USED)
            .fetch_optional(&mut *tx)
            .await
            .map_err(&err)?;
        let used = used.and_then(|u| u64::try_from(u).ok()).unwrap_or(0);
        let slot = used.saturating_add(1).max(head.saturating_sub(AUTH_SLOTS));
        if slot >= head {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
        )
        .bind(AUTH_SLOT_USED)
        .bind(to_i64(slot)?)
        .execute(&mut *tx)
        .await
        .map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        Ok(Some(slot))
    }

    async fn clear(&mut self) -> Result<(), AgentError> {
        sqlx::query("DELETE FROM frames")
            .execute(&mut self.conn)
            .await
            .map_err(queue_err(&self.path))?;
        Ok(())
    }

    /// Closes the database cleanly (the write-ahead log is folded back into the file).
    pub async fn close(self) {
        if let Err(e) = self.conn.close().await {
            tracing::warn!(error = %e, "closing the offline queue");
        }
    }
}

/// What the queue in `state` holds, read without creating or changing anything (for
/// `status`); `None` when there is no queue yet.
pub async fn peek(state: &StateDir) -> Result<Option<QueueStats>, AgentError> {
    let path = state.path(files::QUEUE_DB);
    if !path.exists() {
        return Ok(None);
    }
    let mut conn = connect(&path, true).await?;
    let has_table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'frames'",
    )
    .fetch_optional(&mut conn)
    .await
    .map_err(queue_err(&path))?;
    let stats = match has_table {
        Some(_) => {
            let (entries, bytes) = stats_in(&mut conn).await.map_err(queue_err(&path))?;
            QueueStats { entries, bytes }
        }
        None => QueueStats::default(),
    };
    let _ = conn.close().await;
    Ok(Some(stats))
}

pub(crate) async fn connect(path: &Path, read_only: bool) -> Result<SqliteConnection, AgentError> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .disable_statement_logging()
        .busy_timeout(Duration::from_secs(5));
    let opts = if read_only {
        opts.read_only(true)
    } else {
        opts.create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A crash may lose the last sample or two, never the file.
            .synchronous(SqliteSynchronous::Normal)
            // Space is given back once a flush has emptied the queue.
            .auto_vacuum(SqliteAutoVacuum::Full)
    };
    SqliteConnection::connect_with(&opts)
        .await
        .map_err(queue_err(path))
}

async fn stats_in(conn: &mut SqliteConnection) -> Result<(u64, u64), sqlx::Error> {
    let row =
        sqlx::query("SELECT COUNT(*) AS n, COALESCE(SUM(length(ciphertext)), 0) AS b FROM frames")
            .fetch_one(conn)
            .await?;
    let n: i64 = row.try_get("n")?;
    let b: i64 = row.try_get("b")?;
    Ok((u64::try_from(n).unwrap_or(0), u64::try_from(b).unwrap_or(0)))
}

/// The associated data of a row: the context, then `seq` and `expires_at` big-endian.
fn aad(seq: u64, expires_at: UnixMillis) -> Vec<u8> {
    let mut a = Vec::with_capacity(AAD_CONTEXT.len().saturating_add(16));
    a.extend_from_slice(AAD_CONTEXT);
    a.extend_from_slice(&seq.to_be_bytes());
    a.extend_from_slice(&expires_at.0.to_be_bytes());
    a
}

fn to_i64(v: u64) -> Result<i64, AgentError> {
    i64::try_from(v).map_err(|_| AgentError::Protocol(format!("{v} does not fit the queue")))
}

pub(crate) fn queue_err(path: &Path) -> impl Fn(sqlx::Error) -> AgentError + use<> {
    let path = path.to_path_buf();
    move |e| AgentError::Queue {
        path: path.clone(),
        reason: e.to_string(),
    }
}

/// Creates an empty database file readable by the owner only (SQLite gives its journal
/// files the same permissions), unless it exists.
pub(crate) fn create_private_file(path: &Path) -> Result<(), AgentError> {
    if path.exists() {
        return Ok(());
    }
    crate::platform::write_private(path, b"").map_err(AgentError::io(path))
}

/// The queue key, created (32 random bytes, owner-only) when missing or damaged; `true`
/// when it was created now (rows sealed under another key are then unreadable).
pub(crate) fn load_or_create_key(
    state: &StateDir,
) -> Result<(Zeroizing<Vec<u8>>, bool), AgentError> {
    let stored = match state.read_secret(files::QUEUE_KEY) {
        Ok(k) => k,
        // Sealed on another machine, or damaged: as unreadable as a missing key.
        Err(e @ AgentError::CorruptState { .. }) => {
            tracing::warn!(error = %e, "the offline queue's key cannot be read; making a new one");
            None
        }
        Err(e) => return Err(e),
    };
    if let Some(k) = stored {
        if k.len() == 32 {
            return Ok((k, false));
        }
        tracing::warn!(
            bytes = k.len(),
            "the offline queue's key is damaged; making a new one"
        );
    }
    let k = Zeroizing::new(random::bytes::<32>().to_vec());
    state.write_secret(files::QUEUE_KEY, &k)?;
    Ok((k, true))
}

#[cfg(test)]
mod tests;
