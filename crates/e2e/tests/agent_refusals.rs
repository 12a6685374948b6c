//! The agent's refusals, with the real binaries: `tether-server` (test mode),
//! `tether-agent` and `tether-helper` (recording executor), on the embedded backends.
//!
//! Each test plays a compromised or buggy server: through the test-mode hook
//! `POST /api/test/agent_frame` the gateway session writes frames the test made to the
//! real agent, signed with the server's real gateway key (read from its data dir) where
//! the fault is something other than the signature. Each refusal, a test of its own, must
//! come with its stable code, be reported by the agent in an `error` frame that the server
//! audits as `agent.frame_refused` with that code, and lead to no execution (the helper's
//! record never names the command):
//!
//! - a valid `command_delivery` for another device, replayed to this one (3004);
//! - a delivery whose envelope TTL has expired (2004); and one whose envelope is fresh
//!   but whose command is past its `expires_at` (the agent's `command_ack` says 2004; the
//!   server, which never sent that command, refuses the ack and audits that);
//! - a rewound sequence: the `seq` of a delivery the agent accepted, and a lower one
//!   (2006);
//! - a forged server signature: a random key under the real kid, a body changed after
//!   signing, and a forged `error` frame claiming a revocation (2001).
//!
//! Every test ends with two controls, which show the refusals were the faults' doing and
//! the agent stayed healthy: a frame made the same way but without a fault is executed,
//! and a genuine command sent through the API completes — on the same session, with no
//! refusal beyond the expected ones.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use tether_e2e::{
    Backends, Helper, Proc, Server, gateway_signer, pair_agent, random16, register_user, uuid,
};
use tether_proto::envelope::{EnvelopeSigner, Stamp};
use tether_proto::messages::command::CommandDelivery;
use tether_proto::messages::notify::ErrorFrame;
use tether_proto::{Clock, ErrorCode, Message, MessageId, SystemClock, TraceId, UnixMillis};
use tether_store::{AuditEvent, Role, Store};

const DEVICE_NAME: &str = "lab-pc-refusals";
const TERMINAL: &[&str] = &["completed", "failed", "dlq", "expired", "denied"];
/// How long an injected frame may take to be written, refused and audited.
const REFUSAL_WITHIN: Duration = Duration::from_secs(10);
/// The gateway numbers its own frames from 1 on each session; the test's frames use
/// numbers far above them (the hook moves the session's counter up to each frame's).
const SEQ_BASE: u64 = 1_000_000;

fn now() -> u64 {
    SystemClock.now().0
}

/// A stamp with a fresh message id and trace id.
fn stamp(iat: u64, ttl: u32, seq: u64) -> Stamp {
    Stamp {
        iat: UnixMillis(iat),
        ttl,
        seq,
        message_id: MessageId::from_random_bytes(random16()),
        trace_id: TraceId::from_random_bytes(random16()),
    }
}

/// A `lock_screen` delivery the agent would carry out, but for its faults (built from
/// JSON: optional members it does not name stay absent). Signed by its owner
/// (`ada@lab.example`'s key, which the agent pinned) for `device_id` until `expires_at`,
/// so the faults under test are its only ones.
fn delivery(device_id: &str, command_id: &str, expires_at: u64) -> CommandDelivery {
    let mut d: CommandDelivery = serde_json::from_value(json!({
        "command_id": command_id,
        "device_id": device_id,
        "method": "lock_screen",
        "params": {},
        "priority": "normal",
        "sensitivity": "normal",
        "origin_user_id": "usr_mallory",
        "policy_version": 0,
        "expires_at": expires_at,
        "attempt": 1,
    }))
    .unwrap();
    let statement = tether_proto::owner_sig::command_statement(
        &d.command_id,
        &d.device_id,
        d.method,
        &d.params,
        d.expires_at,
    )
    .unwrap();
    d.not_after = Some(d.expires_at);
    d.user_sig = Some(tether_proto::owner_sig::sign_ed25519(
        &tether_e2e::owner_key("ada@lab.example"),
        &statement,
    ));
    d
}

fn seal<T: Message>(signer: &EnvelopeSigner, stamp: Stamp, body: &T) -> String {
    String::from_utf8(signer.seal(stamp, body).unwrap()).unwrap()
}

/// The `header.message_id` a frame claims.
fn message_id_of(frame: &str) -> String {
    let v: Value = serde_json::from_str(frame).unwrap();
    v["header"]["message_id"].as_str().unwrap().to_owned()
}

