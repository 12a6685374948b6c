//! One of the three processes: started from tether-local's own executable with a hidden
//! subcommand, its output forwarded, stopped with SIGTERM and a grace period.

use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::LocalError;
use crate::forward::{QrRows, Stream, forward};
use crate::role::{Role, SUPERVISOR_ENV};

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It had ended before it was asked to.
    Already(ExitStatus),
    /// It ended when asked.
    Exited(ExitStatus),
    /// It was killed: the grace period ran out, or the user asked to hurry.
    Killed,
}

/// A running child.
#[derive(Debug)]
pub struct Child {
    role: Role,
    process: tokio::process::Child,
    pid: Option<u32>,
    ended: Option<ExitStatus>,
    /// The tasks copying its stdout and stderr (they end with the process's pipes).
    forwarders: Vec<(&'static str, JoinHandle<()>)>,
}

impl Child {
    /// Starts `exe <role's hidden subcommand> args…`. With `plain_logs` its logs have no
    /// colours (`NO_COLOR`): for when tether-local's output is not a terminal.
    ///
    /// The child gets a process group of its own, so a Ctrl-C in the terminal reaches
    /// tether-local only, which then stops the children in order; it is killed if this
    /// handle is dropped without a stop, and (Linux) is sent SIGTERM if tether-local dies.
    pub fn spawn(
        exe: &Path,
        role: Role,
        args: Vec<OsString>,
        plain_logs: bool,
    ) -> Result<Self, LocalError> {
        let mut cmd = Command::new(exe);
        cmd.arg(role.flag())
            .args(args)
            .env(SUPERVISOR_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if plain_logs {
            cmd.env("NO_COLOR", "1");
        }
        #[cfg(unix)]
        cmd.process_group(0);
        let mut process = cmd.spawn().map_err(LocalError::io(exe))?;
        let prefix = format!("{:<9}", format!("[{}]", role.name()));
        let qr = if role == Role::Agent {
            QrRows::Fold
        } else {
            QrRows::Show
        };
        let mut forwarders = Vec::new();
        if let Some(out) = process.stdout.take() {
            let task = tokio::spawn(forward(out, prefix.clone(), Stream::Out, qr));
            forwarders.push(("stdout", task));
        }
        if let Some(err) = process.stderr.take() {
            let task = tokio::spawn(forward(err, prefix, Stream::Err, qr));
            forwarders.push(("stderr", task));
        }
        Ok(Self {
            role,
            pid: process.id(),
            process,
            ended: None,
            forwarders,
        })
    }

    /// Which process this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// How it ended, if it has (without waiting).
    pub fn ended(&mut self) -> Result<Option<ExitStatus>, LocalError> {
        if self.ended.is_none() {
            self.ended = self
                .process
                .try_wait()
                .map_err(LocalError::io(self.role.program()))?;
        }
        Ok(self.ended)
    }

    /// Asks it to stop (SIGTERM) and waits up to `grace` for it to end, killing it then
    /// or as soon as `hurry` is cancelled. Its remaining output is shown before this
    /// returns.
    pub async fn stop(&mut self, grace: Duration, hurry: &CancellationToken) -> Stopped {
        let stopped = match self.ended() {
            Ok(Some(status)) => Stopped::Already(status),
            _ => {
                self.terminate();
                tokio::select! {
                    r = tokio::time::timeout(grace, self.process.wait()) => match r {
                        Ok(Ok(status)) => {
                            self.ended = Some(status);
                            Stopped::Exited(status)
                        }
                        Ok(Err(_)) | Err(_) => self.kill().await,
                    },
                    () = hurry.cancelled() => self.kill().await,
                }
            }
        };
        self.drain_output().await;
        stopped
    }

    async fn kill(&mut self) -> Stopped {
        let _ = self.process.kill().await;
        Stopped::Killed
    }

    /// SIGTERM, which every role handles as its stop signal.
    #[cfg(unix)]
    fn terminate(&mut self) {
        let pid = self
            .pid
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw);
        let sent = pid.is_some_and(|pid| {
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
        });
        if !sent {
            let _ = self.process.start_kill();
        }
    }

    /// Without SIGTERM to send, the child is killed.
    #[cfg(not(unix))]
    fn terminate(&mut self) {
        let _ = self.pid;
        let _ = self.process.start_kill();
    }

    /// Waits (briefly) for the forwarders to show what the process wrote last.
    async fn drain_output(&mut self) {
        for (_stream, task) in self.forwarders.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                // A grandchild holding the pipe open: stop copying from it.
                abort.abort();
            }
        }
    }
}

/// Whether a child asked to stop ended as a stop should: exit status 0, or the SIGTERM
/// itself when it came before the child's handler was in place.
#[cfg(unix)]
pub fn clean(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.success() || status.signal() == Some(rustix::process::Signal::TERM.as_raw())
}

/// Whether a child asked to stop ended as a stop should: exit status 0.
#[cfg(not(unix))]
pub fn clean(status: ExitStatus) -> bool {
    status.success()
}
