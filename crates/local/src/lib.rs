//! `tether-local`: a whole Tether system on one machine with one command — the server
//! (with its web app), and this PC as a device to pair and command: its agent, and a
//! helper with the recording executor (commands are recorded, nothing is performed).
//!
//! It is one executable that runs itself three times: `tether-local __server …`,
//! `__agent …` and `__helper …` ([`role`]) parse the command lines of `tether-server`,
//! `tether-agent` and `tether-helper` and run the same library code those binaries run,
//! each as a process of its own, wired as a deployment wires them (the CA file, the
//! agent's and helper's keys, the helper's socket). So `cargo run -p tether-local`
//! builds everything it needs, and nothing behaves differently from production.
//!
//! The supervisor ([`supervise`]) starts the server and waits for its ready file, then
//! the agent and helper; forwards their output with a `[server]`/`[agent]`/`[helper]`
//! prefix; shows a banner with the URL, the CA fingerprint and the pairing QR code; and
//! stops the three in order (agent, helper, server, each with a grace period) on Ctrl-C
//! or SIGTERM, or when one of them ends by itself.

pub mod announce;
pub mod banner;
pub mod child;
pub mod cli;
pub mod console;
pub mod error;
pub mod forward;
pub mod layout;
pub mod listen;
pub mod pc;
pub mod role;
pub mod signals;
pub mod supervise;

use std::process::ExitCode;
use std::sync::Arc;

use tether_proto::SystemClock;

use crate::cli::{Cli, LocalConfig};
use crate::error::LocalError;

/// Runs the supervisor for a parsed command line to its exit code.
pub fn main(cli: Cli) -> ExitCode {
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            console::err(&format!("error: {e}\n"));
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), LocalError> {
    let config = LocalConfig::from_cli(cli, tether_agent::platform::hostname())?;
    if let Some(reason) = config.no_pc_reason {
        console::note(reason);
    }
    let exe = std::env::current_exe().map_err(LocalError::io("tether-local's executable"))?;
    // One thread: every child is started from it (Linux ties a child's parent-death
    // signal to the thread that started it), and every write to the terminal is whole.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LocalError::io("the async runtime"))?;
    runtime.block_on(supervise::run(config, exe, Arc::new(SystemClock)))
}
