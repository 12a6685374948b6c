//! The test harness: one behavioural test body, run against the local backend (in a temp
//! dir) and against a real S3 server (`s3s-fs`, started per test on port 0 over its own
//! temp dir, killed when the test ends — also when it fails).
//!
//! `s3s-fs` is `$TETHER_TEST_S3FS`, or found on `PATH` / in `~/.cargo/bin`. If it is
//! missing the S3 tests fail with a message saying how to install it — they never skip.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use tempfile::TempDir;
use tether_objects::testing::S3fs;
use tether_objects::{LocalObjects, Objects, S3Objects};

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Local,
    S3,
}

/// An object store under test, and what keeps it alive.
#[derive(Debug)]
pub struct Harness {
    pub objects: Arc<dyn Objects>,
    _keep: Keep,
}

#[derive(Debug)]
enum Keep {
    Local(TempDir),
    S3(S3fs),
}

impl Harness {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Local => {
                let dir = tempfile::tempdir().unwrap();
                let objects =
                    LocalObjects::open(&dir.path().join("objects"), "https://h.example", &[9; 32])
                        .await
                        .unwrap();
                Self {
                    objects: Arc::new(objects),
                    _keep: Keep::Local(dir),
                }
            }
            Backend::S3 => {
                let server = start_s3fs().await;
                let objects = S3Objects::connect(&server.config()).unwrap();
                Self {
                    objects: Arc::new(objects),
                    _keep: Keep::S3(server),
                }
            }
        }
    }
}

/// Starts `s3s-fs`, or fails the test saying why.
pub async fn start_s3fs() -> S3fs {
    match S3fs::start().await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// A plain HTTP client (no SDK) for presigned URLs.
pub fn http_client() -> reqwest::Client {
    // reqwest is built without a default rustls provider; the URLs here are plain HTTP
    // to the local test server, but building a client still needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}
