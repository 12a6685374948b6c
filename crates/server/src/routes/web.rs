//! The web app: `web/dist` (built by `npm run build` in `web/` and committed), embedded
//! at compile time so that `cargo run -p tether-server` serves it without Node.
//!
//! `/` and `/index.html` answer the app's page (`no-cache`: it names the current asset
//! files), `/assets/*` its content-hashed files (cached for a year, immutable). Every
//! answer carries a strict Content-Security-Policy: scripts, styles and connections from
//! this origin only, no inline script. Only the api role serves it. `/pair` answers the
//! app's page too: the agent's QR code opens `/pair#token=…` in the app. Top-level files
//! (icons, the manifest, the service worker) are served by name, revalidated each use.
//!
//! `web_dir` (`TETHER_SERVER_WEB_DIR`) serves a directory instead of the embedded copy,
//! for front-end development; production uses the embedded build.

use std::borrow::Cow;
use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};
use tether_proto::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

static DIST: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../web/dist");

/// The app's Content-Security-Policy with the local object store. `img-src blob:` lets
/// it show artifacts (a screenshot) it decrypted in the page; nothing else is relaxed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The policy this server sends: [`CSP`], plus the S3 origin in `connect-src` when
/// artifacts live in S3 (the app downloads them from presigned S3 URLs).
pub fn content_security_policy(objects: &tether_objects::ObjectsConfig) -> String {
    match objects_origin(objects) {
        Some(origin) => CSP.replacen(
            "connect-src 'self'",
            &format!("connect-src 'self' {origin}"),
            1,
        ),
        None => CSP.to_owned(),
    }
}

/// The origin presigned URLs point at: `scheme://[bucket.]host[:port]` of the S3
/// endpoint (AWS's regional endpoint when none is set); `None` for the local store,
/// whose URLs are on this server.
fn objects_origin(objects: &tether_objects::ObjectsConfig) -> Option<String> {
    let tether_objects::ObjectsConfig::S3(s3) = objects else {
        return None;
    };
    let endpoint = s3
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", s3.region));
    let url = reqwest::Url::parse(&endpoint).ok()?;
    let host = url.host_str()?;
    let host = if s3.virtual_hosted_style {
        format!("{}.{host}", s3.bucket)
    } else {
        host.to_owned()
    };
    Some(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

/// `GET /`, `GET /index.html` and `GET /pair` (the agent's QR code opens
/// `/pair#token=…`, which the app's pairing screen handles).
pub async fn index(State(state): State<AppState>) -> Response {
    match file(&state, "index.html").await {
        Some(f) => respond(&state, f, "text/html; charset=utf-8", NO_CACHE),
        None => ApiError::with_message(
            ErrorCode::NotFound,
            "the web app was not built into this server: run `npm ci && npm run build` in web/ and rebuild",
        )
        .into_response(),
    }
}

/// `GET /assets/{*path}`: a file of the build; our JSON 404 for anything else.
pub async fn asset(State(state): State<AppState>, Path(path): Path<String>) -> Response {
    match file(&state, &format!("assets/{path}")).await {
        Some(f) => respond(&state, f, content_type(&path), IMMUTABLE),
        None => ApiError::with_message(ErrorCode::NotFound, "no such asset").into_response(),
    }
}

/// `GET /{file}`: a top-level file of the build (the icons, the web manifest, the
/// service worker), revalidated on every use since its name does not change.
pub async fn root_file(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    if name == "index.html" || name.contains('/') {
        return ApiError::with_message(ErrorCode::NotFound, "no such route").into_response();
    }
    match file(&state, &name).await {
        Some(f) => respond(&state, f, content_type(&name), NO_CACHE),
        None => ApiError::with_message(ErrorCode::NotFound, "no such route").into_response(),
    }
}

/// A file of the build: from `web_dir` when configured (front-end development: serve a
/// fresh `vite build` without rebuilding the server), else the embedded copy.
async fn file(state: &AppState, path: &str) -> Option<Cow<'static, [u8]>> {
    if !safe_path(path) {
        return None;
    }
    match &state.config.web_dir {
        Some(dir) => {
            let full: PathBuf = dir.join(path);
            tokio::fs::read(full).await.ok().map(Cow::Owned)
        }
        None => DIST.get_file(path).map(|f| Cow::Borrowed(f.contents())),
    }
}

/// A relative path of plain segments: no `..`, no empty or hidden segment, no
/// backslash, only characters a Vite build writes.
fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

fn respond(
    state: &AppState,
    body: Cow<'static, [u8]>,
    content_type: &'static str,
    cache: &'static str,
) -> Response {
    let csp = HeaderValue::from_str(&content_security_policy(&state.config.objects))
        .unwrap_or_else(|_| HeaderValue::from_static(CSP));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (header::CONTENT_SECURITY_POLICY, csp),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The content type of a build file, by its extension (the few kinds Vite writes).
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_embedded_and_names_its_assets() {
        let html = DIST
            .get_file("index.html")
            .and_then(|f| f.contents_utf8())
            .unwrap_or_default();
        assert!(
            html.contains("/assets/"),
            "web/dist/index.html is missing or empty"
        );
        assert!(
            !html.contains("<script>"),
            "no inline script: the CSP forbids it"
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("index-Z4.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index-Z4.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    fn s3(extra: serde_json::Value) -> tether_objects::ObjectsConfig {
        let mut v = serde_json::json!({
            "backend": "s3", "bucket": "art", "access_key_id": "k", "secret_access_key": "s",
        });
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        serde_json::from_value(v).unwrap_or_else(|e| panic!("test config: {e}"))
    }

    #[test]
    fn the_csp_admits_the_s3_origin_only_when_artifacts_live_there() {
        let local = tether_objects::ObjectsConfig::default();
        assert_eq!(content_security_policy(&local), CSP);
        let cases = [
            (
                serde_json::json!({"endpoint": "https://s3.lab.example:9000/"}),
                "connect-src 'self' https://s3.lab.example:9000;",
            ),
            (
                serde_json::json!({"endpoint": "https://s3.lab.example", "virtual_hosted_style": true}),
                "connect-src 'self' https://art.s3.lab.example;",
            ),
            (
                serde_json::json!({"region": "eu-west-1"}),
                "connect-src 'self' https://s3.eu-west-1.amazonaws.com;",
            ),
        ];
        for (extra, want) in cases {
            let csp = content_security_policy(&s3(extra.clone()));
            assert!(csp.contains(want), "{extra}: {csp}");
            assert_eq!(csp.replace(want, "connect-src 'self';"), CSP, "{extra}");
        }
    }

    #[test]
    fn only_plain_relative_paths_are_served() {
        for ok in ["index.html", "assets/index-Z4.js", "favicon.svg", "sw.js"] {
            assert!(safe_path(ok), "{ok}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "assets/../../x",
            ".env",
            "assets/.hidden",
            "/abs",
            "a//b",
            "a\\b",
            "a b",
            "assets/",
            "%2e%2e",
        ] {
            assert!(!safe_path(bad), "{bad}");
        }
    }
}
