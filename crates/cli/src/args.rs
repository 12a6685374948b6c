//! The command line.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;
use tether_proto::messages::command::{Method, Priority};

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
  tether cmd lab-pc-7 lock_screen --wait              lock a PC's screen and follow it
  tether commands lab-pc-7                            a PC's recent commands
  tether artifact get ART_ID -o shot.png              download a command's artifact
  tether policy check lab-pc-7 reboot                 would policy allow it, by which rule?
  tether step-up                                      a fresh second factor for sensitive commands
  tether approvals                                    commands waiting for your approval

Exit status: 0 success, 1 the server refused (the error code is printed), \
2 usage or local problem, 3 the server could not be reached; `tether cmd`: 4 gave up \
waiting (--timeout), 5 failed, 6 denied, 7 expired, 8 delivery failed (dead-letter \
queue); 9 a download failed its integrity check.
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
    /// Send a command to a PC (lock the screen, reboot, take a screenshot…); with --wait,
    /// follow it until it finishes.
    Cmd(CmdArgs),
    /// List a PC's commands, newest first.
    #[command(after_help = "\
Examples:
  tether commands lab-pc-7              the last 20 commands sent to lab-pc-7
  tether commands dev_01HZX3K9 -n 100   the last 100
  tether commands lab-pc-7 --json       full ids, results and errors as JSON

The ID column shows the first 8 characters of each command id; `tether command` takes \
them as they are.")]
    Commands {
        /// The PC: its device id (`dev_…`) or its name.
        device: String,
        /// How many (1..=500).
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
    },
    /// Show one command: its parameters, result and every state change.
    #[command(name = "command")]
    #[command(after_help = "\
Examples:
  tether command 0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10   by full id
  tether command 0b7e4c7e                              by the short id `tether commands` shows
  tether command 0b7e4c7e --device lab-pc-7            look for it on that PC only")]
    ShowCommand {
        /// The command id, or the start of it (at least 4 characters) as `tether commands`
        /// shows it.
        id: String,
        /// Where to look for a short id (default: every PC you may see).
        #[arg(long, value_name = "DEVICE")]
        device: Option<String>,
    },
    /// A command's artifacts (screenshots, log bundles).
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// The central policy: show it, replace it (admins), or ask what it would decide.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Prove a fresh second factor (a TOTP code) for this session: sensitive commands
    /// (memory_dump, and what the policy marks sensitive) need one from the last few
    /// minutes. Logging in with a TOTP code counts too.
    #[command(after_help = "\
Examples:
  tether step-up                  asks for the code from your authenticator app
  tether step-up --totp 123456    then: tether cmd lab-pc-7 memory_dump -p max_bytes=1048576")]
    StepUp {
        /// The current code from your authenticator app (asked for when not given).
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
    },
    /// List the commands waiting for your approval (a policy rule wants approvals by
    /// other users before they run).
    Approvals,
    /// Approve a command that waits for approvals (not your own; once). Your approval is
    /// signed with your key (owner-key.json) over the same command statement its owner
    /// signed; when the last approval it needs comes in, it is queued for its PC, which
    /// runs it only if enough approvals verify with keys it pins (its owner adds yours
    /// with `tether keys add <your key> --role approver`).
    #[command(after_help = "\
Examples:
  tether approvals                 the commands waiting for you, with their ids
  tether approve 0b7e4c7e          approve one by the start of its id (or the full id)
  tether keys list                 your key id, to give the PC's owner")]
    Approve {
        /// The command id, or its start (at least 4 characters) as `tether approvals`
        /// shows it.
        command_id: String,
        /// Send the approval without a signature (accepted only for a command its owner
        /// did not sign; PCs refuse those anyway).
        #[arg(long)]
        unsigned: bool,
    },
    /// Your signing keys as the server and your PCs know them: list them, add one (a new
    /// device's key, or a colleague's key as an approver), remove one. Every change is a
    /// statement signed with your key (owner-key.json); each PC applies it only if it
    /// pins that key already.
    #[command(subcommand)]
    Keys(KeysCommand),
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

/// `tether keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Your registered keys (kid, kind, role) and the statements that changed them.
    List,
    /// Pin another key on your PCs: your key on a new computer (`--role owner`, the
    /// default: it may sign commands and key changes) or a colleague's key as an
    /// approver (`--role approver`: it may sign approvals of your commands, nothing else).
    #[command(after_help = "\
Examples:
  tether keys add ./laptop-owner-key.pub          a key file: owner-key.json, or the public key alone
  tether keys add 11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo
  tether keys add bob.pub --role approver         bob may approve your sensitive commands
  tether keys add passkey.spki --kind webauthn-es256 --kid <credential id>
  tether keys add new.pub --device dev_01HZX3K9   only on that PC

