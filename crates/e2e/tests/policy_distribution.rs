//! Policy distribution and local enforcement (flow 7), with the real binaries:
//! `tether-server` (test mode), `tether-agent` and `tether-helper` (recording executor),
//! on the embedded backends.
//!
//! - An admin's `PUT /api/policy` reaches a connected agent as a signed `policy_update`
//!   (the agent says so, `tether-agent status` shows it, and the helper holds its hash),
//!   and an agent that connects later gets it at connect.
//! - **Offline enforcement**: with a policy that denies reboots in force, a reboot
//!   delivered straight to the agent (signed with the server's real gateway key and by
//!   the owner: a server that skipped its own check) is queued behind a slow command; the
//!   server is stopped before the agent gets to it, and the agent denies it against its
//!   cached bundle, naming the rule; the helper never runs it.
//! - **Forged `policy_update`s are refused**: a bad signature (2001), a hash that does not
//!   match the bundle (1005), an older version (4006) and an invalid bundle (4005), each
//!   reported by the agent and audited as `agent.frame_refused` with its code, while the
//!   previous bundle stays in force (a reboot is still denied locally).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use tether_e2e::{
    Backends, Helper, Proc, Server, binary, gateway_signer, owner_key, pair_agent, random16,
    register_user, signed_command, uuid,
};
use tether_proto::envelope::{EnvelopeSigner, Stamp};
use tether_proto::messages::command::Method;
use tether_proto::messages::notify::PolicyUpdate;
use tether_proto::owner_sig::{command_statement, sign_ed25519};
use tether_proto::{Clock, ErrorCode, MessageId, MessageType, SystemClock, TraceId, UnixMillis};
use tether_store::{AuditEvent, Role, Store};

const OWNER: &str = "ada@lab.example";
const ADMIN: &str = "root@lab.example";
const WITHIN: Duration = Duration::from_secs(20);
/// Above every number the gateway gives its own frames in these tests.
const SEQ_BASE: u64 = 1_000_000;

fn now() -> u64 {
    SystemClock.now().0
}

fn stamp(seq: u64) -> Stamp {
    Stamp {
        iat: UnixMillis(now()),
        ttl: 60,
        seq,
        message_id: MessageId::from_random_bytes(random16()),
        trace_id: TraceId::from_random_bytes(random16()),
    }
}

fn message_id_of(frame: &str) -> String {
    let v: Value = serde_json::from_str(frame).unwrap();
    v["header"]["message_id"].as_str().unwrap().to_owned()
}

/// Reboots are denied; everything else is allowed.
fn no_reboots() -> Value {
    json!({"format": 1, "rules": [
        {"id": "no-reboots", "description": "This lab PC is never rebooted remotely",
         "effect": "deny", "match": {"methods": ["reboot"]}}]})
}

/// The agent's helper, the server in test mode, an owner and an admin.
struct Rig {
    server: Server,
    owner: tether_client::Api,
    admin: tether_client::Api,
    device: String,
    agent: Proc,
    state: tempfile::TempDir,
    helper: Helper,
    signer: EnvelopeSigner,
    store: Arc<dyn Store>,
    next_seq: u64,
}

impl Rig {
    async fn start(name: &str) -> Rig {
        let server =
            Server::start_with(&Backends::Embedded, &[("TETHER_SERVER_TEST_MODE", "true")]);
        let owner = register_user(&server, OWNER).await;
        let admin = register_user(&server, ADMIN).await;
        let store = server.store().await;
        let (s, me): (u16, Value) = admin.get("/api/me").await.unwrap();
        assert_eq!(s, 200, "{me}");
        store
            .set_user_role(me["id"].as_str().unwrap(), Role::Admin)
            .await
            .unwrap();
        let (agent, state, helper) = start_agent(&server, &owner, name).await;
        let (_, devices): (u16, Value) = owner.get("/api/devices").await.unwrap();
        let device = devices[0]["id"].as_str().unwrap().to_owned();
        let signer = gateway_signer(&server);
        Rig {
            server,
            owner,
            admin,
            device,
            agent,
            state,
            helper,
            signer,
            store,
            next_seq: SEQ_BASE,
        }
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1000;
        self.next_seq
    }

    /// Saves a policy as the admin; returns its version.
    async fn save_policy(&self, bundle: &Value) -> u64 {
        let (s, v): (u16, Value) = self.admin.put("/api/policy", bundle).await.unwrap();
        assert_eq!(s, 200, "PUT /api/policy: {v}");
        v["policy_version"].as_u64().unwrap()
    }

