//! Owner-signed commands with the real binaries: `tether-server` (test mode),
//! `tether-agent` and `tether-helper` (recording executor), on the embedded backends.
//!
//! **The compromised server.** The test holds the server's database and its gateway
//! envelope key (`gateway_signer`, read from the data dir) and writes frames to the
//! agents through the test-mode hook `POST /api/test/agent_frame`, every one carrying a
//! valid server signature, TTL and sequence. The owner (`ada@lab.example`) pinned her
//! Ed25519 key on two PCs at pairing. Each of these is refused by the agent with
//! `2011 OWNER_SIGNATURE_INVALID`, never executed, and recorded by the server
//! (`command.owner_signature_invalid` in the audit trail and an `owner_signature_invalid`
//! security alert, or `agent.frame_refused` for a key change):
//!
//! 1. a command the server made and signed alone (no owner signature) — pushed raw, and
//!    submitted through the API without `user_sig`, where it ends `denied` with 2011;
//! 2. a command whose parameters were changed after the owner signed it;
//! 3. the owner's signature of a command for PC A, replayed onto PC B;
//! 4. the owner's signature of a completed command, replayed under another message id
//!    (and under its own id again: acknowledged, never run twice);
//! 5. an owner key added by the server: an `owner_keys_update` signed by a key the PC
//!    does not pin (and one claiming the owner's kid), then a command signed by that key.
//!
//! A control shows the PCs work: a command the owner signed completes on each.
//!
//! **WebAuthn.** A software authenticator (a P-256 key answering `navigator.credentials
//! .get()` as a phone would) is pinned on the PC by an owner-keys statement signed with
//! the owner's CLI key. An assertion whose challenge is the command statement's hash, for
//! the server's origin and RP id, with user presence and verification, runs the command;
//! one with the UV flag clear, for another RP id, or whose challenge is another
//! command's, is denied with 2011 and never executed.
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
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tether_e2e::{
    Backends, Helper, Proc, Server, gateway_signer, owner_key, pair_agent, random16, register_user,
    signed_command, uuid,
};
use tether_proto::envelope::{EnvelopeSigner, Stamp};
use tether_proto::messages::command::{CommandDelivery, Method};
use tether_proto::messages::discovery::OwnerKey;
use tether_proto::owner_sig::{
    OwnerKeysStatement, OwnerKeysUpdate, UserSig, WebauthnSig, command_statement, sign_ed25519,
    webauthn_challenge,
};
use tether_proto::validate::b64url_encode;
use tether_proto::{Clock, KeyId, Message, MessageId, SystemClock, TraceId, UnixMillis};
use tether_store::{AuditEvent, Role, Store};

const OWNER: &str = "ada@lab.example";
const TERMINAL: &[&str] = &["completed", "failed", "dlq", "expired", "denied"];
const WITHIN: Duration = Duration::from_secs(20);
/// The test's frames use sequence numbers far above the gateway's own.
const SEQ_BASE: u64 = 1_000_000;

fn now() -> UnixMillis {
    SystemClock.now()
}

fn in_2_min() -> UnixMillis {
    now().saturating_add(Duration::from_secs(120))
}

/// A delivery as the server would make it, with the owner's signature (if any) as given.
fn delivery(
    device_id: &str,
    command_id: &str,
    method: Method,
    params: Value,
    owner: Option<(UserSig, UnixMillis)>,
) -> CommandDelivery {
    let mut d: CommandDelivery = serde_json::from_value(json!({
        "command_id": command_id,
        "device_id": device_id,
        "method": method,
        "params": params,
        "priority": "normal",
        "sensitivity": "normal",
        "origin_user_id": "usr_mallory",
        "policy_version": 0,
        "expires_at": in_2_min().0,
        "attempt": 1,
    }))
    .unwrap();
    if let Some((sig, not_after)) = owner {
        d.user_sig = Some(sig);
        d.not_after = Some(not_after);
    }
    d
}

/// The owner's (or `key`'s) Ed25519 signature over a command statement.
fn ed_sig(
    key: &SigningKey,
    device_id: &str,
    command_id: &str,
    method: Method,
    params: &Value,
    not_after: UnixMillis,
) -> UserSig {
    let s = command_statement(
        &MessageId::parse(command_id).unwrap(),
        device_id,
        method,
        params,
        not_after,
    )
    .unwrap();
    sign_ed25519(key, &s)
}