/// A server in test mode, an owner and an admin, an agent paired to it that talks to a
/// recording helper, and the server's gateway key.
struct Rig {
    server: Server,
    owner: tether_client::Api,
    admin: tether_client::Api,
    device: String,
    agent: Proc,
    _state: tempfile::TempDir,
    helper: Helper,
    signer: EnvelopeSigner,
    store: Arc<dyn Store>,
    /// The next sequence number for a frame the agent should accept.
    next_seq: u64,
    /// How many frames went through the hook.
    pushed: usize,
    /// The codes of the refusals the test expected so far, in order.
    refusals: Vec<u64>,
}

impl Rig {
    async fn start() -> Rig {
        let server =
            Server::start_with(&Backends::Embedded, &[("TETHER_SERVER_TEST_MODE", "true")]);
        let owner = register_user(&server, "ada@lab.example").await;
        let admin = register_user(&server, "root@lab.example").await;
        let store = server.store().await;
        let (s, me): (u16, Value) = admin.get("/api/me").await.unwrap();
        assert_eq!(s, 200, "{me}");
        store
            .set_user_role(me["id"].as_str().unwrap(), Role::Admin)
            .await
            .unwrap();

        let helper_dir = tempfile::tempdir().unwrap();
        let (socket, key_file) = Helper::paths(helper_dir.path());
        let (agent, state) = pair_agent(
            &server,
            &owner,
            DEVICE_NAME,
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
        let device = devices[0]["id"].as_str().unwrap().to_owned();

        // The key read from the data dir is the one the agent pinned at pairing.
        let signer = gateway_signer(&server);
        let (_, keys): (u16, Value) = owner.get("/api/gateway/keys").await.unwrap();
        assert!(
            keys.as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == signer.kid().as_str()),
            "the gateway key in the data dir ({}) is not among the server's: {keys}",
            signer.kid()
        );
        Rig {
            server,
            owner,
            admin,
            device,
            agent,
            _state: state,
            helper,
            signer,
            store,
            next_seq: SEQ_BASE,
            pushed: 0,
            refusals: Vec::new(),
        }
    }

    /// A sequence number above every one used so far.
    fn seq(&mut self) -> u64 {
        self.next_seq += 1000;
        self.next_seq
    }

    /// A fresh stamp with a sequence number above every one used so far.
    fn fresh(&mut self) -> Stamp {
        let seq = self.seq();
        stamp(now(), 60, seq)
    }

    /// Has the gateway session write `frame` to the agent as it is.
    async fn push(&mut self, frame: &str) {
        let (s, v): (u16, Value) = self
            .admin
            .post(
                "/api/test/agent_frame",
                &json!({"device_id": self.device, "frame": frame}),
            )
            .await
            .unwrap();
        assert_eq!(s, 202, "{v}");
        assert_eq!(v["status"], "published", "{v}");
        self.pushed += 1;
    }

    /// The agent's executions, as the helper recorded them.
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

