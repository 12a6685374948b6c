//! The CLI's one error type, and the exit code each kind of failure maps to.

use std::process::ExitCode;

use tether_client::ClientError;
use tether_proto::{ErrorBody, ErrorCode};

/// Exit status: the command did what was asked.
pub const EXIT_OK: u8 = 0;
/// Exit status: the server refused (an error body with a stable code).
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: bad usage or a local problem (flags, files, prompts, trust decisions).
pub const EXIT_LOCAL: u8 = 2;
/// Exit status: the server could not be reached (network, TLS, not a Tether server).
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit status: `tether cmd --wait` gave up before the command finished (it goes on).
pub const EXIT_TIMEOUT: u8 = 4;
/// Exit status: the command failed on the PC (state `failed`, or result status `failed`).
pub const EXIT_FAILED: u8 = 5;
/// Exit status: policy, the device or its helper denied the command.
pub const EXIT_DENIED: u8 = 6;
/// Exit status: the command's TTL passed before it ran.
pub const EXIT_EXPIRED: u8 = 7;
/// Exit status: delivery failed after every retry (the dead-letter queue).
pub const EXIT_DLQ: u8 = 8;
/// Exit status: downloaded data failed its integrity check (SHA-256 or decryption).
pub const EXIT_INTEGRITY: u8 = 9;

/// How a command that did not succeed ended, as `tether cmd` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `--wait` ran out of time; the command is still in flight on the server.
    Timeout,
    /// State `failed`, or a result with status `failed`.
    Failed,
    /// State `denied`, or a result with status `denied`.
    Denied,
    /// State `expired`, or a result with status `expired`.
    Expired,
    /// State `dlq`: never acknowledged after the last delivery attempt.
    Dlq,
}

impl Outcome {
    /// The word used in messages and in `--json` (`"outcome"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Timeout => "timeout",
            Outcome::Failed => "failed",
            Outcome::Denied => "denied",
            Outcome::Expired => "expired",
            Outcome::Dlq => "dlq",
        }
    }

    /// The process exit status.
    pub fn exit_status(self) -> u8 {
        match self {
            Outcome::Timeout => EXIT_TIMEOUT,
            Outcome::Failed => EXIT_FAILED,
            Outcome::Denied => EXIT_DENIED,
            Outcome::Expired => EXIT_EXPIRED,
            Outcome::Dlq => EXIT_DLQ,
        }
    }
}

/// A command that did not succeed (or was not waited out).
#[derive(Debug, Clone)]
pub struct CommandFailure {
    /// How it ended.
    pub outcome: Outcome,
    /// The error code the server or the PC gave, if any.
    pub code: Option<ErrorCode>,
    /// The command id.
    pub command_id: String,
    /// What happened, in a sentence (no code: [`CliError`]'s display adds it).
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The command as last seen (printed with `--json`).
    pub view: Option<Box<crate::views::CommandView>>,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error body.
    #[error("error {} {}: {}", .body.code.number(), .body.code.name(), .body.message)]
    Refused {
        /// The server's error body (boxed: it is the largest variant).
        body: Box<ErrorBody>,
        /// What the user can do about it, when the CLI knows better than the message.
        hint: Option<String>,
    },
    /// The command line or the local state does not allow the command.
    #[error("{0}")]
    Usage(String),
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What the CLI was doing.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No session is stored: the user must log in first.
    #[error("not logged in")]
    NotLoggedIn,
    /// The server could not be reached, TLS failed, or the answer was not the Tether API.
    #[error("{0}")]
    Unreachable(String),
    /// A command was accepted but did not succeed, or `--wait` gave up on it.
    #[error("{}", command_head(.0))]
    Command(Box<CommandFailure>),
    /// Data failed an integrity check here (a downloaded artifact's SHA-256 or its
    /// decryption): nothing was written.
    #[error("error {} {}: {message}", .code.number(), .code.name())]
    Integrity {
        /// `CHECKSUM_MISMATCH`, `SEAL_BROKEN`, …
        code: ErrorCode,
        /// What did not match.
        message: String,
    },
}

