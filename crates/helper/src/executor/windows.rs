//! The Windows executor: carries opcodes out with Win32 calls, as LocalSystem.
//!
//! | Opcode | How |
//! | --- | --- |
//! | `EXEC_LOCK_SCREEN` | `LockWorkStation` in the console user's session: `tether-helper session lock` started there with `CreateProcessAsUserW` (token from `WTSQueryUserToken`), its exit code awaited |
//! | `EXEC_LOGOFF` | `WTSLogoffSession` of the console session |
//! | `EXEC_REBOOT` / `EXEC_SHUTDOWN` | SeShutdownPrivilege enabled, then `InitiateSystemShutdownExW` after `delay_s`, planned reason `SHTDN_REASON_MAJOR_OTHER \| SHTDN_REASON_FLAG_PLANNED`, with a message naming the command |
//! | `CAPTURE_SCREENSHOT` | `tether-helper session screenshot -` in the console session: GDI `BitBlt` + `GetDIBits` of the whole virtual screen, PNG on its stdout |
//! | `COLLECT_LOGS` | `wevtutil qe <log> /f:text`, newest first, since `since_ms`, capped at `max_bytes`: the same one text file with a `==== source ====` header per source as on Linux |
//! | `EXEC_RUN_ATTESTATION` | SHA-256 of the binaries named in `--manifest` compared with it |
//!
//! `EXEC_RUN_TAMPER_CHECK` (ACL checks are not written yet), `MEMORY_DUMP`, the update
//! opcodes and any `simulate` are refused (6003). A Win32 failure is reported as `failed`
//! with the OS's error text; nothing is reported done that was not.

mod logs;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tether_proto::helper::{OpParams, Opcode, PowerParams, ScreenshotParams};
use tether_proto::messages::command::Simulation;

use super::{Artifacts, Executor, Job, manifest, not_yet};
use crate::error::HelperError;
use crate::platform::windows::actions as win32;

/// Time limit of a session process (lock) and of the power calls.
const SHORT_LIMIT: Duration = Duration::from_secs(30);
/// Time limit of a screenshot.
const CAPTURE_LIMIT: Duration = Duration::from_secs(30);
/// The longest shutdown message passed on (Windows shows it in a dialog).
const MAX_MESSAGE_CHARS: usize = 500;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Performs opcodes on this Windows machine.
#[derive(Debug, Clone)]
pub struct WindowsExecutor {
    artifacts: Artifacts,
    manifest: Option<PathBuf>,
}

