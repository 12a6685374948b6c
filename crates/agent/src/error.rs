//! The agent's one error type, grouped by what the user can do about it.

use std::path::PathBuf;

use tether_client::ClientError;
use tether_proto::{ErrorCode, ProtoError};

/// Why an agent operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    // --- the command line or configuration is wrong: fix it and run again ---
    /// An argument is invalid.
    #[error("{0}")]
    Config(String),
    /// There is no trusted CA for the server yet and no way to get one was given.
    #[error("{0}")]
    Trust(String),
    /// This platform does not offer the operation (yet).
    #[error("{0}")]
    Unsupported(String),

    /// Installing, starting or stopping the Windows service failed.
    #[error(transparent)]
    Service(#[from] tether_service::ServiceError),

    // --- the state directory ---
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file in the state directory is not what the agent wrote there.
    #[error("{}: {reason}", .path.display())]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Key, CSR or QR code generation failed.
    #[error("{0}")]
    Crypto(String),
    /// The offline queue's database or its encryption failed.
    #[error("offline queue {}: {reason}", .path.display())]
    Queue {
        /// The queue's file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },

    // --- the server ---
    /// The server could not be reached or answered an HTTP error.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// An established connection failed.
    #[error("connection to the server lost: {0}")]
    Connection(String),
    /// The server refused us with a (signed) error frame or error body.
    #[error("the server refused: {} {}: {message}", .code.number(), .code.name())]
    Refused {
        /// The stable code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// A frame from the server failed verification.
    #[error("a message from the server failed verification: {0}")]
    Proto(#[from] ProtoError),
    /// The server said something the protocol does not allow here.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),

    // --- pairing ---
    /// The pair token expired before the owner confirmed it.
    #[error(
        "the pairing request expired before it was confirmed; run tether-agent again to get a new QR code"
    )]
    PairingExpired,
}

impl AgentError {
    /// An I/O error on a path.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AgentError {
        let path = path.into();
        move |source| AgentError::Io { path, source }
    }

    /// The process exit code for this error: 2 for something the user must fix in the
    /// command line or trust setup (or a command this platform lacks), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::Config(_)
            | AgentError::Trust(_)
            | AgentError::Unsupported(_)
            | AgentError::Service(tether_service::ServiceError::Unsupported(_)) => 2,
            _ => 1,
        }
    }
}
