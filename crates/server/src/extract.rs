//! Request extractors whose rejections are our own error shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tether_proto::ErrorCode;
use tether_proto::validate::Validate;

use crate::error::ApiError;

/// The largest JSON body any route accepts, in bytes. Routes that take more say so.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// A JSON body that was parsed and validated; bad input becomes an [`ApiError`]:
/// too large → 1002 (413), not JSON or wrong content type → 1001 (400), wrong or missing
/// fields → 1005 (422).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state)
            .await
            .map_err(reject)?;
        v.validate()?;
        Ok(ApiJson(v))
    }
}

fn reject(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            ApiError::with_message(ErrorCode::InvalidField, e.body_text())
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::with_message(ErrorCode::MalformedFrame, e.body_text())
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::with_message(
            ErrorCode::MalformedFrame,
            "expected a request with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) => {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::with_message(
                    ErrorCode::FrameTooLarge,
                    format!("the request body exceeds {MAX_JSON_BODY} bytes"),
                )
            } else {
                ApiError::with_message(ErrorCode::MalformedFrame, e.body_text())
            }
        }
        other => ApiError::with_message(ErrorCode::MalformedFrame, other.body_text()),
    }
}

/// A query string parsed into `T`; a malformed one or a wrong or unknown parameter
/// (with `#[serde(deny_unknown_fields)]` on `T`) becomes 1005 (422) in our error shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) = axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::with_message(ErrorCode::InvalidField, e.body_text()))?;
        Ok(ApiQuery(v))
    }
}
