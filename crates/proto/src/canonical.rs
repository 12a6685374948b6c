//! RFC 8785 JSON Canonicalization Scheme (JCS): the one byte form that gets signed.
//!
//! * Objects: members sorted by key, comparing keys as arrays of UTF-16 code units;
//!   no whitespace anywhere.
//! * Strings: UTF-8; only `"` `\` and U+0000..U+001F are escaped, the five with short
//!   forms (`\b \t \n \f \r`) that way, the rest as `\u00xx` with lowercase hex.
//! * Numbers: as ECMAScript's `Number.prototype.toString` would print the IEEE-754 double.
//!
//! Two restrictions beyond RFC 8785, both so that every peer agrees on the bytes:
//! integers must lie within ±(2^53 − 1) (a larger integer has no exact double, so peers
//! would disagree about its value), and nesting is limited to [`MAX_DEPTH`].

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use crate::error::ErrorCode;

/// The deepest nesting of arrays and objects accepted in signed content.
pub const MAX_DEPTH: usize = 32;

/// The largest integer magnitude with an exact IEEE-754 double: 2^53 − 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// 2^53 as a double: from here up to [`EXPONENT_FORM_MIN`] doubles print as integers.
const UNSAFE_FLOAT_MIN: f64 = 9_007_199_254_740_992.0;
/// ECMAScript prints numbers at or above 1e21 in exponent form.
const EXPONENT_FORM_MIN: f64 = 1e21;

/// Why a value could not be canonicalized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// Arrays/objects nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// An integer outside ±(2^53 − 1).
    #[error("integer {0} is outside the exact range ±(2^53 - 1)")]
    UnsafeInteger(String),
    /// A value could not be turned into JSON at all.
    #[error("value is not representable as JSON: {0}")]
    NotJson(String),
}

impl CanonicalError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::NotCanonicalizable
    }
}

/// Canonicalizes a JSON value to its RFC 8785 string.
pub fn canonicalize(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value, 0)?;
    Ok(out)
}

/// Serializes any `Serialize` value to its RFC 8785 bytes.
pub fn to_canonical_vec<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<Vec<u8>, CanonicalError> {
    let v = serde_json::to_value(value).map_err(|e| CanonicalError::NotJson(e.to_string()))?;
    canonicalize(&v).map(String::into_bytes)
}

/// Appends `value`'s RFC 8785 form to `out`, as a value nested `depth` levels deep (a
/// member of a top-level object is at depth 1): the same bytes, and the same
/// [`MAX_DEPTH`] limit, as that value would have inside [`canonicalize`]'s output.
pub(crate) fn write_nested(
    out: &mut String,
    value: &Value,
    depth: usize,
) -> Result<(), CanonicalError> {
    write_value(out, value, depth)
}

/// Appends the RFC 8785 form of the string `s` to `out`.
pub(crate) fn write_str(out: &mut String, s: &str) {
    write_string(out, s);
}

fn write_value(out: &mut String, value: &Value, depth: usize) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            let depth = enter(depth)?;
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, depth)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let depth = enter(depth)?;
            write_object(out, map, depth)?;
        }
    }
    Ok(())
}

fn enter(depth: usize) -> Result<usize, CanonicalError> {
    let next = depth.saturating_add(1);
    if next > MAX_DEPTH {
        Err(CanonicalError::TooDeep)
    } else {
        Ok(next)
    }
}

fn write_object(
    out: &mut String,
    map: &Map<String, Value>,
    depth: usize,
) -> Result<(), CanonicalError> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| utf16_cmp(a.0, b.0));
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, k);
        out.push(':');
        write_value(out, v, depth)?;
    }
    out.push('}');
    Ok(())
}

/// RFC 8785 §3.2.3: keys compare as sequences of UTF-16 code units.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0C}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) -> Result<(), CanonicalError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(CanonicalError::UnsafeInteger(u.to_string()));
        }
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(CanonicalError::UnsafeInteger(i.to_string()));
        }
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        // A double in [2^53, 1e21) is integral and ECMAScript prints it as plain digits,
        // which a receiver would read back as an integer outside the exact range: refuse
        // it here so nothing is signed that its receiver must refuse.
        if (UNSAFE_FLOAT_MIN..EXPONENT_FORM_MIN).contains(&f.abs()) {
            return Err(CanonicalError::UnsafeInteger(n.to_string()));
        }
        // serde_json never holds NaN or infinities; ryu-js prints the ECMAScript form
        // (and prints -0 as "0", as RFC 8785 requires).
        let mut buf = ryu_js::Buffer::new();
        out.push_str(buf.format(f));
    } else {
        return Err(CanonicalError::NotJson(n.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
