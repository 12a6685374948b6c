//! Pairs devices through the server's real API, the way agents and their owner do it
//! (flows 0 and 1), many at a time:
//!
//! 1. `discovery_hello` over the agent WebSocket (no client certificate) → a signed
//!    `discovery_challenge`;
//! 2. `POST /api/discovery/confirm` with the challenge signed by the agent key;
//! 3. `POST /api/pair/request` with a CSR for the agent key → a pair token;
//! 4. `POST /api/pair/confirm` by the owner (one load user, logged in once);
//! 5. `POST /api/pair/activate` signed by the agent key → a signed `device_activate`
//!    with the device certificate.
//!
//! Every step is rate limited per source address on the server, so a benchmark server
//! raises `pairing.discovery_per_minute`; pairing must not wait for an admin's approval.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{Signer, SigningKey};
use rand_core::OsRng;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::Deserialize;
use serde_json::{Value, json};
use tether_client::{Api, ClientError};
use tether_proto::envelope::EnvelopeSigner;
use tether_proto::messages::discovery::{
    DiscoveryHello, OsFamily, discovery_proof_input, pair_activate_input,
};
use tether_proto::validate::b64url_encode;
use tether_proto::{Clock, Payload, StaticKeys};
use tokio::task::JoinSet;

use crate::LoadError;
use crate::identities::{DeviceIdentity, IdentityFile, OwnerIdentity, VERSION};
use crate::target::{GatewayKey, Target, gateway_key_set, verify_gateway_frame};
use crate::wire::{Outbox, next_frame, random, send};

/// How long the gateway may take to answer a frame.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries per device before it counts as failed.
const TRIES: u32 = 3;

/// What to enroll.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// How many devices.
    pub count: usize,
    /// How many pairings run at once.
    pub concurrency: usize,
    /// The owner account (registered if it does not exist).
    pub email: String,
    /// Its password.
    pub password: String,
}

/// How enrollment went.
#[derive(Debug, Clone)]
pub struct EnrollReport {
    /// Devices paired and activated.
    pub enrolled: usize,
    /// Devices that failed every try.
    pub failed: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Failure reasons (of every failed try) and how often each happened.
    pub errors: BTreeMap<String, usize>,
}

/// What every pairing task shares.
struct Shared {
    target: Target,
    api: Api,
    owner: Api,
    keys: StaticKeys,
    clock: Arc<dyn Clock>,
    next: AtomicUsize,
    done: AtomicUsize,
    count: usize,
    devices: Mutex<Vec<DeviceIdentity>>,
    /// The owner keys the first activation pinned.
    pinned: Mutex<Option<Vec<tether_proto::messages::discovery::OwnerKey>>>,
    errors: Mutex<BTreeMap<String, usize>>,
}

