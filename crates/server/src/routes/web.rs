//! The web app: `web/dist` (built by `npm run build` in `web/` and committed), embedded
//! at compile time so that `cargo run -p tether-server` serves it without Node.
//!
//! `/` and `/index.html` answer the app's page (`no-cache`: it names the current asset
//! files), `/assets/*` its content-hashed files (cached for a year, immutable). Every
//! answer carries a strict Content-Security-Policy: scripts, styles and connections from
//! this origin only, no inline script. Only the api role serves it.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};
use tether_proto::ErrorCode;

use crate::error::ApiError;

static DIST: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../web/dist");

/// The app's Content-Security-Policy. `img-src blob:` lets it show artifacts (a
/// screenshot) it decrypted in the page; nothing else is relaxed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `GET /` and `GET /index.html`.
pub async fn index() -> Response {
    match DIST.get_file("index.html") {
        Some(f) => respond(f.contents(), "text/html; charset=utf-8", "no-cache"),
        None => ApiError::with_message(
            ErrorCode::NotFound,
            "the web app was not built into this server: run `npm ci && npm run build` in web/ and rebuild",
        )
        .into_response(),
    }
}

/// `GET /assets/{*path}`: a file of the build; our JSON 404 for anything else.
pub async fn asset(Path(path): Path<String>) -> Response {
    match DIST.get_file(format!("assets/{path}")) {
        Some(f) => respond(f.contents(), content_type(&path), IMMUTABLE),
        None => ApiError::with_message(ErrorCode::NotFound, "no such asset").into_response(),
    }
}

fn respond(body: &'static [u8], content_type: &'static str, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
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
}
