//! A command's trace id: the one its request body gives, else the request's own (its
//! `traceparent`, else the new one `x-trace-id` answers), so the submission's log lines
//! and the command's share it; the delivery to the agent travels under it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "commands/kit.rs"]
#[allow(dead_code)]
mod kit;
mod support;

use kit::{new_id, new_trace, next_delivery};
use serde_json::{Value, json};
use support::TestServer;
use support::live::{online, paired};

/// Posts a command with reqwest (the API client sets no custom headers): the
/// `x-trace-id` response header and the body.
async fn post_command(
    srv: &TestServer,
    token: &str,
    traceparent: Option<&str>,
    body: &Value,
) -> (String, Value) {
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tether_client::tls_config(&srv.ca_pem, None).unwrap())
        .build()
        .unwrap();
    let mut req = http
        .post(format!("{}/api/command", srv.url))
        .bearer_auth(token)
        .json(body);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let header = resp.headers()["x-trace-id"].to_str().unwrap().to_owned();
    (header, resp.json().await.unwrap())
}

#[tokio::test]
async fn a_command_without_a_trace_id_takes_its_requests_and_the_delivery_carries_it() {
    let srv = TestServer::start().await;
    let (mut agent, alice) = paired(&srv, "alice@lab.example").await;
    let device_id = agent.device_id.clone().unwrap();
    let (mut ws, _) = online(&srv, &mut agent).await;
    let token = alice.bearer().unwrap().to_owned();
    let command =
        || json!({"device_id": device_id, "method": "lock_screen", "message_id": new_id()});

    // A W3C traceparent: its trace id.
    let upstream = new_trace();
    let tp = format!("00-{upstream}-00f067aa0ba902b7-01");
    let (header, v) = post_command(&srv, &token, Some(&tp), &command()).await;
    assert_eq!(header, upstream);
    assert_eq!(v["trace_id"], upstream.as_str());
    let (h, _) = next_delivery(&mut ws, &srv).await;
    assert_eq!(h.trace_id.to_string(), upstream);

    // None: the request's new one, which the response header shows.
    let (header, v) = post_command(&srv, &token, None, &command()).await;
    assert_eq!(v["trace_id"], header.as_str());
    assert_ne!(header, upstream);
    let (h, _) = next_delivery(&mut ws, &srv).await;
    assert_eq!(h.trace_id.to_string(), header);

    // The body's own trace id wins over the request's.
    let own = new_trace();
    let mut body = command();
    body["trace_id"] = json!(own);
    let (header, v) = post_command(&srv, &token, Some(&tp), &body).await;
    assert_eq!(
        header, upstream,
        "the request itself is still traced upstream"
    );
    assert_eq!(v["trace_id"], own.as_str());
    let (h, _) = next_delivery(&mut ws, &srv).await;
    assert_eq!(h.trace_id.to_string(), own);

    let _ = ws.close(None).await;
    srv.stop().await;
}