    /// Has the gateway session write `frame` to the agent as it is.
    async fn push(&self, frame: &str) {
        let (s, v): (u16, Value) = self
            .admin
            .post(
                "/api/test/agent_frame",
                &json!({"device_id": self.device, "frame": frame}),
            )
            .await
            .unwrap();
        assert_eq!(s, 202, "{v}");
    }

    /// A `command_delivery` for this device, signed by the owner and (with `seq`) by the
    /// real gateway key: what a server that skipped its policy check would send.
    fn delivery(
        &mut self,
        id: &str,
        method: &str,
        params: Value,
        simulate: Option<&str>,
    ) -> String {
        let not_after = UnixMillis(now() + 120_000);
        let m: Method = serde_json::from_value(json!(method)).unwrap();
        let statement = command_statement(
            &MessageId::parse(id).unwrap(),
            &self.device,
            m,
            &params,
            not_after,
        )
        .unwrap();
        let mut body = json!({
            "command_id": id, "device_id": self.device, "method": method, "params": params,
            "priority": "normal", "sensitivity": "normal",
            "origin_user_id": "usr_skipped_check", "policy_version": 0,
            "expires_at": not_after.0, "attempt": 1, "not_after": not_after.0,
            "user_sig": sign_ed25519(&owner_key(OWNER), &statement),
        });
        if let Some(s) = simulate {
            body["simulate"] = json!(s);
        }
        let seq = self.seq();
        String::from_utf8(
            self.signer
                .seal_value(MessageType::CommandDelivery, stamp(seq), body)
                .unwrap(),
        )
        .unwrap()
    }

    /// A `policy_update` frame signed by `forger` (default: the real gateway key), with
    /// anything in the body: it is not checked here.
    fn policy_frame(&mut self, forger: Option<&EnvelopeSigner>, body: Value) -> String {
        let seq = self.seq();
        String::from_utf8(
            forger
                .unwrap_or(&self.signer)
                .seal_value(MessageType::PolicyUpdate, stamp(seq), body)
                .unwrap(),
        )
        .unwrap()
    }

