//! A new user goes from register through pairing to an mTLS-authenticated, online agent,
//! with the real `tether-server` and `tether-agent` binaries: once on the embedded
//! backends and once on MariaDB + Redis.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_e2e::{Backends, Proc, Server, binary, on_mysql_and_redis, wait_for_json};

async fn walkthrough(backends: Backends) {
    let server = Server::start(&backends);
    let api = server.api();

    // A new user registers and logs in.
    let (s, _): (u16, Value) = api
        .post(
            "/api/register",
            &json!({"email": "ada@lab.example", "password": "correct horse battery"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201);
    let (_, login): (u16, Value) = api
        .post(
            "/api/login",
            &json!({"email": "ada@lab.example", "password": "correct horse battery"}),
        )
        .await
        .unwrap();
    let user = server
        .api()
        .with_bearer(login["access_token"].as_str().unwrap());

    // The agent discovers the server and asks to pair; it shows a QR code and writes the
    // pairing details to its state dir.
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(binary("tether-agent"));
    cmd.arg("run")
        .args(["--server", &server.url])
        .arg("--state-dir")
        .arg(state.path())
        .arg("--ca-file")
        .arg(&server.ca_file)
        .args(["--device-name", "lab-pc-7"]);
    let mut agent = Proc::spawn("tether-agent", cmd);
    let pairing = wait_for_json(
        &state.path().join("pairing.json"),
        Duration::from_secs(60),
        &mut agent,
    );
    assert!(
        pairing["pair_url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    agent.wait_for_line("QR code image:", Duration::from_secs(30));
    let png =
        std::fs::read(state.path().join("pair-qr.png")).expect("the QR code is written as a PNG");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "pair-qr.png is a PNG"
    );

    // The user confirms with the pair URL from the QR code.
    let (s, confirmed): (u16, Value) = user
        .post(
            "/api/pair/confirm",
            &json!({"pair_token": pairing["pair_url"]}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(confirmed["status"], "active");
    let code = confirmed["pairing_code"].as_str().unwrap().to_owned();

    // The agent shows the same number, reconnects with mTLS and is online.
    agent.wait_for_line(&code, Duration::from_secs(60));
    agent.wait_for_line("connected", Duration::from_secs(60));
    let start = Instant::now();
    loop {
        let (_, devices): (u16, Value) = user.get("/api/devices").await.unwrap();
        let d = &devices[0];
        if d["online"] == true {
            assert_eq!(d["status"], "active");
            assert_eq!(d["name"], "lab-pc-7");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "device never online: {devices}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(agent);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_pair_and_connect_on_embedded_backends() {
    walkthrough(Backends::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_pair_and_connect_on_mariadb_and_redis() {
    on_mysql_and_redis(walkthrough).await;
}

/// An agent installed before its server is reachable (a PC imaged off the network, or
/// the MSI run before the server is up) keeps trying to fetch the CA it was told to pin
/// instead of exiting, and goes on to pair as soon as the server answers.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_waits_for_an_unreachable_server_then_pairs() {
    let mut server = Server::start(&Backends::Embedded);
    let fp = tether_client::fingerprint(&tether_client::first_cert_der(&server.ca_pem).unwrap());
    server.kill();

    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(binary("tether-agent"));
    cmd.arg("run")
        .args(["--server", &server.url])
        .arg("--state-dir")
        .arg(state.path())
        .args(["--ca-fingerprint", &fp])
        .args(["--device-name", "off-the-network"]);
    let mut agent = Proc::spawn("tether-agent", cmd);
    agent.wait_for_line("trying again in", Duration::from_secs(30));
    // Still running after a second failed attempt (wait_for_new_line fails if it exits).
    agent.wait_for_new_line("trying again in", 1, Duration::from_secs(30));

    server.restart();
    agent.wait_for_line("matches the fingerprint you gave", Duration::from_secs(60));
    let pairing = wait_for_json(
        &state.path().join("pairing.json"),
        Duration::from_secs(60),
        &mut agent,
    );
    assert!(
        pairing["pair_url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
}
