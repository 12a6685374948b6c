//! Small field checks shared by the message types.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::ProtoError;

/// Messages check their own field ranges after decoding.
pub trait Validate {
    /// Checks every field's range and shape.
    fn validate(&self) -> Result<(), ProtoError> {
        Ok(())
    }
}

/// Decodes unpadded base64url.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Encodes unpadded base64url.
pub fn b64url_encode(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub(crate) fn text(field: &'static str, s: &str, min: usize, max: usize) -> Result<(), ProtoError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(ProtoError::invalid(
            field,
            format!("length {n} is outside {min}..={max}"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(ProtoError::invalid(field, "contains control characters"));
    }
    Ok(())
}

pub(crate) fn sha256_hex(field: &'static str, s: &str) -> Result<(), ProtoError> {
    if crate::ids::is_sha256_hex(s) {
        Ok(())
    } else {
        Err(ProtoError::invalid(
            field,
            "not a lowercase hex SHA-256 (64 digits)",
        ))
    }
}

pub(crate) fn b64_len(field: &'static str, s: &str, len: usize) -> Result<(), ProtoError> {
    match b64url_decode(s) {
        Some(b) if b.len() == len => Ok(()),
        Some(b) => Err(ProtoError::invalid(
            field,
            format!("decodes to {} bytes, expected {len}", b.len()),
        )),
        None => Err(ProtoError::invalid(field, "not unpadded base64url")),
    }
}

pub(crate) fn range<T: PartialOrd + std::fmt::Display>(
    field: &'static str,
    v: T,
    min: T,
    max: T,
) -> Result<(), ProtoError> {
    if v < min || v > max {
        Err(ProtoError::invalid(
            field,
            format!("{v} is outside {min}..={max}"),
        ))
    } else {
        Ok(())
    }
}

pub(crate) fn https_url(field: &'static str, s: &str) -> Result<(), ProtoError> {
    text(field, s, 9, 2048)?;
    if s.starts_with("https://") {
        Ok(())
    } else {
        Err(ProtoError::invalid(field, "must be an https:// URL"))
    }
}

pub(crate) fn max_items<T>(field: &'static str, v: &[T], max: usize) -> Result<(), ProtoError> {
    if v.len() > max {
        Err(ProtoError::invalid(
            field,
            format!("{} items, at most {max} allowed", v.len()),
        ))
    } else {
        Ok(())
    }
}
