//! Harness for end-to-end tests: finds the workspace's binaries (building them if
//! needed), starts `tether-server` on port 0 in a temp dir on the embedded or the
//! MariaDB + Redis backends, and runs `tether-agent` against it, collecting output.
//!
//! This crate is test code: a failed expectation panics (that is the test failing).
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where `cargo` puts this workspace's binaries for the current profile.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

static BUILD: std::sync::Once = std::sync::Once::new();

/// Path to a workspace binary. The first call in a test process runs `cargo build` for
/// the server, agent and CLI binaries (a no-op when they are current), so a test never
/// runs a stale binary, even under `cargo test -p tether-e2e`.
pub fn binary(name: &str) -> PathBuf {
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--bins",
            "-p",
            "tether-server",
            "-p",
            "tether-agent",
            "-p",
            "tether-cli",
        ]);
        if bin_dir().file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "building the binaries failed"
        );
    });
    bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// A child process whose output lines are collected; killed on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Proc {
    /// Spawns `cmd`, collecting stdout and stderr lines.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Proc {
            child,
            lines,
            name: name.to_owned(),
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.lines.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits until a line contains `needle`; returns that line.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .ok()
                .and_then(|l| l.iter().find(|l| l.contains(needle)).cloned())
            {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before printing {needle:?}; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not print {needle:?} within {timeout:?}; output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a file to exist and parse as JSON.
pub fn wait_for_json(path: &Path, timeout: Duration, proc: &mut Proc) -> Value {
    let start = Instant::now();
    loop {
        if let Some(v) = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            return v;
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!(
                "{} exited ({status}) before writing {}; output:\n{}",
                proc.name,
                path.display(),
                proc.output()
            );
        }
        assert!(
            start.elapsed() < timeout,
            "{} not written within {timeout:?}; output:\n{}",
            path.display(),
            proc.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Which backends the server runs on.
#[derive(Debug, Clone)]
pub enum Backends {
    /// SQLite + embedded bus (the defaults).
    Embedded,
    /// MySQL/MariaDB at this URL + Redis at this URL with this namespace.
    MysqlRedis {
        /// Store URL (a database created for the test).
        mysql_url: String,
        /// Redis URL.
        redis_url: String,
        /// Key namespace for this test.
        namespace: String,
    },
}

/// A running `tether-server`.
#[derive(Debug)]
pub struct Server {
    /// The process.
    pub proc: Proc,
    /// `https://localhost:<port>`.
    pub url: String,
    /// The root CA (PEM).
    pub ca_pem: String,
    /// A file holding the root CA.
    pub ca_file: PathBuf,
    /// The data dir.
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server binary on port 0.
    pub fn start(backends: &Backends) -> Server {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let ready = dir.path().join("ready.json");
        let mut cmd = Command::new(binary("tether-server"));
        cmd.arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .arg("--ready-file")
            .arg(&ready);
        cmd.env("TETHER_LOG", "info,sqlx=warn");
        if let Backends::MysqlRedis {
            mysql_url,
            redis_url,
            namespace,
        } = backends
        {
            cmd.env("TETHER_SERVER_STORE__BACKEND", "mysql")
                .env("TETHER_SERVER_STORE__URL", mysql_url)
                .env("TETHER_SERVER_BUS__BACKEND", "redis")
                .env("TETHER_SERVER_BUS__URL", redis_url)
                .env("TETHER_SERVER_BUS__NAMESPACE", namespace);
        }
        let mut proc = Proc::spawn("tether-server", cmd);
        let r = wait_for_json(&ready, Duration::from_secs(60), &mut proc);
        let url = r["public_url"].as_str().unwrap_or_default().to_owned();
        let ca_pem = r["ca_pem"].as_str().unwrap_or_default().to_owned();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap_or_else(|e| panic!("writing ca.pem: {e}"));
        Server {
            proc,
            url,
            ca_pem,
            ca_file,
            dir,
        }
    }

    /// An API client trusting this server's CA.
    pub fn api(&self) -> tether_client::Api {
        tether_client::Api::new(&self.url, &self.ca_pem)
            .unwrap_or_else(|e| panic!("api client: {e}"))
    }
}
