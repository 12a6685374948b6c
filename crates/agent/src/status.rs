//! `tether-agent status`: what the state directory says, without contacting the server.

use std::path::Path;

use x509_parser::prelude::FromDer;

use crate::error::AgentError;
use crate::state::StateDir;

/// Prints the state of the agent in `dir`.
pub async fn print(dir: &Path) -> Result<(), AgentError> {
    let state = StateDir::existing(dir)?;
    let server = state.server()?;
    let server_url = server
        .as_ref()
        .map_or("(none yet)", |s| s.server_url.as_str());
    let Some(device) = state.device()? else {
        say!("status:       unpaired");
        say!("server:       {server_url}");
        if let Some(id) = state.identity()? {
            say!("agent key:    {}", id.kid());
        }
        if let Some(t) = state.pairing_ticket()? {
            say!(
                "pairing:      requested as {}, waiting for the owner",
                t.device_id
            );
            say!("pair URL:     {}", t.pair_url);
            say!("expires at:   {}", rfc3339_ms(t.expires_at));
        }
        return Ok(());
    };
    say!("status:       paired");
    say!("device id:    {}", device.record.device_id);
    say!("server:       {}", device.record.server_url);
    if let Some(id) = state.identity()? {
        say!("agent key:    {}", id.kid());
    }
    match cert_not_after(&device.cert_pem) {
        Some(secs) => say!("cert expires: {}", rfc3339_secs(secs)),
        None => say!("cert expires: (unreadable certificate)"),
    }
    say!("paired at:    {}", rfc3339_ms(device.record.paired_at));
    if let Some(s) = state.session()? {
        say!(
            "last session: {} at {}",
            s.session_id,
            rfc3339_ms(s.connected_at)
        );
    }
    match crate::queue::peek(&state).await {
        Ok(Some(q)) => say!(
            "queued:       {} telemetry messages ({} bytes encrypted)",
            q.entries,
            q.bytes
        ),
        Ok(None) => say!("queued:       0 telemetry messages"),
        Err(e) => say!("queued:       (unreadable: {e})"),
    }
    if state.read_optional(crate::policy::POLICY_FILE)?.is_none() {
        say!("policy:       version 0 (built-in)");
    } else {
        match crate::policy::LocalPolicy::open(&state) {
            Ok(p) => {
                let b = p.current();
                say!("policy:       version {} (hash {})", b.version, b.hash);
            }
            Err(e) => say!("policy:       (unreadable: {e})"),
        }
    }
    Ok(())
}

/// The certificate's notAfter, seconds since the epoch.
pub fn cert_not_after(pem: &str) -> Option<i64> {
    let der = tether_client::first_cert_der(pem).ok()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339_secs(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} (seconds since 1970)"))
}

/// Milliseconds since the epoch as RFC 3339 (UTC), to the second.
pub fn rfc3339_ms(ms: u64) -> String {
    rfc3339_secs(i64::try_from(ms.checked_div(1000).unwrap_or(0)).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(rfc3339_ms(1_764_115_200_000), "2025-11-26T00:00:00Z");
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
    }
}
