//! `tether-helper`: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use tether_helper::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tether_helper::init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(tether_helper::cli::execute(cli))
}
