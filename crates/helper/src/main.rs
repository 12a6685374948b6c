//! `tether-helper`: the privileged local service (the design's "KernelService"). It
//! accepts only signed `helper_request` envelopes from the local agent over IPC and runs
//! only the enumerated opcodes. At this stage it lists the opcodes it will serve.

use std::process::ExitCode;

use clap::Parser;
use tether_proto::helper::Opcode;

/// Tether helper: runs allow-listed privileged operations for the local Tether agent.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// List the opcodes this helper serves and exit.
    #[arg(long)]
    list_opcodes: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    println!("tether-helper {}", env!("CARGO_PKG_VERSION"));
    if args.list_opcodes {
        for op in Opcode::ALL {
            println!("  {:#06x}  {}", op.number(), op.name());
        }
    } else {
        println!("This build is the foundation release: the IPC service is not implemented yet.");
    }
    ExitCode::SUCCESS
}
