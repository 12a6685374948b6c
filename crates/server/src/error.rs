//! The one error type at the HTTP edge.
//!
//! Every handler returns `Result<_, ApiError>`. An `ApiError` becomes the status of its
//! [`ErrorCode`] and a JSON [`ErrorBody`] (`code`, `error`, `message`, `trace_id`). Internal
//! causes are logged with the trace id and never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tether_proto::{ErrorBody, ErrorCode, ProtoError};

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    /// Logged, never sent.
    cause: Option<String>,
    /// The policy rule behind a policy refusal, sent as the body's `rule`.
    rule: Option<String>,
}

impl ApiError {
    /// An error with the code's standard message.
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            message: code.message().to_owned(),
            cause: None,
            rule: None,
        }
    }

    /// An error with a specific, client-safe message.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            cause: None,
            rule: None,
        }
    }

    /// An internal failure: the client sees only `INTERNAL`; the cause goes to the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self {
            code: ErrorCode::Internal,
            message: ErrorCode::Internal.message().to_owned(),
            cause: Some(cause.to_string()),
            rule: None,
        }
    }

    /// A backend that is down: `UNAVAILABLE` (503); the cause goes to the log.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        Self {
            code: ErrorCode::Unavailable,
            message: ErrorCode::Unavailable.message().to_owned(),
            cause: Some(cause.to_string()),
            rule: None,
        }
    }

    /// Names the policy rule behind a policy refusal (the body's `rule`).
    pub fn with_rule(mut self, rule: Option<String>) -> Self {
        self.rule = rule;
        self
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The client-safe message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.code.number(),
            self.code.name(),
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let trace_id = crate::trace::current_trace_id();
        if let Some(cause) = &self.cause {
            tracing::error!(code = self.code.number(), trace_id = %trace_id, %cause, "request failed");
        } else {
            tracing::debug!(code = self.code.number(), trace_id = %trace_id, message = %self.message, "request refused");
        }
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = ErrorBody::with_message(self.code, self.message);
        body.trace_id = Some(trace_id);
        body.rule = self.rule;
        (status, Json(body)).into_response()
    }
}

impl From<ProtoError> for ApiError {
    fn from(e: ProtoError) -> Self {
        ApiError::with_message(e.code(), e.to_string())
    }
}

impl From<tether_store::StoreError> for ApiError {
    fn from(e: tether_store::StoreError) -> Self {
        use tether_store::StoreError as S;
        match e {
            S::Conflict(m) => ApiError::with_message(ErrorCode::Conflict, m),
            S::NotFound(_) => ApiError::new(ErrorCode::NotFound),
            S::Database(_) => ApiError::unavailable(e),
            S::Migration(_) | S::Corrupt(_) => ApiError::internal(e),
        }
    }
}

impl From<tether_bus::BusError> for ApiError {
    fn from(e: tether_bus::BusError) -> Self {
        match e {
            tether_bus::BusError::Backend(_) => ApiError::unavailable(e),
            _ => ApiError::internal(e),
        }
    }
}

impl From<tether_objects::ObjectsError> for ApiError {
    fn from(e: tether_objects::ObjectsError) -> Self {
        let code = e.code();
        if code == ErrorCode::Unavailable {
            ApiError::unavailable(e)
        } else if code.category() == tether_proto::ErrorCategory::Server {
            ApiError::internal(e)
        } else {
            ApiError::with_message(code, e.to_string())
        }
    }
}

impl From<tether_trust::TrustError> for ApiError {
    fn from(e: tether_trust::TrustError) -> Self {
        let code = e.code();
        if code.category() == tether_proto::ErrorCategory::Server || code == ErrorCode::SealBroken {
            ApiError::internal(e)
        } else {
            ApiError::with_message(code, e.to_string())
        }
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
