//! A trace id for every request: taken from an incoming W3C `traceparent` header when it
//! is well-formed, otherwise random. It is echoed in the `x-trace-id` response header,
//! carried in error bodies, and attached to audit events and log lines.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tether_proto::TraceId;

tokio::task_local! {
    static TRACE_ID: TraceId;
}

/// The current request's trace id, or a fresh one outside a request.
pub fn current_trace_id() -> String {
    TRACE_ID
        .try_with(|t| t.to_string())
        .unwrap_or_else(|_| fresh().to_string())
}

fn fresh() -> TraceId {
    TraceId::from_random_bytes(crate::random::bytes::<16>())
}

fn from_traceparent(v: &HeaderValue) -> Option<TraceId> {
    // version "-" trace-id "-" parent-id "-" flags
    let s = v.to_str().ok()?;
    let mut parts = s.split('-');
    let _version = parts.next()?;
    TraceId::parse(parts.next()?).ok()
}

/// Middleware: runs the rest of the stack with a trace id in scope.
pub async fn layer(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("traceparent")
        .and_then(from_traceparent)
        .unwrap_or_else(fresh);
    let header = HeaderValue::from_str(id.as_str()).ok();
    let mut resp = TRACE_ID.scope(id, next.run(req)).await;
    if let Some(h) = header {
        resp.headers_mut().insert("x-trace-id", h);
    }
    resp
}
