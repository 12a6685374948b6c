//! Conversions between our [`UnixMillis`] and the time types of rcgen and webpki.
//!
//! X.509 times have whole-second precision: milliseconds are dropped (rounded down).

use std::time::Duration;

use rustls_pki_types::UnixTime;
use tether_proto::UnixMillis;
use time::OffsetDateTime;

use crate::error::TrustError;

pub(crate) fn to_offset(t: UnixMillis) -> Result<OffsetDateTime, TrustError> {
    let secs = i64::try_from(t.as_secs())
        .map_err(|_| TrustError::input("time", "beyond the representable range"))?;
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| TrustError::input("time", "beyond the representable range"))
}

pub(crate) fn to_unix_time(t: UnixMillis) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(t.as_secs()))
}

/// Whole seconds of `t`, as the certificate will carry them.
pub(crate) fn truncate(t: UnixMillis) -> UnixMillis {
    UnixMillis::from_secs(t.as_secs())
}

pub(crate) fn from_timestamp(secs: i64) -> UnixMillis {
    UnixMillis::from_secs(u64::try_from(secs).unwrap_or(0))
}
