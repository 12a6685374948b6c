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
/// While the server is unreachable the agent keeps collecting telemetry into an
/// encrypted offline queue in the state dir (queue.db) and delivers it, oldest first,
/// after reconnecting. The queue is bounded (--queue-max, --queue-max-bytes): when it is
/// full, the OLDEST samples are dropped first.
///
/// Examples:
///
///   tether-agent run --server https://tether.example:8443 --state-dir /var/lib/tether-agent \
///       --ca-fingerprint 3A:1F:...:C2
///
///   tether-agent status --state-dir /var/lib/tether-agent
///
///   sudo tether-agent install --server https://tether.example:8443 \
///       --state-dir /var/lib/tether-agent --ca-fingerprint 3A:1F:...:C2 --enable
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
    /// Show whether this PC is paired, with which server, when its certificate expires,
    /// and how much telemetry waits in the offline queue.
    Status(StatusArgs),
    /// Install the agent as a systemd unit that runs `tether-agent run` with these options
    /// at every boot (Linux; on Windows use `tether-agent service install`).
    Install(InstallArgs),
    /// Remove the systemd unit written by `install` (the state dir is kept).
    Uninstall(UninstallArgs),
    /// The Windows service: install, uninstall, start, stop (Windows only; on Linux the
    /// agent is a systemd unit, see `install`).
    #[command(hide = cfg!(not(windows)))]
    Service(ServiceArgs),
}

/// `tether-agent service`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// What to do with the service.
    #[command(subcommand)]
    pub action: ServiceAction,
}

/// `tether-agent service …`.
#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Register the `tether-agent` service (started at boot, as the virtual account
    /// NT SERVICE\tether-agent, restarted after 5 s, 30 s and 60 s when it fails), give
    /// its state dir to that account only, and write its `run` options. Run it again to
    /// change them. Needs an elevated prompt.
    Install(ServiceInstallArgs),
    /// Stop and remove the service (the state dir is kept).
    Uninstall,
    /// Start the installed service.
    Start,
    /// Stop the service and wait until it has stopped.
    Stop,
    /// What the service control manager starts: `run` under the SCM, stopped by its
    /// Stop and Shutdown controls. Not for use at a prompt.
    #[command(hide = true)]
    Run(RunArgs),
}

/// `tether-agent service install`.
#[derive(Debug, Args)]
pub struct ServiceInstallArgs {
    /// The server's base URL. May be left out once the state dir remembers a server.
    #[arg(long, env = "TETHER_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The service's state directory [default: %ProgramData%\Tether\agent].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How to trust the server the first time.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The name the owner sees for this PC [default: the hostname].
    #[arg(long, value_name = "NAME")]
    pub device_name: Option<String>,
    /// The helper's pipe [default: \\.\pipe\tether-helper].
    #[arg(long, value_name = "PIPE", conflicts_with = "no_helper")]
    pub helper_pipe: Option<PathBuf>,
    /// The helper's public key file [default: %ProgramData%\Tether\helper\helper.pub].
    #[arg(long, value_name = "FILE", conflicts_with = "no_helper")]
    pub helper_key_file: Option<PathBuf>,
    /// Run without the helper (commands then fail with 6002 HELPER_UNAVAILABLE).
    #[arg(long)]
    pub no_helper: bool,
    /// Also start the service now.
    #[arg(long)]
    pub start: bool,
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
    /// The offline queue keeps at most this many telemetry samples; when full, the
    /// OLDEST samples are dropped first.
    #[arg(long, value_name = "N", default_value_t = crate::queue::DEFAULT_MAX_ENTRIES)]
    pub queue_max: u64,
    /// The offline queue keeps at most this many bytes (encrypted); when full, the
    /// OLDEST samples are dropped first. At least 65536.
    #[arg(long, value_name = "BYTES", default_value_t = crate::queue::DEFAULT_MAX_BYTES)]
    pub queue_max_bytes: u64,
    /// For tests and troubleshooting: while the server is unreachable, sample telemetry
    /// every N seconds (1..=3600) instead of at the interval the server last asked for.
    /// Connected, the server's interval always applies.
    #[arg(long, value_name = "N")]
    pub telemetry_interval_s: Option<u32>,
    /// The privileged helper's Unix socket (`tether-helper run --socket`); on Windows,
    /// `--helper-pipe`: its named pipe (`tether-helper run --pipe`, e.g.
    /// \\.\pipe\tether-helper). Without it, commands are acknowledged and fail with 6002
    /// HELPER_UNAVAILABLE.
    #[cfg_attr(not(windows), arg(long, value_name = "PATH"))]
    #[cfg_attr(windows, arg(long = "helper-pipe", value_name = "NAME"))]
    #[arg(requires = "helper_key_file")]
    pub helper_socket: Option<PathBuf>,
    /// The helper's public key file (`helper.pub` in the helper's state dir): every
    /// answer of the helper must be signed by it.
    #[arg(long, value_name = "FILE", requires = "helper_socket")]
    pub helper_key_file: Option<PathBuf>,
}

/// `tether-agent install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The options the service runs `tether-agent run` with.
    #[command(flatten)]
    pub run: RunArgs,
    /// Where to write tether-agent.service [default: /etc/systemd/system].
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,
    /// Also run `systemctl daemon-reload` and `systemctl enable --now tether-agent`
    /// (otherwise they are printed for you to run).
    #[arg(long)]
    pub enable: bool,
}

/// `tether-agent uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Where tether-agent.service was written [default: /etc/systemd/system].
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,
    /// Also run `systemctl disable --now tether-agent` first and `systemctl
    /// daemon-reload` after.
    #[arg(long)]
    pub disable: bool,
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
