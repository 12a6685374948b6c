//! `tether-server`: the Tether server (api + gateway roles in one process). Parses the
//! command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use tether_server::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tether_server::cli::init_logging();
    tether_server::cli::main(cli).await
}
