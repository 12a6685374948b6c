//! The command ledger: every command this agent accepted, in `commands.db` in the state
//! directory, so that a redelivered command is never run twice and a crash resumes
//! where it stopped.
//!
//! ```text
//! commands(command_id TEXT PRIMARY KEY,
//!          state TEXT,                -- received | executing | done
//!          expires_at INTEGER,        -- the later of the command's deadline and its
//!                                     -- owner's not_after, ms since the epoch
//!          tries INTEGER,             -- helper executions started
//!          trace_id TEXT,
//!          nonce BLOB, delivery BLOB, -- the command_delivery body, AES-256-GCM
//!          result_nonce BLOB, result BLOB) -- the command_result body, AES-256-GCM
//! meta(k TEXT PRIMARY KEY, v INTEGER) -- helper_seq: the last agent_sequence used
//! runs(command_id TEXT PRIMARY KEY,   -- commands the local policy let through to the
//!      at INTEGER)                    -- helper, and when: what rate rules count
//! ```
//!
//! Bodies are encrypted under the offline queue's key (`queue.key`), the associated data
//! binding each ciphertext to its command id and column. Finished commands are kept for
//! [`KEEP_DONE`] after their deadline (a redelivery within that time gets the stored
//! result again), then deleted.

use std::path::PathBuf;
use std::time::Duration;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Connection, Row, SqliteConnection};
use tether_proto::UnixMillis;
use tether_proto::messages::command::{CommandDelivery, CommandResult};
use tokio::sync::Mutex;

use crate::error::AgentError;
use crate::queue::{connect, create_private_file, load_or_create_key, queue_err};
use crate::random;
use crate::state::StateDir;

/// The ledger's file in the state directory.
pub const COMMANDS_DB: &str = "commands.db";
/// How long a finished command is remembered after its deadline.
pub const KEEP_DONE: Duration = Duration::from_secs(24 * 3600);
const AAD_CONTEXT: &[u8] = b"tether-agent-commands-v1\n";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    trace_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    delivery BLOB NOT NULL,
    result_nonce BLOB,
    result BLOB
);
CREATE TABLE IF NOT EXISTS meta (
    k TEXT PRIMARY KEY,
    v INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (k, v) VALUES ('helper_seq', 0);
CREATE TABLE IF NOT EXISTS runs (
    command_id TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
";

/// Where a command stands on this PC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalState {
    /// Stored and acknowledged; not started.
    Received,
    /// Handed to the helper.
    Executing,
    /// Finished: the result is stored.
    Done,
}

impl LocalState {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "received" => Some(LocalState::Received),
            "executing" => Some(LocalState::Executing),
            "done" => Some(LocalState::Done),
            _ => None,
        }
    }
}

/// One command as the ledger holds it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where it stands.
    pub state: LocalState,
    /// The delivery as accepted.
    pub delivery: CommandDelivery,
    /// The command's trace id.
    pub trace_id: String,
    /// Helper executions started.
    pub tries: u32,
    /// The result, once done.
    pub result: Option<CommandResult>,
}

/// The open ledger (one connection behind a lock: the session and the executor share it).
pub struct Ledger {
    conn: Mutex<SqliteConnection>,
    cipher: Aes256Gcm,
    path: PathBuf,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (creating if needed) the ledger in the state directory.
    pub async fn open(state: &StateDir) -> Result<Self, AgentError> {
        let path = state.path(COMMANDS_DB);
        create_private_file(&path)?;
        let mut conn = connect(&path, false).await?;
        sqlx::raw_sql(SCHEMA)
            .execute(&mut conn)
            .await
            .map_err(queue_err(&path))?;
        let (key, _) = load_or_create_key(state)?;
        let cipher = Aes256Gcm::new_from_slice(key.as_slice()).map_err(|_| AgentError::Queue {
            path: path.clone(),
            reason: "the queue key is not 32 bytes".into(),
        })?;
        Ok(Self {
            conn: Mutex::new(conn),
            cipher,
            path,
        })
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> AgentError + use<> {
        queue_err(&self.path)
    }

    fn seal<T: Serialize>(
        &self,
        id: &str,
        column: &str,
        v: &T,
    ) -> Result<([u8; 12], Vec<u8>), AgentError> {
        let plain = serde_json::to_vec(v).map_err(|e| AgentError::Crypto(e.to_string()))?;
        let nonce = random::bytes::<12>();
        let aad = aad(id, column);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| AgentError::Crypto("encrypting a ledger row failed".into()))?;
        Ok((nonce, ct))
    }

