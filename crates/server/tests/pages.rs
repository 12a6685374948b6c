//! The web app the api role serves at `/` (tests/roles.rs: a gateway does not), the pair page a QR code opens, and the
//! OpenAPI document.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use support::TestServer;

fn http(srv: &TestServer) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tether_client::tls_config(&srv.ca_pem, None).unwrap())
        .build()
        .unwrap()
}

async fn fetch(srv: &TestServer, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = http(srv)
        .get(format!("{}{path}", srv.url))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).map(|v| v.to_str().unwrap()).unwrap_or_default()
}

#[tokio::test]
async fn the_root_serves_the_web_app_under_a_strict_csp() {
    let srv = TestServer::start().await;
    let (status, h, html) = fetch(&srv, "/").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&h, "cache-control"), "no-cache");
    let csp = header(&h, "content-security-policy");
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(
        csp.contains("script-src 'self';") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(html.contains("<div id=\"app\">"), "{html}");
    assert!(
        !html.contains("<script>"),
        "an inline script would be blocked by the CSP"
    );
    let (status, _, same) = fetch(&srv, "/index.html").await;
    assert_eq!((status, same.as_str()), (200, html.as_str()));

    // Every script and stylesheet the page names is served with its type, cached for good.
    let assets: Vec<&str> = html
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{html}");
    assert!(assets.iter().any(|a| a.ends_with(".css")), "{html}");
    for a in assets {
        let (status, h, body) = fetch(&srv, a).await;
        assert_eq!(status, 200, "{a}");
        let want = if a.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&h, "content-type"), want, "{a}");
        assert_eq!(
            header(&h, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&h, "x-content-type-options"), "nosniff");
        assert!(!body.is_empty(), "{a}");
    }

    // An unknown asset and an unknown API path still get our JSON 404.
    for p in ["/assets/nope.js", "/api/nope", "/api/devices/x/nope"] {
        let (status, h, body) = fetch(&srv, p).await;
        assert_eq!(status, 404, "{p}");
        assert!(
            header(&h, "content-type").starts_with("application/json"),
            "{p}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], 9003, "{p}: {v}");
    }
    // The routes beside it are untouched.
    let (status, _, _) = fetch(&srv, "/healthz").await;
    assert_eq!(status, 200);
    let (status, _, pem) = fetch(&srv, "/ca.pem").await;
    assert_eq!(status, 200);
    assert!(pem.contains("BEGIN CERTIFICATE"));
    let (status, _, jwks) = fetch(&srv, "/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    assert!(jwks.contains("\"keys\""));
    srv.stop().await;
}

#[tokio::test]
async fn the_pair_url_opens_the_app() {
    // The agent's QR code holds `/pair#token=…`: the app's page, whose pairing screen
    // reads the fragment (which browsers never send to the server).
    let srv = TestServer::start().await;
    let (status, body) = srv.api().get_raw("/pair").await.unwrap();
    assert_eq!(status, 200);
    let html = String::from_utf8(body).unwrap();
    let (_, index) = srv.api().get_raw("/").await.unwrap();
    assert_eq!(html, String::from_utf8(index).unwrap());
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

#[tokio::test]
async fn web_dir_serves_a_build_from_disk_and_nothing_outside_it() {
    // Front-end development: `web_dir` serves a fresh `vite build` without a server
    // rebuild. Only plain relative paths inside it are served.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("index.html"), "<div id=\"app\">dev</div>").unwrap();
    std::fs::write(dir.path().join("favicon.svg"), "<svg/>").unwrap();
    std::fs::write(dir.path().join("assets/app-1.js"), "export {}").unwrap();
    std::fs::write(dir.path().join(".secret"), "no").unwrap();
    let web_dir = dir.path().to_path_buf();
    let srv = TestServer::start_with(move |c| c.web_dir = Some(web_dir)).await;

    let (status, _, html) = fetch(&srv, "/").await;
    assert_eq!((status, html.as_str()), (200, "<div id=\"app\">dev</div>"));
    let (status, _, pair) = fetch(&srv, "/pair").await;
    assert_eq!((status, pair.as_str()), (200, html.as_str()));
    let (status, h, svg) = fetch(&srv, "/favicon.svg").await;
    assert_eq!((status, svg.as_str()), (200, "<svg/>"));
    assert_eq!(header(&h, "content-type"), "image/svg+xml");
    assert_eq!(header(&h, "cache-control"), "no-cache");
    let (status, h, _) = fetch(&srv, "/assets/app-1.js").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    for p in [
        "/.secret",
        "/missing.png",
        "/assets/..%2f.secret",
        "/assets/%2E%2E%2Findex.html", // one segment for the client; "../index.html" decoded
        "/%2e%2e%2fetc%2fpasswd",
    ] {
        let (status, _, body) = fetch(&srv, p).await;
        assert_eq!(status, 404, "{p}: {body}");
        assert!(body.contains("\"code\""), "{p}: our error shape: {body}");
    }
    srv.stop().await;
}
