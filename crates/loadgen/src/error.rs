//! The one error type of the load generator.

/// Why a load-generator step failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A file or an answer did not have the expected shape.
    #[error("{0}")]
    Format(String),
    /// The server refused or failed a request.
    #[error(transparent)]
    Client(#[from] tether_client::ClientError),
    /// A frame or envelope was not what the protocol says.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    Socket(String),
    /// The run did not meet what was asked of it (failures, memory over the limit).
    #[error("{0}")]
    Unmet(String),
}

impl LoadError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoadError {
        let what = what.into();
        move |source| LoadError::Io { what, source }
    }
}

impl From<tether_proto::ProtoError> for LoadError {
    fn from(e: tether_proto::ProtoError) -> Self {
        LoadError::Protocol(e.to_string())
    }
}