impl WindowsExecutor {
    /// An executor whose artifacts go to `artifacts`; attestation reads `manifest`. (The
    /// state dir is taken for the same signature as the Linux executor; the tamper check
    /// that reads it is not done on Windows yet.)
    pub fn new(_state_dir: PathBuf, artifacts: Artifacts, manifest: Option<PathBuf>) -> Self {
        Self {
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
impl Executor for WindowsExecutor {
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
        if opcode == Opcode::ExecRunTamperCheck {
            return Err(HelperError::OpcodeNotAllowed {
                opcode: opcode.name(),
                reason: "the tamper check is not implemented on Windows yet".into(),
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
            (Opcode::ExecLockScreen, _) => blocking(lock).await,
            (Opcode::ExecLogoff, _) => blocking(logoff).await,
            (Opcode::ExecReboot, OpParams::Power(p)) => {
                power(true, p, &job.command_message_id.to_string()).await
            }
            (Opcode::ExecShutdown, OpParams::Power(p)) => {
                power(false, p, &job.command_message_id.to_string()).await
            }
            (Opcode::CaptureScreenshot, OpParams::Screenshot(p)) => {
                screenshot(&self.artifacts, &job.kernel_exec_id, p).await
            }
            (Opcode::CollectLogs, OpParams::CollectLogs(p)) => {
                logs::collect(&self.artifacts, &job.kernel_exec_id, p, job.accepted_at).await
            }
            (Opcode::ExecRunAttestation, _) => manifest::attestation(self.manifest()?).await,
            (op, _) => Err(HelperError::OpcodeNotAllowed {
                opcode: op.name(),
                reason: "not run by the Windows executor".into(),
            }),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HelperError> + Send + 'static,
) -> Result<T, HelperError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HelperError::Kernel(e.to_string()))?
}

fn kernel(e: std::io::Error) -> HelperError {
    HelperError::Kernel(e.to_string())
}

/// Runs `tether-helper session <args>` in the console session and requires exit code 0
/// (any other code is the Win32 error the session process met).
fn in_session(args: &[&str], limit: Duration) -> Result<(u32, Vec<u8>), HelperError> {
    let exe = std::env::current_exe().map_err(|e| HelperError::io("tether-helper.exe", e))?;
    in_session_with(&exe, args, limit)
}

/// [`in_session`] with another program than this one (the tests' own executable is not
/// tether-helper.exe).
fn in_session_with(
    exe: &Path,
    args: &[&str],
    limit: Duration,
) -> Result<(u32, Vec<u8>), HelperError> {
    let session = win32::active_console_session().map_err(kernel)?;
    let name = exe.file_name().map_or_else(
        || exe.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let what = format!("{name} {}", args.join(" "));
    let exit = win32::run_in_session(session, exe, args, limit).map_err(kernel)?;
    match exit.code {
        Some(0) => Ok((session, exit.stdout)),
        Some(code) => Err(HelperError::Kernel(format!(
            "{what} in session {session} failed: {}",
            describe_exit(code)
        ))),
        None => Err(HelperError::ExecutionTimeout { what, limit }),
    }
}

/// A session process's exit code: the Win32 error it met, or 1 for anything else.
fn describe_exit(code: u32) -> String {
    match i32::try_from(code) {
        Ok(c) if c > 1 => format!(
            "exit code {code} ({})",
            std::io::Error::from_raw_os_error(c)
        ),
        _ => format!("exit code {code}"),
    }
}

fn lock() -> Result<Value, HelperError> {
    let (session, _) = in_session(&["session", "lock"], SHORT_LIMIT)?;
    Ok(json!({ "locked": true, "session": session }))
}

fn logoff() -> Result<Value, HelperError> {
    let session = win32::active_console_session().map_err(kernel)?;
    win32::logoff_session(session).map_err(kernel)?;
    Ok(json!({ "session": session }))
}

/// The message Windows shows and records with the shutdown.
fn shutdown_message(command_id: &str, reason: &str) -> String {
    let mut m = format!("Tether command {command_id}");
    if !reason.is_empty() {
        m.push_str(": ");
        m.push_str(reason);
    }
    m.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

async fn power(reboot: bool, p: &PowerParams, command_id: &str) -> Result<Value, HelperError> {
    let message = shutdown_message(command_id, &p.reason);
    let (delay_s, force) = (p.delay_s, p.force);
    blocking(move || {
        win32::initiate_shutdown(&message, delay_s, force, reboot).map_err(kernel)?;
        Ok(json!({ "scheduled_in_s": delay_s, "reason_code": win32::SHUTDOWN_REASON }))
    })
    .await
}

async fn screenshot(
    artifacts: &Artifacts,
    kernel_exec_id: &str,
    p: &ScreenshotParams,
) -> Result<Value, HelperError> {
    if p.display != 0 {
        return Err(HelperError::InvalidParams {
            opcode: "CAPTURE_SCREENSHOT",
            reason: "only display 0 (the whole screen) is captured on Windows".into(),
        });
    }
    let path = artifacts.path_for(kernel_exec_id, "png");
    let artifacts = artifacts.clone();
    blocking(move || {
        let (_, png) = in_session(&["session", "screenshot", "-"], CAPTURE_LIMIT)?;
        if !png.starts_with(PNG_SIGNATURE) {
            return Err(HelperError::Kernel(
                "the session's screenshot is not a PNG".into(),
            ));
        }
        artifacts.write(&path, &png, "image/png")
    })
    .await
}

/// What `tether-helper session …` does, in the user's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionTask {
    /// Lock the workstation.
    Lock,
    /// Capture the screen as a PNG into the file (`-`: stdout).
    Screenshot(PathBuf),
}

/// Runs a session task; the process exit code: 0, or the Win32 error met (1 when the
/// failure was not a Win32 one).
pub fn session_main(task: &SessionTask) -> u32 {
    let r = match task {
        SessionTask::Lock => win32::lock_workstation(),
        SessionTask::Screenshot(file) => capture_png().and_then(|png| {
            if file.as_os_str() == "-" {
                let mut out = std::io::stdout().lock();
                out.write_all(&png).and_then(|()| out.flush())
            } else {
                std::fs::write(file, &png)
            }
        }),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            win32::os_code(&e)
                .and_then(|c| u32::try_from(c).ok())
                .filter(|c| *c != 0)
                .unwrap_or(1)
        }
    }
}

fn capture_png() -> std::io::Result<Vec<u8>> {
    let (w, h, rgb) = win32::capture_screen()?;
    encode_png(w, h, &rgb).map_err(std::io::Error::other)
}

/// RGB rows as a PNG.
fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(rgb)?;
        w.finish()?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn the_shutdown_message_names_the_command_and_stays_one_short_line() {
        assert_eq!(shutdown_message("msg_1", ""), "Tether command msg_1");
        assert_eq!(
            shutdown_message("msg_1", "updates\ntonight"),
            "Tether command msg_1: updatestonight"
        );
        assert_eq!(
            shutdown_message("m", &"x".repeat(2000)).chars().count(),
            MAX_MESSAGE_CHARS
        );
    }

    #[test]
    fn the_planned_reason_is_other_and_planned() {
        assert_eq!(win32::SHUTDOWN_REASON, 0x8000_0000);
    }

    #[test]
    fn session_exit_codes_carry_the_win32_error() {
        assert!(
            describe_exit(5).contains("exit code 5 ("),
            "{}",
            describe_exit(5)
        );
        assert_eq!(describe_exit(1), "exit code 1");
    }

    #[test]
    fn captured_pixels_encode_to_a_png() {
        let png = encode_png(2, 1, &[255, 0, 0, 0, 255, 0]).unwrap();
        assert!(png.starts_with(PNG_SIGNATURE));
    }

    #[test]
    fn the_tamper_check_and_simulations_are_refused_not_faked() {
        let dir = std::env::temp_dir();
        let x = WindowsExecutor::new(dir.clone(), Artifacts::new(dir, None), None);
        assert!(x.check(Opcode::ExecRunTamperCheck, None).is_err());
        assert!(x.check(Opcode::ExecLockScreen, None).is_ok());
    }

    fn cmd() -> PathBuf {
        let root = std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\windows".into());
        PathBuf::from(root).join("system32").join("cmd.exe")
    }

    /// The path every user-session action takes (lock, screenshot): a program started in
    /// the console session as its user, its exit code read back. Under Wine a user token
    /// exists and the child runs; on a server with nobody signed in the token call fails.
    /// Either way the answer is prompt and says what happened, never a silent success.
    #[test]
    fn a_session_program_that_fails_is_reported_with_its_exit_code() {
        let started = std::time::Instant::now();
        let r = in_session_with(&cmd(), &["/c", "exit", "3"], Duration::from_secs(20));
        let e = r.expect_err("exit code 3 is a failure");
        let text = e.to_string();
        assert!(
            !matches!(e, HelperError::ExecutionTimeout { .. }),
            "timed out: {text}"
        );
        assert!(
            text.contains("exit code 3") || text.contains("WTSQueryUserToken"),
            "{text}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn a_session_program_that_succeeds_returns_its_session_and_output() {
        match in_session_with(&cmd(), &["/c", "echo", "hi"], Duration::from_secs(20)) {
            Ok((_, out)) => assert!(String::from_utf8_lossy(&out).contains("hi")),
            Err(e) => {
                // Nobody signed in (a server): the token call is what failed.
                assert!(e.to_string().contains("WTSQueryUserToken"), "{e}");
            }
        }
    }
}
