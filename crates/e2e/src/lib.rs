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

pub mod cli;
pub mod wine;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The password [`register_user`] gives every user.
pub const PASSWORD: &str = "correct horse battery";

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
            "tether-helper",
            "-p",
            "tether-cli",
        ]);
        if bin_dir().file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        // Build as `cargo build` from a shell would, without the variables cargo sets for
        // this test process: build scripts that track them (ring's tracks
        // CARGO_MANIFEST_DIR and CARGO_PKG_*) would see them change and rebuild their
        // crate and everything above it, here and again at the next `cargo test`.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_BIN_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&k.as_ref())
            {
                cmd.env_remove(&key);
            }
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

    /// How many lines printed so far contain `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .map(|l| l.iter().filter(|l| l.contains(needle)).count())
            .unwrap_or(0)
    }

    /// Waits for a line containing `needle` beyond the first `seen` such lines (those
    /// printed before some step of the test); returns it.
    pub fn wait_for_new_line(&mut self, needle: &str, seen: usize, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .ok()
                .and_then(|l| l.iter().filter(|l| l.contains(needle)).nth(seen).cloned())
            {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before printing {needle:?} again; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not print {needle:?} again within {timeout:?}; output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to end by itself; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (as a crash or a power cut would end it) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    /// MySQL/MariaDB at this URL + Redis at this URL with this namespace + an S3 server.
    MysqlRedis {
        /// Store URL (a database created for the test).
        mysql_url: String,
        /// Redis URL.
        redis_url: String,
        /// Key namespace for this test.
        namespace: String,
        /// The S3 endpoint, bucket, access key and secret (an s3s-fs started for the test).
        s3: S3Target,
    },
}

/// Where the server's objects go on the scale-out backends.
#[derive(Debug, Clone)]
pub struct S3Target {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
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
    backends: Backends,
    env: Vec<(String, String)>,
    /// Extra command-line arguments (kept for restarts).
    args: Vec<String>,
}

impl Server {
    /// Starts the server binary on port 0.
    pub fn start(backends: &Backends) -> Server {
        Self::start_with(backends, &[])
    }

    /// Starts the server binary on port 0 with extra environment variables (e.g.
    /// `TETHER_SERVER_GATEWAY__PRESENCE_TTL_S`), kept for restarts.
    pub fn start_with(backends: &Backends, env: &[(&str, &str)]) -> Server {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let (proc, url, ca_pem) = Self::spawn(dir.path(), "127.0.0.1:0", backends, &env, &[]);
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap_or_else(|e| panic!("writing ca.pem: {e}"));
        Server {
            proc,
            url,
            ca_pem,
            ca_file,
            dir,
            backends: backends.clone(),
            env,
            args: Vec::new(),
        }
    }

    /// Starts a second process beside this one that runs only the gateway role, on the
    /// same backends (so only on [`Backends::MysqlRedis`]) with a copy of this one's keys
    /// (as a second node would be given them). Its `public_url` stays this server's (QR
    /// codes and tokens name the api); its `url` is where agents reach it.
    pub fn start_gateway(&self) -> Server {
        assert!(
            matches!(self.backends, Backends::MysqlRedis { .. }),
            "a separate gateway process needs the shared backends"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        copy_dir(&self.dir.path().join("keys"), &dir.path().join("keys"));
        let args = vec![
            "--role".to_owned(),
            "gateway".to_owned(),
            "--public-url".to_owned(),
            self.url.clone(),
        ];
        let (proc, url, ca_pem) =
            Self::spawn(dir.path(), "127.0.0.1:0", &self.backends, &self.env, &args);
        assert_eq!(ca_pem, self.ca_pem, "the gateway has another CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap_or_else(|e| panic!("writing ca.pem: {e}"));
        Server {
            proc,
            url,
            ca_pem,
            ca_file,
            dir,
            backends: self.backends.clone(),
            env: self.env.clone(),
            args,
        }
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.url))
    }

    /// Kills the server (as a crash would); its data dir stays.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts the server again on the same data dir and port (killing it first if it
    /// still runs). `proc` is then the new process: take the old one's output first.
    pub fn restart(&mut self) {
        self.kill();
        let listen = format!("127.0.0.1:{}", self.port());
        let (proc, url, ca_pem) = Self::spawn(
            self.dir.path(),
            &listen,
            &self.backends,
            &self.env,
            &self.args,
        );
        assert_eq!(url, self.url, "the restarted server has another URL");
        assert_eq!(ca_pem, self.ca_pem, "the restarted server has another CA");
        self.proc = proc;
    }

    /// Runs the binary on `data_dir` and waits until it is listening. Returns the
    /// process, `https://localhost:<port>` and the root CA.
    fn spawn(
        data_dir: &Path,
        listen: &str,
        backends: &Backends,
        env: &[(String, String)],
        args: &[String],
    ) -> (Proc, String, String) {
        let ready = data_dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let mut cmd = Command::new(binary("tether-server"));
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", listen])
            .arg("--ready-file")
            .arg(&ready)
            .args(args);
        cmd.env("TETHER_LOG", "info,sqlx=warn");
        if let Backends::MysqlRedis {
            mysql_url,
            redis_url,
            namespace,
            s3,
        } = backends
        {
            cmd.env("TETHER_SERVER_STORE__BACKEND", "mysql")
                .env("TETHER_SERVER_STORE__URL", mysql_url)
                .env("TETHER_SERVER_BUS__BACKEND", "redis")
                .env("TETHER_SERVER_BUS__URL", redis_url)
                .env("TETHER_SERVER_BUS__NAMESPACE", namespace)
                .env("TETHER_SERVER_OBJECTS__BACKEND", "s3")
                .env("TETHER_SERVER_OBJECTS__ENDPOINT", &s3.endpoint)
                .env("TETHER_SERVER_OBJECTS__BUCKET", &s3.bucket)
                .env("TETHER_SERVER_OBJECTS__ACCESS_KEY_ID", &s3.access_key)
                .env("TETHER_SERVER_OBJECTS__SECRET_ACCESS_KEY", &s3.secret_key)
                .env("TETHER_SERVER_OBJECTS__DANGEROUS_ALLOW_HTTP", "true");
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let mut proc = Proc::spawn("tether-server", cmd);
        let r = wait_for_json(&ready, Duration::from_secs(60), &mut proc);
        let addr: std::net::SocketAddr = r["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no addr in the ready file: {r}"));
        let url = format!("https://localhost:{}", addr.port());
        let ca_pem = r["ca_pem"].as_str().unwrap_or_default().to_owned();
        (proc, url, ca_pem)
    }

    /// The server's store, opened beside it (SQLite in its data dir, or its MariaDB
    /// database), for checks on what it wrote.
    pub async fn store(&self) -> Arc<dyn tether_store::Store> {
        match &self.backends {
            Backends::Embedded => Arc::new(
                tether_store::SqliteStore::open(&self.dir.path().join("tether.db"))
                    .await
                    .unwrap_or_else(|e| panic!("opening the server's SQLite store: {e}")),
            ),
            Backends::MysqlRedis { mysql_url, .. } => Arc::new(
                tether_store::MysqlStore::connect(mysql_url)
                    .await
                    .unwrap_or_else(|e| panic!("connecting to the server's database: {e}")),
            ),
        }
    }

    /// An API client trusting this server's CA.
    pub fn api(&self) -> tether_client::Api {
        tether_client::Api::new(&self.url, &self.ca_pem)
            .unwrap_or_else(|e| panic!("api client: {e}"))
    }
}

/// 16 random bytes from the OS.
pub fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b
}

