//! The pair page a QR code opens, and the OpenAPI document.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use support::TestServer;

#[tokio::test]
async fn the_pair_url_opens_a_page_that_confirms_with_the_api() {
    let srv = TestServer::start().await;
    let (status, body) = srv.api().get_raw("/pair").await.unwrap();
    assert_eq!(status, 200);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("/api/pair/confirm") && html.contains("location.hash"));
    srv.stop().await;
}

#[tokio::test]
async fn openapi_lists_every_api_route() {
    let srv = TestServer::start().await;
    let (_, doc): (u16, Value) = srv.api().get("/api/openapi.json").await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/register",
        "/api/login",
        "/api/token/refresh",
        "/api/logout",
        "/api/sessions/revoke",
        "/api/me",
        "/api/totp/enroll",
        "/api/totp/confirm",
        "/api/discovery/confirm",
        "/api/pair/request",
        "/api/pair/confirm",
        "/api/pair/activate",
        "/api/devices",
        "/api/devices/{id}",
        "/api/devices/{id}/approve",
        "/api/devices/{id}/revoke",
        "/api/admin/settings",
        "/api/gateway/keys",
        "/.well-known/jwks.json",
        "/ca.pem",
        "/healthz",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    srv.stop().await;
}
