//! Argument checks shared by both backends, so a bad argument is the same
//! [`BusError::Invalid`] whichever backend is configured.

use std::time::Duration;

use crate::{BusError, BusResult};

/// A stream, group, consumer or key name must not be empty.
pub(crate) fn name(what: &'static str, value: &str) -> BusResult<()> {
    if value.is_empty() {
        return Err(BusError::Invalid(format!("{what} must not be empty")));
    }
    Ok(())
}

/// A namespace must not be empty (every key is `"{namespace}:…"`).
pub(crate) fn namespace(value: &str) -> BusResult<()> {
    name("namespace", value)
}

/// The error for a consumer-group operation on a group that does not exist (Redis
/// `NOGROUP`): the caller forgot [`crate::Bus::ensure_group`].
pub(crate) fn no_group(stream: &str, group: &str) -> BusError {
    BusError::Invalid(format!(
        "no consumer group {group:?} on stream {stream:?} (call ensure_group first)"
    ))
}

/// A count of entries to read or claim must be at least 1 (Redis treats `COUNT 0` as
/// "no limit" in one command and as an error in another; we accept neither).
pub(crate) fn count(what: &'static str, n: usize) -> BusResult<()> {
    if n == 0 {
        return Err(BusError::Invalid(format!("{what} must be at least 1")));
    }
    Ok(())
}

/// A stream's `max_len` must be at least 1: a stream that may hold nothing is a bug.
/// (Pass `u64::MAX` for "no practical limit".)
pub(crate) fn max_len(n: u64) -> BusResult<()> {
    if n == 0 {
        return Err(BusError::Invalid("max_len must be at least 1".into()));
    }
    Ok(())
}

/// A duration in whole milliseconds, rounded down, saturating.
pub(crate) fn millis_floor(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A TTL or window in milliseconds: zero is invalid, anything under a millisecond counts
/// as one (a sub-millisecond TTL must not turn into "no TTL" or an error at Redis).
pub(crate) fn positive_millis(what: &'static str, d: Duration) -> BusResult<u64> {
    if d.is_zero() {
        return Err(BusError::Invalid(format!("{what} must be positive")));
    }
    Ok(millis_floor(d).max(1))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn checks() {
        assert!(name("stream", "").is_err());
        assert!(name("stream", "s").is_ok());
        assert!(count("count", 0).is_err());
        assert!(max_len(0).is_err());
        assert_eq!(millis_floor(Duration::from_micros(1500)), 1);
        assert_eq!(millis_floor(Duration::MAX), u64::MAX);
        assert!(positive_millis("ttl", Duration::ZERO).is_err());
        assert_eq!(
            positive_millis("ttl", Duration::from_nanos(1)).ok(),
            Some(1)
        );
        assert_eq!(
            positive_millis("ttl", Duration::from_secs(2)).ok(),
            Some(2000)
        );
    }
}
