//! `tether-server`: the Tether server (api + gateway roles in one process). Parses the
//! command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use tether_server::cli::Cli;

/// mimalloc instead of the system allocator: a server holding thousands of sessions
/// allocates and frees small buffers on every frame, from several threads at once, and
/// glibc's malloc spent about 15 % of the server's CPU doing that under a fleet's
/// telemetry (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tether_server::cli::init_logging();
    tether_server::cli::main(cli).await
}