A PC that is offline gets the change when it connects (within --valid-days).")]
    Add {
        /// The public key: a file (an owner-key.json, a JSON object with "public_key",
        /// or the key itself) or the key in unpadded base64url (Ed25519: 32 bytes;
        /// WebAuthn: the P-256 SubjectPublicKeyInfo DER). A key may start with `-`.
        #[arg(allow_hyphen_values = true)]
        key: String,
        /// ed25519 (a CLI key, the default) or webauthn-es256 (a passkey).
        #[arg(long, default_value = "ed25519", value_parser = ["ed25519", "webauthn-es256"])]
        kind: String,
        /// The key id: derived from an Ed25519 key (leave it out); a passkey's
        /// credential id in base64url (required for webauthn-es256).
        #[arg(long)]
        kid: Option<String>,
        /// owner (signs commands and key changes) or approver (signs approvals only).
        #[arg(long, default_value = "owner", value_parser = ["owner", "approver"])]
        role: String,
        /// Only this PC (its id or name); default: every PC of yours.
        #[arg(long)]
        device: Option<String>,
        /// Days the signed change stays valid for PCs that are offline now (1..=400).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=400))]
        valid_days: u64,
    },
    /// Unpin a key from your PCs (a lost laptop, a colleague who left). You cannot
    /// remove your last owner key: pair the PC again instead.
    #[command(after_help = "\
Examples:
  tether keys list                 the key ids
  tether keys remove 34750f98bd59fcfc")]
    Remove {
        /// The key id (`tether keys list`).
        kid: String,
        /// Only on this PC (its id or name); default: every PC of yours.
        #[arg(long)]
        device: Option<String>,
        /// Days the signed change stays valid for PCs that are offline now (1..=400).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=400))]
        valid_days: u64,
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

/// `tether policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the policy in force: its version, hash and rules (docs/policy.md).
    Show,
    /// Replace the policy with the bundle in FILE (admins). The server checks it first
    /// and names the field that is wrong; the new version is printed.
    #[command(after_help = "\
Examples:
  tether policy show --json | jq .bundle > policy.json    start from the one in force
  tether policy set policy.json                           save it as the next version
  tether policy set - < policy.json                       from standard input

A bundle: {\"format\": 1, \"default\": \"allow\", \"rules\": [{\"id\": \"no-night-reboots\", \
\"effect\": \"deny\", \"match\": {\"methods\": [\"reboot\"], \"outside_window\": \
{\"start\": \"08:00\", \"end\": \"18:00\", \"utc_offset_minutes\": 60}}}]}. \
The first rule that matches decides; docs/policy.md describes every field.")]
    Set {
        /// The bundle (JSON), or `-` for standard input.
        file: PathBuf,
    },
    /// Ask what the policy would decide about a command, and by which rule (nothing is
    /// sent to the PC).
    #[command(after_help = "\
Examples:
  tether policy check lab-pc-7 reboot
  tether policy check lab-pc-7 memory_dump -p max_bytes=1048576
  tether policy check lab-pc-7 shutdown --as usr_…        an admin asks for another user")]
    Check {
        /// The PC: its device id (`dev_…`) or its name.
        device: String,
        /// The method (see `tether cmd --help`).
        #[arg(value_parser = parse_method)]
        method: Method,
        /// One parameter as KEY=VALUE (repeatable), as for `tether cmd`.
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, Value)>,
        /// Admins: decide as this user (by id) instead of yourself.
        #[arg(long = "as", value_name = "USER_ID")]
        as_user: Option<String>,
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

/// `tether cmd DEVICE METHOD ...`.
#[derive(Debug, Clone, Args)]
#[command(after_long_help = CMD_HELP, after_help = "Examples and the methods' parameters: tether cmd --help")]
pub struct CmdArgs {
    /// The PC: its device id (`dev_…`) or its name (when no other PC you see has it).
    pub device: String,
    /// What to do: lock_screen, logoff, reboot, shutdown, screenshot, collect_logs,
    /// run_attestation, run_tamper_check, memory_dump.
    #[arg(value_parser = parse_method)]
    pub method: Method,
    /// One parameter as KEY=VALUE (repeatable). VALUE is taken as JSON when it is JSON
    /// (numbers, true/false, null, ["arrays"], "quoted strings"), else as a string.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, Value)>,
    /// All parameters as one JSON object; --param adds keys to it (repeating one is an
    /// error).
    #[arg(long, value_name = "JSON")]
    pub params_json: Option<String>,
    /// Seconds the command may wait for the PC (it stays queued while the PC is offline)
    /// and run; then it expires (1..=604800).
    #[arg(long, value_name = "SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(1..=604_800))]
    pub ttl: u32,
    /// Delivery priority.
    #[arg(long, value_enum, default_value_t = PriorityArg::Normal)]
    pub priority: PriorityArg,
    /// Follow the command until it finishes: print each state change, then the result.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: stop waiting after this many seconds (exit 4; the command goes on on
    /// the server) [default: the TTL plus 30 s].
    #[arg(long, value_name = "SECONDS", requires = "wait",
          value_parser = clap::value_parser!(u64).range(1..=691_200))]
    pub timeout: Option<u64>,
    /// Send it without your owner signature (the PC refuses it with 2011
    /// OWNER_SIGNATURE_INVALID): only to check that it does. Every command is signed
    /// with this profile's owner key otherwise.
    #[arg(long)]
    pub unsigned: bool,
}

