//! The recording executor: for tests and demos. It performs nothing on the machine.
//!
//! Every execution appends one line to the record file,
//! `{"at","request_id","command_message_id","opcode","params","simulate","kernel_exec_id"}`,
//! fsynced before the answer. `simulate` is honoured: `kernel_failure` fails with 6001,
//! `slow` takes a few seconds (so `executing` is observable), `success` or none succeeds.
//! Screenshots and log bundles are still real files (a gradient PNG, a small text
//! bundle), so upload and download paths can be tested end to end.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tether_proto::Clock;
use tether_proto::helper::{OpParams, Opcode};
use tether_proto::messages::command::Simulation;

use super::artifact::{self, Artifacts};
use super::{Executor, Job, not_yet};
use crate::error::HelperError;
use crate::platform;

/// How long a `slow` execution takes by default.
pub const DEFAULT_SLOW: Duration = Duration::from_secs(3);

/// Records executions instead of performing them.
#[derive(Debug, Clone)]
pub struct RecordingExecutor {
    record: PathBuf,
    artifacts: Artifacts,
    clock: Arc<dyn Clock>,
    slow: Duration,
    append: Arc<Mutex<()>>,
}

impl RecordingExecutor {
    /// Records into `record`; artifacts go to `artifacts`.
    pub fn new(record: PathBuf, artifacts: Artifacts, clock: Arc<dyn Clock>) -> Self {
        Self {
            record,
            artifacts,
            clock,
            slow: DEFAULT_SLOW,
            append: Arc::new(Mutex::new(())),
        }
    }

    /// How long a `slow` execution takes.
    pub fn with_slow(mut self, slow: Duration) -> Self {
        self.slow = slow;
        self
    }

    fn record_line(&self, job: &Job) -> Result<(), HelperError> {
        let line = json!({
            "at": self.clock.now(),
            "request_id": job.request_id,
            "command_message_id": job.command_message_id,
            "opcode": job.opcode,
            "params": job.raw_params,
            "simulate": job.simulate,
            "kernel_exec_id": job.kernel_exec_id,
        });
        let mut bytes = serde_json::to_vec(&line)
            .map_err(|e| HelperError::Kernel(format!("cannot encode the record line: {e}")))?;
        bytes.push(b'\n');
        let _one_writer = self.append.lock().unwrap_or_else(PoisonError::into_inner);
        let mut f = platform::open_append(&self.record, 0o600)
            .map_err(|e| HelperError::io(&self.record, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_data())
            .map_err(|e| HelperError::io(&self.record, e))
    }

    fn perform(&self, job: &Job) -> Result<Value, HelperError> {
        match (&job.opcode, &job.params) {
            (Opcode::CaptureScreenshot, OpParams::Screenshot(p)) => {
                let seed = job
                    .kernel_exec_id
                    .bytes()
                    .fold(p.display, |a, b| a.wrapping_add(b));
                let png = artifact::gradient_png(320, 200, seed)?;
                let path = self.artifacts.path_for(&job.kernel_exec_id, "png");
                self.artifacts.write(&path, &png, "image/png")
            }
            (Opcode::CollectLogs, OpParams::CollectLogs(p)) => {
                let bundle = log_bundle(job, p.max_bytes);
                let path = self.artifacts.path_for(&job.kernel_exec_id, "log");
                self.artifacts.write(&path, &bundle, "text/plain")
            }
            (Opcode::ExecReboot | Opcode::ExecShutdown, OpParams::Power(p)) => {
                Ok(json!({ "recorded": true, "scheduled_in_s": p.delay_s }))
            }
            (Opcode::ExecRunAttestation | Opcode::ExecRunTamperCheck, _) => Ok(json!({
                "recorded": true,
                "verdict": "pass",
                "note": "the recording executor inspects nothing; the system executor compares the installed binaries with the manifest",
            })),
            (Opcode::ExecLockScreen | Opcode::ExecLogoff, _) => Ok(json!({ "recorded": true })),
            (op, _) => Err(HelperError::OpcodeNotAllowed {
                opcode: op.name(),
                reason: "not run by the recording executor".into(),
            }),
        }
    }
}

/// A small text bundle that looks like logs, at most `max_bytes` long.
fn log_bundle(job: &Job, max_bytes: u64) -> Vec<u8> {
    let cap = usize::try_from(max_bytes).unwrap_or(usize::MAX).min(4096);
    let mut out = Vec::new();
    for n in 1..=64u32 {
        let line = format!(
            "{} tether-helper[recording]: simulated log entry {n} for {}\n",
            job.accepted_at.0, job.kernel_exec_id
        );
        if out.len().saturating_add(line.len()) > cap {
            break;
        }
        out.extend_from_slice(line.as_bytes());
    }
    out
}

#[async_trait]
impl Executor for RecordingExecutor {
    fn name(&self) -> &'static str {
        "recording"
    }

    fn check(&self, opcode: Opcode, _simulate: Option<Simulation>) -> Result<(), HelperError> {
        match not_yet(opcode) {
            Some(reason) => Err(HelperError::OpcodeNotAllowed {
                opcode: opcode.name(),
                reason: reason.into(),
            }),
            None => Ok(()),
        }
    }

    async fn execute(&self, job: &Job) -> Result<Value, HelperError> {
        if job.simulate == Some(Simulation::Slow) {
            tokio::time::sleep(self.slow).await;
        }
        let this = self.clone();
        let job = job.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = if job.simulate == Some(Simulation::KernelFailure) {
                Err(HelperError::Kernel("simulated kernel failure".into()))
            } else {
                this.perform(&job)
            };
            this.record_line(&job)?;
            outcome
        })
        .await
        .map_err(|e| HelperError::Kernel(format!("the execution task failed: {e}")))?
    }
}
