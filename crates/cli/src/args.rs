//! The command line.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// tether: control your PCs through your Tether server from the command line.
///
/// Start with `tether register --server https://HOST:PORT --email YOU@EXAMPLE`, then
/// `tether login`, then pair a PC with `tether pair <the URL its QR code shows>`. The
/// server URL, its CA and your session are kept in the profile directory.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about, long_about)]
#[command(after_help = "\
Examples:
  tether --server https://tether.example:8443 status  check the server, pin its CA
  tether register --email me@example.com              create your account and key
  tether login                                        log in (asks for a TOTP code if needed)
  tether totp enroll                                  turn on two-factor authentication
  tether pair 'https://HOST/pair#token=…'             pair the PC showing that QR code
  tether devices                                      list your PCs
  tether watch                                        follow them live (Ctrl-C stops)
  tether alerts                                       list open alerts; --ack ID acknowledges
  tether metrics DEVICE --daily                       daily statistics of one PC

Exit status: 0 success, 1 the server refused (the error code is printed), \
2 usage or local problem, 3 the server could not be reached.
Explain an error code with: tether errors CODE")]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalOpts {
    /// The Tether server, e.g. https://tether.example:8443 (remembered in the profile
    /// after first use).
    #[arg(long, global = true, env = "TETHER_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Where the server settings, pinned CA, session and your signing key are kept
    /// [default: $XDG_CONFIG_HOME/tether or ~/.config/tether; %APPDATA%\tether on
    /// Windows].
    #[arg(long, global = true, env = "TETHER_PROFILE_DIR", value_name = "DIR")]
    pub profile_dir: Option<PathBuf>,
    /// Trust this CA certificate (PEM) for the server instead of asking on first use;
    /// it replaces the pinned one.
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// The SHA-256 fingerprint the server's CA must have (colon hex, as `tether status`
    /// and `openssl x509 -noout -fingerprint -sha256` show it). On first use a match is trusted without asking; a mismatch always
    /// stops the command.
    #[arg(long, global = true, value_name = "FP")]
    pub ca_fingerprint: Option<String>,
    /// Never prompt: a new server CA is accepted only if --ca-fingerprint matches, and
    /// missing input (password, TOTP code) is an error.
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Print machine-readable JSON on stdout (errors too, as {"error": ...}).
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account and your signing key (kept in the profile directory; its public
    /// half is registered so your PCs can check that commands come from you).
    Register {
        /// Your email address (the login name).
        #[arg(long)]
        email: String,
        /// Read the password as one line of standard input instead of asking twice.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Check the server: pin its CA on first use, show its health and version, and
    /// whether you are logged in.
    Status,
    /// Log in; the session is kept in the profile directory and refreshed as needed.
    Login {
        /// Your email address [default: the last one used with this profile].
        #[arg(long)]
        email: Option<String>,
        /// Read the password as one line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
        /// The current code from your authenticator app (asked for when the account
        /// needs one and it is not given).
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
    },
    /// Log out: end this session on the server and forget its tokens.
    Logout {
        /// End every session of your account, on every machine.
        #[arg(long)]
        all: bool,
    },
    /// Show who you are logged in as, and on which server.
    Whoami,
    /// Two-factor authentication with an authenticator app (TOTP).
    #[command(subcommand)]
    Totp(TotpCommand),
    /// Pair a PC: pass the URL (or token) its QR code shows. Compare the pairing code
    /// printed here with the one on the PC.
    Pair {
        /// The pair URL (https://HOST/pair#token=...) or just the token.
        url_or_token: String,
    },
    /// List your devices (admins and auditors: every device).
    Devices,
    /// Show one device.
    Device {
        /// The device id (see `tether devices`).
        id: String,
    },
    /// Follow your devices live: presence, telemetry, alerts (one line per event, or one
    /// JSON object per line with --json) until Ctrl-C. Reconnects by itself.
    Watch {
        /// Only these devices (default: every device you may see).
        #[arg(value_name = "DEVICE")]
        devices: Vec<String>,
    },
    /// List alerts on your devices (admins and auditors: every device), or acknowledge one.
    Alerts {
        /// Acknowledged alerts too (default: open ones only).
        #[arg(long)]
        all: bool,
        /// Acknowledge this alert instead of listing.
        #[arg(long, value_name = "ALERT_ID", conflicts_with = "all")]
        ack: Option<String>,
    },
    /// Print a device's hourly or daily statistics (min / max / mean / p95 per metric).
    Metrics {
        /// The device id (see `tether devices`).
        device: String,
        /// One row per hour of the last two days (the default).
        #[arg(long, conflicts_with = "daily")]
        hourly: bool,
        /// One row per day of the last 30 days.
        #[arg(long)]
        daily: bool,
    },
    /// Administration (admin accounts only).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Explain a Tether error code (number like 2001 or name like SIGNATURE_INVALID), or
    /// list all.
    Errors {
        /// The code to explain; omit to list every code.
        code: Option<String>,
    },
}

/// `tether totp ...`.
#[derive(Debug, Subcommand)]
pub enum TotpCommand {
    /// Start: show the secret and QR code for your authenticator app, then confirm with
    /// a first code (asked for, or --code; without a terminal, finish with `tether totp
    /// confirm`).
    Enroll {
        /// A code to confirm with right away.
        #[arg(long)]
        code: Option<String>,
    },
    /// Finish an enrolment with a current code; from then on login asks for a code.
    Confirm {
        /// The current 6-digit code from your authenticator app.
        #[arg(long)]
        code: Option<String>,
    },
}

/// `tether admin ...`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Approve a paired device that waits for approval.
    Approve {
        /// The device id.
        device_id: String,
    },
    /// Show the server settings, or change them.
    Settings {
        /// Whether newly paired devices must wait for an admin's approval.
        #[arg(long, value_name = "true|false", action = ArgAction::Set)]
        require_approval: Option<bool>,
    },
}
