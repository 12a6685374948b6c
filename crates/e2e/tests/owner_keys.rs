//! Owner key changes and signed approvals with the real binaries: `tether-server` (test
//! mode), `tether-agent` with `tether-helper` (recording executor) and the `tether` CLI,
//! on the embedded backends (docs/protocol.md sections 4.8 and 6.12).
//!
//! 1. **Keys end to end.** The owner adds a second key with `tether keys add` (signed by
//!    the key her PCs pinned at pairing): the online PC pins it at once (the live push),
//!    the PC that was offline pins it when it connects again, and a command signed by the
//!    new key runs on both. After `tether keys remove`, a command signed by the removed
//!    key is refused by the PC (`2011`), ends `denied` and is never executed.
//! 2. **Approvals.** With a policy rule wanting two approvers for `lock_screen`, the
//!    owner pins two colleagues' keys as **approver** keys (`tether keys add … --role
//!    approver`); her signed command waits until both run `tether approve`, which signs
//!    the command statement with their own keys, and then runs on the real agent. A
//!    delivery the server forges (through the raw-frame hook, with the server's real
//!    gateway key) whose approvals include one by a key the PC does not pin is refused
//!    (`2011`) and never executed; one that leaves `approvals_required` out is denied by
//!    the PC's cached policy bundle (`4002`) and never executed; a command signed by an
//!    approver key is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use tether_e2e::cli::Tether;
use tether_e2e::{
    Backends, Helper, Proc, Server, gateway_signer, owner_key, pair_agent, random16, register_user,
    run_agent, sign_command, signed_command, uuid,
};
use tether_proto::envelope::Stamp;
use tether_proto::messages::command::{CommandDelivery, Method};
use tether_proto::owner_sig::{command_statement, sign_ed25519};
use tether_proto::validate::b64url_encode;
use tether_proto::{Clock, KeyId, MessageId, SystemClock, TraceId};
use tether_store::{Role, Store};

const OWNER: &str = "ada@lab.example";
const WITHIN: Duration = Duration::from_secs(30);
const TERMINAL: &[&str] = &["completed", "failed", "dlq", "expired", "denied"];

fn kid(key: &SigningKey) -> String {
    KeyId::for_ed25519(key.verifying_key().as_bytes()).to_string()
}

fn public_b64(key: &SigningKey) -> String {
    b64url_encode(key.verifying_key().as_bytes())
}

/// One paired PC with its recording helper.
struct Pc {
    name: String,
    device: String,
    agent: Proc,
    state: tempfile::TempDir,
    helper: Helper,
}

impl Pc {
    async fn pair(server: &Server, owner: &tether_client::Api, name: &str) -> Pc {
        let helper_dir = tempfile::tempdir().unwrap();
        let (socket, key_file) = Helper::paths(helper_dir.path());
        let (agent, state) = pair_agent(
            server,
            owner,
            name,
            &[
                "--helper-socket",
                socket.to_str().unwrap(),
                "--helper-key-file",
                key_file.to_str().unwrap(),
            ],
        )
        .await;
        let helper = Helper::start_in(helper_dir, state.path());
        let (_, devices): (u16, Value) = owner.get("/api/devices").await.unwrap();
        let device = devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        Pc {
            name: name.to_owned(),
            device,
            agent,
            state,
            helper,
        }
    }

    /// Starts the agent again on its state (after `agent.kill()`).
    fn restart(&mut self, server: &Server) {
        self.agent = run_agent(
            server,
            self.state.path(),
            &self.name,
            &[
                "--helper-socket",
                self.helper.socket.to_str().unwrap(),
                "--helper-key-file",
                self.helper.key_file.to_str().unwrap(),
            ],
        );
    }