/// A fresh random UUID v4, for a message or command id.
pub fn uuid() -> String {
    tether_proto::MessageId::from_random_bytes(random16()).to_string()
}

/// Copies a directory tree (the keystore, for a second server process).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
        }
    }
}

/// Registers `email` with a fixed password and [`owner_key`]`(email)` as its owner key
/// (`mobile_pub`, which the user's PCs pin at pairing), logs in, and returns a client
/// acting as that user. Its commands must be signed: see [`sign_command`].
pub async fn register_user(server: &Server, email: &str) -> tether_client::Api {
    let api = server.api();
    let mobile_pub =
        tether_proto::validate::b64url_encode(owner_key(email).verifying_key().as_bytes());
    let (s, _): (u16, Value) = api
        .post(
            "/api/register",
            &serde_json::json!({"email": email, "password": PASSWORD,
                                "mobile_pub": mobile_pub}),
        )
        .await
        .unwrap();
    let creds = serde_json::json!({"email": email, "password": PASSWORD});
    assert_eq!(s, 201, "register {email}");
    let (s, login): (u16, Value) = api.post("/api/login", &creds).await.unwrap();
    assert_eq!(s, 200, "login {email}: {login}");
    server
        .api()
        .with_bearer(login["access_token"].as_str().unwrap())
}

