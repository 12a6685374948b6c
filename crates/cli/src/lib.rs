//! `tether`: the command-line client of a Tether server. People use it to create an
//! account with its Ed25519 signing key, log in (password + TOTP), pair their PCs, list
//! and watch them, send them commands (`tether cmd`, following each to its end with
//! `--wait`), read their command history and download the artifacts commands produce;
//! admins approve devices and change settings.
//!
//! The binary is thin ([`main`]); each command lives in `commands/`, the profile
//! directory in [`profile`], server trust (CA pinning on first use) in [`trust`], and
//! token refresh in [`auth`].

pub mod args;
pub mod auth;
mod commands;
pub mod context;
pub mod error;
pub mod output;
pub mod owner_key;
pub mod profile;
pub mod prompt;
pub mod trust;
pub mod views;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tether_proto::SystemClock;

use crate::args::{Cli, Command};
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::Output;
use crate::profile::Profile;

/// Runs the parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let out = Output::new(cli.global.json);
    match run(cli, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            e.exit_code()
        }
    }
}

fn run(cli: Cli, out: Output) -> Result<(), CliError> {
    let dir = profile_dir(&cli)?;
    let ctx = Ctx {
        profile: Profile::new(dir),
        out,
        global: cli.global,
        clock: Arc::new(SystemClock),
    };
    // One thread is plenty for a client that makes one request at a time.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::io("starting the async runtime"))?;
    rt.block_on(commands::run(cli.command, &ctx))
}

fn profile_dir(cli: &Cli) -> Result<PathBuf, CliError> {
    if let Some(d) = &cli.global.profile_dir {
        return Ok(d.clone());
    }
    match profile::default_dir(|k| std::env::var_os(k)) {
        Some(d) => Ok(d),
        // The offline command needs no profile.
        None if matches!(cli.command, Command::Errors { .. }) => Ok(PathBuf::new()),
        None => Err(CliError::usage(
            "no profile directory: set HOME (or APPDATA on Windows), or pass --profile-dir DIR",
        )),
    }
}