    fn open_sealed<T: DeserializeOwned>(
        &self,
        id: &str,
        column: &str,
        nonce: &[u8],
        ct: &[u8],
    ) -> Result<T, AgentError> {
        if nonce.len() != 12 {
            return Err(AgentError::Crypto("a ledger nonce is not 12 bytes".into()));
        }
        let aad = aad(id, column);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| AgentError::Crypto(format!("ledger row {id} does not decrypt")))?;
        serde_json::from_slice(&plain).map_err(|e| AgentError::Crypto(e.to_string()))
    }

    /// Stores a newly accepted command as `received`. False if it is known already.
    pub async fn insert(&self, d: &CommandDelivery, trace_id: &str) -> Result<bool, AgentError> {
        let id = d.command_id.to_string();
        let (nonce, ct) = self.seal(&id, "delivery", d)?;
        let mut conn = self.conn.lock().await;
        let r = sqlx::query(
            "INSERT OR IGNORE INTO commands (command_id, state, expires_at, trace_id, nonce, \
             delivery) VALUES (?, 'received', ?, ?, ?, ?)",
        )
        .bind(&id)
        // Remembered until the later of its deadlines: a signed command whose owner's
        // `not_after` is still ahead must still be known, or it could be replayed.
        .bind(
            i64::try_from(d.not_after.map_or(d.expires_at, |n| n.max(d.expires_at)).0)
                .unwrap_or(i64::MAX),
        )
        .bind(trace_id)
        .bind(nonce.as_slice())
        .bind(ct)
        .execute(&mut *conn)
        .await
        .map_err(self.err())?;
        Ok(r.rows_affected() == 1)
    }

    /// A command by id.
    pub async fn get(&self, id: &str) -> Result<Option<Entry>, AgentError> {
        let row = {
            let mut conn = self.conn.lock().await;
            sqlx::query(
                "SELECT state, tries, trace_id, nonce, delivery, result_nonce, result \
                 FROM commands WHERE command_id = ?",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(self.err())?
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let state: String = row.try_get("state").map_err(self.err())?;
        let state = LocalState::parse(&state).ok_or_else(|| AgentError::Queue {
            path: self.path.clone(),
            reason: format!("unknown command state {state:?}"),
        })?;
        let nonce: Vec<u8> = row.try_get("nonce").map_err(self.err())?;
        let ct: Vec<u8> = row.try_get("delivery").map_err(self.err())?;
        let rn: Option<Vec<u8>> = row.try_get("result_nonce").map_err(self.err())?;
        let rc: Option<Vec<u8>> = row.try_get("result").map_err(self.err())?;
        let result = match (rn, rc) {
            (Some(n), Some(c)) => Some(self.open_sealed(id, "result", &n, &c)?),
            _ => None,
        };
        let tries: i64 = row.try_get("tries").map_err(self.err())?;
        Ok(Some(Entry {
            state,
            delivery: self.open_sealed(id, "delivery", &nonce, &ct)?,
            trace_id: row.try_get("trace_id").map_err(self.err())?,
            tries: u32::try_from(tries).unwrap_or(u32::MAX),
            result,
        }))
    }

    /// Marks a command as handed to the helper and counts the try; returns the count.
    pub async fn start_try(&self, id: &str) -> Result<u32, AgentError> {
        let mut conn = self.conn.lock().await;
        let row = sqlx::query(
            "UPDATE commands SET state = 'executing', tries = tries + 1 WHERE command_id = ? \
             RETURNING tries",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .map_err(self.err())?;
        let tries: i64 = row.try_get("tries").map_err(self.err())?;
        Ok(u32::try_from(tries).unwrap_or(u32::MAX))
    }

    /// Stores the result and marks the command done.
    pub async fn finish(&self, id: &str, result: &CommandResult) -> Result<(), AgentError> {
        let (nonce, ct) = self.seal(id, "result", result)?;
        let mut conn = self.conn.lock().await;
        sqlx::query(
            "UPDATE commands SET state = 'done', result_nonce = ?, result = ? WHERE command_id = ?",
        )
        .bind(nonce.as_slice())
        .bind(ct)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    /// Commands accepted but not finished (a crash interrupted them), oldest first.
    pub async fn unfinished(&self) -> Result<Vec<String>, AgentError> {
        let mut conn = self.conn.lock().await;
        let rows =
            sqlx::query("SELECT command_id FROM commands WHERE state != 'done' ORDER BY rowid")
                .fetch_all(&mut *conn)
                .await
                .map_err(self.err())?;
        rows.iter()
            .map(|r| r.try_get("command_id").map_err(self.err()))
            .collect()
    }

    /// The next helper `agent_sequence` (strictly increasing, durable).
    pub async fn next_helper_seq(&self) -> Result<u64, AgentError> {
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin().await.map_err(self.err())?;
        let row = sqlx::query("UPDATE meta SET v = v + 1 WHERE k = 'helper_seq' RETURNING v")
            .fetch_one(&mut *tx)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        let v: i64 = row.try_get("v").map_err(self.err())?;
        Ok(u64::try_from(v).unwrap_or(0))
    }

    /// Forgets finished commands whose deadline passed more than [`KEEP_DONE`] ago.
    pub async fn prune(&self, now: UnixMillis) -> Result<u64, AgentError> {
        let before = now.saturating_sub(KEEP_DONE);
        let mut conn = self.conn.lock().await;
        let r = sqlx::query("DELETE FROM commands WHERE state = 'done' AND expires_at < ?")
            .bind(i64::try_from(before.0).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .map_err(self.err())?;
        sqlx::query("DELETE FROM runs WHERE command_id NOT IN (SELECT command_id FROM commands)")
            .execute(&mut *conn)
            .await
            .map_err(self.err())?;
        Ok(r.rows_affected())
    }

    /// Records that the local policy let a command through to the helper at `at` (once:
    /// a retry keeps the first time).
    pub async fn note_run(&self, id: &str, at: UnixMillis) -> Result<(), AgentError> {
        let mut conn = self.conn.lock().await;
        sqlx::query("INSERT OR IGNORE INTO runs (command_id, at) VALUES (?, ?)")
            .bind(id)
            .bind(i64::try_from(at.0).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// The commands let through after `since` (exclusive), other than `except`, for the
    /// local policy's rate rules.
    pub(crate) async fn runs_since(
        &self,
        since: UnixMillis,
        except: &str,
    ) -> Result<Vec<super::policy::Ran>, AgentError> {
        let rows = {
            let mut conn = self.conn.lock().await;
            sqlx::query(
                "SELECT r.command_id, r.at, c.nonce, c.delivery FROM runs r \
                 JOIN commands c ON c.command_id = r.command_id \
                 WHERE r.at > ? AND r.command_id != ?",
            )
            .bind(i64::try_from(since.0).unwrap_or(i64::MAX))
            .bind(except)
            .fetch_all(&mut *conn)
            .await
            .map_err(self.err())?
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("command_id").map_err(self.err())?;
            let at: i64 = row.try_get("at").map_err(self.err())?;
            let nonce: Vec<u8> = row.try_get("nonce").map_err(self.err())?;
            let ct: Vec<u8> = row.try_get("delivery").map_err(self.err())?;
            let d: CommandDelivery = self.open_sealed(&id, "delivery", &nonce, &ct)?;
            out.push(super::policy::Ran {
                at: UnixMillis(u64::try_from(at).unwrap_or(0)),
                method: d.method,
                user_id: d.origin_user_id,
            });
        }
        Ok(out)
    }
}

fn aad(id: &str, column: &str) -> Vec<u8> {
    let mut a = AAD_CONTEXT.to_vec();
    a.extend_from_slice(id.as_bytes());
    a.push(b'\n');
    a.extend_from_slice(column.as_bytes());
    a
}
