//! The live view: `GET /api/live`, a Server-Sent Events stream of presence changes,
//! telemetry, alerts and command status for the devices the caller may see.
//!
//! Authentication is the usual `Authorization: Bearer <access token>`; a browser's
//! `EventSource` cannot set headers, so `?access_token=<token>` is accepted too (the
//! header wins when both are present). Tokens in URLs can end up in proxy logs: clients
//! that can set the header should. The stream ends when the access token expires (the
//! client reconnects with a fresh one), so a live view never outlives its credential.
//!
//! `?device=<id>` (repeatable) narrows the stream; each named device must be one the
//! caller may see (owner, or admin/auditor) or the request is 404, the same answer as for
//! a device that does not exist. Every event is checked again against the caller as it
//! goes out: an event reaches a subscriber only if the caller owns its device (the
//! event's `owner_id`) or is an admin or auditor.
//!
//! Each SSE event is named by its kind (`presence`, `telemetry`, `alert`,
//! `command_status`) and its `data` is the [`LiveEvent`] as JSON. A subscriber that falls
//! too far behind gets a `lagged` event, `{"missed": n}`, and should re-read state it
//! cares about. A comment line keeps the connection alive every 15 s. Streams end when
//! the server shuts down.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use tether_proto::ErrorCode;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::auth::{Caller, authenticate};
use crate::error::{ApiError, ApiResult};
use crate::events::{LiveEvent, LiveKind};
use crate::extract::ApiQuery;
use crate::routes::devices::visible_device;
use crate::state::AppState;

/// How often a comment line keeps an idle stream open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often an idle stream checks whether its token has expired.
const EXPIRY_CHECK: Duration = Duration::from_secs(5);
/// The most `device` filters one subscription may name.
pub const MAX_DEVICE_FILTERS: usize = 64;
/// The reconnection delay suggested to `EventSource` clients.
const RETRY: Duration = Duration::from_secs(5);

/// The SSE event name of a kind.
pub fn event_name(kind: LiveKind) -> &'static str {
    match kind {
        LiveKind::Presence => "presence",
        LiveKind::Telemetry => "telemetry",
        LiveKind::Alert => "alert",
        LiveKind::CommandStatus => "command_status",
        LiveKind::CommandWake => "command_wake",
        LiveKind::AgentFrame => "agent_frame",
        LiveKind::PolicyChanged => "policy_changed",
        LiveKind::OwnerKeys => "owner_keys",
    }
}

/// What one subscription asked for.
#[derive(Debug, Default, PartialEq, Eq)]
struct LiveQuery {
    access_token: Option<String>,
    devices: Vec<String>,
}

fn parse_query(pairs: Vec<(String, String)>) -> ApiResult<LiveQuery> {
    let mut q = LiveQuery::default();
    for (k, v) in pairs {
        match k.as_str() {
            "access_token" if q.access_token.is_none() => q.access_token = Some(v),
            "access_token" => {
                return Err(ApiError::with_message(
                    ErrorCode::InvalidField,
                    "access_token is given more than once",
                ));
            }
            "device" => {
                if v.is_empty() || v.len() > 64 {
                    return Err(ApiError::with_message(
                        ErrorCode::InvalidField,
                        "device must be a device id",
                    ));
                }
                if !q.devices.contains(&v) {
                    q.devices.push(v);
                }
            }
            // Refused rather than ignored: a misspelt filter (`devices=`) would otherwise
            // widen the stream to every device silently.
            other => {
                return Err(ApiError::with_message(
                    ErrorCode::InvalidField,
                    format!(
                        "unknown query parameter {:?} (expected device, access_token)",
                        other.chars().take(32).collect::<String>()
                    ),
                ));
            }
        }
    }
    if q.devices.len() > MAX_DEVICE_FILTERS {
        return Err(ApiError::with_message(
            ErrorCode::InvalidField,
            format!("at most {MAX_DEVICE_FILTERS} device filters"),
        ));
    }
    Ok(q)
}