    fn executed(&self) -> Vec<String> {
        self.helper
            .executions()
            .iter()
            .map(|e| e["command_message_id"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    async fn audit(&self) -> Vec<AuditEvent> {
        self.store.audit_after(0, 10_000).await.unwrap()
    }

    /// Pushes a forged `policy_update` and waits until the server audits the agent's
    /// refusal of it with `code`.
    async fn expect_refused(&self, case: &str, frame: &str, code: ErrorCode) {
        let message_id = message_id_of(frame);
        self.push(frame).await;
        let start = Instant::now();
        let e = loop {
            if let Some(e) = self.audit().await.into_iter().find(|e| {
                e.event.action == "agent.frame_refused"
                    && e.event.detail["ref_message_id"] == message_id.as_str()
            }) {
                break e;
            }
            assert!(
                start.elapsed() < WITHIN,
                "{case}: no agent.frame_refused for {message_id}\nagent:\n{}",
                self.agent.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            e.event.detail["code"],
            code.number(),
            "{case}: refused with the wrong code: {:?}",
            e.event
        );
        assert_eq!(e.event.actor, self.device, "{case}");
        assert_eq!(e.event.outcome, "denied", "{case}");
    }

    /// The policy version `tether-agent status` reports.
    fn status_policy(&self) -> String {
        let out = Command::new(binary("tether-agent"))
            .arg("status")
            .arg("--state-dir")
            .arg(self.state.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .find(|l| l.starts_with("policy:"))
            .unwrap_or_else(|| panic!("no policy line in status:\n{text}"))
            .to_owned()
    }

    /// Waits until the helper's state holds `version` as the agent's policy.
    fn wait_helper_policy(&self, version: u64) -> Value {
        let path = self.helper.dir.path().join("state").join("policy.json");
        let start = Instant::now();
        loop {
            if let Ok(v) = std::fs::read(&path)
                .map_err(|_| ())
                .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|_| ()))
                && v["policy_version"] == version
            {
                return v;
            }
            assert!(
                start.elapsed() < WITHIN,
                "the helper never held policy version {version}\nagent:\n{}\nhelper:\n{}",
                self.agent.output(),
                self.helper.proc.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Pairs an agent (with a helper of its own) to the server for `owner`.
async fn start_agent(
    server: &Server,
    owner: &tether_client::Api,
    name: &str,
) -> (Proc, tempfile::TempDir, Helper) {
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
    (agent, state, helper)
}

/// (a) A saved policy reaches the connected agent at once and a later agent at connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_policy_reaches_connected_agents_and_agents_that_connect_later() {
    let mut rig = Rig::start("lab-pc-policy-a").await;
    assert_eq!(rig.status_policy(), "policy:       version 0 (built-in)");

    let v1 = rig.save_policy(&no_reboots()).await;
    assert_eq!(v1, 1);
    let line = rig
        .agent
        .wait_for_line("policy: version 1 in force", WITHIN);
    let (_, view): (u16, Value) = rig.admin.get("/api/policy").await.unwrap();
    let hash = view["policy_hash"].as_str().unwrap().to_owned();
    assert!(line.contains(&hash), "{line} names the hash {hash}");
    assert_eq!(
        rig.status_policy(),
        format!("policy:       version 1 (hash {hash})")
    );
    // The agent told its helper, which now refuses any other hash.
    assert_eq!(rig.wait_helper_policy(1)["policy_hash"], hash.as_str());

    // An agent paired after the save gets the policy right after `connected`.
    let (mut later, _later_state, later_helper) =
        start_agent(&rig.server, &rig.owner, "lab-pc-policy-b").await;
    later.wait_for_line("policy: version 1 in force", WITHIN);

    // A second save reaches both.
    let v2 = rig
        .save_policy(&json!({"format": 1, "default": "allow", "rules": []}))
        .await;
    assert_eq!(v2, 2);
    rig.agent
        .wait_for_line("policy: version 2 in force", WITHIN);
    later.wait_for_line("policy: version 2 in force", WITHIN);
    drop(later_helper);

    // Restarted, the agent keeps version 2 (re-verified from disk) and is sent nothing
    // again: its auth says it holds version 2.
    rig.agent.kill();
    assert!(rig.status_policy().starts_with("policy:       version 2 "));
    let mut again = tether_e2e::run_agent(
        &rig.server,
        rig.state.path(),
        "lab-pc-policy-a",
        &[
            "--helper-socket",
            rig.helper.socket.to_str().unwrap(),
            "--helper-key-file",
            rig.helper.key_file.to_str().unwrap(),
        ],
    );
    again.wait_for_line("connected: session", WITHIN);
    let (id, done) = genuine_lock(&rig).await;
    assert_eq!(
        done["state"],
        "completed",
        "{done}\nagent:\n{}",
        again.output()
    );
    assert!(rig.executed().contains(&id));
    assert_eq!(
        again.count_lines("policy: version"),
        0,
        "no policy_update was sent again\n{}",
        again.output()
    );
}

/// A `lock_screen` through the API, signed by the owner; waits until it ends.
async fn genuine_lock(rig: &Rig) -> (String, Value) {
    let id = uuid();
    let body = signed_command(
        OWNER,
        json!({"device_id": rig.device, "method": "lock_screen", "message_id": id,
               "ttl_seconds": 120}),
    );
    let (s, accepted): (u16, Value) = rig.owner.post("/api/command", &body).await.unwrap();
    assert_eq!(s, 202, "{accepted}");
    let start = Instant::now();
    loop {
        let (_, c): (u16, Value) = rig.owner.get(&format!("/api/command/{id}")).await.unwrap();
        if ["completed", "failed", "dlq", "expired", "denied"]
            .iter()
            .any(|t| c["state"] == *t)
        {
            return (id, c);
        }
        assert!(start.elapsed() < WITHIN, "the command did not end: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (b) Offline enforcement: a command already delivered is checked against the cached
/// bundle while the server is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_command_is_denied_by_the_cached_policy_while_the_server_is_stopped() {
    let mut rig = Rig::start("lab-pc-policy-offline").await;
    rig.save_policy(&no_reboots()).await;
    rig.agent
        .wait_for_line("policy: version 1 in force", WITHIN);
    rig.wait_helper_policy(1);

    // The central engine denies it too, naming the rule.
    let refused = rig
        .owner
        .post::<_, Value>(
            "/api/command",
            &signed_command(
                OWNER,
                json!({"device_id": rig.device, "method": "reboot", "message_id": uuid()}),
            ),
        )
        .await
        .unwrap_err();
    match refused {
        tether_client::ClientError::Api { status, body } => {
            assert_eq!(status, 403, "{body:?}");
            assert_eq!(body.code, ErrorCode::PolicyDenied, "{body:?}");
            assert_eq!(body.rule.as_deref(), Some("no-reboots"), "{body:?}");
        }
        other => panic!("expected a policy refusal, got {other}"),
    }

    // A server that skipped its check: a slow command, then a reboot behind it.
    let slow = uuid();
    let reboot = uuid();
    let slow_frame = rig.delivery(&slow, "lock_screen", json!({}), Some("slow"));
    let reboot_frame = rig.delivery(&reboot, "reboot", json!({"delay_s": 0}), None);
    rig.push(&slow_frame).await;
    rig.push(&reboot_frame).await;
    rig.agent
        .wait_for_line(&format!("command {reboot}: reboot received"), WITHIN);
    // The slow one is still running (3 s): stop the server now.
    rig.server.kill();
    let denied = rig.agent.wait_for_line(
        &format!("command {reboot}: denied by the local policy (version 1): 4001 POLICY_DENIED"),
        WITHIN,
    );
    assert!(denied.contains("no-reboots"), "the rule is named: {denied}");
    let out = rig.agent.output();
    let disconnected = out.find("disconnected").expect("the agent lost the server");
    let at = out.find(&denied).unwrap();
    assert!(
        disconnected < at,
        "the reboot was decided after the server had stopped\n{out}"
    );
    // The slow command ran; the reboot never reached the helper.
    let start = Instant::now();
    while !rig.executed().contains(&slow) {
        assert!(start.elapsed() < WITHIN, "the slow command did not run");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !rig.executed().contains(&reboot),
        "the helper ran the reboot"
    );
    assert!(
        !rig.helper.proc.output().contains(&reboot),
        "the helper was never asked about the reboot\n{}",
        rig.helper.proc.output()
    );

    // The server comes back; the agent reconnects with the same bundle.
    rig.server.restart();
    rig.agent
        .wait_for_new_line("connected: session", 1, Duration::from_secs(60));
    let (_, done) = genuine_lock(&rig).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(
        rig.agent.count_lines("policy: version"),
        1,
        "{}",
        rig.agent.output()
    );
}

/// (c) Forged `policy_update`s are refused with their codes, audited, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_policy_updates_are_refused_and_the_previous_bundle_stays_in_force() {
    let mut rig = Rig::start("lab-pc-policy-forged").await;
    rig.save_policy(&json!({"format": 1})).await;
    rig.save_policy(&no_reboots()).await;
    rig.agent
        .wait_for_line("policy: version 2 in force", WITHIN);
    let taken_in = rig.agent.count_lines("policy: version");

    let allow_all = json!({"format": 1, "default": "allow", "rules": []});
    let good_body = |version: u64, bundle: &Value| {
        json!({"policy_version": version,
               "policy_hash": PolicyUpdate::hash_bundle(bundle).unwrap(),
               "bundle": bundle})
    };

    // A bad signature: a random key under the real kid.
    let forger = EnvelopeSigner::with_kid(
        SigningKey::from_bytes(&random16().repeat(2).try_into().unwrap()),
        rig.signer.kid().clone(),
    );
    let frame = rig.policy_frame(Some(&forger), good_body(9, &allow_all));
    rig.expect_refused("a forged signature", &frame, ErrorCode::SignatureInvalid)
        .await;

    // The real key, but a hash that is not the bundle's.
    let mut body = good_body(9, &allow_all);
    body["policy_hash"] = json!(PolicyUpdate::hash_bundle(&no_reboots()).unwrap());
    let frame = rig.policy_frame(None, body);
    rig.expect_refused(
        "a hash that does not match",
        &frame,
        ErrorCode::InvalidField,
    )
    .await;

    // The real key and a true hash, but an older version (a rollback to allow-all).
    let frame = rig.policy_frame(None, good_body(1, &allow_all));
    rig.expect_refused("an older version", &frame, ErrorCode::PolicyVersionRollback)
        .await;
    // The same version again.
    let frame = rig.policy_frame(None, good_body(2, &allow_all));
    rig.expect_refused("the same version", &frame, ErrorCode::PolicyVersionRollback)
        .await;

    // The real key, a true hash, a newer version, but not a valid policy.
    let bad = json!({"format": 2, "rules": []});
    let frame = rig.policy_frame(None, good_body(9, &bad));
    rig.expect_refused("an invalid bundle", &frame, ErrorCode::PolicyBundleInvalid)
        .await;

    // Version 2 is still in force: a reboot is denied locally, and no refused bundle was
    // taken in.
    assert!(rig.status_policy().starts_with("policy:       version 2 "));
    assert_eq!(
        rig.agent.count_lines("policy: version"),
        taken_in,
        "{}",
        rig.agent.output()
    );
    let reboot = uuid();
    let frame = rig.delivery(&reboot, "reboot", json!({}), None);
    rig.push(&frame).await;
    let denied = rig.agent.wait_for_line(
        &format!("command {reboot}: denied by the local policy (version 2)"),
        WITHIN,
    );
    assert!(denied.contains("no-reboots"), "{denied}");
    assert!(!rig.executed().contains(&reboot));
    // The agent kept its session through all of it.
    assert_eq!(rig.agent.count_lines("connected: session"), 1);
}
