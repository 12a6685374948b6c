//! `tether-agent`: runs on each PC (Windows first, Linux second), keeps one authenticated
//! session to the gateway, reports telemetry and carries out signed commands through the
//! helper. At this stage it only checks its arguments and prints what it would do.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Tether agent: keeps this PC connected to its Tether server and runs commands its owner signed.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// The server's base URL.
    #[arg(long, env = "TETHER_SERVER", default_value = "https://127.0.0.1:8443")]
    server: String,
    /// Directory for the agent's key, certificate and local queue.
    #[arg(long, env = "TETHER_AGENT_DIR", default_value = "./tether-agent")]
    state_dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    println!(
        "tether-agent {} (wire protocol v{})\n  server:    {}\n  state dir: {}\n\
         This build is the foundation release: pairing and sessions are not implemented yet.",
        env!("CARGO_PKG_VERSION"),
        tether_proto::envelope::VERSION,
        args.server,
        args.state_dir.display(),
    );
    ExitCode::SUCCESS
}