/// The token of the request: the `Authorization` header, else `?access_token=`.
fn bearer<'a>(headers: &'a HeaderMap, q: &'a LiveQuery) -> ApiResult<&'a str> {
    match headers.get(axum::http::header::AUTHORIZATION) {
        Some(h) => h
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::with_message(
                    ErrorCode::Unauthenticated,
                    "Authorization must be `Bearer <token>`",
                )
            }),
        None => q.access_token.as_deref().ok_or_else(|| {
            ApiError::with_message(
                ErrorCode::Unauthenticated,
                "missing Authorization: Bearer token (or ?access_token=)",
            )
        }),
    }
}

/// Who may see what on one subscription.
#[derive(Debug)]
pub struct Audience {
    caller: Caller,
    devices: Option<HashSet<String>>,
}

impl Audience {
    /// Whether this subscriber may get `e`: its device is one asked for (if any were), and
    /// the caller owns it or sees every device.
    pub fn admits(&self, e: &LiveEvent) -> bool {
        if let Some(devices) = &self.devices
            && !devices.contains(&e.device_id)
        {
            return false;
        }
        self.caller.sees_all_devices()
            || e.owner_id.as_deref() == Some(self.caller.user.id.as_str())
    }
}

/// Live events for the caller's devices (Server-Sent Events).
///
/// Event names: `presence`, `telemetry`, `alert`, `command_status` (and `lagged` when
/// events were missed); each event's data is the live event as JSON:
/// `{"kind", "device_id", "owner_id", "at", "data"}`. Presence data is
/// `{"online": bool, "session_id"}`; telemetry data is the telemetry body; alert data is
/// the alert as `GET /api/alerts` shows it. A comment line every 15 s keeps the stream
/// open; the stream ends when the access token expires.
#[utoipa::path(
    get,
    path = "/api/live",
    params(
        ("device" = Option<Vec<String>>, Query, description = "Only these devices (repeatable); each must be visible to the caller, else 404."),
        ("access_token" = Option<String>, Query, description = "The access token, for clients (browsers' EventSource) that cannot send an Authorization header."),
    ),
    responses(
        (status = 200, description = "An event stream", body = String, content_type = "text/event-stream"),
        (status = 401, description = "No valid access token"),
        (status = 404, description = "A requested device does not exist or is not visible to the caller"),
    ),
    security(("bearer" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let q = parse_query(pairs)?;
    let (caller, exp_s) = authenticate(&state, bearer(&headers, &q)?).await?;
    for id in &q.devices {
        visible_device(&state, &caller, id).await?;
    }
    let audience = Audience {
        caller,
        devices: (!q.devices.is_empty()).then(|| q.devices.into_iter().collect()),
    };
    // Subscribed before the response goes out: a client that has the headers gets every
    // event published after.
    let sub = Subscription {
        rx: state.live.subscribe(),
        stopped: state.live.stopped(),
        audience,
        expires_at_ms: exp_s.saturating_mul(1000),
        state,
        greeted: false,
        _counted: crate::prom::LiveSubscriber::open(),
    };
    let events = futures_util::stream::unfold(sub, |mut sub| async move {
        sub.next().await.map(|e| (Ok(e), sub))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

struct Subscription {
    rx: broadcast::Receiver<Arc<LiveEvent>>,
    stopped: CancellationToken,
    audience: Audience,
    expires_at_ms: u64,
    state: AppState,
    greeted: bool,
    _counted: crate::prom::LiveSubscriber,
}

impl Subscription {
    /// The next event to send, or None to end the stream.
    async fn next(&mut self) -> Option<Event> {
        if !self.greeted {
            self.greeted = true;
            return Some(Event::default().retry(RETRY).comment("tether live"));
        }
        loop {
            if self.state.now().0 >= self.expires_at_ms {
                return None;
            }
            let got = tokio::select! {
                r = self.rx.recv() => r,
                () = tokio::time::sleep(EXPIRY_CHECK) => continue,
                () = self.stopped.cancelled() => return None,
            };
            match got {
                Ok(e) if self.audience.admits(&e) => return Some(to_sse(&e)),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    return Some(
                        Event::default()
                            .event("lagged")
                            .data(json!({"missed": n}).to_string()),
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn to_sse(e: &LiveEvent) -> Event {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event(event_name(e.kind)).data(data)
}

#[cfg(test)]
mod tests;
