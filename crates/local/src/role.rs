//! The hidden subcommands through which tether-local runs its three processes:
//! `tether-local __server …`, `__agent …` and `__helper …` parse exactly the command line
//! of `tether-server`, `tether-agent` and `tether-helper` (the same clap types) and run
//! the same library code as those binaries, each in a process of its own, so a local run
//! behaves as a deployment of the three binaries does.

use std::ffi::{OsStr, OsString};
use std::process::ExitCode;

use clap::Parser;

/// The environment variable a child finds its supervisor's pid in (see
/// [`follow_supervisor`]).
pub const SUPERVISOR_ENV: &str = "TETHER_LOCAL_SUPERVISOR_PID";

/// One of the three processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `tether-server`.
    Server,
    /// `tether-agent`.
    Agent,
    /// `tether-helper`.
    Helper,
}

impl Role {
    /// The hidden subcommand that runs it.
    pub fn flag(self) -> &'static str {
        match self {
            Role::Server => "__server",
            Role::Agent => "__agent",
            Role::Helper => "__helper",
        }
    }

    /// Its short name, as in the `[server]` prefix of its output.
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
            Role::Helper => "helper",
        }
    }

    /// The binary it stands for (its name in help and error messages).
    pub fn program(self) -> &'static str {
        match self {
            Role::Server => "tether-server",
            Role::Agent => "tether-agent",
            Role::Helper => "tether-helper",
        }
    }

    /// The role a first argument asks for, if it is one of the hidden subcommands.
    pub fn from_flag(arg: &OsStr) -> Option<Role> {
        [Role::Server, Role::Agent, Role::Helper]
            .into_iter()
            .find(|r| arg == r.flag())
    }
}

/// Runs `role` with `args` (the arguments after the hidden subcommand) to its exit code,
/// as its own binary's `main` would.
pub fn run(role: Role, args: impl Iterator<Item = OsString>) -> ExitCode {
    if let Err(e) = follow_supervisor() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let argv = std::iter::once(OsString::from(role.program())).chain(args);
    match role {
        Role::Server => {
            let cli = tether_server::cli::Cli::parse_from(argv);
            tether_server::cli::init_logging();
            // As `#[tokio::main]` in tether-server: a worker per core.
            block_on(
                tokio::runtime::Builder::new_multi_thread(),
                tether_server::cli::main(cli),
            )
        }
        Role::Agent => {
            let cli = tether_agent::cli::Cli::parse_from(argv);
            tether_agent::init_logging(&cli);
            block_on(two_workers(), tether_agent::main(cli))
        }
        Role::Helper => {
            let cli = tether_helper::cli::Cli::parse_from(argv);
            tether_helper::init_logging(&cli);
            block_on(two_workers(), tether_helper::cli::execute(cli))
        }
    }
}

/// The runtime tether-agent and tether-helper build.
fn two_workers() -> tokio::runtime::Builder {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(2);
    b
}

fn block_on(
    mut builder: tokio::runtime::Builder,
    main: impl Future<Output = ExitCode>,
) -> ExitCode {
    match builder.enable_all().build() {
        Ok(rt) => rt.block_on(main),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A child started by tether-local (which names itself in [`SUPERVISOR_ENV`]) asks the
/// kernel for a SIGTERM when tether-local dies, so even a killed tether-local leaves no
/// process behind; and stops at once if tether-local is already gone. Run by hand
/// (without the variable), the role runs on its own.
fn follow_supervisor() -> Result<(), String> {
    let Some(pid) = std::env::var_os(SUPERVISOR_ENV) else {
        return Ok(());
    };
    let pid: i32 = pid
        .to_str()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("{SUPERVISOR_ENV} is not a process id"))?;
    platform::follow(pid)
}

#[cfg(target_os = "linux")]
mod platform {
    use rustix::process::{Pid, Signal, getppid, set_parent_process_death_signal};

    pub(super) fn follow(supervisor: i32) -> Result<(), String> {
        set_parent_process_death_signal(Some(Signal::TERM))
            .map_err(|e| format!("cannot ask to be stopped with tether-local: {e}"))?;
        // The supervisor may have died between starting this process and the line
        // above, in which case no signal will come: check it is still the parent.
        if getppid() != Pid::from_raw(supervisor) {
            return Err("tether-local, which started this process, is gone".into());
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod platform {
    /// Elsewhere the children stop when tether-local stops them; a tether-local killed
    /// outright (SIGKILL) leaves them running.
    pub(super) fn follow(_supervisor: i32) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_name_their_roles() {
        for role in [Role::Server, Role::Agent, Role::Helper] {
            assert_eq!(Role::from_flag(OsStr::new(role.flag())), Some(role));
        }
        assert_eq!(Role::from_flag(OsStr::new("server")), None);
        assert_eq!(Role::from_flag(OsStr::new("--help")), None);
    }
}