const CMD_HELP: &str = "\
Examples:
  tether cmd lab-pc-7 lock_screen --wait
      lock the screen and follow the command to its end
  tether cmd dev_01HZX3K9 reboot -p delay_s=60 -p reason='patch day'
      reboot in a minute, telling the user why
  tether cmd lab-pc-7 collect_logs -p max_bytes=1048576 -p 'sources=[\"system\",\"tether\"]' --wait
      a log bundle of at most 1 MiB; then: tether artifact get <ARTIFACT_ID>
  tether cmd lab-pc-7 shutdown --params-json '{\"delay_s\": 300}' --ttl 3600
      shut down in five minutes, if the PC comes online within the hour
  tether cmd lab-pc-7 screenshot --wait --timeout 60 --json
      the finished command as JSON, for scripts

Methods and their parameters (docs/protocol.md, section 8):
  lock_screen, logoff, run_attestation, run_tamper_check    none
  reboot, shutdown    delay_s 0..3600 (default 0), reason text (default \"\"),
                      force true|false (default false)
  screenshot          display 0..15 (default 0, the primary display)
  collect_logs        max_bytes 1024..67108864 (required), since_ms (ms since 1970),
                      sources: any of system, application, security, tether (default all)
  memory_dump         max_bytes 1048576..4294967296 (required), pid (default: the agent)

The command is queued on the server at once; a PC that is offline gets it when it
connects, until the TTL passes. Without --wait the CLI prints the command id and returns.
With --wait it listens to the live view before sending, prints each state change (sent,
ack_received, executing, result_posted, completed…) as it happens, then the result, and
marks the result viewed. If the live view drops, it follows the command by polling.

With --json: the command as JSON (the final one with --wait); if it did not succeed,
{\"error\": {…, \"outcome\", \"command\"}}.

Exit status: 0 accepted (without --wait) or completed ok; 1 the server refused; 2 usage;
3 the server could not be reached; 4 --timeout passed first (the command goes on);
5 failed; 6 denied; 7 expired; 8 delivery failed (dead-letter queue).";

/// `--priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PriorityArg {
    /// Background.
    Low,
    /// The default.
    Normal,
    /// Ahead of normal commands in the PC's queue.
    High,
}

impl From<PriorityArg> for Priority {
    fn from(p: PriorityArg) -> Self {
        match p {
            PriorityArg::Low => Priority::Low,
            PriorityArg::Normal => Priority::Normal,
            PriorityArg::High => Priority::High,
        }
    }
}

/// `tether artifact ...`.
#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Download an artifact (the screenshot or log bundle a command produced), check its
    /// SHA-256, decrypt it when it was encrypted for you, and save it.
    #[command(after_help = "\
Examples:
  tether artifact get art_01J9Z…                 saves as ./art_01J9Z….png (from its type)
  tether artifact get art_01J9Z… -o shot.png     saves as shot.png
  tether artifact get art_01J9Z… -o - > logs.zip writes the content to standard output

The artifact id is in the result `tether cmd --wait` and `tether command ID` print. \
Nothing is written unless the downloaded bytes match the SHA-256 the server recorded \
(exit 9 otherwise); an existing file is replaced only with --force.")]
    Get {
        /// The artifact id.
        artifact_id: String,
        /// Where to save it (`-` for standard output) [default: ./<artifact id>.<extension
        /// of its content type>].
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// The spelling of a method (`lock_screen`).
pub fn method_name(m: Method) -> String {
    match serde_json::to_value(m) {
        Ok(Value::String(s)) => s,
        _ => format!("{m:?}"),
    }
}

/// A method by its spelling; `-` may stand for `_` and case does not matter.
pub fn parse_method(s: &str) -> Result<Method, String> {
    let spelled = s.trim().replace('-', "_").to_ascii_lowercase();
    serde_json::from_value(Value::String(spelled)).map_err(|_| {
        let all: Vec<String> = Method::ALL.iter().copied().map(method_name).collect();
        format!("unknown method {s:?}; one of: {}", all.join(", "))
    })
}

/// One `--param KEY=VALUE`: VALUE as JSON when it parses as JSON, else as a string.
pub fn parse_param(s: &str) -> Result<(String, Value), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if key.is_empty()
        || key.len() > 64
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "{key:?} is not a parameter name (lowercase letters, digits and _)"
        ));
    }
    let value =
        serde_json::from_str::<Value>(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

#[cfg(test)]
mod tests;