/// Pairs `opts.count` devices with the server at `target`.
pub async fn enroll(
    target: &Target,
    opts: &EnrollOptions,
    clock: Arc<dyn Clock>,
) -> Result<(IdentityFile, EnrollReport), LoadError> {
    let started = Instant::now();
    let api = Api::new(&target.url, &target.ca_pem)?;
    let (token, owner_key) = owner_token(&api, opts).await?;
    let owner = api.clone().with_bearer(&token);
    let (_, gateway_keys): (u16, Vec<GatewayKey>) = api.get("/api/gateway/keys").await?;
    let shared = Arc::new(Shared {
        target: target.clone(),
        api,
        owner,
        keys: gateway_key_set(&gateway_keys)?,
        clock,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        count: opts.count,
        devices: Mutex::new(Vec::with_capacity(opts.count)),
        pinned: Mutex::new(None),
        errors: Mutex::new(BTreeMap::new()),
    });
    let mut workers = JoinSet::new();
    for _ in 0..opts.concurrency.clamp(1, opts.count.max(1)) {
        workers.spawn(worker(Arc::clone(&shared)));
    }
    while workers.join_next().await.is_some() {}

    let devices = std::mem::take(&mut *lock(&shared.devices));
    let errors = std::mem::take(&mut *lock(&shared.errors));
    let report = EnrollReport {
        enrolled: devices.len(),
        failed: opts.count.saturating_sub(devices.len()),
        elapsed: started.elapsed(),
        errors,
    };
    let pinned = lock(&shared.pinned).take().unwrap_or_default();
    let file = IdentityFile {
        version: VERSION,
        server_url: target.url.clone(),
        gateway_keys,
        devices,
        owner: owner_key.map(|key| OwnerIdentity {
            email: opts.email.clone(),
            password: opts.password.clone(),
            key: b64url_encode(key.as_bytes()),
            pinned,
        }),
    };
    Ok((file, report))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A worker that panicked mid-update leaves a usable value: counts and a list.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers the owner (unless it exists) and logs in; returns the access token, and the
/// owner's signing key when this call registered it (an existing account's is unknown).
async fn owner_token(
    api: &Api,
    opts: &EnrollOptions,
) -> Result<(String, Option<SigningKey>), LoadError> {
    let mobile_key = SigningKey::generate(&mut OsRng);
    let registered: Result<(u16, Value), ClientError> = api
        .post(
            "/api/register",
            &json!({
                "email": opts.email,
                "password": opts.password,
                "mobile_pub": b64url_encode(mobile_key.verifying_key().as_bytes()),
            }),
        )
        .await;
    let key = match registered {
        Ok(_) => Some(mobile_key),
        Err(ClientError::Api { status: 409, .. }) => {
            eprintln!(
                "note: {} already exists, so its owner key is unknown here: the devices \
                 cannot be sent signed commands (connect --command-senders)",
                opts.email
            );
            None
        }
        Err(e) => return Err(e.into()),
    };
    Ok((access_token(api, &opts.email, &opts.password).await?, key))
}

/// Logs in with a password (`POST /api/login`); returns the access token.
pub(crate) async fn access_token(
    api: &Api,
    email: &str,
    password: &str,
) -> Result<String, LoadError> {
    #[derive(Deserialize)]
    struct Login {
        access_token: String,
    }
    let (_, login): (u16, Login) = api
        .post("/api/login", &json!({"email": email, "password": password}))
        .await?;
    Ok(login.access_token)
}

async fn worker(shared: Arc<Shared>) {
    loop {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if index >= shared.count {
            return;
        }
        for _ in 0..TRIES {
            match pair_one(&shared, index).await {
                Ok(device) => {
                    lock(&shared.devices).push(device);
                    break;
                }
                Err(e) => {
                    let mut errors = lock(&shared.errors);
                    let n = errors.entry(e.to_string()).or_insert(0);
                    *n = n.saturating_add(1);
                }
            }
        }
        let done = shared
            .done
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if done.is_multiple_of(1000) {
            eprintln!("enrolled {done}/{}", shared.count);
        }
    }
}

/// A PKCS#10 request (PEM) for the agent key, as the agent makes it.
fn csr_pem(key: &SigningKey, name: &str) -> Result<String, LoadError> {
    let crypto = |e: rcgen::Error| LoadError::Format(format!("building the CSR: {e}"));
    let der = key
        .to_pkcs8_der()
        .map_err(|e| LoadError::Format(format!("encoding the key: {e}")))?;
    let pkcs8 = PrivatePkcs8KeyDer::from(der.as_bytes());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(crypto)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(crypto)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
        .serialize_request(&key_pair)
        .and_then(|csr| csr.pem())
        .map_err(crypto)
}

/// Flows 0 and 1 for one new device.
async fn pair_one(shared: &Shared, index: usize) -> Result<DeviceIdentity, LoadError> {
    let key = SigningKey::generate(&mut OsRng);
    let agent_pub = b64url_encode(key.verifying_key().as_bytes());
    let hwid = b64url_encode(&random::<32>());
    let name = format!("load-{index}");
    let mut outbox = Outbox::new(EnvelopeSigner::new(key.clone()));

    // Flow 0: discovery over the agent WebSocket, without a client certificate.
    let mut ws =
        tether_client::connect_agent_ws(&shared.target.url, &shared.target.ca_pem, None).await?;
    let hello = DiscoveryHello {
        hwid_hash: tether_proto::ids::sha256_hex(hwid.as_bytes()),
        nonce: b64url_encode(&random::<32>()),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        agent_manifest_hash: tether_proto::ids::sha256_hex(b"tether-loadgen"),
        agent_pub: agent_pub.clone(),
        os: OsFamily::Linux,
    };
    send(&mut ws, outbox.seal(shared.clock.now(), &hello)?).await?;
    let frame = next_frame(&mut ws, FRAME_TIMEOUT).await?;
    let _ = ws.close(None).await;
    let challenge = match verify_gateway_frame(&frame, &shared.keys, &*shared.clock)? {
        Payload::DiscoveryChallenge(c) => c.challenge_token,
        other => {
            return Err(LoadError::Protocol(format!(
                "expected discovery_challenge, got {}",
                other.message_type().name()
            )));
        }
    };
    let proof = key.sign(&discovery_proof_input(&challenge));
    let (_, _): (u16, Value) = shared
        .api
        .post(
            "/api/discovery/confirm",
            &json!({"challenge_token": challenge, "nonce_signature": b64url_encode(&proof.to_bytes())}),
        )
        .await?;

    // Flow 1: pair request, the owner's confirmation, activation.
    #[derive(Deserialize)]
    struct PairResponse {
        pair_token: String,
    }
    let (_, pair): (u16, PairResponse) = shared
        .api
        .post(
            "/api/pair/request",
            &json!({
                "challenge_token": challenge,
                "device_name": name,
                "hwid": hwid,
                "agent_pub": agent_pub,
                "csr_pem": csr_pem(&key, &name)?,
                "os": "linux",
            }),
        )
        .await?;
    #[derive(Deserialize)]
    struct Paired {
        status: String,
    }
    let (_, paired): (u16, Paired) = shared
        .owner
        .post("/api/pair/confirm", &json!({"pair_token": pair.pair_token}))
        .await?;
    if paired.status != "active" {
        return Err(LoadError::Unmet(format!(
            "the paired device is {} (the benchmark server must not require approval)",
            paired.status
        )));
    }
    let signature = key.sign(&pair_activate_input(&pair.pair_token));
    #[derive(Deserialize)]
    struct Activation {
        activation: Option<String>,
    }
    let (_, activation): (u16, Activation) = shared
        .api
        .post(
            "/api/pair/activate",
            &json!({"pair_token": pair.pair_token, "agent_pub": agent_pub, "signature": b64url_encode(&signature.to_bytes())}),
        )
        .await?;
    let frame = activation
        .activation
        .ok_or_else(|| LoadError::Protocol("activation without a device_activate frame".into()))?;
    let Payload::DeviceActivate(a) =
        verify_gateway_frame(frame.as_bytes(), &shared.keys, &*shared.clock)?
    else {
        return Err(LoadError::Protocol("expected device_activate".into()));
    };
    {
        let mut pinned = lock(&shared.pinned);
        if pinned.is_none() {
            *pinned = Some(a.owner_keys.clone());
        }
    }
    let intermediate = a
        .ca_chain_pem
        .into_iter()
        .next()
        .ok_or_else(|| LoadError::Protocol("device_activate without a CA chain".into()))?;
    Ok(DeviceIdentity::new(
        a.device_id,
        &key,
        a.device_cert_pem,
        intermediate,
    ))
}
