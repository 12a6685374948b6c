//! `tether-service`: what the agent and the helper share to run as Windows services.
//!
//! The pure part, compiled and tested everywhere: a [`ServiceSpec`] (name, account,
//! command line, recovery policy) that `service install` turns into the service control
//! manager's configuration, the SID of a service's virtual account ([`sid`]), and the
//! `icacls` arguments that give a state directory to the accounts that need it ([`acl`]).
//!
//! The Windows part ([`scm`], Windows only): install, uninstall, start and stop through the
//! SCM with the `windows-service` crate, and [`scm::run_as_service`], the entry the SCM
//! starts (`<binary> service run …`), which runs the binary's own async main with a
//! cancellation token that the SCM's Stop and Shutdown controls fire.
//!
//! On Linux the agent and the helper run as systemd units instead; their `service`
//! subcommands say so.

pub mod acl;
pub mod log;
#[cfg(windows)]
pub mod scm;
pub mod sid;

use std::path::PathBuf;
use std::time::Duration;

/// The pipe the helper serves on Windows and the agent calls (the Unix socket's
/// counterpart): `tether-helper service install` and `tether-agent service install`
/// write it into both services' arguments.
pub const DEFAULT_PIPE: &str = r"\\.\pipe\tether-helper";

/// The agent's service name, whose virtual account the helper's pipe, state dir and the
/// logs directory admit.
pub const AGENT_SERVICE: &str = "tether-agent";

/// Under `%ProgramData%`: `Tether\agent` and `Tether\helper` are the services' state
/// directories.
pub const PROGRAM_DATA_DIR: &str = "Tether";

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A service control manager call failed (the OS's error is in the message).
    #[error("{what}: {reason}")]
    Scm {
        /// What was being done.
        what: String,
        /// The OS's answer.
        reason: String,
    },
    /// A tool (icacls) or a file operation failed.
    #[error("{what}: {reason}")]
    Setup {
        /// What was being done.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The operation does not exist on this platform.
    #[error("{0}")]
    Unsupported(String),
}

/// The account a service runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// `LocalSystem`: the helper, which performs privileged operations.
    LocalSystem,
    /// The virtual account `NT SERVICE\<service name>`: the agent. It has no password,
    /// only the rights granted to it, and its own SID ([`sid::service_sid`]) to grant
    /// them to.
    Virtual,
}

impl Account {
    /// The SCM's `lpServiceStartName` for `service`: `None` for LocalSystem.
    pub fn account_name(self, service: &str) -> Option<String> {
        match self {
            Account::LocalSystem => None,
            Account::Virtual => Some(format!(r"NT SERVICE\{service}")),
        }
    }
}

/// What the SCM does when the service fails: restart after each delay in turn (the last
/// one repeats), and forget earlier failures after `reset_after` without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The restart delays of the first, second and later failures.
    pub restart_after: Vec<Duration>,
    /// How long without a failure resets the count.
    pub reset_after: Duration,
}

impl Default for Recovery {
    /// Restart after 5 s, 30 s, then 60 s; reset after a day.
    fn default() -> Self {
        Self {
            restart_after: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(60),
            ],
            reset_after: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// A service as `service install` registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The service's name (`tether-agent`, `tether-helper`).
    pub name: String,
    /// What the Services console shows.
    pub display_name: String,
    /// The console's description.
    pub description: String,
    /// The binary (absolute).
    pub exe: PathBuf,
    /// The arguments after the binary: `service run` and the binary's `run` options.
    pub args: Vec<String>,
    /// Who it runs as.
    pub account: Account,
    /// Services that must start first.
    pub dependencies: Vec<String>,
    /// What happens when it fails.
    pub recovery: Recovery,
}

impl ServiceSpec {
    /// A spec whose command line is `exe service run <run_args…>`, restarted on failure
    /// with the [`Recovery::default`] policy.
    pub fn new(
        name: &str,
        display_name: &str,
        description: &str,
        exe: PathBuf,
        run_args: &[String],
        account: Account,
    ) -> Self {
        let mut args = vec!["service".to_owned(), "run".to_owned()];
        args.extend(run_args.iter().cloned());
        Self {
            name: name.to_owned(),
            display_name: display_name.to_owned(),
            description: description.to_owned(),
            exe,
            args,
            account,
            dependencies: Vec::new(),
            recovery: Recovery::default(),
        }
    }

    /// The account name the SCM is given.
    pub fn account_name(&self) -> Option<String> {
        self.account.account_name(&self.name)
    }
}

/// `%ProgramData%\Tether\<leaf>` from the value of `%ProgramData%` (`C:\ProgramData` when
/// it is unset).
pub fn program_data_dir(program_data: Option<std::ffi::OsString>, leaf: &str) -> PathBuf {
    let base = program_data
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(r"C:\ProgramData"), PathBuf::from);
    base.join(PROGRAM_DATA_DIR).join(leaf)
}

#[cfg(test)]
mod tests;
