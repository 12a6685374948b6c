//! Fixed-window rate limits shared by every server process (counters live on the bus).
//! Sources are keyed by a hash of their IP address, never the address itself.

use std::net::IpAddr;
use std::time::Duration;

use tether_proto::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

/// Counts one request from `source` in `scope` and refuses it with 429 `RATE_LIMITED`
/// once more than `per_minute` arrived in the current minute.
pub async fn check(
    state: &AppState,
    scope: &str,
    source: IpAddr,
    per_minute: u64,
) -> Result<(), ApiError> {
    let key = format!("rl:{scope}:{}", source_hash(source));
    let n = state.bus.incr_window(&key, Duration::from_secs(60)).await?;
    if n > per_minute {
        return Err(ApiError::with_message(
            ErrorCode::RateLimited,
            format!(
                "more than {per_minute} {scope} requests a minute from this address; wait and retry"
            ),
        ));
    }
    Ok(())
}

/// A short, stable, non-reversible label for an address (for keys and audit records).
pub fn source_hash(source: IpAddr) -> String {
    let h = tether_proto::ids::sha256_hex(format!("tether-source-v1:{source}").as_bytes());
    h.get(..16).unwrap_or_default().to_owned()
}
