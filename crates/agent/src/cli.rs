//! The command line. Parsed once in `main`, then turned into a validated
//! [`crate::config::RunConfig`]; nothing below reads arguments or the environment again.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Tether agent: keeps this PC connected to its Tether server so its owner can reach it
/// from their phone, and carries out only commands the owner signed.
///
/// First run: the agent creates its key in --state-dir, introduces itself to the server
/// and shows a QR code (also saved as pair-qr.png in the state dir). Scan it with the
/// Tether app, or pass the pair URL to `tether pair`, then compare the pairing
/// code both sides show. Every later run connects with the device certificate it
/// received.
///
/// Examples:
///
///   tether-agent run --server https://tether.example:8443 --state-dir /var/lib/tether-agent \
///       --ca-fingerprint 3A:1F:...:C2
///
///   tether-agent status --state-dir /var/lib/tether-agent
#[derive(Debug, Parser)]
#[command(
    name = "tether-agent",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The agent's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pair this PC if it is not paired yet, then stay connected (until Ctrl-C or SIGTERM).
    Run(RunArgs),
    /// Show whether this PC is paired, with which server, and when its certificate expires.
    Status(StatusArgs),
}

/// `tether-agent run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The server's base URL, e.g. https://tether.example:8443. May be left out once the
    /// state dir remembers a server.
    #[arg(long, env = "TETHER_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Directory holding the agent's key, certificate and pinned server keys. Keep it
    /// private: it is this PC's identity.
    #[arg(long, env = "TETHER_AGENT_DIR", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// How to trust the server the first time (afterwards the state dir's copy is used).
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The name the owner sees for this PC [default: the hostname].
    #[arg(long, value_name = "NAME")]
    pub device_name: Option<String>,
}

/// The first-contact trust choice: at most one of these.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct TrustArgs {
    /// The server's root CA certificate (PEM), e.g. copied from the server's data dir.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Download the server's root CA and accept it only if its SHA-256 fingerprint is this
    /// one (hex pairs separated by colons, as `openssl x509 -fingerprint -sha256` prints).
    #[arg(long, value_name = "SHA256")]
    pub ca_fingerprint: Option<String>,
    /// Download the server's root CA and trust whatever it is, printing its fingerprint.
    /// Only for a server you control on a network you trust: anyone in the middle could
    /// impersonate the server on this first connection.
    #[arg(long)]
    pub trust_on_first_use: bool,
}

/// `tether-agent status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agent's state directory.
    #[arg(long, env = "TETHER_AGENT_DIR", value_name = "DIR")]
    pub state_dir: PathBuf,
}
