//! `tether-server`: the Tether server. One binary plays the api role (accounts, devices,
//! commands, audit, the web app) and the gateway role (agent WebSocket sessions, command
//! delivery). At this stage it only checks its arguments and prints what it would serve.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Tether server: pair PCs, queue signed commands to them, and keep a verifiable audit log.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Directory for the embedded database, bus, object store and CA.
    #[arg(long, env = "TETHER_DATA_DIR", default_value = "./tether-data")]
    data_dir: PathBuf,
    /// Address for HTTPS (api, web app) and WSS (agents).
    #[arg(long, env = "TETHER_LISTEN", default_value = "127.0.0.1:8443")]
    listen: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    println!(
        "tether-server {} (wire protocol v{})\n  data dir: {}\n  listen:   {}\n\
         This build is the foundation release: the protocol and trust core are in place; \
         the api and gateway roles are not served yet.",
        env!("CARGO_PKG_VERSION"),
        tether_proto::envelope::VERSION,
        args.data_dir.display(),
        args.listen,
    );
    ExitCode::SUCCESS
}
