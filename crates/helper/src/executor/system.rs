//! The system executor: carries opcodes out on Linux with the system's own tools.
//!
//! | Opcode | How |
//! | --- | --- |
//! | `EXEC_LOCK_SCREEN` | `loginctl lock-sessions` |
//! | `EXEC_LOGOFF` | `loginctl terminate-session` of the active graphical user session (6001 if none) |
//! | `EXEC_REBOOT` / `EXEC_SHUTDOWN` | `systemctl reboot\|poweroff` (`-i` with `force`); with `delay_s` > 0 `shutdown -r\|-h +<minutes>` (rounded up) with the reason as the wall message |
//! | `CAPTURE_SCREENSHOT` | the first of `grim`, `gnome-screenshot`, `import` (ImageMagick), `scrot` found on `PATH` |
//! | `COLLECT_LOGS` | `journalctl` per source, since `since_ms`, capped at `max_bytes` |
//! | `EXEC_RUN_ATTESTATION` | SHA-256 of the binaries named in `--manifest` compared with it |
//! | `EXEC_RUN_TAMPER_CHECK` | the attestation plus owner and mode checks of the binaries and the state directory |
//!
//! `MEMORY_DUMP` and the update opcodes are refused (6003) until their own work lands, as
//! is any `simulate` (only the recording executor simulates). Every tool runs without a
//! shell, with its arguments as separate strings, stdin closed, and a time limit (6005).

mod capture;
mod integrity;
mod session;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tether_proto::helper::{OpParams, Opcode};
use tether_proto::messages::command::Simulation;

use super::{Artifacts, Executor, Job, manifest, not_yet};
use crate::error::HelperError;

/// Time limit of session and power tools.
const SHORT_LIMIT: Duration = Duration::from_secs(30);
/// Time limit of a screenshot tool.
const CAPTURE_LIMIT: Duration = Duration::from_secs(30);
/// Time limit of collecting logs.
const LOGS_LIMIT: Duration = Duration::from_secs(120);

/// Performs opcodes on this Linux machine.
#[derive(Debug, Clone)]
pub struct SystemExecutor {
    state_dir: PathBuf,
    artifacts: Artifacts,
    manifest: Option<PathBuf>,
}

impl SystemExecutor {
    /// An executor whose artifacts go to `artifacts`; attestation reads `manifest`.
    pub fn new(state_dir: PathBuf, artifacts: Artifacts, manifest: Option<PathBuf>) -> Self {
        Self {
            state_dir,
            artifacts,
            manifest,
        }
    }

    fn manifest(&self) -> Result<&Path, HelperError> {
        self.manifest.as_deref().ok_or_else(|| {
            HelperError::Kernel(
                "no manifest configured (start the helper with --manifest FILE)".into(),
            )
        })
    }
}

#[async_trait]
impl Executor for SystemExecutor {
    fn name(&self) -> &'static str {
        "system"
    }

    fn check(&self, opcode: Opcode, simulate: Option<Simulation>) -> Result<(), HelperError> {
        if simulate.is_some() {
            return Err(HelperError::OpcodeNotAllowed {
                opcode: opcode.name(),
                reason: "simulate is only accepted by a helper running the recording executor"
                    .into(),
            });
        }
        match not_yet(opcode) {
            Some(reason) => Err(HelperError::OpcodeNotAllowed {
                opcode: opcode.name(),
                reason: reason.into(),
            }),
            None => Ok(()),
        }
    }

    async fn execute(&self, job: &Job) -> Result<Value, HelperError> {
        match (&job.opcode, &job.params) {
            (Opcode::ExecLockScreen, _) => session::lock().await,
            (Opcode::ExecLogoff, _) => session::logoff().await,
            (Opcode::ExecReboot, OpParams::Power(p)) => session::power(true, p).await,
            (Opcode::ExecShutdown, OpParams::Power(p)) => session::power(false, p).await,
            (Opcode::CaptureScreenshot, OpParams::Screenshot(p)) => {
                capture::screenshot(&self.artifacts, &job.kernel_exec_id, p).await
            }
            (Opcode::CollectLogs, OpParams::CollectLogs(p)) => {
                capture::logs(&self.artifacts, &job.kernel_exec_id, p).await
            }
            (Opcode::ExecRunAttestation, _) => manifest::attestation(self.manifest()?).await,
            (Opcode::ExecRunTamperCheck, _) => {
                integrity::tamper_check(self.manifest()?, &self.state_dir).await
            }
            (op, _) => Err(HelperError::OpcodeNotAllowed {
                opcode: op.name(),
                reason: "not run by the system executor".into(),
            }),
        }
    }
}

/// Runs a tool to completion within `limit` and returns its output (any exit status).
async fn run(program: &str, args: &[String], limit: Duration) -> Result<Output, HelperError> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_error(program, &e))?;
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(HelperError::Kernel(format!("{program}: {e}"))),
        // kill_on_drop: the child is killed as the future is dropped.
        Err(_) => Err(HelperError::ExecutionTimeout {
            what: program.to_owned(),
            limit,
        }),
    }
}

/// Runs a tool and requires it to succeed; returns its stdout.
async fn run_ok(program: &str, args: &[String], limit: Duration) -> Result<String, HelperError> {
    let out = run(program, args, limit).await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(HelperError::Kernel(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            first_line(&out.stderr)
        )))
    }
}

fn spawn_error(program: &str, e: &std::io::Error) -> HelperError {
    if e.kind() == std::io::ErrorKind::NotFound {
        HelperError::Kernel(format!("{program} is not installed (not found on PATH)"))
    } else {
        HelperError::Kernel(format!("cannot start {program}: {e}"))
    }
}

/// The first line of a tool's stderr, shortened, for an error message.
fn first_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(200).collect()
}

/// Whether `program` is an executable file on `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}
