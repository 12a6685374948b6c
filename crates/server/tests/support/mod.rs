//! Test support: an in-process server on port 0 with a manual clock, and `FakeAgent`, a
//! test double that speaks the agent side of discovery, pairing and sessions with real
//! keys, real TLS and real signed envelopes (the real agent binary is exercised by the
//! end-to-end tests in `crates/e2e`).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod live;

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tether_client::{Api, ClientError, ClientIdentity, WsStream};
use tether_proto::envelope::{EnvelopeSigner, Stamp};
use tether_proto::messages::discovery::{
    DiscoveryChallenge, DiscoveryHello, OsFamily, discovery_proof_input, pair_activate_input,
};
use tether_proto::messages::session::Auth;
use tether_proto::validate::b64url_encode;
use tether_proto::{
    Clock, ErrorCode, KeyId, ManualClock, Message, MessageId, Payload, StaticKeys, SystemClock,
    TraceId, UnixMillis, Verifier,
};
use tether_server::app::Running;
use tether_server::config::Config;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub struct TestServer {
    pub running: Option<Running>,
    pub clock: Arc<ManualClock>,
    pub url: String,
    pub ca_pem: String,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        edit(&mut config);
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let running = tether_server::app::start(config, clock.clone() as Arc<dyn Clock>)
            .await
            .unwrap();
        let url = running.public_url.clone();
        let ca_pem = running.state.ca.certificates().root_pem();
        Self {
            running: Some(running),
            clock,
            url,
            ca_pem,
            _dir: dir,
        }
    }

    pub fn state(&self) -> &tether_server::state::AppState {
        &self.running.as_ref().unwrap().state
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url, &self.ca_pem).unwrap()
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// Registers and logs in a user; returns an API client with their access token and
    /// the login response.
    pub async fn user(&self, email: &str) -> (Api, Value, SigningKey) {
        let key = SigningKey::from_bytes(&rand_bytes());
        let mobile_pub = b64url_encode(key.verifying_key().as_bytes());
        let (s, _): (u16, Value) = self
            .api()
            .post("/api/register", &json!({"email": email, "password": "correct horse battery", "mobile_pub": mobile_pub}))
            .await
            .unwrap();
        assert_eq!(s, 201);
        let (_, login): (u16, Value) = self
            .api()
            .post(
                "/api/login",
                &json!({"email": email, "password": "correct horse battery"}),
            )
            .await
            .unwrap();
        let token = login["access_token"].as_str().unwrap().to_owned();
        (self.api().with_bearer(&token), login, key)
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom_fill(&mut b);
    b
}

fn getrandom_fill(b: &mut [u8]) {
    use rand_core::RngCore;
    rand_core::OsRng.fill_bytes(b);
}

pub fn code_of(e: &ClientError) -> ErrorCode {
    e.code()
        .unwrap_or_else(|| panic!("expected an API error, got {e}"))
}

/// A test double of the agent.
pub struct FakeAgent {
    pub key: SigningKey,
    pub signer: EnvelopeSigner,
    pub hwid: String,
    pub seq: u64,
    pub csr_pem: String,
    pub device_id: Option<String>,
    pub cert_pem: Option<String>,
    pub intermediate_pem: Option<String>,
    /// What `auth.owner_keys_version` says (the owner-keys statement applied last).
    pub owner_keys_version: Option<u64>,
}

impl FakeAgent {
    pub fn new() -> Self {
        let key = SigningKey::from_bytes(&rand_bytes());
        let signer = EnvelopeSigner::new(key.clone());
        let csr_pem = csr_for(&key);
        Self {
            key,
            signer,
            hwid: hex(&rand_bytes()),
            seq: 0,
            csr_pem,
            device_id: None,
            cert_pem: None,
            intermediate_pem: None,
            owner_keys_version: None,
        }
    }

    pub fn agent_pub(&self) -> String {
        b64url_encode(self.key.verifying_key().as_bytes())
    }

    pub fn stamp(&mut self, now: UnixMillis) -> Stamp {
        self.seq += 1;
        Stamp {
            iat: now,
            ttl: 60,
            seq: self.seq,
            message_id: MessageId::from_random_bytes(rand16()),
            trace_id: TraceId::from_random_bytes(rand16()),
        }
    }

    pub fn hello(&mut self, now: UnixMillis, nonce: &str) -> Vec<u8> {
        let body = DiscoveryHello {
            hwid_hash: tether_proto::ids::sha256_hex(self.hwid.as_bytes()),
            nonce: nonce.to_owned(),
            agent_version: "0.1.0".into(),
            agent_manifest_hash: tether_proto::ids::sha256_hex(b"test agent"),
            agent_pub: self.agent_pub(),
            os: OsFamily::Linux,
        };
        let st = self.stamp(now);
        self.signer.seal(st, &body).unwrap()
    }

    /// Sends a hello; returns the gateway's reply body.
    pub async fn discover(&mut self, srv: &TestServer, nonce: &str) -> Payload {
        let mut ws = tether_client::connect_agent_ws(&srv.url, &srv.ca_pem, None)
            .await
            .unwrap();
        let frame = self.hello(srv.clock.now(), nonce);
        ws.send(WsMessage::Text(String::from_utf8(frame).unwrap().into()))
            .await
            .unwrap();
        read_verified(&mut ws, srv).await
    }

    /// Discovery + confirm + pair request; returns the pair response JSON.
    pub async fn request_pairing(&mut self, srv: &TestServer) -> Value {
        let nonce = b64url_encode(&rand_bytes());
        let Payload::DiscoveryChallenge(ch) = self.discover(srv, &nonce).await else {
            panic!("expected a challenge")
        };
        self.confirm_and_request(srv, &ch).await.unwrap()
    }

