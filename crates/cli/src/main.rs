//! `tether`: the command-line client. At this stage it offers offline tools over the wire
//! protocol: the error-code table.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tether_proto::ErrorCode;

/// tether: control your PCs through your Tether server from the command line.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Explain a Tether error code (number like 2001 or name like SIGNATURE_INVALID), or list all.
    Errors {
        /// The code to explain; omit to list every code.
        code: Option<String>,
    },
}

fn main() -> ExitCode {
    match Args::parse().command {
        Command::Errors { code: None } => {
            for c in ErrorCode::ALL {
                println!("{} {:<28} {}", c.number(), c.name(), c.message());
            }
            ExitCode::SUCCESS
        }
        Command::Errors { code: Some(q) } => {
            let found = q
                .parse::<u16>()
                .ok()
                .and_then(ErrorCode::from_number)
                .or_else(|| ErrorCode::from_name(&q.to_ascii_uppercase()));
            match found {
                Some(c) => {
                    println!("{} {} (HTTP {})\n{}", c.number(), c.name(), c.http_status(), c.message());
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("error: {q:?} is not a Tether error code (try `tether errors`)");
                    ExitCode::from(2)
                }
            }
        }
    }
}
