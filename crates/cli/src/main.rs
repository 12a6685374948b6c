//! `tether`: the command-line client. See the library crate for how it is organised.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tether_cli::main(tether_cli::args::Cli::parse())
}