    fn executed(&self) -> Vec<String> {
        self.helper
            .executions()
            .iter()
            .filter(|e| e["opcode"] != "SET_POLICY")
            .map(|e| e["command_message_id"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    /// Waits for the agent's `n`th "owner keys changed" line.
    fn wait_keys_changed(&self, n: usize) -> String {
        let start = Instant::now();
        loop {
            if self.agent.count_lines("owner keys changed") >= n {
                return self.agent.output();
            }
            assert!(
                start.elapsed() < WITHIN,
                "{}: owner keys not changed {n} time(s):\n{}",
                self.name,
                self.agent.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until a command ends; returns its view.
async fn ended(api: &tether_client::Api, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (_, c): (u16, Value) = api.get(&format!("/api/command/{id}")).await.unwrap();
        if TERMINAL.iter().any(|t| c["state"] == *t) {
            return c;
        }
        assert!(start.elapsed() < WITHIN, "command {id} did not end: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits `body` signed by `key` as the owner and waits until it ends.
async fn run_signed(api: &tether_client::Api, key: &SigningKey, mut body: Value) -> Value {
    sign_command(key, &mut body);
    let (s, v): (u16, Value) = api.post("/api/command", &body).await.unwrap();
    assert_eq!(s, 202, "{v}");
    ended(api, body["message_id"].as_str().unwrap()).await
}

fn lock(device: &str) -> Value {
    json!({"device_id": device, "method": "lock_screen", "message_id": uuid(), "ttl_seconds": 120})
}

async fn wait_offline(api: &tether_client::Api, device: &str) {
    let start = Instant::now();
    loop {
        let (_, d): (u16, Value) = api.get(&format!("/api/devices/{device}")).await.unwrap();
        if d["online"] == false {
            return;
        }
        assert!(start.elapsed() < WITHIN, "{device} stays online: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn make_admin(store: &dyn Store, api: &tether_client::Api) {
    let (_, me): (u16, Value) = api.get("/api/me").await.unwrap();
    store
        .set_user_role(me["id"].as_str().unwrap(), Role::Admin)
        .await
        .unwrap();
}

fn server() -> Server {
    Server::start_with(
        &Backends::Embedded,
        &[
            ("TETHER_SERVER_TEST_MODE", "true"),
            ("TETHER_SERVER_GATEWAY__HEARTBEAT_INTERVAL_S", "5"),
            ("TETHER_SERVER_GATEWAY__PRESENCE_TTL_S", "10"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_with_tether_keys_is_pinned_online_and_at_connect_and_removed_again() {
    let server = server();
    let ada = register_user(&server, OWNER).await;
    let pc1 = Pc::pair(&server, &ada, "lab-pc-1").await;
    let mut pc2 = Pc::pair(&server, &ada, "lab-pc-2").await;
    let cli = Tether::login(&server, OWNER);
    // The key of Ada's new laptop (made by code for the test), as a public key file.
    let laptop = owner_key("ada-laptop@lab.example");
    let dir = tempfile::tempdir().unwrap();
    let pub_file = dir.path().join("laptop.pub");
    std::fs::write(&pub_file, format!("{}\n", public_b64(&laptop))).unwrap();

    // PC 2 is offline while the key is added.
    pc2.agent.kill();
    wait_offline(&ada, &pc2.device).await;
    let added = cli.run(&["keys", "add", pub_file.to_str().unwrap()]).ok();
    assert!(
        added
            .stdout
            .contains(&format!("Added owner key {}", kid(&laptop)))
            && added.stdout.contains("Sent now to 1 PC(s) online"),
        "{added:#?}"
    );
    let out = pc1.wait_keys_changed(1);
    assert!(out.contains(&kid(&laptop)), "{out}");
    let listed = cli.run(&["keys", "list", "--json"]).ok();
    let v: Value = serde_json::from_str(&listed.stdout).unwrap();
    let kids: Vec<_> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, [kid(&owner_key(OWNER)), kid(&laptop)]);

    // PC 2 pins it when it connects again.
    pc2.restart(&server);
    pc2.agent
        .wait_for_line("connected: session", Duration::from_secs(60));
    pc2.wait_keys_changed(1);

    // A command signed by the new key runs on both.
    for pc in [&pc1, &pc2] {
        let c = run_signed(&ada, &laptop, lock(&pc.device)).await;
        assert_eq!(c["state"], "completed", "{}: {c}", pc.name);
        assert!(
            pc.executed()
                .contains(&c["command_id"].as_str().unwrap().to_owned())
        );
    }

    // Removed again (signed by the pairing key): the PCs refuse what the laptop signs.
    let removed = cli.run(&["keys", "remove", &kid(&laptop)]).ok();
    assert!(
        removed
            .stdout
            .contains(&format!("Removed key {}", kid(&laptop))),
        "{removed:#?}"
    );
    pc1.wait_keys_changed(2);
    pc2.wait_keys_changed(2);
    for pc in [&pc1, &pc2] {
        let c = run_signed(&ada, &laptop, lock(&pc.device)).await;
        assert_eq!(c["state"], "denied", "{}: {c}", pc.name);
        assert_eq!(c["error"], 2011, "{}: {c}", pc.name);
        assert!(
            !pc.executed()
                .contains(&c["command_id"].as_str().unwrap().to_owned())
        );
        // The pairing key still works.
        let ok = run_signed(&ada, &owner_key(OWNER), lock(&pc.device)).await;
        assert_eq!(ok["state"], "completed", "{}: {ok}", pc.name);
    }
    // The last owner key cannot be removed.
    let last = cli.run(&["keys", "remove", &kid(&owner_key(OWNER))]);
    assert_eq!(last.code, 1, "{last:#?}");
    assert!(last.stderr.contains("no owner key"), "{last:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pinned_approvers_signatures_make_a_command_run_and_forged_ones_do_not() {
    let server = server();
    let store = server.store().await;
    let ada = register_user(&server, OWNER).await;
    let (b1, b2) = ("root1@lab.example", "root2@lab.example");
    let root1 = register_user(&server, b1).await;
    let root2 = register_user(&server, b2).await;
    make_admin(&*store, &root1).await;
    make_admin(&*store, &root2).await;
    let (_, saved): (u16, Value) = root1
        .put(
            "/api/policy",
            &json!({"format": 1, "rules": [{"id": "locks-need-two", "effect": "sensitive",
                "match": {"methods": ["lock_screen"]}, "approvals": 2}]}),
        )
        .await
        .unwrap();
    assert_eq!(saved["policy_version"], 1, "{saved}");
    let pc = Pc::pair(&server, &ada, "lab-pc-7").await;
    let ada_cli = Tether::login(&server, OWNER);
    let root1_cli = Tether::login(&server, b1);
    let root2_cli = Tether::login(&server, b2);

    // Ada pins her colleagues' keys on her PC, as approvers only.
    for who in [b1, b2] {
        ada_cli
            .run(&[
                "keys",
                "add",
                &public_b64(&owner_key(who)),
                "--role",
                "approver",
            ])
            .ok();
    }
    pc.wait_keys_changed(2);

    // Her signed command waits for two approvals, then runs.
    let body = signed_command(
        OWNER,
        json!({"device_id": pc.device, "method": "lock_screen", "message_id": uuid(),
               "ttl_seconds": 300}),
    );
    let id = body["message_id"].as_str().unwrap().to_owned();
    let (s, v): (u16, Value) = ada.post("/api/command", &body).await.unwrap();
    assert_eq!(s, 202);
    assert_eq!(v["state"], "awaiting_approval", "{v}");
    let first = root1_cli.run(&["approve", &id]).ok();
    assert!(first.stdout.contains("1/2 approvals"), "{first:#?}");
    root2_cli.run(&["approve", &id[..8]]).ok();
    let c = ended(&ada, &id).await;
    assert_eq!(c["state"], "completed", "{c}\n{}", pc.agent.output());
    assert!(pc.executed().contains(&id));

    // The server forges: approvals by a pinned approver and a key the PC does not pin.
    let signer = gateway_signer(&server);
    let forged_id = uuid();
    let not_after = SystemClock.now().saturating_add(Duration::from_secs(120));
    let st = command_statement(
        &MessageId::parse(&forged_id).unwrap(),
        &pc.device,
        Method::LockScreen,
        &json!({}),
        not_after,
    )
    .unwrap();
    let mut d: CommandDelivery = serde_json::from_value(json!({
        "command_id": forged_id, "device_id": pc.device, "method": "lock_screen",
        "params": {}, "priority": "normal", "sensitivity": "sensitive",
        "origin_user_id": "usr_ada", "policy_version": 1, "expires_at": not_after.0,
        "attempt": 1, "not_after": not_after.0, "approvals_required": 2,
    }))
    .unwrap();
    d.user_sig = Some(sign_ed25519(&owner_key(OWNER), &st));
    d.approvals = vec![
        sign_ed25519(&owner_key(b1), &st),
        sign_ed25519(&owner_key("mallory@lab.example"), &st),
    ];
    let stamp = Stamp {
        iat: SystemClock.now(),
        ttl: 60,
        seq: 1_000_000,
        message_id: MessageId::from_random_bytes(random16()),
        trace_id: TraceId::from_random_bytes(random16()),
    };
    let frame = String::from_utf8(signer.seal(stamp, &d).unwrap()).unwrap();
    let (s, v): (u16, Value) = root1
        .post(
            "/api/test/agent_frame",
            &json!({"device_id": pc.device, "frame": frame}),
        )
        .await
        .unwrap();
    assert_eq!(s, 202, "{v}");
    let start = Instant::now();
    while !store.audit_after(0, 10_000).await.unwrap().iter().any(|e| {
        e.event.action == "command.owner_signature_invalid"
            && e.event.detail["command_id"] == forged_id.as_str()
    }) {
        assert!(
            !pc.executed().contains(&forged_id),
            "the PC EXECUTED the forged command"
        );
        assert!(
            start.elapsed() < WITHIN,
            "the forged approvals were not refused:\n{}",
            pc.agent.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!pc.executed().contains(&forged_id));
    assert!(
        pc.agent.output().contains("1 of the 2 approvals required"),
        "{}",
        pc.agent.output()
    );

    // The server forges again, leaving `approvals_required` out: the PC's cached policy
    // (version 1, signed by the server when it was honest) still wants two approvals.
    let bare_id = uuid();
    let st = command_statement(
        &MessageId::parse(&bare_id).unwrap(),
        &pc.device,
        Method::LockScreen,
        &json!({}),
        not_after,
    )
    .unwrap();
    let mut bare = d.clone();
    bare.command_id = MessageId::parse(&bare_id).unwrap();
    bare.user_sig = Some(sign_ed25519(&owner_key(OWNER), &st));
    bare.approvals_required = None;
    bare.approvals = Vec::new();
    let stamp = Stamp {
        iat: SystemClock.now(),
        ttl: 60,
        seq: 2_000_000,
        message_id: MessageId::from_random_bytes(random16()),
        trace_id: TraceId::from_random_bytes(random16()),
    };
    let frame = String::from_utf8(signer.seal(stamp, &bare).unwrap()).unwrap();
    let (s, v): (u16, Value) = root1
        .post(
            "/api/test/agent_frame",
            &json!({"device_id": pc.device, "frame": frame}),
        )
        .await
        .unwrap();
    assert_eq!(s, 202, "{v}");
    let line = format!("command {bare_id}: denied by the local policy");
    let start = Instant::now();
    while !pc.agent.output().contains(&line) {
        assert!(
            start.elapsed() < WITHIN,
            "no local denial:\n{}",
            pc.agent.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pc.agent.output().contains("4002"), "{}", pc.agent.output());
    assert!(!pc.executed().contains(&bare_id));

    // An approver key does not sign commands: refused early by the server.
    let mut by_approver = json!({"device_id": pc.device, "method": "lock_screen",
        "message_id": uuid(), "ttl_seconds": 300});
    sign_command(&owner_key(b1), &mut by_approver);
    let e = ada
        .post::<_, Value>("/api/command", &by_approver)
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(tether_proto::ErrorCode::OwnerSignatureInvalid)
    );
}
