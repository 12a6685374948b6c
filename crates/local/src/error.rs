//! tether-local's one error type, grouped by what the user can do about it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Why tether-local could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    // --- the command line: change a flag and run again ---
    /// A flag's value cannot work.
    #[error("{0}")]
    Usage(String),
    /// Something else listens on the address already.
    #[error(
        "cannot listen on {addr}: the address is already in use (another tether-local or \
         tether-server?). Stop it, or choose another address with --listen, e.g. --listen {suggestion}"
    )]
    AddressInUse {
        /// The address asked for.
        addr: SocketAddr,
        /// The same address on the next port.
        suggestion: String,
    },
    /// The address cannot be bound for another reason (not ours, a privileged port).
    #[error("cannot listen on {addr}: {source}. Choose another address with --listen")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The data dir holds a local PC paired with another server URL or CA.
    #[error("{0}")]
    DataDir(String),

    // --- this machine ---
    /// Reading or writing a file, or starting a process, failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file, directory or program.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    // --- the three processes ---
    /// One of the processes ended by itself (its own output says why).
    #[error("the {name} stopped unexpectedly ({status}); see its [{name}] lines above")]
    ChildDied {
        /// `server`, `agent` or `helper`.
        name: &'static str,
        /// How it ended.
        status: ExitStatus,
    },
    /// A process did not get ready in time.
    #[error("the {name} did not {what} within {seconds} s; see its [{name}] lines above")]
    NotReady {
        /// `server`, `agent` or `helper`.
        name: &'static str,
        /// What it should have done.
        what: &'static str,
        /// How long it was given.
        seconds: u64,
    },
    /// Something the server wrote (its ready file) is not what was expected.
    #[error("{0}")]
    Unexpected(String),
    /// A process was killed at the stop: its grace period ran out, or a second Ctrl-C.
    #[error("the {0} was killed before it had stopped")]
    Killed(&'static str),
}

impl LocalError {
    /// An I/O error on a path.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LocalError {
        let path = path.into();
        move |source| LocalError::Io { path, source }
    }

    /// The process exit code: 2 for something to fix in the command line or data dir,
    /// 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            LocalError::Usage(_)
            | LocalError::AddressInUse { .. }
            | LocalError::Listen { .. }
            | LocalError::DataDir(_) => 2,
            _ => 1,
        }
    }
}
