//! `tether watch [DEVICE...]`: the live view (`GET /api/live`, Server-Sent Events) as one
//! line per event, or one JSON object per line with `--json`, until interrupted.
//!
//! The server ends a stream when the access token it was opened with expires, and at its
//! own shutdown; the command then reconnects (refreshing the session first when needed).
//! A lost connection is retried with a growing pause (1 s doubling to 30 s); a refusal
//! (not logged in, a device that is not yours), or a server unreachable at the start,
//! ends the command.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use tether_client::sse::SseEvent;

use crate::context::{Conn, Ctx};
use crate::error::CliError;
use crate::output::live::{event_line, lagged_line};
use crate::views::{DeviceView, LiveEventView};

/// First pause before reconnecting after a failure, and the longest.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// A stream that ended sooner than this after opening counts as a failure (no tight
/// reconnect loop against a server that keeps closing at once).
const SHORT_LIVED: Duration = Duration::from_secs(5);

pub(super) async fn run(ctx: &Ctx, devices: &[String]) -> Result<(), CliError> {
    let conn = ctx.connect_logged_in().await?;
    let mut path = "/api/live".to_owned();
    for (i, d) in devices.iter().enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        path.push_str("device=");
        path.push_str(super::devices::path_segment(d)?);
    }
    let names = device_names(&conn).await;
    let mut retry = FIRST_RETRY;
    let mut announced = false;
    loop {
        let opened = tokio::time::Instant::now();
        match conn.stream(&path).await {
            Ok(mut stream) => {
                if !announced {
                    ctx.out.note("Watching (Ctrl-C to stop)…");
                    announced = true;
                }
                let why = loop {
                    match stream.next_event().await {
                        Ok(Some(e)) => show(ctx, &e, &names),
                        Ok(None) => break None,
                        Err(e) => break Some(CliError::from(e)),
                    }
                };
                if why.is_none() && opened.elapsed() >= SHORT_LIVED {
                    retry = FIRST_RETRY;
                    continue;
                }
                if let Some(e) = why {
                    ctx.out
                        .note(&format!("connection lost ({e}); reconnecting"));
                }
            }
            // Unreachable at the first try is an error (a wrong --server should not hang);
            // later it is a blip to wait out.
            Err(e @ CliError::Unreachable(_)) if announced => {
                ctx.out
                    .note(&format!("{e}; retrying in {} s", retry.as_secs()));
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(retry).await;
        retry = retry.saturating_mul(2).min(MAX_RETRY);
    }
}

fn show(ctx: &Ctx, e: &SseEvent, names: &HashMap<String, String>) {
    if e.event == "lagged" {
        let missed = serde_json::from_str::<serde_json::Value>(&e.data)
            .ok()
            .and_then(|v| v.get("missed").and_then(serde_json::Value::as_u64))
            .unwrap_or(0);
        ctx.out
            .line(&json!({"kind": "lagged", "missed": missed}), || {
                lagged_line(missed)
            });
        return;
    }
    match serde_json::from_str::<LiveEventView>(&e.data) {
        Ok(ev) => ctx.out.line(&ev, || event_line(&ev, names)),
        // A newer server's event this client cannot read: say so rather than stop.
        Err(err) => ctx
            .out
            .note(&format!("skipped an unreadable {:?} event: {err}", e.event)),
    }
}

/// Device names by id, for display; empty if they cannot be fetched.
pub(super) async fn device_names(conn: &Conn) -> HashMap<String, String> {
    conn.get::<Vec<DeviceView>>("/api/devices")
        .await
        .map(|ds| ds.into_iter().map(|d| (d.id, d.name)).collect())
        .unwrap_or_default()
}
