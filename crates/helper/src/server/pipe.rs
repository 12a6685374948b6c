//! The Windows transport: a named pipe.
//!
//! The first instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so a name some
//! other process already serves is an error at start-up rather than a pipe shared with a
//! squatter, and the helper always keeps one instance of its own listening (a new one is
//! created before a connected one is handed off), so the name is never free while it runs.
//! Remote clients are refused. The DACL admits SYSTEM, Administrators and the agent's
//! account only, and the agent's account gets read and write but not
//! `FILE_CREATE_PIPE_INSTANCE`: it can talk to the helper, not pose as it.
//!
//! The DACL decides who may open the pipe; the peer check decides who is served, from what
//! the kernel says about the client process: `GetNamedPipeClientProcessId`, then that
//! process's image path (`QueryFullProcessImageNameW`, the analogue of `/proc/<pid>/exe`)
//! must be the configured agent executable and, when asked for, its token's user must be
//! the agent's account (which then also refuses SYSTEM and Administrators).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::{fmt, io};

use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeServer};

use super::HelperConfig;
use crate::error::HelperError;
use crate::platform::windows::{self as win, SecurityDescriptor};

/// The pipe the helper serves by default.
pub const DEFAULT_PIPE: &str = r"\\.\pipe\tether-helper";
/// The account the agent's service runs as by default (its virtual service account).
pub const DEFAULT_AGENT_ACCOUNT: &str = r"NT SERVICE\tether-agent";

/// `FILE_GENERIC_READ | FILE_GENERIC_WRITE` without `FILE_APPEND_DATA` (0x4), which on a
/// pipe means `FILE_CREATE_PIPE_INSTANCE`: the agent may read and write, not add server
/// instances of the helper's pipe.
const AGENT_RIGHTS: u32 = 0x0012_019B;

/// The named pipe and who may open it.
#[derive(Debug, Clone)]
pub struct PipeConfig {
    /// The pipe's name, `\\.\pipe\…`.
    pub name: String,
    /// The account the agent runs as: a SID (`S-1-5-…`) or an account name
    /// (`NT SERVICE\tether-agent`, `DOMAIN\user`). The DACL admits it besides SYSTEM and
    /// Administrators.
    pub agent_account: String,
    /// Also require the calling process's token user to be `agent_account`.
    pub require_agent_account: bool,
}

impl Default for PipeConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_PIPE.to_owned(),
            agent_account: DEFAULT_AGENT_ACCOUNT.to_owned(),
            require_agent_account: false,
        }
    }
}

/// What the transport needs of the configuration before anything is opened.
pub(super) fn check_config(config: &HelperConfig) -> Result<(), HelperError> {
    let name = &config.pipe.name;
    let local_prefix = r"\\.\pipe\";
    let is_local_pipe = name
        .get(..local_prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(local_prefix))
        && name.len() > local_prefix.len();
    if !is_local_pipe {
        return Err(HelperError::Config(format!(
            r"--pipe {name}: a local pipe name is \\.\pipe\NAME"
        )));
    }
    if config.pipe.agent_account.trim().is_empty() {
        return Err(HelperError::Config("--agent-account is empty".into()));
    }
    Ok(())
}

/// The SID of the account this process runs as: the `--agent-account` for a helper and an
/// agent that run as the same user (a development machine, tests).
pub fn current_user_sid() -> Result<String, HelperError> {
    win::Process::open(std::process::id())
        .and_then(|p| p.token_user_sid())
        .map_err(|e| HelperError::Config(format!("the account of this process: {e}")))
}

/// The DACL (protected: nothing inherited) of the helper's pipe.
pub(super) fn sddl(agent_sid: &str) -> String {
    format!("D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;{AGENT_RIGHTS:#x};;;{agent_sid})")
}

/// Whether a pipe of that name answers an open (a free instance, or all of them busy).
///
/// `FILE_FLAG_FIRST_PIPE_INSTANCE` is the guarantee (atomic, at creation); this probe is
/// for where the flag is ignored — Wine 8 creates a further instance despite it — so a
/// second helper or a squatter is refused there too, if not atomically.
fn exists(name: &OsStr) -> bool {
    // ERROR_PIPE_BUSY (winerror.h): the pipe exists, every instance is connected.
    const ERROR_PIPE_BUSY: i32 = 231;
    match ClientOptions::new().open(name) {
        Ok(_) => true,
        Err(e) => e.raw_os_error() == Some(ERROR_PIPE_BUSY),
    }
}

fn taken(name: &str) -> HelperError {
    HelperError::Config(format!(
        "{name}: the pipe exists already (another helper, or another process holding its \
         name); not sharing it"
    ))
}

/// The pipe, with the instance the next client will connect to.
#[derive(Debug)]
pub(super) struct Listener {
    name: OsString,
    security: SecurityDescriptor,
    next: NamedPipeServer,
}

