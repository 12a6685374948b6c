//! `tether errors`: the error-code table, offline.

use serde::Serialize;
use tether_proto::ErrorCode;

use crate::context::Ctx;
use crate::error::CliError;

#[derive(Serialize)]
struct CodeView {
    code: u16,
    name: &'static str,
    http_status: u16,
    message: &'static str,
}

impl From<ErrorCode> for CodeView {
    fn from(c: ErrorCode) -> Self {
        Self {
            code: c.number(),
            name: c.name(),
            http_status: c.http_status(),
            message: c.message(),
        }
    }
}

/// A code by number (`2001`) or name (`signature_invalid`, any case).
pub(super) fn lookup(q: &str) -> Option<ErrorCode> {
    let q = q.trim();
    q.parse::<u16>()
        .ok()
        .and_then(ErrorCode::from_number)
        .or_else(|| ErrorCode::from_name(&q.to_ascii_uppercase()))
}

pub(super) fn run(ctx: &Ctx, code: Option<&str>) -> Result<(), CliError> {
    match code {
        None => {
            let all: Vec<CodeView> = ErrorCode::ALL.iter().copied().map(CodeView::from).collect();
            ctx.out.emit(&all, || {
                ErrorCode::ALL
                    .iter()
                    .map(|c| format!("{} {:<28} {}", c.number(), c.name(), c.message()))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        Some(q) => {
            let c = lookup(q).ok_or_else(|| {
                CliError::usage(format!(
                    "{q:?} is not a Tether error code (try `tether errors`)"
                ))
            })?;
            ctx.out.emit(&CodeView::from(c), || {
                format!(
                    "{} {} (HTTP {})\n{}",
                    c.number(),
                    c.name(),
                    c.http_status(),
                    c.message()
                )
            });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn codes_are_found_by_number_or_name_in_any_case() {
        assert_eq!(lookup("3006"), Some(ErrorCode::SecondFactorInvalid));
        assert_eq!(
            lookup("second_factor_invalid"),
            Some(ErrorCode::SecondFactorInvalid)
        );
        assert_eq!(lookup("42"), None);
        assert_eq!(lookup("NOPE"), None);
    }
}
