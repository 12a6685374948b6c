//! A real S3 server for tests, this crate's and other crates': `s3s-fs` (an S3
//! implementation over a directory that checks SigV4 signatures and presigned URLs) on
//! port 0 over a temp dir, with generated credentials and one bucket.
//!
//! The binary is `$TETHER_TEST_S3FS`, else `s3s-fs` on `PATH`, else
//! `$CARGO_HOME/bin/s3s-fs` (`~/.cargo/bin`). Install it with
//! `cargo install --locked s3s-fs --version 0.14.1 --features binary` (`.ci/run` does).
//! If it is missing, [`S3fs::start`] fails with a message saying so: tests never skip.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{ObjectsError, ObjectsResult, S3Config, Secret};

/// How long `s3s-fs` may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// What `s3s-fs` logs once it listens, followed by its address.
const LISTENING: &str = "server is running at http://";

/// A running `s3s-fs` in its own temp dir; killed (and the dir removed) on drop.
#[derive(Debug)]
pub struct S3fs {
    child: Child,
    dir: TempDir,
    endpoint: String,
    access_key: String,
    secret_key: String,
    bucket: String,
}

impl S3fs {
    /// The environment variable that names the binary.
    pub const BINARY_ENV: &str = "TETHER_TEST_S3FS";

    /// The bucket every server starts with.
    pub const BUCKET: &str = "tether-test";

    /// Where the binary is, or why it could not be found.
    pub fn binary() -> ObjectsResult<PathBuf> {
        if let Some(p) = std::env::var_os(Self::BINARY_ENV) {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(missing(&format!(
                    "{} = {} is not a file",
                    Self::BINARY_ENV,
                    p.display()
                )))
            };
        }
        let on_path = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.join("s3s-fs"));
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .map(|c| c.join("bin").join("s3s-fs"));
        on_path
            .chain(cargo_home)
            .find(|p| p.is_file())
            .ok_or_else(|| missing("s3s-fs is not on PATH nor in $CARGO_HOME/bin"))
    }

    /// Starts a server on `127.0.0.1`, port 0, over a new temp dir, with generated
    /// credentials and the bucket [`Self::BUCKET`], and waits until it listens.
    pub async fn start() -> ObjectsResult<Self> {
        let binary = Self::binary()?;
        let dir = tempfile::Builder::new()
            .prefix("tether-s3fs-")
            .tempdir()
            .map_err(|e| ObjectsError::Backend(format!("temp dir for s3s-fs: {e}")))?;
        let root = dir.path().join("root");
        // s3s-fs keeps a bucket as a directory under its root.
        std::fs::create_dir_all(root.join(Self::BUCKET))?;
        let log_path = dir.path().join("s3s-fs.log");
        let log = std::fs::File::create(&log_path)?;
        let access_key = format!("AK{}", random_hex());
        let secret_key = format!("SK{}{}", random_hex(), random_hex());
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .arg("--access-key")
            .arg(&access_key)
            .arg("--secret-key")
            .arg(&secret_key)
            .arg(&root)
            // Its listening address is only logged at info level.
            .env("RUST_LOG", "s3s_fs=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| ObjectsError::Backend(format!("starting {}: {e}", binary.display())))?;
        let mut server = Self {
            child,
            dir,
            endpoint: String::new(),
            access_key,
            secret_key,
            bucket: Self::BUCKET.to_owned(),
        };
        server.endpoint = server.wait_listening(&log_path).await?;
        Ok(server)
    }

    async fn wait_listening(&mut self, log_path: &Path) -> ObjectsResult<String> {
        let started = Instant::now();
        loop {
            let log = tokio::fs::read_to_string(log_path)
                .await
                .unwrap_or_default();
            if let Some(addr) = log.split(LISTENING).nth(1).and_then(|rest| {
                rest.split_whitespace()
                    .next()
                    .filter(|a| rest.contains('\n') && !a.is_empty())
            }) {
                return Ok(format!("http://{addr}"));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ObjectsError::Backend(format!(
                    "s3s-fs exited ({status}) before listening; its log:\n{log}"
                )));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(ObjectsError::Backend(format!(
                    "s3s-fs did not listen within {START_TIMEOUT:?}; its log:\n{log}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The generated access key id.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The generated secret access key.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The server's root directory (one subdirectory per bucket).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A configuration for this server: path style, plain HTTP allowed, `us-east-1`.
    pub fn config(&self) -> S3Config {
        S3Config {
            bucket: self.bucket.clone(),
            region: "us-east-1".into(),
            endpoint: Some(self.endpoint.clone()),
            virtual_hosted_style: false,
            access_key_id: self.access_key.clone(),
            secret_access_key: Secret::new(self.secret_key.clone()),
            dangerous_allow_http: true,
            timeout_s: 10,
        }
    }
}

impl Drop for S3fs {
    fn drop(&mut self) {
        // SIGKILL, then reap it so no zombie is left; both return at once.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn missing(why: &str) -> ObjectsError {
    ObjectsError::Backend(format!(
        "the S3 tests need the s3s-fs binary: {why}. Install it with \
         `cargo install --locked s3s-fs --version 0.14.1 --features binary`, or set {} \
         to its path",
        S3fs::BINARY_ENV
    ))
}

fn random_hex() -> String {
    format!("{:016x}", RandomState::new().hash_one(std::process::id()))
}