    pub async fn confirm_and_request(
        &mut self,
        srv: &TestServer,
        ch: &DiscoveryChallenge,
    ) -> Result<Value, ClientError> {
        let sig = self.key.sign(&discovery_proof_input(&ch.challenge_token));
        let (_, _v): (u16, Value) = srv
            .api()
            .post("/api/discovery/confirm", &json!({"challenge_token": ch.challenge_token, "nonce_signature": b64url_encode(&sig.to_bytes())}))
            .await?;
        let (s, v): (u16, Value) = srv
            .api()
            .post(
                "/api/pair/request",
                &json!({
                "challenge_token": ch.challenge_token, "device_name": "lab-pc-7", "hwid": self.hwid,
                "agent_pub": self.agent_pub(), "csr_pem": self.csr_pem, "os": "linux"}),
            )
            .await?;
        assert_eq!(s, 201);
        Ok(v)
    }

    pub async fn activate(
        &mut self,
        srv: &TestServer,
        pair_token: &str,
    ) -> Result<(u16, Value), ClientError> {
        self.activate_as(srv, pair_token, &self.key.clone()).await
    }

    pub async fn activate_as(
        &mut self,
        srv: &TestServer,
        pair_token: &str,
        key: &SigningKey,
    ) -> Result<(u16, Value), ClientError> {
        let sig = key.sign(&pair_activate_input(pair_token));
        let (s, v): (u16, Value) = srv
            .api()
            .post("/api/pair/activate", &json!({"pair_token": pair_token, "agent_pub": b64url_encode(key.verifying_key().as_bytes()), "signature": b64url_encode(&sig.to_bytes())}))
            .await?;
        if s == 200 {
            let frame = v["activation"].as_str().unwrap();
            let verified = verify_from_gateway(frame.as_bytes(), &v["gateway_keys"], &*srv.clock);
            let Payload::DeviceActivate(a) = verified else {
                panic!("expected device_activate")
            };
            self.device_id = Some(a.device_id.clone());
            self.cert_pem = Some(a.device_cert_pem.clone());
            self.intermediate_pem = a.ca_chain_pem.first().cloned();
        }
        Ok((s, v))
    }

    pub fn identity(&self) -> ClientIdentity {
        let leaf = tether_client::first_cert_der(self.cert_pem.as_ref().unwrap()).unwrap();
        let inter = tether_client::first_cert_der(self.intermediate_pem.as_ref().unwrap()).unwrap();
        let pkcs8 = rcgen::KeyPair::try_from(&self.pkcs8()[..])
            .unwrap()
            .serialize_der();
        ClientIdentity {
            chain: vec![leaf.into(), inter.into()],
            key: rustls_pki_types::PrivateKeyDer::Pkcs8(pkcs8.into()),
        }
    }

    pub fn pkcs8(&self) -> Vec<u8> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        self.key.to_pkcs8_der().unwrap().as_bytes().to_vec()
    }

    /// mTLS connect + auth; returns the socket and the first reply.
    pub async fn connect(&mut self, srv: &TestServer) -> Result<(WsStream, Payload), ClientError> {
        let mut ws =
            tether_client::connect_agent_ws(&srv.url, &srv.ca_pem, Some(self.identity())).await?;
        let auth = Auth {
            device_id: self.device_id.clone().unwrap(),
            nonce: b64url_encode(&rand_bytes()),
            agent_version: "0.1.0".into(),
            last_seq_received: 0,
            policy_version: None,
            owner_keys_version: self.owner_keys_version,
        };
        let st = self.stamp(srv.clock.now());
        let frame = self.signer.seal(st, &auth).unwrap();
        ws.send(WsMessage::Text(String::from_utf8(frame).unwrap().into()))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let reply = read_verified(&mut ws, srv).await;
        Ok((ws, reply))
    }

    pub async fn send<T: Message>(&mut self, ws: &mut WsStream, srv: &TestServer, body: &T) {
        let st = self.stamp(srv.clock.now());
        let frame = self.signer.seal(st, body).unwrap();
        ws.send(WsMessage::Text(String::from_utf8(frame).unwrap().into()))
            .await
            .unwrap();
    }
}

pub fn rand16() -> [u8; 16] {
    let b = rand_bytes();
    b[..16].try_into().unwrap()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A PKCS#10 request for an Ed25519 key.
pub fn csr_for(key: &SigningKey) -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = key.to_pkcs8_der().unwrap();
    let kp = rcgen::KeyPair::try_from(der.as_bytes()).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "lab-pc-7");
    params.serialize_request(&kp).unwrap().pem().unwrap()
}

pub async fn read_verified(ws: &mut WsStream, srv: &TestServer) -> Payload {
    let keys = tether_server::routes::pairing::gateway_keys(srv.state());
    let keys = serde_json::to_value(keys).unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .expect("frame");
        match m {
            WsMessage::Text(t) => return verify_from_gateway(t.as_bytes(), &keys, &*srv.clock),
            WsMessage::Close(_) => panic!("socket closed without a frame"),
            _ => {}
        }
    }
}

pub fn verify_from_gateway(frame: &[u8], keys: &Value, clock: &dyn Clock) -> Payload {
    let mut ks = StaticKeys::new();
    for k in keys.as_array().unwrap() {
        let raw: [u8; 32] =
            tether_proto::validate::b64url_decode(k["public_key"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
        ks.insert(
            KeyId::parse(k["kid"].as_str().unwrap()).unwrap(),
            ed25519_dalek::VerifyingKey::from_bytes(&raw).unwrap(),
        );
    }
    Verifier::new(&ks, clock).verify(frame).unwrap().payload
}

pub fn error_code(p: &Payload) -> ErrorCode {
    match p {
        Payload::Error(e) => e.code,
        other => panic!("expected an error frame, got {:?}", other.message_type()),
    }
}
