//! `tether-helper`: the privileged per-PC service (the design's "KernelService").
//!
//! It listens only on local IPC (a Unix domain socket, or on Windows a named pipe), and
//! accepts one thing: a `helper_request` envelope signed by the local agent's
//! key, from a process whose OS identity is the agent's. Each request is checked in a fixed
//! order — envelope (signature, time, type), `agent_sequence` above the last accepted one,
//! the opcode's `params`, whether the executor runs that opcode — and every refusal is a
//! signed `helper_response` with status `denied` and nothing executed. Accepted requests
//! are answered `executing` and then `ok`, `failed` or `denied`, all signed by the helper's
//! own key.
//!
//! What makes "a redelivered command is never executed twice" true at the last hop lives
//! here: the ledger remembers, durably, how every `command_message_id` ended, and a
//! repeat is answered from it (one retry is allowed after a kernel failure).
//!
//! The crate is a library with a thin binary: [`server`] is the IPC service, [`client`]
//! what the agent uses to call it, [`executor`] the operations themselves (a recording one
//! for tests and demos, the real one for Linux and for Windows), [`service`] the Windows
//! service.

pub mod cli;
#[cfg(any(unix, windows))]
pub mod client;
pub mod error;
pub mod executor;
// The transport-free core (framing, checks, ledger, signed responses) is served by the
// Unix socket and the Windows named pipe alike.
mod framing;
mod handler;
pub mod keys;
mod ledger;
mod platform;
mod policy;
mod random;
mod respond;
#[cfg(any(unix, windows))]
pub mod server;
pub mod service;
pub mod state;

pub use error::HelperError;
pub use respond::NIL_REQUEST_ID;

/// Sends diagnostics, filtered by `TETHER_LOG` (default `info`: the helper's log is the
/// record of what was asked of it and what it refused), to stderr; under the Windows
/// service control manager (`service run`), to
/// `logs\tether-helper.log` beside its state dir (`%ProgramData%\Tether\logs`) instead.
pub fn init_logging(cli: &cli::Cli) {
    let file = match &cli.command {
        Some(cli::Command::Service(cli::ServiceArgs {
            action: cli::ServiceAction::Run(run),
        })) if cfg!(windows) => Some((
            tether_service::log::logs_dir(&run.state_dir),
            service::SERVICE_NAME,
        )),
        _ => None,
    };
    tether_service::log::init("info", file);
}
