//! Process roles: a gateway-only process holds agent sessions and serves the agents'
//! HTTP routes but no user routes; an api-only process serves users and agents' HTTP
//! routes but holds no agent sessions. Both report their roles on `/healthz`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use support::TestServer;
use tether_proto::Payload;
use tether_proto::validate::b64url_encode;
use tether_server::config::Role;

/// What a route answers: the status and the error code (if any).
async fn probe(srv: &TestServer, method: &str, path: &str) -> (u16, Option<u64>) {
    let api = srv.api();
    if method == "GET" {
        let (status, body) = api.get_raw(path).await.unwrap();
        let code = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["code"].as_u64());
        return (status, code);
    }
    match api.post::<_, Value>(path, &json!({})).await {
        Ok((s, _)) => (s, None),
        Err(tether_client::ClientError::Api { status, body }) => {
            (status, Some(u64::from(body.code.number())))
        }
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

#[tokio::test]
async fn a_gateway_process_serves_agents_and_refuses_user_routes() {
    let srv = TestServer::start_with(|c| c.roles = vec![Role::Gateway]).await;
    let (_, health): (u16, Value) = srv.api().get("/healthz").await.unwrap();
    assert_eq!(health["roles"], "gateway", "{health}");
    // User routes are not here: the stable not-found answer, before any auth.
    for (m, p) in [
        ("POST", "/api/login"),
        ("POST", "/api/command"),
        ("GET", "/api/devices"),
        ("GET", "/api/live"),
        ("GET", "/pair"),
        ("GET", "/"),
        ("GET", "/index.html"),
        ("GET", "/assets/app.js"),
    ] {
        let (status, code) = probe(&srv, m, p).await;
        assert_eq!((status, code), (404, Some(9003)), "{m} {p}");
    }
    // The agents' HTTP routes are: a malformed body is refused by the handler itself.
    let (status, _) = probe(&srv, "POST", "/api/pair/request").await;
    assert_eq!(
        status, 422,
        "pair/request is served (and refuses an empty body)"
    );
    // And agents can open a session: discovery over /agent/ws answers a challenge.
    let mut agent = support::FakeAgent::new();
    let nonce = b64url_encode(&support::rand_bytes());
    let challenge = agent.discover(&srv, &nonce).await;
    assert!(matches!(challenge, Payload::DiscoveryChallenge(_)));
    srv.stop().await;
}

#[tokio::test]
async fn an_api_process_serves_users_and_holds_no_agent_sessions() {
    let srv = TestServer::start_with(|c| c.roles = vec![Role::Api]).await;
    let (_, health): (u16, Value) = srv.api().get("/healthz").await.unwrap();
    assert_eq!(health["roles"], "api", "{health}");
    let (status, code) = probe(&srv, "GET", "/agent/ws").await;
    assert_eq!((status, code), (404, Some(9003)), "/agent/ws");
    let err = tether_client::connect_agent_ws(&srv.url, &srv.ca_pem, None)
        .await
        .expect_err("no agent sessions on an api process");
    assert!(err.to_string().contains("404"), "{err}");
    let (_, _, _) = srv.user("roles@lab.example").await;
    srv.stop().await;
}

#[tokio::test]
async fn one_process_runs_both_roles_by_default() {
    let srv = TestServer::start().await;
    let (_, health): (u16, Value) = srv.api().get("/healthz").await.unwrap();
    assert_eq!(health["roles"], "api+gateway", "{health}");
    srv.stop().await;
}
