//! The helper's one error type, grouped by where it arises. Every variant maps to one
//! stable [`ErrorCode`]: a refusal or failure the helper reports carries that code in its
//! `helper_response`, and the client's errors carry the code the agent reports upward.

use std::path::PathBuf;
use std::time::Duration;

use tether_proto::{ErrorCode, MessageId, ProtoError};

/// Why a helper operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelperError {
    // --- configuration and state: the helper does not start ---
    /// An argument or a configured file is invalid.
    #[error("{0}")]
    Config(String),
    /// This platform does not offer the operation (yet).
    #[error("{0}")]
    Unsupported(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file in the state directory is not what the helper wrote there.
    #[error("{}: {reason}", .path.display())]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    // --- a request refused (answered `denied`) ---
    /// A line on the IPC link grew past the frame limit without a line feed.
    #[error("a frame longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// The local caller is not the agent (wrong uid or executable).
    #[error("the calling process is not allowed to use the helper: {0}")]
    PeerNotAuthorized(String),
    /// The envelope failed a check (signature, time, type, shape, sequence).
    #[error(transparent)]
    Envelope(#[from] ProtoError),
    /// The opcode's parameters are invalid.
    #[error("invalid params for {opcode}: {reason}")]
    InvalidParams {
        /// The opcode's name.
        opcode: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The executor does not run this opcode (or this simulation).
    #[error("{opcode} is not allowed: {reason}")]
    OpcodeNotAllowed {
        /// The opcode's name.
        opcode: &'static str,
        /// Why.
        reason: String,
    },
    /// The command was already requested with another opcode, params or simulation.
    #[error("command {0} was already requested with different content")]
    CommandMismatch(MessageId),
    /// The request names another policy than the one the agent said is in force.
    #[error("policy_hash {got} is not the hash of policy version {version} in force")]
    PolicyHashMismatch {
        /// The request's hash.
        got: String,
        /// The version in force.
        version: u64,
    },
    /// `SET_POLICY` with an older version than the one in force (or the same version with
    /// another hash).
    #[error("policy version {got} is not newer than version {current} in force")]
    PolicyRollback {
        /// The request's version.
        got: u64,
        /// The version in force.
        current: u64,
    },

    // --- an execution that failed (answered `failed`) ---
    /// The operation was tried and failed.
    #[error("{0}")]
    Kernel(String),
    /// The operation did not finish in time.
    #[error("{what} did not finish within {} s", .limit.as_secs())]
    ExecutionTimeout {
        /// What was running.
        what: String,
        /// The limit.
        limit: Duration,
    },

    // --- the client side (the agent calling the helper) ---
    /// The helper could not be reached, or the connection broke.
    #[error("the helper is not reachable: {0}")]
    Unavailable(String),
    /// No answer in time: before `executing` the helper counts as unreachable, after it
    /// the execution as timed out.
    #[error("no answer from the helper within {} s", .waited.as_secs())]
    Timeout {
        /// How long the client waited.
        waited: Duration,
        /// Whether `executing` had arrived.
        executing: bool,
    },
    /// A response failed verification (signature, key, time, shape, sequence).
    #[error("the helper's response failed verification: {0}")]
    BadResponse(ProtoError),
    /// A verified response that does not answer the request sent.
    #[error("unexpected response from the helper: {0}")]
    UnexpectedResponse(String),
}

impl HelperError {
    /// The stable code this error is reported with.
    pub fn code(&self) -> ErrorCode {
        match self {
            HelperError::Config(_)
            | HelperError::Unsupported(_)
            | HelperError::Io { .. }
            | HelperError::CorruptState { .. }
            | HelperError::Kernel(_) => ErrorCode::KernelFailure,
            HelperError::LineTooLong { .. } => ErrorCode::FrameTooLarge,
            HelperError::PeerNotAuthorized(_) => ErrorCode::PeerNotAuthorized,
            HelperError::Envelope(e) | HelperError::BadResponse(e) => e.code(),
            HelperError::InvalidParams { .. } => ErrorCode::InvalidParams,
            HelperError::OpcodeNotAllowed { .. } => ErrorCode::OpcodeNotAllowed,
            HelperError::CommandMismatch(_) => ErrorCode::DuplicateMessage,
            HelperError::PolicyHashMismatch { .. } => ErrorCode::PolicyHashMismatch,
            HelperError::PolicyRollback { .. } => ErrorCode::PolicyVersionRollback,
            HelperError::ExecutionTimeout { .. } => ErrorCode::ExecutionTimeout,
            HelperError::Unavailable(_) => ErrorCode::HelperUnavailable,
            HelperError::Timeout { executing, .. } => {
                if *executing {
                    ErrorCode::ExecutionTimeout
                } else {
                    ErrorCode::HelperUnavailable
                }
            }
            HelperError::UnexpectedResponse(_) => ErrorCode::UnexpectedMessage,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HelperError::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_map_to_the_codes_the_agent_reports() {
        assert_eq!(
            HelperError::Unavailable("x".into()).code(),
            ErrorCode::HelperUnavailable
        );
        let t = |executing| HelperError::Timeout {
            waited: Duration::from_secs(1),
            executing,
        };
        assert_eq!(t(false).code(), ErrorCode::HelperUnavailable);
        assert_eq!(t(true).code(), ErrorCode::ExecutionTimeout);
        assert_eq!(
            HelperError::BadResponse(ProtoError::SignatureInvalid("x")).code(),
            ErrorCode::SignatureInvalid
        );
    }
}
