//! The real `tether` binary against the real `tether-server` binary: each test starts a
//! server on port 0 in its own temporary directory (killed when the test ends) and runs
//! `tether` with its own profile directories.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const PASSWORD: &str = "correct horse battery staple";
const ADMIN_PASSWORD: &str = "admin password of some length";

/// The `tether-server` binary beside this test's target directory, built if missing.
fn server_binary() -> PathBuf {
    // target/<profile>/deps/cli-<hash> → target/<profile>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = dir.join(format!("tether-server{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "tether-server"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "cargo build -p tether-server failed");
    }
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// A running server; killed on drop.
struct Server {
    child: Child,
    url: String,
    ca_pem: String,
    ca_file: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts a server with an admin account already created.
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let bin = server_binary();

        let mut admin = Command::new(&bin)
            .arg("--data-dir")
            .arg(&data)
            .args(["create-admin", "--email", "admin@example.com"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        writeln!(admin.stdin.take().unwrap(), "{ADMIN_PASSWORD}").unwrap();
        assert!(admin.wait().unwrap().success(), "create-admin failed");

        let ready = dir.path().join("ready.json");
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&bin)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0", "--ready-file"])
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            url: String::new(),
            ca_pem: String::new(),
            ca_file: dir.path().join("ca.pem"),
            log,
            dir,
        };
        // Wait for the server to say it listens (an event, not a fixed delay).
        let deadline = Instant::now() + Duration::from_secs(60);
        let info: Value = loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str(&text)
            {
                break v;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("tether-server exited with {status}:\n{}", server.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "no ready file:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let addr = info["addr"].as_str().unwrap();
        let port = addr.rsplit_once(':').unwrap().1;
        server.url = format!("https://localhost:{port}");
        server.ca_pem = info["ca_pem"].as_str().unwrap().to_owned();
        std::fs::write(&server.ca_file, &server.ca_pem).unwrap();
        server
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn fingerprint(&self) -> String {
        tether_client::fingerprint(&tether_client::first_cert_der(&self.ca_pem).unwrap())
    }

    /// A fresh profile directory path (not created).
    fn profile(&self, name: &str) -> PathBuf {
        self.dir.path().join("profiles").join(name)
    }

    /// `tether --profile-dir <profile> ARGS` with `stdin` as standard input.
    fn tether(&self, profile: &Path, args: &[&str], stdin: &str) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("--profile-dir")
            .arg(profile)
            .args(args)
            .env_remove("TETHER_SERVER")
            .env_remove("TETHER_PROFILE_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            args: args.join(" "),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Same, first contact: with `--server` and `--ca-file`.
    fn tether_first(&self, profile: &Path, args: &[&str], stdin: &str) -> Run {
        let ca = self.ca_file.to_str().unwrap();
        let mut all = vec!["--server", &self.url, "--ca-file", ca];
        all.extend_from_slice(args);
        self.tether(profile, &all, stdin)
    }

    /// A registered and logged-in profile.
    fn logged_in(&self, name: &str, email: &str) -> PathBuf {
        let p = self.profile(name);
        let stdin = format!("{PASSWORD}\n");
        self.tether_first(
            &p,
            &["register", "--email", email, "--password-stdin"],
            &stdin,
        )
        .ok();
        self.tether(&p, &["login", "--email", email, "--password-stdin"], &stdin)
            .ok();
        p
    }
}

/// One finished `tether` run.
#[derive(Debug)]
struct Run {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "tether {} failed: {self:#?}", self.args);
        self
    }

    #[track_caller]
    fn fails(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "tether {}: expected exit {code}: {self:#?}",
            self.args
        );
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("tether {}: stdout is not JSON ({e}): {self:#?}", self.args))
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The TOTP code of `secret` at `at` (RFC 6238: SHA-1, 6 digits, 30 s).
fn totp_code(secret_base32: &str, at: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).unwrap();
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(secret)
        .build()
        .unwrap()
        .generate(at)
        .to_string()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn register_login_totp_and_logout() {
    let server = Server::start();
    let p = server.profile("alice");
    let email = "alice@example.com";
    let pw = format!("{PASSWORD}\n");

    // Register: the account carries the public half of the key kept in the profile.
    let reg = server
        .tether_first(
            &p,
            &["--json", "register", "--email", email, "--password-stdin"],
            &pw,
        )
        .ok()
        .json();
    assert_eq!(reg["user"]["email"], email);
    let key = read_json(&p.join("owner-key.json"));
    assert_eq!(reg["user"]["mobile_pub"], key["public_key"]);
    assert_eq!(reg["owner_key"]["public_key"], key["public_key"]);
    #[cfg(unix)]
    {
        assert_eq!(mode(&p), 0o700);
        assert_eq!(mode(&p.join("owner-key.json")), 0o600);
    }

    // Login; the server URL and CA are remembered, and so is the email.
    let login = server
        .tether(&p, &["login", "--password-stdin", "--json"], &pw)
        .ok()
        .json();
    assert_eq!(login["user"]["email"], email);
    assert!(
        login.get("access_token").is_none() && !login.to_string().contains("refresh"),
        "tokens never go to stdout: {login}"
    );
    #[cfg(unix)]
    assert_eq!(mode(&p.join("session.json")), 0o600);

    let me = server.tether(&p, &["whoami", "--json"], "").ok().json();
    assert_eq!(me["user"]["email"], email);
    assert_eq!(me["user"]["totp_enabled"], false);
    assert_eq!(me["owner_key"]["registered"], true);
    assert_eq!(me["ca_fingerprint"], server.fingerprint());
    let human = server.tether(&p, &["whoami"], "").ok();
    assert!(human.stdout.contains(email), "{human:#?}");

    let devices = server.tether(&p, &["devices", "--json"], "").ok().json();
    assert_eq!(devices, Value::Array(vec![]));
    let human = server.tether(&p, &["devices"], "").ok();
    assert!(human.stdout.contains("No devices yet"), "{human:#?}");

    // TOTP: enroll without a terminal prints the secret; confirm with the current code.
    let enroll = server
        .tether(&p, &["totp", "enroll", "--json"], "")
        .ok()
        .json();
    assert_eq!(enroll["confirmed"], false);
    let secret = enroll["secret_base32"].as_str().unwrap().to_owned();
    assert!(
        enroll["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let t = now_secs();
    let now_code = totp_code(&secret, t);
    // The next step's code is valid too (±1 step) and was not used by the confirmation.
    let next_code = totp_code(&secret, t + 30);
    server
        .tether(&p, &["totp", "confirm", "--code", &now_code], "")
        .ok();
    assert_eq!(
        server.tether(&p, &["whoami", "--json"], "").ok().json()["user"]["totp_enabled"],
        true
    );

    // Login now needs a code; without a terminal to ask on, the CLI says so.
    let refused = server
        .tether(&p, &["login", "--password-stdin"], &pw)
        .fails(1);
    assert!(
        refused.stderr.contains("error 3005 SECOND_FACTOR_REQUIRED"),
        "{refused:#?}"
    );
    assert!(refused.stderr.contains("--totp"), "{refused:#?}");

    server
        .tether(
            &p,
            &["login", "--password-stdin", "--totp", &next_code],
            &pw,
        )
        .ok();
    // A code works once.
    let reused = server
        .tether(
            &p,
            &["login", "--password-stdin", "--totp", &next_code, "--json"],
            &pw,
        )
        .fails(1);
    assert!(
        reused.stderr.contains("error 3006 SECOND_FACTOR_INVALID"),
        "{reused:#?}"
    );
    assert_eq!(reused.json()["error"]["code"], 3006);

    // A wrong password.
    let wrong = server
        .tether(&p, &["login", "--password-stdin"], "not the password\n")
        .fails(1);
    assert!(wrong.stderr.contains("error 3008"), "{wrong:#?}");

    // Logout ends the session here and on the server.
    let session = read_json(&p.join("session.json"));
    server.tether(&p, &["logout"], "").ok();
    assert!(!p.join("session.json").exists());
    let after = server.tether(&p, &["whoami"], "").fails(2);
    assert!(after.stderr.contains("not logged in"), "{after:#?}");
    // The logged-out refresh token no longer works on the server.
    let mut s = session;
    s["access_token"] = "x.y.z".into();
    std::fs::write(p.join("session.json"), s.to_string()).unwrap();
    server.tether(&p, &["whoami"], "").fails(1);
    assert!(
        !p.join("session.json").exists(),
        "a dead session is forgotten"
    );
}

#[test]
fn tokens_refresh_transparently_and_a_revoked_session_asks_to_log_in_again() {
    let server = Server::start();
    let p = server.logged_in("bob", "bob@example.com");
    let path = p.join("session.json");

    // An access token the server does not accept (3003): refreshed once, then retried.
    let before = read_json(&path);
    let mut s = before.clone();
    s["access_token"] = "not.a.jwt".into();
    std::fs::write(&path, s.to_string()).unwrap();
    let me = server.tether(&p, &["whoami", "--json"], "").ok().json();
    assert_eq!(me["user"]["email"], "bob@example.com");
    let after = read_json(&path);
    assert_ne!(after["refresh_token"], before["refresh_token"], "rotated");
    assert_ne!(after["access_token"], "not.a.jwt");
    assert_eq!(after["session_id"], before["session_id"]);

    // A locally expired access token is refreshed before the call.
    let mut s = after.clone();
    s["access_expires_at"] = 0.into();
    std::fs::write(&path, s.to_string()).unwrap();
    server.tether(&p, &["devices"], "").ok();
    let rotated = read_json(&path);
    assert_ne!(rotated["refresh_token"], after["refresh_token"]);

    // Presenting a spent refresh token revokes the session (3007): the CLI says so.
    let mut s = rotated;
    s["access_token"] = "not.a.jwt".into();
    s["refresh_token"] = before["refresh_token"].clone();
    std::fs::write(&path, s.to_string()).unwrap();
    let revoked = server.tether(&p, &["devices"], "").fails(1);
    assert!(
        revoked.stderr.contains("error 3007 REFRESH_TOKEN_REUSED"),
        "{revoked:#?}"
    );
    assert!(revoked.stderr.contains("revoked"), "{revoked:#?}");
    assert!(revoked.stderr.contains("tether login"), "{revoked:#?}");
    assert!(!path.exists());

    // Logging in again works; `logout --all` ends the other machine's session too.
    let pw = format!("{PASSWORD}\n");
    server.tether(&p, &["login", "--password-stdin"], &pw).ok();
    let other = server.profile("bob-laptop");
    server
        .tether_first(
            &other,
            &["login", "--email", "bob@example.com", "--password-stdin"],
            &pw,
        )
        .ok();
    let out = server
        .tether(&p, &["logout", "--all", "--json"], "")
        .ok()
        .json();
    assert_eq!(out["logged_out"], true);
    assert!(out["sessions_revoked"].as_u64().unwrap() >= 1, "{out}");
    let other_path = other.join("session.json");
    let mut s = read_json(&other_path);
    s["access_expires_at"] = 0.into();
    std::fs::write(&other_path, s.to_string()).unwrap();
    let ended = server.tether(&other, &["whoami"], "").fails(1);
    assert!(ended.stderr.contains("3007"), "{ended:#?}");
}

#[test]
fn the_server_ca_is_pinned_by_fingerprint_or_by_asking() {
    let server = Server::start();
    let fp = server.fingerprint();
    let pw = format!("{PASSWORD}\n");
    let register = |p: &Path, extra: &[&str]| {
        let mut args = vec!["--server", server.url.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "register",
            "--email",
            "carol@example.com",
            "--password-stdin",
        ]);
        server.tether(p, &args, &pw)
    };

    // A wrong fingerprint stops the command before anything is sent or saved.
    let wrong = "00:".repeat(31) + "00";
    let p = server.profile("wrong");
    let r = register(&p, &["--yes", "--ca-fingerprint", &wrong]).fails(2);
    assert!(r.stderr.contains("does NOT match"), "{r:#?}");
    assert!(
        r.stderr.contains(&fp),
        "the real fingerprint is shown: {r:#?}"
    );
    assert!(!p.join("ca.pem").exists() && !p.join("config.json").exists());

    // --yes without a fingerprint never trusts a new CA.
    let p = server.profile("blind");
    let r = register(&p, &["--yes"]).fails(2);
    assert!(r.stderr.contains("--ca-fingerprint"), "{r:#?}");
    assert!(!p.join("ca.pem").exists());

    // A matching fingerprint (any case, any separators) is trusted without a prompt.
    let p = server.profile("pinned");
    let spelled = fp.replace(':', "").to_lowercase();
    register(&p, &["--yes", "--ca-fingerprint", &spelled]).ok();
    assert_eq!(
        std::fs::read_to_string(p.join("ca.pem")).unwrap(),
        server.ca_pem
    );
    // Later commands verify against the pinned CA; a fingerprint given now must match it.
    server
        .tether(&p, &["--ca-fingerprint", &fp, "status"], "")
        .ok();
    let r = server
        .tether(&p, &["--ca-fingerprint", &wrong, "status"], "")
        .fails(2);
    assert!(r.stderr.contains("does NOT match"), "{r:#?}");

    // Without flags the user is asked on standard input; only "y" trusts.
    let p = server.profile("asked");
    let r = server
        .tether(&p, &["--server", &server.url, "status"], "n\n")
        .fails(2);
    assert!(
        r.stderr
            .contains(&format!("The server's CA fingerprint is {fp}")),
        "{r:#?}"
    );
    assert!(r.stderr.contains("Trust it? [y/N]"), "{r:#?}");
    assert!(!p.join("ca.pem").exists());
    let r = server
        .tether(&p, &["--server", &server.url, "status", "--json"], "y\n")
        .ok();
    assert_eq!(r.json()["ca_fingerprint"], fp);
    assert!(p.join("ca.pem").exists());
    // Remembered: no question the second time.
    let r = server.tether(&p, &["status"], "").ok();
    assert!(!r.stderr.contains("Trust it?"), "{r:#?}");

    // Nothing listening: exit 3.
    let r = server
        .tether(
            &server.profile("nowhere"),
            &["--server", "https://127.0.0.1:9", "--yes", "status"],
            "",
        )
        .fails(3);
    assert!(r.stderr.contains("cannot reach the server"), "{r:#?}");
}

#[test]
fn admin_commands_and_refusals() {
    let server = Server::start();
    let admin = server.profile("admin");
    server
        .tether_first(
            &admin,
            &["login", "--email", "admin@example.com", "--password-stdin"],
            &format!("{ADMIN_PASSWORD}\n"),
        )
        .ok();
    let s = server
        .tether(&admin, &["admin", "settings", "--json"], "")
        .ok()
        .json();
    assert_eq!(s["require_device_approval"], false);
    let s = server
        .tether(
            &admin,
            &["admin", "settings", "--require-approval", "true", "--json"],
            "",
        )
        .ok()
        .json();
    assert_eq!(s["require_device_approval"], true);
    let human = server.tether(&admin, &["admin", "settings"], "").ok();
    assert!(
        human.stdout.contains("require device approval: true"),
        "{human:#?}"
    );
    server
        .tether(&admin, &["admin", "approve", "dev_nope"], "")
        .fails(1);
    server
        .tether(&admin, &["admin", "approve", "../me"], "")
        .fails(2);

    let student = server.logged_in("dave", "dave@example.com");
    let r = server
        .tether(&student, &["admin", "settings", "--json"], "")
        .fails(1);
    assert!(r.stderr.contains("error 3004 FORBIDDEN"), "{r:#?}");
    assert_eq!(r.json()["error"]["name"], "FORBIDDEN");

    // Pairing with a token nobody issued, and a device that is not yours.
    let r = server
        .tether(
            &student,
            &[
                "pair",
                "https://localhost/pair#token=AAAAAAAAAAAAAAAAAAAAAAAA",
            ],
            "",
        )
        .fails(1);
    assert!(r.stderr.starts_with("error "), "{r:#?}");
    server
        .tether(&student, &["device", "dev_nope"], "")
        .fails(1);

    // The offline error table.
    let e = server
        .tether(&student, &["errors", "3006", "--json"], "")
        .ok()
        .json();
    assert_eq!(e["name"], "SECOND_FACTOR_INVALID");
    server.tether(&student, &["errors", "NOPE"], "").fails(2);
}

#[test]
fn alerts_metrics_and_watch_commands() {
    let server = Server::start();
    let alice = server.logged_in("alice", "alice@example.com");

    let list = server.tether(&alice, &["alerts", "--json"], "").ok().json();
    assert_eq!(list, Value::Array(vec![]));
    let human = server.tether(&alice, &["alerts", "--all"], "").ok();
    assert!(human.stdout.contains("No alerts."), "{human:#?}");
    let r = server
        .tether(&alice, &["alerts", "--ack", "alr_nope"], "")
        .fails(1);
    assert!(r.stderr.contains("error 9003 NOT_FOUND"), "{r:#?}");
    server
        .tether(&alice, &["alerts", "--ack", "../x"], "")
        .fails(2);

    let r = server.tether(&alice, &["metrics", "dev_nope"], "").fails(1);
    assert!(r.stderr.contains("error 9003 NOT_FOUND"), "{r:#?}");
    server
        .tether(&alice, &["metrics", "dev_nope", "--hourly", "--daily"], "")
        .fails(2);

    // Someone else's (or no) device: refused at once, not retried.
    let r = server.tether(&alice, &["watch", "dev_nope"], "").fails(1);
    assert!(r.stderr.contains("error 9003 NOT_FOUND"), "{r:#?}");

    // A good subscription stays open until interrupted.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("--profile-dir")
        .arg(&alice)
        .arg("watch")
        .env_remove("TETHER_SERVER")
        .env_remove("TETHER_PROFILE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = watch.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(first.starts_with("Watching"), "{first}");
    assert!(watch.try_wait().unwrap().is_none(), "still watching");
    watch.kill().unwrap();
    let _ = watch.wait();
}