impl Listener {
    /// Creates the pipe's first instance and says who may call (`agent_exe` is
    /// canonicalized).
    pub(super) fn bind(
        config: &HelperConfig,
        agent_exe: Option<PathBuf>,
    ) -> Result<(Self, PeerPolicy), HelperError> {
        let pipe = &config.pipe;
        let agent_sid = win::account_sid(&pipe.agent_account).map_err(|e| {
            HelperError::Config(format!("--agent-account {}: {e}", pipe.agent_account))
        })?;
        let security = SecurityDescriptor::from_sddl(&sddl(&agent_sid))
            .map_err(|e| HelperError::Config(format!("the pipe's security descriptor: {e}")))?;
        let name = OsString::from(&pipe.name);
        if exists(&name) {
            return Err(taken(&pipe.name));
        }
        let first = win::create_pipe_instance(&name, true, &security).map_err(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                taken(&pipe.name)
            } else {
                HelperError::io(&pipe.name, e)
            }
        })?;
        tracing::debug!(pipe = %pipe.name, agent_sid = %agent_sid, "pipe created");
        let peers = PeerPolicy {
            agent_exe,
            agent_sid: pipe.require_agent_account.then_some(agent_sid),
        };
        Ok((
            Self {
                name,
                security,
                next: first,
            },
            peers,
        ))
    }

    pub(super) fn endpoint(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }

    /// The next connection. A new instance is listening before the connected one is
    /// returned; if it cannot be made, the connected one stays as `next` and is returned
    /// by the next call (connecting a connected instance succeeds at once).
    pub(super) async fn accept(&mut self) -> io::Result<NamedPipeServer> {
        let connected = self.next.connect().await;
        let fresh = win::create_pipe_instance(&self.name, false, &self.security)?;
        let instance = std::mem::replace(&mut self.next, fresh);
        connected.map(|()| instance)
    }

    /// Stops listening: the waiting instance closes, and with the last connection the
    /// name is gone.
    pub(super) fn close(self) {
        drop(self.next);
    }
}

/// The peer check's configuration.
#[derive(Debug, Clone)]
pub(super) struct PeerPolicy {
    /// Canonicalized.
    agent_exe: Option<PathBuf>,
    /// When set, the caller's token user must be this SID.
    agent_sid: Option<String>,
}

/// A caller that passed the check (what the log says of it).
#[derive(Clone)]
pub(super) struct Peer {
    pid: u32,
    image: Option<PathBuf>,
    user: Option<String>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if let Some(image) = &self.image {
            write!(f, ", image {}", image.display())?;
        }
        if let Some(user) = &self.user {
            write!(f, ", user {user}")?;
        }
        Ok(())
    }
}

impl PeerPolicy {
    /// Checks the process at the other end of `pipe`; `Err` says why it is refused.
    pub(super) async fn check(&self, pipe: &NamedPipeServer) -> Result<Peer, String> {
        let pid = win::pipe_client_pid(pipe)
            .map_err(|e| format!("cannot read the caller's process id: {e}"))?;
        let mut peer = Peer {
            pid,
            image: None,
            user: None,
        };
        if self.agent_exe.is_none() && self.agent_sid.is_none() {
            return Ok(peer);
        }
        let (image, user) =
            {
                let process = win::Process::open(pid)
                    .map_err(|e| format!("cannot open the calling process {pid}: {e}"))?;
                let user =
                    match &self.agent_sid {
                        Some(_) => Some(process.token_user_sid().map_err(|e| {
                            format!("cannot read the account of process {pid}: {e}")
                        })?),
                        None => None,
                    };
                let image = match &self.agent_exe {
                    Some(_) => Some(process.image_path().map_err(|e| {
                        format!("cannot read the executable of process {pid}: {e}")
                    })?),
                    None => None,
                };
                (image, user)
            };
        if let (Some(want), Some(user)) = (&self.agent_sid, user) {
            if !user.eq_ignore_ascii_case(want) {
                return Err(format!(
                    "process {pid} runs as {user}, not the agent's account ({want})"
                ));
            }
            peer.user = Some(user);
        }
        if let (Some(exe), Some(image)) = (&self.agent_exe, image) {
            // Both sides canonical, so `C:\…` and `\\?\C:\…`, 8.3 names and case agree.
            let resolved = tokio::fs::canonicalize(&image).await.map_err(|e| {
                format!(
                    "process {pid} runs {}, which cannot be resolved: {e}",
                    image.display()
                )
            })?;
            if &resolved != exe {
                return Err(format!(
                    "process {pid} runs {}, not the agent ({})",
                    resolved.display(),
                    exe.display()
                ));
            }
            peer.image = Some(resolved);
        }
        Ok(peer)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
