//! `tether-local`: the supervisor, or (through a hidden first argument) one of the three
//! processes it runs. Hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use tether_local::cli::Cli;
use tether_local::role::{self, Role};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if let Some(role) = args.peek().and_then(|a| Role::from_flag(a)) {
        return role::run(role, args.skip(1));
    }
    tether_local::main(Cli::parse())
}
