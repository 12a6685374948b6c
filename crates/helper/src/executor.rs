//! What the helper does once a request has passed every check: an [`Executor`].
//!
//! * [`RecordingExecutor`] performs nothing on the machine: it appends one JSON line per
//!   execution to a record file, honours `simulate`, and still produces real artifacts
//!   (a PNG screenshot, a log bundle) so everything after the helper can be tested.
//! * `SystemExecutor` carries the opcodes out on this machine: on Linux with the system's
//!   own tools (`system`), on Windows with Win32 calls (`windows`).
//!
//! Executors check the opcode (and any simulation) before the ledger records anything
//! ([`Executor::check`], `6003` when refused), and then run it ([`Executor::execute`]),
//! whose error becomes the `failed` (or, for 6003/6004, `denied`) final response.

mod artifact;
mod manifest;
mod recording;
#[cfg(unix)]
mod system;
#[cfg(windows)]
mod windows;

use std::fmt;

use async_trait::async_trait;
use serde_json::Value;
use tether_proto::helper::{OpParams, Opcode};
use tether_proto::messages::command::Simulation;
use tether_proto::{MessageId, UnixMillis};

pub use artifact::Artifacts;
pub use manifest::{Manifest, ManifestEntry};
pub use recording::{DEFAULT_SLOW, RecordingExecutor};
#[cfg(unix)]
pub use system::SystemExecutor;
#[cfg(windows)]
pub use windows::{SessionTask, WindowsExecutor as SystemExecutor, session_main};

use crate::error::HelperError;

/// One execution of one request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Job {
    /// The request.
    pub request_id: MessageId,
    /// The command it carries out.
    pub command_message_id: MessageId,
    /// This execution's id (`kx_<n>`), unique in the state directory.
    pub kernel_exec_id: String,
    /// What to do.
    pub opcode: Opcode,
    /// Its parameters, checked.
    pub params: OpParams,
    /// The parameters as sent (for records).
    pub raw_params: Value,
    /// A fault to simulate.
    pub simulate: Option<Simulation>,
    /// When the helper accepted the request.
    pub accepted_at: UnixMillis,
}

/// Carries out opcodes.
#[async_trait]
pub trait Executor: Send + Sync + fmt::Debug {
    /// A short name for logs (`recording`, `system`).
    fn name(&self) -> &'static str;

    /// Whether this executor runs `opcode` with this `simulate`:
    /// [`HelperError::OpcodeNotAllowed`] (6003) if not.
    fn check(&self, opcode: Opcode, simulate: Option<Simulation>) -> Result<(), HelperError>;

    /// Runs a checked job. `Ok` is the response's `result` (a JSON object).
    async fn execute(&self, job: &Job) -> Result<Value, HelperError>;
}

/// The opcodes no executor runs yet: the update opcodes come with the OTA work, and a
/// memory dump needs its own review.
pub(crate) fn not_yet(opcode: Opcode) -> Option<&'static str> {
    match opcode {
        Opcode::StageUpdate | Opcode::CommitUpdate | Opcode::RollbackUpdate => {
            Some("the update opcodes are not implemented in this helper yet")
        }
        Opcode::MemoryDump => Some("memory dumps are not implemented in this helper"),
        _ => None,
    }
}