/// One paired PC with its recording helper.
struct Pc {
    device: String,
    agent: Proc,
    _state: tempfile::TempDir,
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
            .unwrap_or_else(|| panic!("{name} not among {devices}"))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        Pc {
            device,
            agent,
            _state: state,
            helper,
        }
    }

    /// The commands the helper executed (not the agent's own policy installs).
    fn executed(&self) -> Vec<String> {
        self.helper
            .executions()
            .iter()
            .filter(|e| e["opcode"] != "SET_POLICY")
            .map(|e| e["command_message_id"].as_str().unwrap_or("?").to_owned())
            .collect()
    }
}

struct Rig {
    server: Server,
    owner: tether_client::Api,
    admin: tether_client::Api,
    signer: EnvelopeSigner,
    store: Arc<dyn Store>,
    seq: u64,
}

impl Rig {
    async fn start() -> Rig {
        let server =
            Server::start_with(&Backends::Embedded, &[("TETHER_SERVER_TEST_MODE", "true")]);
        let owner = register_user(&server, OWNER).await;
        let admin = register_user(&server, "root@lab.example").await;
        let store = server.store().await;
        let (_, me): (u16, Value) = admin.get("/api/me").await.unwrap();
        store
            .set_user_role(me["id"].as_str().unwrap(), Role::Admin)
            .await
            .unwrap();
        let signer = gateway_signer(&server);
        Rig {
            server,
            owner,
            admin,
            signer,
            store,
            seq: SEQ_BASE,
        }
    }

    /// Signs `body` with the server's real gateway key (fresh, in sequence) and has the
    /// device's gateway session write it to its agent.
    async fn push<T: Message>(&mut self, pc: &Pc, body: &T) -> String {
        self.seq += 1000;
        let stamp = Stamp {
            iat: now(),
            ttl: 60,
            seq: self.seq,
            message_id: MessageId::from_random_bytes(random16()),
            trace_id: TraceId::from_random_bytes(random16()),
        };
        let frame = String::from_utf8(self.signer.seal(stamp, body).unwrap()).unwrap();
        let (s, v): (u16, Value) = self
            .admin
            .post(
                "/api/test/agent_frame",
                &json!({"device_id": pc.device, "frame": frame}),
            )
            .await
            .unwrap();
        assert_eq!(s, 202, "{v}");
        let parsed: Value = serde_json::from_str(&frame).unwrap();
        parsed["header"]["message_id"].as_str().unwrap().to_owned()
    }

    async fn audit(&self) -> Vec<AuditEvent> {
        self.store.audit_after(0, 10_000).await.unwrap()
    }

