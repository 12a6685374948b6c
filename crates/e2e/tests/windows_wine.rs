//! The Windows agent and helper, cross-built for x86_64-pc-windows-gnu, under Wine
//! against the real Linux `tether-server`: `tether-agent.exe` pairs through the Linux
//! `tether` CLI and its telemetry arrives; with `tether-helper.exe` (recording executor)
//! on a named pipe, a signed `lock_screen` from `tether cmd` completes and the helper
//! recorded exactly that command.
//!
//! Only with `TETHER_WINE_TESTS=1` (set by `.ci/run`): then a missing Wine, toolchain or
//! executable fails loudly. Without it each test says why it does nothing.
//! Windows paths: Wine maps drive Z: to `/`, so the temp dirs are shared with Linux.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_e2e::cli::Tether;
use tether_e2e::wine::{self, Wine, win_path};
use tether_e2e::{Backends, Proc, Server, register_user, wait_for_json};

const EMAIL: &str = "ada@lab.example";

/// Telemetry every second, so the test does not wait on the default interval.
const SERVER_ENV: &[(&str, &str)] = &[
    ("TETHER_SERVER_TEST_MODE", "true"),
    ("TETHER_SERVER_GATEWAY__TELEMETRY_INTERVAL_S", "1"),
    ("TETHER_SERVER_GATEWAY__HEARTBEAT_INTERVAL_S", "5"),
];

/// The command test does not need telemetry: one sample an hour.
const COMMAND_SERVER_ENV: &[(&str, &str)] = &[
    ("TETHER_SERVER_TEST_MODE", "true"),
    ("TETHER_SERVER_GATEWAY__TELEMETRY_INTERVAL_S", "3600"),
];

/// Under Wine everything is slower, the first start of each executable most.
const WINE_TIMEOUT: Duration = Duration::from_secs(120);

fn skipped(test: &str) -> bool {
    if wine::enabled() {
        return false;
    }
    eprintln!(
        "{test}: not run: set {}=1 to run the Windows executables under Wine (.ci/run does)",
        wine::ENABLE_VAR
    );
    true
}

/// `tether-agent.exe run` under Wine against `server`, its state in `state` (a Linux
/// dir, seen as Z:\… by the agent).
fn run_agent_exe(wine: &Wine, server: &Server, state: &Path, extra: &[String]) -> Proc {
    let mut args: Vec<String> = vec![
        "run".into(),
        "--server".into(),
        server.url.clone(),
        "--state-dir".into(),
        win_path(state),
        "--ca-file".into(),
        win_path(&server.ca_file),
        "--device-name".into(),
        "wine-pc-1".into(),
    ];
    args.extend_from_slice(extra);
    let mut cmd = wine.command(&wine.exe("tether-agent.exe"));
    cmd.args(&args).env("TETHER_LOG", "info");
    Proc::spawn("tether-agent.exe", cmd)
}

/// Pairs the agent through `tether pair` with the URL the agent wrote to pairing.json;
/// waits until it is connected. Returns the device id.
fn pair_with_cli(cli: &Tether, agent: &mut Proc, state: &Path) -> String {
    let pairing = wait_for_json(&state.join("pairing.json"), WINE_TIMEOUT, agent);
    let url = pairing["pair_url"].as_str().expect("a pair_url").to_owned();
    assert!(url.starts_with("https://"), "{pairing}");
    let paired = cli.run(&["pair", &url, "--json"]).ok().json();
    assert_eq!(paired["status"], "active", "{paired}");
    let code = paired["pairing_code"].as_str().unwrap();
    // The Windows agent shows the same number, then connects with its new certificate.
    agent.wait_for_line(code, WINE_TIMEOUT);
    agent.wait_for_line("connected: session", WINE_TIMEOUT);
    paired["device_id"].as_str().unwrap().to_owned()
}