/// `error <n> <NAME>: <message>` when the command carries a code, else `error <OUTCOME>:
/// <message>` (a timeout has no code: the command itself is fine).
fn command_head(f: &CommandFailure) -> String {
    match f.code {
        Some(c) => format!("error {} {}: {}", c.number(), c.name(), f.message),
        None => format!(
            "error {}: {}",
            f.outcome.as_str().to_ascii_uppercase(),
            f.message
        ),
    }
}

impl CliError {
    /// A usage error.
    pub fn usage(msg: impl Into<String>) -> Self {
        CliError::Usage(msg.into())
    }

    /// A function mapping an I/O error to [`CliError::Io`] with context.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }

    /// A server refusal with a hint.
    pub fn refused_with_hint(body: ErrorBody, hint: impl Into<String>) -> Self {
        CliError::Refused {
            body: Box::new(body),
            hint: Some(hint.into()),
        }
    }

    /// The error code, when the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CliError::Refused { body, .. } => Some(body.code),
            CliError::Command(f) => f.code,
            CliError::Integrity { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A server-style refusal made here, from what the server's own answers say (for
    /// example a device name that is in none of the listed devices).
    pub fn refused_locally(
        code: ErrorCode,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> Self {
        CliError::Refused {
            body: Box::new(ErrorBody::with_message(code, message)),
            hint: hint.map(str::to_owned),
        }
    }

    /// A second line of advice, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            CliError::Refused { hint, .. } => hint.as_deref(),
            CliError::Command(f) => f.hint.as_deref(),
            CliError::NotLoggedIn => Some("log in first: tether login --email YOU@EXAMPLE"),
            CliError::Unreachable(m) if m.contains("certificate") => Some(
                "the server's certificate does not chain to the CA this profile trusts; if the server's CA really changed, pin the new one with --ca-file (check its fingerprint first)",
            ),
            _ => None,
        }
    }

    /// The process exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Refused { .. } => EXIT_REFUSED,
            CliError::Usage(_) | CliError::Io { .. } | CliError::NotLoggedIn => EXIT_LOCAL,
            CliError::Unreachable(_) => EXIT_UNREACHABLE,
            CliError::Command(f) => f.outcome.exit_status(),
            CliError::Integrity { .. } => EXIT_INTEGRITY,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_status())
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api { body, .. } => {
                let hint = default_hint(body.code);
                CliError::Refused {
                    body: Box::new(body),
                    hint: hint.map(str::to_owned),
                }
            }
            ClientError::Transport(m) => {
                CliError::Unreachable(format!("cannot reach the server: {m}"))
            }
            ClientError::Decode(m) => CliError::Unreachable(format!(
                "unexpected answer from the server (is --server a Tether server?): {m}"
            )),
            ClientError::Trust(m) => CliError::Usage(format!("CA certificate: {m}")),
        }
    }
}

/// Advice for codes whose fix is on the user's side.
fn default_hint(code: ErrorCode) -> Option<&'static str> {
    match code {
        ErrorCode::Unauthenticated | ErrorCode::TokenExpired | ErrorCode::TokenInvalid => {
            Some("log in again: tether login")
        }
        ErrorCode::RefreshTokenReused => Some(
            "the session was revoked (its refresh token was used twice, or you logged out everywhere); log in again: tether login",
        ),
        ErrorCode::SecondFactorRequired => {
            Some("this account has TOTP turned on: pass --totp CODE from your authenticator app")
        }
        ErrorCode::SecondFactorInvalid => {
            Some("each code works once: wait for the next code from your authenticator app")
        }
        ErrorCode::Forbidden => Some("your account's role does not allow this"),
        ErrorCode::StepUpRequired => Some(
            "prove a fresh second factor with `tether step-up` (or log in with a TOTP code), then send it again",
        ),
        ErrorCode::PolicyDenied => Some(
            "the policy rule named above refuses it; `tether policy check DEVICE METHOD` shows what is allowed",
        ),
        _ => None,
    }
}
