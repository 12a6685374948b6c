//! `tether cmd`, `tether commands` and `tether command` against the real `tether-server`
//! binary, with a device paired by the real `tether-agent` and then taken offline (the
//! agent is killed): the harness is `tether-e2e`'s. Commands to an offline device stay
//! queued, so what is checked here is submission, listing, refusals, `--wait` giving up
//! (exit 4), a command expiring while waited on (exit 7, its result marked viewed), and
//! `--wait` carrying on by polling when the live view drops (the server restarts). With
//! the agent online and a real `tether-helper` (recording executor), `--wait` follows a
//! command through every state to `completed`, and a screenshot's artifact is downloaded,
//! checked and decrypted by `tether artifact get`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_e2e::cli::{Run, Tether};
use tether_e2e::{Backends, Helper, Server, pair_agent, register_user};

/// The command id in `accepted: command <id> (trace <trace>) <state>`.
fn accepted_id(run: &Run) -> String {
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("accepted: command "))
        .unwrap_or_else(|| panic!("no accepted line: {run:#?}"));
    line.split_whitespace().nth(2).unwrap().to_owned()
}

/// A server (short presence TTL, so a killed agent is offline soon), a user with a
/// logged-in `tether` profile, and `lab-pc-7`, paired and then offline.
async fn offline_device() -> (Server, Tether, String) {
    let server = Server::start_with(
        &Backends::Embedded,
        &[
            ("TETHER_SERVER_GATEWAY__HEARTBEAT_INTERVAL_S", "5"),
            ("TETHER_SERVER_GATEWAY__PRESENCE_TTL_S", "10"),
        ],
    );
    let email = "ada@lab.example";
    let user = register_user(&server, email).await;
    let (mut agent, _state) = pair_agent(&server, &user, "lab-pc-7", &[]).await;
    agent.kill();
    let start = Instant::now();
    let device = loop {
        let (_, devices): (u16, Value) = user.get("/api/devices").await.unwrap();
        if devices[0]["online"] == false {
            break devices[0]["id"].as_str().unwrap().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the device stays online: {devices}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let tether = Tether::login(&server, email);
    (server, tether, device)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_to_an_offline_device_queue_list_and_wait() {
    let (server, tether, device) = offline_device().await;

    // By name: accepted and queued, and said to be waiting for the PC.
    let sent = tether.run(&["cmd", "lab-pc-7", "lock_screen"]).code(0);
    assert!(
        sent.stdout.starts_with("accepted: command ") && sent.stdout.contains(") queued"),
        "{sent:#?}"
    );
    assert!(sent.stdout.contains("(trace "), "{sent:#?}");
    assert!(
        sent.stdout.contains("lab-pc-7 (") && sent.stdout.contains("is offline"),
        "{sent:#?}"
    );
    let id = accepted_id(&sent);

    // By id, with parameters, as JSON.
    let json = tether
        .run(&[
            "cmd",
            &device,
            "reboot",
            "-p",
            "delay_s=60",
            "-p",
            "reason=patch day",
            "--priority",
            "high",
            "--ttl",
            "600",
            "--json",
        ])
        .code(0)
        .json();
    assert_eq!(json["status"], "accepted");
    assert_eq!(json["state"], "queued");
    assert_eq!(json["method"], "reboot");
    assert_eq!(json["priority"], "high");
    assert_eq!(json["params"]["delay_s"], 60);
    assert_eq!(json["params"]["reason"], "patch day");
    assert_eq!(json["device_online"], false);
    // The deadline is the TTL, or the owner's signed `not_after` (the CLI's clock plus
    // the TTL, taken just before sending) when that is a little earlier.
    let ttl_ms = json["expires_at"].as_u64().unwrap() - json["created_at"].as_u64().unwrap();
    assert!((590_000..=600_000).contains(&ttl_ms), "{ttl_ms}");
    let reboot_id = json["command_id"].as_str().unwrap().to_owned();

    // Listed newest first.
    let list = tether.run(&["commands", "lab-pc-7"]).code(0);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(lines[0].starts_with("ID "), "{list:#?}");
    assert!(
        lines[1].starts_with(&reboot_id[..8]) && lines[1].contains("reboot"),
        "{list:#?}"
    );
    assert!(
        lines[2].starts_with(&id[..8])
            && lines[2].contains("lock_screen")
            && lines[2].contains("queued"),
        "{list:#?}"
    );
    let listed = tether.run(&["commands", &device, "--json"]).code(0).json();
    assert_eq!(listed[1]["command_id"], id.as_str());
    assert_eq!(listed[1]["state"], "queued");
    assert_eq!(listed[1]["attempts"], 0);

    // One command by its short id, with its timeline.
    let one = tether.run(&["command", &id[..8]]).code(0);
    assert!(one.stdout.contains(&id), "{one:#?}");
    assert!(one.stdout.contains("timeline:"), "{one:#?}");
    assert!(one.stdout.contains("queued  by=ingest"), "{one:#?}");
    let one = tether.run(&["command", &id, "--json"]).code(0).json();
    assert_eq!(one["transitions"][0]["to"], "queued");

    // Unknown devices: an id the server does not know, a name no device has.
    for unknown in ["dev_nope", "no-such-pc"] {
        let r = tether.run(&["cmd", unknown, "lock_screen"]).code(1);
        assert!(r.stderr.contains("error 9003 NOT_FOUND"), "{r:#?}");
    }
    let r = tether
        .run(&["cmd", "dev_nope", "lock_screen", "--json"])
        .code(1);
    assert_eq!(r.json()["error"]["name"], "NOT_FOUND");
    // Parameters the PC would refuse never leave the CLI.
    let r = tether
        .run(&["cmd", "lab-pc-7", "reboot", "-p", "delay_s=99999"])
        .code(2);
    assert!(r.stderr.contains("delay_s"), "{r:#?}");

    // --wait on an offline device: it gives up after --timeout, the command goes on.
    let started = Instant::now();
    let waited = tether
        .run(&["cmd", "lab-pc-7", "lock_screen", "--wait", "--timeout", "2"])
        .code(4);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert!(waited.stdout.contains(") queued"), "{waited:#?}");
    assert!(
        waited.stderr.contains("error TIMEOUT: command ")
            && waited.stderr.contains("is still queued after 2 s"),
        "{waited:#?}"
    );
    assert!(waited.stderr.contains("tether command "), "{waited:#?}");
    let still = tether
        .run(&["command", &accepted_id(&waited), "--json"])
        .code(0)
        .json();
    assert_eq!(still["state"], "queued");

    // A TTL shorter than the wait: the server expires it and the CLI says so (exit 7),
    // after printing the change, and marks it viewed.
    let expired = tether
        .run(&[
            "cmd",
            "lab-pc-7",
            "lock_screen",
            "--ttl",
            "1",
            "--wait",
            "--timeout",
            "30",
        ])
        .code(7);
    assert!(
        expired
            .stdout
            .contains("\n  expired (error 2004 TTL_EXPIRED)"),
        "{expired:#?}"
    );
    assert!(
        expired.stderr.contains("error 2004 TTL_EXPIRED: command "),
        "{expired:#?}"
    );
    let seen = tether
        .run(&["command", &accepted_id(&expired), "--json"])
        .code(0)
        .json();
    assert_eq!(seen["state"], "expired");
    assert!(seen["viewed_at"].as_u64().is_some(), "{seen}");

    // The same as JSON: one document, the error with the command in it.
    let j = tether
        .run(&[
            "cmd",
            "lab-pc-7",
            "lock_screen",
            "--ttl",
            "1",
            "--wait",
            "--json",
        ])
        .code(7)
        .json();
    assert_eq!(j["error"]["outcome"], "expired");
    assert_eq!(j["error"]["name"], "TTL_EXPIRED");
    assert_eq!(j["error"]["command"]["state"], "expired");

    // Artifacts: an unknown one is NOT_FOUND (whether or not the route exists yet).
    let r = tether.run(&["artifact", "get", "art_nope"]).code(1);
    assert!(r.stderr.contains("NOT_FOUND"), "{r:#?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_carries_on_by_polling_when_the_live_view_drops() {
    let (mut server, tether, _device) = offline_device().await;
    let mut child = tether
        .command(&[
            "cmd",
            "lab-pc-7",
            "lock_screen",
            "--ttl",
            "6",
            "--wait",
            "--timeout",
            "60",
        ])
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(first.starts_with("accepted: command "), "{first}");

    // The server goes away under the live view and comes back on the same data.
    server.restart();

    let out = child.wait_with_output().unwrap();
    let stdout = reader.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("following the command by polling"),
        "stderr:\n{stderr}"
    );
    assert!(
        stdout.contains("  expired (error 2004 TTL_EXPIRED)"),
        "stdout:\n{stdout}"
    );
    assert!(
        stderr.contains("error 2004 TTL_EXPIRED"),
        "stderr:\n{stderr}"
    );
}

/// An online PC: the agent, its state dir and its helper.
struct Pc {
    agent: tether_e2e::Proc,
    helper: Helper,
    _state: tempfile::TempDir,
}

/// A server, a user's `tether` profile, and `lab-pc-1` online with a helper.
async fn online_device() -> (Server, Tether, Pc) {
    online_device_on(&Backends::Embedded).await
}

/// [`online_device`] on the given backends.
async fn online_device_on(backends: &Backends) -> (Server, Tether, Pc) {
    let server = Server::start(backends);
    let email = "grace@lab.example";
    let user = register_user(&server, email).await;
    let helper_dir = tempfile::tempdir().unwrap();
    let (socket, key_file) = Helper::paths(helper_dir.path());
    let (agent, state) = pair_agent(
        &server,
        &user,
        "lab-pc-1",
        &[
            "--helper-socket",
            socket.to_str().unwrap(),
            "--helper-key-file",
            key_file.to_str().unwrap(),
        ],
    )
    .await;
    let helper = Helper::start_in(helper_dir, state.path());
    let tether = Tether::login(&server, email);
    let pc = Pc {
        agent,
        helper,
        _state: state,
    };
    (server, tether, pc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_follows_a_command_to_completed() {
    let (server, tether, pc) = online_device().await;
    let done = tether
        .run(&[
            "cmd",
            "lab-pc-1",
            "lock_screen",
            "--wait",
            "--timeout",
            "60",
        ])
        .code(0);
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert!(
        lines[0].starts_with("accepted: command ") && lines[0].ends_with(" queued"),
        "{done:#?}\nagent:\n{}\nhelper:\n{}",
        pc.agent.output(),
        pc.helper.proc.output()
    );
    let states: Vec<&str> = lines
        .iter()
        .take_while(|l| !l.starts_with("result: "))
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        states,
        [
            "sent",
            "ack_received",
            "executing",
            "result_posted",
            "completed"
        ],
        "{done:#?}"
    );
    assert!(done.stdout.contains("  sent (attempt 1)\n"), "{done:#?}");
    assert!(done.stdout.contains("  result_posted (ok, "), "{done:#?}");
    assert!(done.stdout.contains("\nresult: ok"), "{done:#?}");
    let seen = tether
        .run(&["command", &accepted_id(&done), "--json"])
        .code(0)
        .json();
    assert_eq!(seen["state"], "completed");
    assert!(seen["viewed_at"].as_u64().is_some(), "acknowledged: {seen}");

    // --json: the finished command, viewed.
    let j = tether
        .run(&["cmd", "lab-pc-1", "lock_screen", "--wait", "--json"])
        .code(0)
        .json();
    assert_eq!(j["state"], "completed");
    assert_eq!(j["result"]["status"], "ok");
    assert!(j["viewed_at"].as_u64().is_some(), "{j}");
    assert_eq!(j["transitions"].as_array().unwrap().len(), 6, "{j}");
    drop((pc, server));
}

/// Through the server's `GET /api/artifacts/{id}` and the local object store's signed URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screenshot_artifact_is_downloaded_checked_and_decrypted() {
    let (server, tether, pc) = online_device().await;
    let shot = tether
        .run(&["cmd", "lab-pc-1", "screenshot", "--wait", "--timeout", "60"])
        .code(0);
    let artifact_id = shot
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("artifact: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| {
            panic!(
                "no artifact line: {shot:#?}\nagent:\n{}\nhelper:\n{}",
                pc.agent.output(),
                pc.helper.proc.output()
            )
        })
        .to_owned();
    assert!(
        shot.stdout
            .contains(&format!("tether artifact get {artifact_id}")),
        "{shot:#?}"
    );
    // The result names the artifact's key, which stays off the terminal.
    for l in shot.stdout.lines().filter(|l| l.contains("artifact_key")) {
        assert!(l.contains("(hidden; tether artifact get uses it)"), "{l}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shot.png");
    let file_arg = file.to_str().unwrap();
    let got = tether
        .run(&["artifact", "get", &artifact_id, "-o", file_arg, "--json"])
        .code(0)
        .json();
    assert_eq!(got["decrypted"], true, "{got}");
    assert_eq!(got["content_type"], "image/png");
    let png = std::fs::read(&file).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert_eq!(got["bytes_written"], png.len());

    // Not over an existing file without --force; with it, yes.
    std::fs::write(&file, b"mine").unwrap();
    let r = tether
        .run(&["artifact", "get", &artifact_id, "-o", file_arg])
        .code(2);
    assert!(r.stderr.contains("--force"), "{r:#?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    let r = tether
        .run(&["artifact", "get", &artifact_id, "-o", file_arg, "--force"])
        .code(0);
    assert!(r.stdout.contains("sha256 verified, decrypted"), "{r:#?}");
    assert_eq!(std::fs::read(&file).unwrap(), png);

    // To standard output.
    let mut c = tether.command(&["artifact", "get", &artifact_id, "-o", "-"]);
    let out = c.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, png);

    // Only the file remains in the directory: no temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    drop((pc, server));
}

/// The scale-out backends from the CLI: MariaDB, Redis Streams and a real S3 server
/// (s3s-fs) — `lock_screen` followed to `completed`, and a screenshot's artifact, stored in
/// the bucket, downloaded through its presigned S3 URL, checked and decrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_screen_and_a_screenshot_on_mariadb_redis_and_s3() {
    tether_e2e::on_mysql_and_redis(|backends| async move {
        let (server, tether, pc) = online_device_on(&backends).await;
        let done = tether
            .run(&["cmd", "lab-pc-1", "lock_screen", "--wait", "--json"])
            .code(0)
            .json();
        assert_eq!(done["state"], "completed", "{done}");
        let steps: Vec<&str> = done["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["to"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            [
                "queued",
                "sent",
                "ack_received",
                "executing",
                "result_posted",
                "completed"
            ],
            "{done}"
        );
        let shot = tether
            .run(&["cmd", "lab-pc-1", "screenshot", "--wait", "--json"])
            .code(0)
            .json();
        let artifact_id = shot["result"]["artifact"]["artifact_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no artifact: {shot}\nagent:\n{}", pc.agent.output()))
            .to_owned();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shot.png");
        let got = tether
            .run(&[
                "artifact",
                "get",
                &artifact_id,
                "-o",
                file.to_str().unwrap(),
                "--json",
            ])
            .code(0)
            .json();
        assert_eq!(got["decrypted"], true, "{got}");
        let png = std::fs::read(&file).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        let runs = pc.helper.executions();
        assert_eq!(runs.len(), 2, "{runs:?}");
        drop((pc, server));
    })
    .await;
}