/// Waits until `tether devices` shows the device online.
fn wait_online(cli: &Tether, device: &str) {
    let start = Instant::now();
    loop {
        let devices = cli.run(&["devices", "--json"]).ok().json();
        let d = devices
            .as_array()
            .and_then(|a| a.iter().find(|d| d["id"] == device))
            .cloned()
            .unwrap_or(Value::Null);
        if d["online"] == true {
            assert_eq!(d["status"], "active", "{d}");
            assert_eq!(d["name"], "wine-pc-1", "{d}");
            assert_eq!(d["os"], "windows", "the server sees a Windows agent: {d}");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the Windows agent never shows online: {devices}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for telemetry from `device` on `tether watch --json`, then in the server's
/// store under the same message id.
async fn wait_telemetry(server: &Server, cli: &Tether, device: &str, agent: &mut Proc) -> Value {
    let mut watch = Proc::spawn("tether watch", cli.command(&["watch", device, "--json"]));
    let needle = r#""kind":"telemetry""#;
    let start = Instant::now();
    while watch.count_lines(needle) == 0 {
        if let Some(status) = agent.wait_exit(Duration::from_millis(100)) {
            panic!("tether-agent.exe exited ({status}):\n{}", agent.output());
        }
        assert!(
            start.elapsed() < WINE_TIMEOUT,
            "no telemetry within {WINE_TIMEOUT:?}; tether watch:\n{}\nagent:\n{}",
            watch.output(),
            agent.output()
        );
    }
    let line = watch.wait_for_line(needle, Duration::ZERO);
    drop(watch);
    let event: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("tether watch --json printed {line:?}: {e}"));
    let data = &event["data"];
    let cpu = data["cpu_pct"].as_f64().expect("cpu_pct");
    assert!((0.0..=100.0).contains(&cpu), "{event}");
    assert!(data["mem_total_bytes"].as_u64().unwrap_or(0) > 0, "{event}");
    let message_id = data["message_id"].as_str().expect("a message_id");

    let store = server.store().await;
    let start = Instant::now();
    loop {
        let events = store
            .telemetry_events(device, tether_proto::UnixMillis(0), 1000)
            .await
            .unwrap();
        if events.iter().any(|e| e.event.message_id == message_id) {
            return event;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{message_id} never stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_windows_agent_under_wine_pairs_with_the_cli_and_sends_telemetry() {
    if skipped("the_windows_agent_under_wine_pairs_with_the_cli_and_sends_telemetry") {
        return;
    }
    // Declared first, dropped last: wineserver -k after the agent is gone.
    let wine = Wine::start();
    let server = Server::start_with(&Backends::Embedded, SERVER_ENV);
    register_user(&server, EMAIL).await;
    let cli = Tether::login(&server, EMAIL);
    let state = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let mut agent = run_agent_exe(&wine, &server, state.path(), &[]);
    let device = pair_with_cli(&cli, &mut agent, state.path());
    eprintln!(
        "wine: the agent paired and connected in {:?}",
        started.elapsed()
    );
    wait_online(&cli, &device);
    let t = wait_telemetry(&server, &cli, &device, &mut agent).await;
    eprintln!("wine: telemetry from the Windows agent: {t}");

    // The agent's own view of itself, from the state dir it left (stopped first, so the
    // offline queue's database is not shared).
    agent.kill();
    let (code, out) = wine.run(
        &wine.exe("tether-agent.exe"),
        &[
            "status".into(),
            "--state-dir".into(),
            win_path(state.path()),
        ],
        WINE_TIMEOUT,
    );
    assert_eq!(code, 0, "tether-agent.exe status:\n{out}");
    assert!(out.contains(&device), "status names the device:\n{out}");

    drop(agent);
    drop(server);
    drop(wine);
}

/// The account Windows programs under Wine run as: the Unix user's name.
fn wine_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap_or_else(|e| panic!("running id -un: {e}"));
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!name.is_empty(), "id -un printed no user name");
    name
}

/// A named pipe of this test only (the helper's `--pipe`, the agent's `--helper-pipe`).
fn pipe_name() -> String {
    format!(r"\\.\pipe\tether-helper-e2e-{}", tether_e2e::uuid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_screen_through_the_windows_helper_on_a_named_pipe_under_wine() {
    if skipped("lock_screen_through_the_windows_helper_on_a_named_pipe_under_wine") {
        return;
    }
    let wine = Wine::start();
    let server = Server::start_with(&Backends::Embedded, COMMAND_SERVER_ENV);
    register_user(&server, EMAIL).await;
    let cli = Tether::login(&server, EMAIL);
    let state = tempfile::tempdir().unwrap();
    let helper_dir = tempfile::tempdir().unwrap();
    let helper_state = helper_dir.path().join("state");
    let record = helper_dir.path().join("recorded.jsonl");
    let helper_pub = helper_state.join("helper.pub");
    let pipe = pipe_name();

    let mut agent = run_agent_exe(
        &wine,
        &server,
        state.path(),
        &[
            "--helper-pipe".into(),
            pipe.clone(),
            "--helper-key-file".into(),
            win_path(&helper_pub),
        ],
    );
    let device = pair_with_cli(&cli, &mut agent, state.path());

    // The helper trusts the agent's key and only the agent's executable as its caller.
    let agent_pub = state.path().join("agent.pub");
    assert!(agent_pub.is_file(), "the agent wrote no agent.pub");
    let mut helper = wine.spawn(
        "tether-helper.exe",
        &wine.exe("tether-helper.exe"),
        &[
            "run".into(),
            "--pipe".into(),
            pipe.clone(),
            // Under Wine the agent runs as the Wine user (the Unix user's name), not as
            // the service account NT SERVICE\tether-agent.
            "--agent-account".into(),
            wine_user(),
            "--state-dir".into(),
            win_path(&helper_state),
            "--agent-key-file".into(),
            win_path(&agent_pub),
            "--agent-exe".into(),
            win_path(&wine.exe("tether-agent.exe")),
            "--executor".into(),
            "recording".into(),
            "--record".into(),
            win_path(&record),
        ],
    );
    let start = Instant::now();
    while !helper_pub.is_file() {
        if let Some(status) = helper.wait_exit(Duration::from_millis(100)) {
            panic!("tether-helper.exe exited ({status}):\n{}", helper.output());
        }
        assert!(
            start.elapsed() < WINE_TIMEOUT,
            "tether-helper.exe never wrote helper.pub:\n{}",
            helper.output()
        );
    }

    let done = cli
        .run(&[
            "cmd",
            &device,
            "lock_screen",
            "--wait",
            "--timeout",
            "90",
            "--json",
        ])
        .json();
    assert_eq!(
        done["state"],
        "completed",
        "{done}\nagent:\n{}\nhelper:\n{}",
        agent.output(),
        helper.output()
    );
    assert_eq!(done["result"]["status"], "ok", "{done}");

    // The Windows helper carried it out exactly once, as EXEC_LOCK_SCREEN for this command.
    let runs: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}\nhelper:\n{}", helper.output());
    assert_eq!(runs[0]["opcode"], "EXEC_LOCK_SCREEN");
    assert_eq!(runs[0]["command_message_id"], done["command_id"]);

    agent.kill();
    helper.kill();
    drop(agent);
    drop(helper);
    drop(server);
    drop(wine);
}