    /// Waits for the audit event matching `find`; fails at once, and says so, if the
    /// helper executes `command_id` meanwhile.
    async fn wait_audit(
        &self,
        case: &str,
        command_id: Option<&str>,
        what: &str,
        find: impl Fn(&AuditEvent) -> bool,
    ) -> AuditEvent {
        let start = Instant::now();
        loop {
            if let Some(id) = command_id {
                assert!(
                    !self.executed().iter().any(|e| e == id),
                    "{case}: the agent ACCEPTED the frame and the helper executed command \
                     {id}\nagent:\n{}",
                    self.agent.output()
                );
            }
            if let Some(e) = self.audit().await.into_iter().find(&find) {
                return e;
            }
            assert!(
                start.elapsed() < REFUSAL_WITHIN,
                "{case}: no {what} within {REFUSAL_WITHIN:?} (was the frame accepted?)\n\
                 executions: {:?}\nagent:\n{}\nserver:\n{}",
                self.executed(),
                self.agent.output(),
                self.server.proc.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Pushes `frame` and checks that the agent refused it with `code`: the server
    /// audits the agent's `error` frame naming it as `agent.frame_refused`, and nothing
    /// was executed.
    async fn expect_refused(
        &mut self,
        case: &str,
        frame: &str,
        command_id: Option<&str>,
        code: ErrorCode,
    ) {
        let message_id = message_id_of(frame);
        self.push(frame).await;
        let e = self
            .wait_audit(
                case,
                command_id,
                &format!("agent.frame_refused naming message {message_id}"),
                |e| {
                    e.event.action == "agent.frame_refused"
                        && e.event.detail["ref_message_id"] == message_id.as_str()
                },
            )
            .await;
        assert_eq!(
            e.event.detail["code"],
            code.number(),
            "{case}: refused with {} instead of {} {}: {:?}",
            e.event.detail["code"],
            code.number(),
            code.name(),
            e.event
        );
        assert_eq!(e.event.outcome, "denied", "{case}");
        assert_eq!(e.event.actor, self.device, "{case}: the agent reported it");
        assert_eq!(e.event.target.as_deref(), Some(self.device.as_str()));
        assert!(
            self.agent
                .output()
                .contains(&format!("{} {}", code.number(), code.name())),
            "{case}: the agent says why\n{}",
            self.agent.output()
        );
        if let Some(id) = command_id {
            assert!(
                !self.executed().iter().any(|e| e == id),
                "{case}: command {id} was executed"
            );
        }
        self.refusals.push(u64::from(code.number()));
    }

    /// Submits a genuine `lock_screen` through the API and waits until it ends.
    async fn genuine_command(&self) -> (String, Value) {
        let id = uuid();
        let (s, accepted): (u16, Value) = self
            .owner
            .post(
                "/api/command",
                &tether_e2e::signed_command(
                    "ada@lab.example",
                    json!({"device_id": self.device, "method": "lock_screen",
                           "message_id": id, "ttl_seconds": 120}),
                ),
            )
            .await
            .unwrap();
        assert_eq!(s, 202, "{accepted}");
        let start = Instant::now();
        loop {
            let (_, c): (u16, Value) = self.owner.get(&format!("/api/command/{id}")).await.unwrap();
            if TERMINAL.iter().any(|t| c["state"] == *t) {
                return (id, c);
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the genuine command did not end: {c}\nagent:\n{}",
                self.agent.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Pushes a delivery for this device made like the refused ones but without a fault,
    /// and waits until the helper executes it; returns its command id and frame.
    async fn execute_control(&mut self) -> (String, String) {
        let id = uuid();
        let stamp = self.fresh();
        let frame = seal(
            &self.signer,
            stamp,
            &delivery(&self.device, &id, now() + 120_000),
        );
        let before = self.executed().len();
        self.push(&frame).await;
        let start = Instant::now();
        while self.executed().len() == before {
            assert!(
                start.elapsed() < REFUSAL_WITHIN,
                "the control frame (no fault) was not executed\nagent:\n{}",
                self.agent.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(self.executed().last(), Some(&id), "the control ran");
        (id, frame)
    }

    /// The controls every test ends with: the same kind of frame without a fault is
    /// carried out (so the refusals were the faults' doing, not the way the test makes
    /// frames), then a genuine command through the API completes on the same session. The
    /// helper ran nothing of `refused`, the agent never reconnected, and the audit trail
    /// holds exactly the expected refusals and one `test.agent_frame` per frame pushed.
    async fn finish(mut self, refused: &[&str]) {
        let before = self.executed();
        let (control, _) = self.execute_control().await;
        let (id, done) = self.genuine_command().await;
        assert_eq!(
            done["state"],
            "completed",
            "{done}\nagent:\n{}\nhelper:\n{}",
            self.agent.output(),
            self.helper.proc.output()
        );
        let mut expected = before;
        expected.extend([control, id]);
        assert_eq!(
            self.executed(),
            expected,
            "each of them ran once, nothing else"
        );
        for r in refused {
            assert!(
                !self
                    .agent
                    .output()
                    .contains(&format!("command {r}: lock_screen received")),
                "command {r} was taken in\n{}",
                self.agent.output()
            );
        }
        assert_eq!(
            self.agent.count_lines("connected: session"),
            1,
            "the agent kept its session\n{}",
            self.agent.output()
        );
        let audit = self.audit().await;
        let refusals: Vec<u64> = audit
            .iter()
            .filter(|e| e.event.action == "agent.frame_refused")
            .map(|e| e.event.detail["code"].as_u64().unwrap())
            .collect();
        assert_eq!(refusals, self.refusals, "the refusals audited, each once");
        let hooked = audit
            .iter()
            .filter(|e| e.event.action == "test.agent_frame")
            .count();
        assert_eq!(hooked, self.pushed, "every use of the hook is audited");
    }
}

/// (a) A valid delivery of another device's command, replayed to this one: its
/// signature, TTL and sequence pass, its device does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_devices_command_replayed_to_this_agent_is_refused_3004_and_not_run() {
    let mut rig = Rig::start().await;
    let other = uuid();
    let stamp = rig.fresh();
    let frame = seal(
        &rig.signer,
        stamp,
        &delivery("dev_another_pc", &other, now() + 120_000),
    );
    rig.expect_refused(
        "another device's command",
        &frame,
        Some(&other),
        ErrorCode::Forbidden,
    )
    .await;
    rig.finish(&[&other]).await;
}

/// (b) An envelope whose TTL has passed, and a fresh envelope carrying a command past its
/// own deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ttl_is_refused_2004_and_not_run() {
    let mut rig = Rig::start().await;
    let device = rig.device.clone();
    // Issued 2 min ago for 60 s, with a good signature, seq and command.
    let late = uuid();
    let seq = rig.seq();
    let frame = seal(
        &rig.signer,
        stamp(now() - 120_000, 60, seq),
        &delivery(&device, &late, now() + 120_000),
    );
    rig.expect_refused("an expired TTL", &frame, Some(&late), ErrorCode::TtlExpired)
        .await;

    // A fresh envelope, a command whose `expires_at` passed: the agent rejects the command
    // (its ack says 2004); the server, which never sent it, refuses that ack and audits it.
    let stale = uuid();
    let stamp = rig.fresh();
    let frame = seal(
        &rig.signer,
        stamp,
        &delivery(&device, &stale, now() - 1_000),
    );
    rig.push(&frame).await;
    rig.wait_audit(
        "a command past its expires_at",
        Some(&stale),
        "the server's refusal of the agent's rejection",
        |e| {
            e.event.action == "agent.frame_rejected"
                && e.event.detail["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(&stale))
        },
    )
    .await;
    assert!(
        rig.agent.output().contains(&format!(
            "refused command {stale} (lock_screen): 2004 TTL_EXPIRED"
        )),
        "{}",
        rig.agent.output()
    );
    rig.finish(&[&late, &stale]).await;
}

/// (c) A rewound sequence: the seq of a delivery the agent accepted (a replay of the
/// number), then a lower one (reordering), each on an otherwise good delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewound_sequence_is_refused_2006_and_not_run() {
    let mut rig = Rig::start().await;
    let device = rig.device.clone();
    let (_, accepted) = rig.execute_control().await;
    let accepted_seq = serde_json::from_str::<Value>(&accepted).unwrap()["header"]["seq"]
        .as_u64()
        .unwrap();
    let replayed = uuid();
    let frame = seal(
        &rig.signer,
        stamp(now(), 60, accepted_seq),
        &delivery(&device, &replayed, now() + 120_000),
    );
    rig.expect_refused(
        "a replayed sequence number",
        &frame,
        Some(&replayed),
        ErrorCode::SequenceReplay,
    )
    .await;
    let rewound = uuid();
    let frame = seal(
        &rig.signer,
        stamp(now(), 60, accepted_seq - 500),
        &delivery(&device, &rewound, now() + 120_000),
    );
    rig.expect_refused(
        "a rewound sequence number",
        &frame,
        Some(&rewound),
        ErrorCode::SequenceReplay,
    )
    .await;
    rig.finish(&[&replayed, &rewound]).await;
}

/// (d) Forged server signatures: another key under the real kid, a body changed after the
/// real key signed it, and a forged `error` frame (not believed: refused and reported
/// like any other frame, the session goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_server_signature_is_refused_2001_and_not_run() {
    let mut rig = Rig::start().await;
    let device = rig.device.clone();
    let mallory = EnvelopeSigner::with_kid(
        SigningKey::generate(&mut rand_core::OsRng),
        rig.signer.kid().clone(),
    );
    let forged = uuid();
    let stamp = rig.fresh();
    let frame = seal(
        &mallory,
        stamp,
        &delivery(&device, &forged, now() + 120_000),
    );
    rig.expect_refused(
        "a signature by another key under the real kid",
        &frame,
        Some(&forged),
        ErrorCode::SignatureInvalid,
    )
    .await;

    let tampered = uuid();
    let stamp = rig.fresh();
    let signed = seal(
        &rig.signer,
        stamp,
        &delivery(&device, &tampered, now() + 120_000),
    );
    // Still canonical JSON, so only the signature can tell.
    let frame = signed.replace(r#""method":"lock_screen""#, r#""method":"shutdown""#);
    assert_ne!(frame, signed, "the body was changed");
    rig.expect_refused(
        "a body changed after signing",
        &frame,
        Some(&tampered),
        ErrorCode::SignatureInvalid,
    )
    .await;

    let stamp = rig.fresh();
    let frame = seal(
        &mallory,
        stamp,
        &ErrorFrame {
            code: ErrorCode::DeviceRevoked,
            message: "this device has been revoked".into(),
            ref_message_id: None,
        },
    );
    rig.expect_refused(
        "a forged error frame",
        &frame,
        None,
        ErrorCode::SignatureInvalid,
    )
    .await;
    rig.finish(&[&forged, &tampered]).await;
}
