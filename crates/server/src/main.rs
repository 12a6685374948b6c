//! `tether-server`: the Tether server (api + gateway roles in one process). Parses the
//! command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use tether_server::cli::Cli;

/// mimalloc instead of glibc's allocator on Linux: the gateway allocates a few buffers
/// per frame, and glibc's `malloc` and `free` took about a tenth of the server's CPU at
/// 18,000 agents sending telemetry. With mimalloc the same load set up, answered
/// commands and came back from a storm faster, for 1.7 KiB more per idle session
/// (docs/benchmarks.md).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tether_server::cli::init_logging();
    tether_server::cli::main(cli).await
}