    /// Waits for an audit event matching `find`, failing at once if `pc` executes
    /// `command_id` meanwhile.
    async fn wait_audit(
        &self,
        case: &str,
        pc: &Pc,
        command_id: Option<&str>,
        find: impl Fn(&AuditEvent) -> bool,
    ) -> AuditEvent {
        let start = Instant::now();
        loop {
            if let Some(id) = command_id {
                assert!(
                    !pc.executed().iter().any(|e| e == id),
                    "{case}: the PC EXECUTED command {id}\nagent:\n{}",
                    pc.agent.output()
                );
            }
            if let Some(e) = self.audit().await.into_iter().find(&find) {
                return e;
            }
            assert!(
                start.elapsed() < WITHIN,
                "{case}: not refused and audited within {WITHIN:?}\nagent:\n{}\nserver:\n{}",
                pc.agent.output(),
                self.server.proc.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Pushes a delivery and waits until the agent's 2011 refusal of it is audited.
    async fn expect_command_refused(&mut self, case: &str, pc: &Pc, d: &CommandDelivery) {
        self.push(pc, d).await;
        let id = d.command_id.to_string();
        let e = self
            .wait_audit(case, pc, Some(&id), |e| {
                e.event.action == "command.owner_signature_invalid"
                    && e.event.detail["command_id"] == id.as_str()
            })
            .await;
        assert_eq!(e.event.detail["code"], 2011, "{case}");
        assert_eq!(
            e.event.target.as_deref(),
            Some(pc.device.as_str()),
            "{case}"
        );
        assert!(
            pc.agent.output().contains(&format!("refused command {id}")),
            "{case}: the agent says it refused it\n{}",
            pc.agent.output()
        );
    }

    /// Pushes an `owner_keys_update` and waits until the agent's refusal (`code`) of it
    /// is audited as `agent.frame_refused`.
    async fn expect_keys_refused(&mut self, case: &str, pc: &Pc, u: &OwnerKeysUpdate, code: u64) {
        let message_id = self.push(pc, u).await;
        let e = self
            .wait_audit(case, pc, None, |e| {
                e.event.action == "agent.frame_refused"
                    && e.event.detail["ref_message_id"] == message_id.as_str()
            })
            .await;
        assert_eq!(e.event.detail["code"], code, "{case}: {e:?}");
    }

    /// Submits a command body through the API as the owner and waits until it ends.
    async fn submit(&self, body: &Value) -> Value {
        let (s, accepted): (u16, Value) = self.owner.post("/api/command", body).await.unwrap();
        assert_eq!(s, 202, "{accepted}");
        let id = body["message_id"].as_str().unwrap();
        let start = Instant::now();
        loop {
            let (_, c): (u16, Value) = self.owner.get(&format!("/api/command/{id}")).await.unwrap();
            if TERMINAL.iter().any(|t| c["state"] == *t) {
                return c;
            }
            assert!(start.elapsed() < WITHIN, "command {id} did not end: {c}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn open_alert_kinds(&self) -> Vec<String> {
        let (_, alerts): (u16, Value) = self.owner.get("/api/alerts").await.unwrap();
        alerts
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

fn owner_keys_update(
    signer: &SigningKey,
    signer_kid: Option<&str>,
    add: Vec<OwnerKey>,
    version: u64,
) -> OwnerKeysUpdate {
    let statement = OwnerKeysStatement {
        kind: tether_proto::owner_sig::OWNER_KEYS_STATEMENT_TYPE.into(),
        user_id: "usr_ada".into(),
        device_id: None,
        version,
        add,
        remove: Vec::new(),
        not_after: now().saturating_add(Duration::from_secs(600)),
    };
    let mut user_sig = sign_ed25519(signer, &statement.canonical().unwrap());
    if let (Some(kid), UserSig::Ed25519(s)) = (signer_kid, &mut user_sig) {
        s.kid = kid.to_owned();
    }
    OwnerKeysUpdate {
        statement,
        user_sig,
    }
}

fn ed_pinned(key: &SigningKey) -> OwnerKey {
    let pk = key.verifying_key().to_bytes();
    OwnerKey {
        kid: KeyId::for_ed25519(&pk).to_string(),
        kind: "ed25519".into(),
        public_key: b64url_encode(&pk),
        role: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_server_cannot_make_a_pc_act_without_its_owners_signature() {
    let mut rig = Rig::start().await;
    let a = Pc::pair(&rig.server, &rig.owner, "lab-pc-a").await;
    let b = Pc::pair(&rig.server, &rig.owner, "lab-pc-b").await;
    let ada = owner_key(OWNER);

    // Control: a command the owner signed completes.
    let genuine = uuid();
    let body = signed_command(
        OWNER,
        json!({"device_id": a.device, "method": "lock_screen", "message_id": genuine,
               "ttl_seconds": 120}),
    );
    let done = rig.submit(&body).await;
    assert_eq!(done["state"], "completed", "{done}\n{}", a.agent.output());
    let genuine_sig: UserSig = serde_json::from_value(body["user_sig"].clone()).unwrap();
    let genuine_not_after = UnixMillis(body["not_after"].as_u64().unwrap());

    // 1. Crafted and signed by the server alone: pushed raw …
    let crafted = uuid();
    let d = delivery(&a.device, &crafted, Method::Shutdown, json!({}), None);
    rig.expect_command_refused("a command the server alone signed", &a, &d)
        .await;
    // … and made by the server's own command path, from an unsigned request.
    let unsigned = uuid();
    let done = rig
        .submit(&json!({"device_id": a.device, "method": "lock_screen", "message_id": unsigned}))
        .await;
    assert_eq!(done["state"], "denied", "{done}");
    assert_eq!(done["error"], 2011, "{done}");
    assert!(
        rig.open_alert_kinds()
            .await
            .contains(&"owner_signature_invalid".to_owned()),
        "a security alert is raised"
    );

    // 2. Parameters altered after the owner signed: a reboot in 10 minutes, delivered as
    //    one right now.
    let altered = uuid();
    let na = in_2_min();
    let signed = json!({"delay_s": 600, "reason": "patch day"});
    let sig = ed_sig(&ada, &a.device, &altered, Method::Reboot, &signed, na);
    let d = delivery(
        &a.device,
        &altered,
        Method::Reboot,
        json!({"delay_s": 0, "reason": "patch day", "force": true}),
        Some((sig, na)),
    );
    rig.expect_command_refused("parameters altered after signing", &a, &d)
        .await;

    // 3. The owner's signature of a command for PC A, replayed onto PC B.
    let for_a = uuid();
    let sig = ed_sig(&ada, &a.device, &for_a, Method::LockScreen, &json!({}), na);
    let d = delivery(
        &b.device,
        &for_a,
        Method::LockScreen,
        json!({}),
        Some((sig, na)),
    );
    rig.expect_command_refused("a signature replayed onto another device", &b, &d)
        .await;

    // 4. The genuine command's signature under another message id …
    let other_id = uuid();
    let d = delivery(
        &a.device,
        &other_id,
        Method::LockScreen,
        json!({}),
        Some((genuine_sig.clone(), genuine_not_after)),
    );
    rig.expect_command_refused("a signature replayed onto another message id", &a, &d)
        .await;
    // … and under its own id again: acknowledged from the ledger, not run again.
    let d = delivery(
        &a.device,
        &genuine,
        Method::LockScreen,
        json!({}),
        Some((genuine_sig, genuine_not_after)),
    );
    rig.push(&a, &d).await;

    // 5. An owner key added by the server: a statement signed by a key the PC does not
    //    pin, and one that claims the owner's kid; then a command signed by that key.
    let mallory = SigningKey::from_bytes(&random16().repeat(2).try_into().unwrap());
    let u = owner_keys_update(&mallory, None, vec![ed_pinned(&mallory)], now().0);
    rig.expect_keys_refused("a key added without a pinned key's statement", &a, &u, 2011)
        .await;
    let ada_kid = ed_pinned(&ada).kid;
    let u = owner_keys_update(
        &mallory,
        Some(&ada_kid),
        vec![ed_pinned(&mallory)],
        now().0 + 1,
    );
    rig.expect_keys_refused("a key statement forged under the owner's kid", &a, &u, 2011)
        .await;
    let by_mallory = uuid();
    let sig = ed_sig(
        &mallory,
        &a.device,
        &by_mallory,
        Method::LockScreen,
        &json!({}),
        na,
    );
    let d = delivery(
        &a.device,
        &by_mallory,
        Method::LockScreen,
        json!({}),
        Some((sig, na)),
    );
    rig.expect_command_refused("a command signed by the server's key", &a, &d)
        .await;
    assert!(
        !a.agent.output().contains("owner keys changed"),
        "{}",
        a.agent.output()
    );

    // Each PC still obeys its owner, and ran nothing else.
    let last = uuid();
    let done = rig
        .submit(&signed_command(
            OWNER,
            json!({"device_id": b.device, "method": "lock_screen", "message_id": last}),
        ))
        .await;
    assert_eq!(done["state"], "completed", "{done}\n{}", b.agent.output());
    // Give a wrongly accepted frame every chance to have run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        a.executed(),
        vec![genuine.clone()],
        "PC A ran only its owner's command"
    );
    assert_eq!(
        b.executed(),
        vec![last],
        "PC B ran only its owner's command"
    );
    assert_eq!(
        a.agent.count_lines("connected: session"),
        1,
        "the agent kept its session"
    );
}

/// A software passkey: a P-256 credential answering `.get()` as a browser and platform
/// authenticator would.
struct Passkey {
    key: p256::ecdsa::SigningKey,
    credential_id: Vec<u8>,
    origin: String,
}

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;

impl Passkey {
    fn new(origin: &str) -> Self {
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(&random16());
        seed[16..].copy_from_slice(&random16());
        Self {
            key: p256::ecdsa::SigningKey::from_slice(&seed).unwrap(),
            credential_id: random16().to_vec(),
            origin: origin.to_owned(),
        }
    }

    fn pinned(&self) -> OwnerKey {
        OwnerKey {
            kid: b64url_encode(&self.credential_id),
            kind: "webauthn-es256".into(),
            public_key: b64url_encode(
                self.key
                    .verifying_key()
                    .to_public_key_der()
                    .unwrap()
                    .as_bytes(),
            ),
            role: Default::default(),
        }
    }

    /// The assertion for `statement` with the given RP id and flags.
    fn assert(&self, statement: &[u8], rp_id: &str, flags: u8) -> UserSig {
        let client_data = serde_json::to_vec(&json!({
            "type": "webauthn.get",
            "challenge": webauthn_challenge(statement),
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .unwrap();
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(flags);
        auth_data.extend_from_slice(&7u32.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let sig: p256::ecdsa::DerSignature = self.key.sign(&signed);
        UserSig::WebauthnEs256(WebauthnSig {
            kid: b64url_encode(&self.credential_id),
            authenticator_data: b64url_encode(&auth_data),
            client_data_json: b64url_encode(&client_data),
            signature: b64url_encode(sig.as_bytes()),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_pinned_by_the_owners_statement_signs_commands_with_real_assertions() {
    let mut rig = Rig::start().await;
    let pc = Pc::pair(&rig.server, &rig.owner, "lab-pc-w").await;
    let passkey = Passkey::new(&rig.server.url);
    let rp_id = "localhost";

    // The owner's CLI key pins the passkey on the PC.
    let u = owner_keys_update(&owner_key(OWNER), None, vec![passkey.pinned()], now().0);
    rig.push(&pc, &u).await;
    let start = Instant::now();
    while !pc.agent.output().contains("owner keys changed") {
        assert!(
            start.elapsed() < WITHIN,
            "not pinned\n{}",
            pc.agent.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::fs::read_to_string(pc._state.path().join("device.json"))
            .unwrap()
            .contains(&passkey.pinned().kid),
        "the new key is saved with the pairing"
    );

    let command = |id: &str, sig: &UserSig, na: UnixMillis| {
        json!({"device_id": pc.device, "method": "lock_screen", "message_id": id,
               "ttl_seconds": 120, "not_after": na.0, "user_sig": sig})
    };
    let statement = |id: &str, na: UnixMillis| {
        command_statement(
            &MessageId::parse(id).unwrap(),
            &pc.device,
            Method::LockScreen,
            &json!({}),
            na,
        )
        .unwrap()
    };

    // A real assertion for the command: it runs.
    let good = uuid();
    let na = in_2_min();
    let sig = passkey.assert(&statement(&good, na), rp_id, FLAG_UP | FLAG_UV);
    let done = rig.submit(&command(&good, &sig, na)).await;
    assert_eq!(done["state"], "completed", "{done}\n{}", pc.agent.output());

    // User verification not done, another RP id, a challenge for another command.
    let no_uv = uuid();
    let wrong_rp = uuid();
    let other_challenge = uuid();
    let cases = [
        (
            &no_uv,
            passkey.assert(&statement(&no_uv, na), rp_id, FLAG_UP),
        ),
        (
            &wrong_rp,
            passkey.assert(&statement(&wrong_rp, na), "evil.example", FLAG_UP | FLAG_UV),
        ),
        (
            &other_challenge,
            passkey.assert(&statement(&good, na), rp_id, FLAG_UP | FLAG_UV),
        ),
    ];
    for (id, sig) in &cases {
        let done = rig.submit(&command(id, sig, na)).await;
        assert_eq!(
            done["state"],
            "denied",
            "{id}: {done}\n{}",
            pc.agent.output()
        );
        assert_eq!(done["error"], 2011, "{done}");
    }
    let out = pc.agent.output();
    assert!(out.contains("the user-verified flag is clear"), "{out}");
    assert!(
        out.contains("the rpIdHash is not the server's RP id"),
        "{out}"
    );
    assert!(out.contains("the challenge is not this command's"), "{out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pc.executed(), vec![good], "only the good assertion ran");
}