/// Starts `tether-agent run` against `server` on `state` (paired already, or not yet),
/// trusting the server's CA file.
pub fn run_agent(server: &Server, state: &Path, device_name: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(binary("tether-agent"));
    cmd.arg("run")
        .args(["--server", &server.url])
        .arg("--state-dir")
        .arg(state)
        .arg("--ca-file")
        .arg(&server.ca_file)
        .args(["--device-name", device_name])
        .args(extra);
    Proc::spawn("tether-agent", cmd)
}

/// Runs `test` on fresh scale-out backends: a MariaDB database of its own (created on
/// `TETHER_TEST_MYSQL_URL`'s server), a Redis key namespace of its own (on
/// `TETHER_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) and a real S3 server
/// (s3s-fs over a temp dir), all removed afterwards whether the test passed or not.
pub async fn on_mysql_and_redis<F, Fut>(test: F)
where
    F: FnOnce(Backends) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin = tether_store::TestDb::admin_url();
    let (store, db) = tether_store::MysqlStore::create_test_database(&admin)
        .await
        .expect("MariaDB must be reachable (see README)");
    store.close().await;
    let redis_url =
        std::env::var("TETHER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let namespace = format!("tether-e2e-{}-{}", std::process::id(), db.name());
    let s3fs = tether_objects::testing::S3fs::start()
        .await
        .expect("s3s-fs must be installed (see README)");
    let backends = Backends::MysqlRedis {
        mysql_url: db.url(),
        redis_url: redis_url.clone(),
        namespace: namespace.clone(),
        s3: S3Target {
            endpoint: s3fs.endpoint().to_owned(),
            bucket: s3fs.bucket().to_owned(),
            access_key: s3fs.access_key().to_owned(),
            secret_key: s3fs.secret_key().to_owned(),
        },
    };
    let result = tokio::spawn(test(backends)).await;
    if let Ok(bus) = tether_bus::RedisBus::connect(&redis_url, &namespace).await {
        let _ = bus.delete_namespace().await;
    }
    db.drop_database()
        .await
        .expect("dropping the test database");
    drop(s3fs);
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Starts `tether-agent run` against `server` with a fresh state dir (trusting the
/// server's CA file), lets `user` confirm the pairing, and waits until the agent is
/// connected. `extra` are more `run` arguments.
pub async fn pair_agent(
    server: &Server,
    user: &tether_client::Api,
    device_name: &str,
    extra: &[&str],
) -> (Proc, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let mut agent = run_agent(server, state.path(), device_name, extra);
    let pairing = wait_for_json(
        &state.path().join("pairing.json"),
        Duration::from_secs(60),
        &mut agent,
    );
    let (s, confirmed): (u16, Value) = user
        .post(
            "/api/pair/confirm",
            &serde_json::json!({"pair_token": pairing["pair_url"]}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "pair confirm: {confirmed}");
    let code = confirmed["pairing_code"].as_str().unwrap().to_owned();
    agent.wait_for_line(&code, Duration::from_secs(60));
    agent.wait_for_line("connected: session", Duration::from_secs(60));
    (agent, state)
}

/// A running `tether-helper` with the recording executor, for one agent.
#[derive(Debug)]
pub struct Helper {
    /// The process.
    pub proc: Proc,
    /// Its socket (give the agent `--helper-socket`).
    pub socket: PathBuf,
    /// Its public key file (give the agent `--helper-key-file`).
    pub key_file: PathBuf,
    /// The recording executor's record: one JSON line per execution.
    pub record: PathBuf,
    /// Its directory (socket, state, record).
    pub dir: tempfile::TempDir,
}

impl Helper {
    /// Where a helper started with [`Helper::start`] in `dir` will listen and keep its key,
    /// for the agent's arguments before the helper runs.
    pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        (
            dir.join("helper.sock"),
            dir.join("state").join("helper.pub"),
        )
    }

    /// Starts the helper binary in a new temp dir, trusting the agent key in
    /// `agent_state/agent.pub` and only the `tether-agent` binary as its caller.
    pub fn start(agent_state: &Path) -> Helper {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, agent_state)
    }

    /// [`start`](Self::start) in a given dir (whose [`paths`](Self::paths) the agent was
    /// already told).
    pub fn start_in(dir: tempfile::TempDir, agent_state: &Path) -> Helper {
        let (socket, key_file) = Self::paths(dir.path());
        let record = dir.path().join("recorded.jsonl");
        let agent_pub = agent_state.join("agent.pub");
        let start = Instant::now();
        while !agent_pub.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} never written",
                agent_pub.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut cmd = Command::new(binary("tether-helper"));
        cmd.arg("run")
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--agent-key-file")
            .arg(&agent_pub)
            .arg("--agent-exe")
            .arg(binary("tether-agent"))
            .args(["--executor", "recording"])
            .arg("--record")
            .arg(&record);
        cmd.env("TETHER_LOG", "info");
        let mut proc = Proc::spawn("tether-helper", cmd);
        let start = Instant::now();
        while !(socket.exists() && key_file.exists()) {
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("tether-helper exited ({status}):\n{}", proc.output());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tether-helper not listening:\n{}",
                proc.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Helper {
            proc,
            socket,
            key_file,
            record,
            dir,
        }
    }

    /// The recorded executions, one JSON value each.
    pub fn executions(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The server's real gateway envelope signing key, read from its data dir the way the
/// server keeps it ([`tether_server::app::read_gateway_signer`]): for tests that play a
/// compromised server and sign frames the agent's pinned gateway key accepts.
pub fn gateway_signer(server: &Server) -> tether_proto::envelope::EnvelopeSigner {
    tether_server::app::read_gateway_signer(server.dir.path())
        .unwrap_or_else(|e| panic!("reading the server's gateway key: {e}"))
        .unwrap_or_else(|| {
            panic!(
                "the server in {} has no gateway key",
                server.dir.path().display()
            )
        })
}

/// The owner key [`register_user`] registers for `email`: an Ed25519 key derived from the
/// email (generated by code for tests, never a committed secret), so every test can sign
/// as any user it registered.
pub fn owner_key(email: &str) -> ed25519_dalek::SigningKey {
    use sha2::{Digest, Sha256};
    let seed: [u8; 32] = Sha256::digest(format!("tether-e2e-owner-key\n{email}")).into();
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// Signs a `POST /api/command` body as its owner would (docs/protocol.md section 6.11):
/// adds `not_after` (now + `ttl_seconds`, default 300) and `user_sig`, an Ed25519
/// signature by `key` over the command statement of the body's `message_id`,
/// `device_id`, `method` and `params` (default `{}`).
pub fn sign_command(key: &ed25519_dalek::SigningKey, body: &mut Value) {
    use tether_proto::Clock as _;
    let ttl = body["ttl_seconds"].as_u64().unwrap_or(300);
    let not_after = tether_proto::SystemClock
        .now()
        .saturating_add(Duration::from_secs(ttl));
    let params = body
        .get("params")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let method: tether_proto::messages::command::Method =
        serde_json::from_value(body["method"].clone())
            .unwrap_or_else(|e| panic!("signing a command with no known method ({e}): {body}"));
    let id = tether_proto::MessageId::parse(body["message_id"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("signing a command without a message_id ({e}): {body}"));
    let statement = tether_proto::owner_sig::command_statement(
        &id,
        body["device_id"].as_str().unwrap_or_default(),
        method,
        &params,
        not_after,
    )
    .unwrap_or_else(|e| panic!("the command statement: {e}"));
    body["not_after"] = serde_json::json!(not_after.0);
    body["user_sig"] = serde_json::to_value(tether_proto::owner_sig::sign_ed25519(key, &statement))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// [`sign_command`] with the key [`register_user`] gave `email`, returning the body.
pub fn signed_command(email: &str, mut body: Value) -> Value {
    sign_command(&owner_key(email), &mut body);
    body
}

/// Writes [`owner_key`]`(email)` into a `tether` profile directory as the CLI keeps its
/// owner key (`owner-key.json`), so a CLI that logged in as `email` signs with the key
/// [`register_user`] registered.
pub fn write_owner_key_file(profile: &Path, email: &str) {
    let key = owner_key(email);
    let public = key.verifying_key().to_bytes();
    let file = serde_json::json!({
        "kind": "ed25519",
        "kid": tether_proto::KeyId::for_ed25519(&public).to_string(),
        "public_key": tether_proto::validate::b64url_encode(&public),
        "secret_seed": tether_proto::validate::b64url_encode(key.as_bytes()),
    });
    std::fs::create_dir_all(profile)
        .unwrap_or_else(|e| panic!("creating {}: {e}", profile.display()));
    let path = profile.join("owner-key.json");
    std::fs::write(&path, file.to_string())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
}
