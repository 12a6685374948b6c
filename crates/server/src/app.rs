//! Start-up: open the keystore, CA, token keys, store and bus; issue the TLS certificate;
//! bind; serve until told to stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use tether_bus::{Bus, EmbeddedBus, OwnThread, RedisBus};
use tether_proto::Clock;
use tether_proto::envelope::EnvelopeSigner;
use tether_store::{FileTuning, MysqlStore, SqliteStore, Store};
use tether_trust::ca::ROOT_CERT_FILE;
use tether_trust::{
    CaNames, CertificateAuthority, FileKeystore, Issuer, IssuerConfig, KeyRing, KeyRingConfig,
    Keystore, SharedKeyRing, TrustError, Validator, ValidatorConfig,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use webauthn_rs::prelude::Url;

use crate::config::{BusConfig, Config, StoreConfig};
use crate::state::{AppState, Inner};
use crate::tls::{ReloadableClientVerifier, server_config};

/// Keystore blob holding the gateway's envelope signing key (sealed).
const GATEWAY_KEY_FILE: &str = "gateway-envelope-key.sealed";
const GATEWAY_KEY_LABEL: &str = "tether/gateway-envelope-key/v1";
const OBJECTS_URL_KEY_FILE: &str = "objects-url-key.sealed";
const OBJECTS_URL_KEY_LABEL: &str = "tether/objects-url-key/v1";

/// How often background upkeep runs (key rotation, CRL refresh).
const UPKEEP_EVERY: Duration = Duration::from_secs(300);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Keys, CA or tokens.
    #[error("trust: {0}")]
    Trust(#[from] TrustError),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] tether_store::StoreError),
    /// The bus.
    #[error("bus: {0}")]
    Bus(#[from] tether_bus::BusError),
    /// TLS.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Files and sockets.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The public URL.
    pub public_url: String,
    /// The state (for in-process tests and admin commands).
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, drains connections (up to the grace period) and waits.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// A token that, when cancelled, stops the server.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server stops (after the token is cancelled).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Opens the store the configuration names.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    open_store_tuned(config, FileTuning::SHARED).await
}

/// Opens the store the configuration names; SQLite files with pools sized by `tuning`
/// (the analytics, which write a fleet's telemetry, use [`FileTuning::BULK_WRITER`]).
pub async fn open_store_tuned(
    config: &Config,
    tuning: FileTuning,
) -> Result<Arc<dyn Store>, StartError> {
    Ok(match &config.store {
        StoreConfig::Sqlite { path } => {
            Arc::new(SqliteStore::open_tuned(&config.in_data_dir(path), tuning).await?)
        }
        StoreConfig::Mysql { url } => Arc::new(MysqlStore::connect(url).await?),
    })
}

async fn open_bus(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<dyn Bus>, StartError> {
    Ok(match &config.bus {
        // On a thread of its own: see `OwnThread` (a commit holds the one writer
        // connection; the shared runtime would stretch that out under load).
        BusConfig::Embedded { path } => Arc::new(OwnThread::start(
            Arc::new(EmbeddedBus::open(&config.in_data_dir(path), "tether", clock).await?),
            "tether-bus",
        )?),
        BusConfig::Redis { url, namespace } => Arc::new(RedisBus::connect(url, namespace).await?),
    })
}

/// The organization named in the CA certificates the server makes.
const CA_ORGANIZATION: &str = "Tether";

/// Opens the keystore under the data dir, creating both if needed.
fn open_keystore(config: &Config) -> Result<Arc<dyn Keystore>, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(io(format!(
        "creating data dir {}",
        config.data_dir.display()
    )))?;
    Ok(Arc::new(FileKeystore::open_or_create(
        config.data_dir.join("keys"),
    )?))
}

/// A CA an operator brings instead of the one the server would create (see [`import_ca`]).
#[derive(Clone, Copy)]
pub enum CaImport<'a> {
    /// The operator's root certificate and its private key (PEM). The key is sealed into the
    /// keystore like a created root's, and the server signs its own intermediate with it.
    Root {
        /// The root certificate.
        cert_pem: &'a str,
        /// The root's private key, PKCS#8 or SEC1, unencrypted.
        key_pem: &'a str,
    },
    /// The operator's root certificate alone (its key stays offline) and an intermediate
    /// CA certificate it signed, with the intermediate's private key (PEM).
    Intermediate {
        /// The root certificate.
        root_cert_pem: &'a str,
        /// The intermediate certificate.
        cert_pem: &'a str,
        /// The intermediate's private key (ECDSA P-256), PKCS#8 or SEC1, unencrypted.
        key_pem: &'a str,
    },
}

impl std::fmt::Debug for CaImport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaImport::Root { .. } => f.write_str("CaImport::Root { .. }"),
            CaImport::Intermediate { .. } => f.write_str("CaImport::Intermediate { .. }"),
        }
    }
}

/// Imports an operator's CA into the keystore under the data dir, where [`start`] then
/// finds it (`tether-server import-ca`). Refused, writing no CA file, if the keystore
/// already holds a CA or if what is given is not a usable CA (see
/// [`CertificateAuthority::import`] and [`CertificateAuthority::import_with_intermediate`]).
pub fn import_ca(
    config: &Config,
    clock: Arc<dyn Clock>,
    ca: CaImport<'_>,
) -> Result<CertificateAuthority, StartError> {
    let keystore = open_keystore(config)?;
    Ok(match ca {
        CaImport::Root { cert_pem, key_pem } => CertificateAuthority::import(
            keystore,
            clock,
            &CaNames::for_organization(CA_ORGANIZATION),
            cert_pem,
            key_pem,
        )?,
        CaImport::Intermediate {
            root_cert_pem,
            cert_pem,
            key_pem,
        } => CertificateAuthority::import_with_intermediate(
            keystore,
            clock,
            root_cert_pem,
            cert_pem,
            key_pem,
        )?,
    })
}

/// Opens the CA in the keystore (created or imported), or creates one on first start.
fn open_ca(
    keystore: &Arc<dyn Keystore>,
    clock: &Arc<dyn Clock>,
) -> Result<CertificateAuthority, StartError> {
    if keystore.read(ROOT_CERT_FILE)?.is_some() {
        Ok(CertificateAuthority::load(
            Arc::clone(keystore),
            Arc::clone(clock),
        )?)
    } else {
        tracing::info!("creating the CA (root sealed at rest, intermediate online)");
        Ok(CertificateAuthority::create(
            Arc::clone(keystore),
            Arc::clone(clock),
            &CaNames::for_organization(CA_ORGANIZATION),
        )?)
    }
}

fn gateway_signer(keystore: &dyn Keystore) -> Result<EnvelopeSigner, StartError> {
    let key = match keystore.load_sealed(GATEWAY_KEY_FILE, GATEWAY_KEY_LABEL)? {
        Some(bytes) => {
            let arr: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| StartError::Other("the gateway key blob is not 32 bytes".into()))?;
            SigningKey::from_bytes(&arr)
        }
        None => {
            let key = SigningKey::from_bytes(&crate::random::bytes::<32>());
            keystore.store_sealed(GATEWAY_KEY_FILE, GATEWAY_KEY_LABEL, key.as_bytes())?;
            key
        }
    };
    Ok(EnvelopeSigner::new(key))
}

/// The gateway's envelope signing key as the server with this data dir keeps it (sealed
/// in the keystore under `<data_dir>/keys`), opened without creating anything: `None` if
/// that server has not made one yet. For tests that play a compromised server (frames
/// signed with the real key, `tether-e2e`) and offline tools; [`start`] loads it itself.
pub fn read_gateway_signer(
    data_dir: &std::path::Path,
) -> Result<Option<EnvelopeSigner>, StartError> {
    let keystore = FileKeystore::open(data_dir.join("keys"))?;
    let Some(bytes) = keystore.load_sealed(GATEWAY_KEY_FILE, GATEWAY_KEY_LABEL)? else {
        return Ok(None);
    };
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StartError::Other("the gateway key blob is not 32 bytes".into()))?;
    Ok(Some(EnvelopeSigner::new(SigningKey::from_bytes(&arr))))
}

/// The HMAC key of the local object store's signed URLs (32 random bytes, sealed).
fn objects_url_key(keystore: &dyn Keystore) -> Result<zeroize::Zeroizing<Vec<u8>>, StartError> {
    match keystore.load_sealed(OBJECTS_URL_KEY_FILE, OBJECTS_URL_KEY_LABEL)? {
        Some(k) if k.len() == 32 => Ok(k),
        Some(_) => Err(StartError::Other(
            "the objects URL key blob is not 32 bytes".into(),
        )),
        None => {
            let k = crate::random::bytes::<32>();
            keystore.store_sealed(OBJECTS_URL_KEY_FILE, OBJECTS_URL_KEY_LABEL, &k)?;
            Ok(zeroize::Zeroizing::new(k.to_vec()))
        }
    }
}

fn crls(
    ca: &CertificateAuthority,
    clock: &dyn Clock,
) -> Result<Vec<CertificateRevocationListDer<'static>>, StartError> {
    let crl = ca.crl(clock.now())?;
    Ok(vec![CertificateRevocationListDer::from(crl.der().to_vec())])
}

/// Refreshes the CRL the TLS verifier uses (after a revocation, and periodically).
pub fn reload_crl(state: &AppState) -> Result<(), StartError> {
    let c = crls(&state.ca, &*state.clock)?;
    state.client_verifier.reload(c)?;
    Ok(())
}

fn host_of(url: &str) -> Option<String> {
    Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
}

/// Starts the server. Returns once it is listening.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Running, StartError> {
    let keystore = open_keystore(&config)?;
    let ca = Arc::new(open_ca(&keystore, &clock)?);

    let now = clock.now();
    let ring_cfg = KeyRingConfig {
        rotation_interval: Duration::from_secs(config.auth.rotation_s),
        overlap: Duration::from_secs(
            config
                .auth
                .rotation_s
                .saturating_add(config.auth.refresh_ttl_s),
        ),
    };
    let ring = KeyRing::load_or_generate(&*keystore, ring_cfg, now)?;
    let ring = SharedKeyRing::new(ring);
    if ring.rotate_if_due(now)? {
        ring.read().save(&*keystore)?;
    }

    let store = open_store(&config).await?;
    // The analytics' own connections to the same database: with tens of thousands of
    // agent sessions waiting for connections in the shared pool, a worker storing
    // thousands of samples a second must not queue behind them.
    // Opened on the analytics' own thread, at the priority of bulk work: the threads of
    // its connections are started from there and inherit it (`crate::priority`).
    // Not with a Redis bus: a connection the analytics open goes back to the bus's shared
    // pool with its driver on their runtime, and would serve the live hub from there.
    let bulk_nice = match config.bus {
        BusConfig::Embedded { .. } => config.telemetry.bulk_nice,
        BusConfig::Redis { .. } => 0,
    };
    let analytics_thread = crate::offload::Offload::start_bulk("tether-analytics", bulk_nice)
        .map_err(|e| StartError::Other(format!("starting the analytics' thread: {e}")))?;
    let analytics_config = config.clone();
    let analytics_store = analytics_thread
        .run(async move { open_store_tuned(&analytics_config, FileTuning::BULK_WRITER).await })
        .await
        .ok_or_else(|| StartError::Other("opening the analytics' store panicked".into()))??;
    let session_store = open_store_tuned(&config, FileTuning::SESSION_READS).await?;
    let bus = open_bus(&config, Arc::clone(&clock)).await?;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(io(format!("binding {}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(io("reading the bound address"))?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://localhost:{}", addr.port()))
        .trim_end_matches('/')
        .to_owned();

    let mut issuer_cfg = IssuerConfig::new(public_url.clone());
    issuer_cfg.lifetimes.access = Duration::from_secs(config.auth.access_ttl_s);
    issuer_cfg.lifetimes.refresh = Duration::from_secs(config.auth.refresh_ttl_s);
    issuer_cfg.lifetimes.pair = Duration::from_secs(config.pairing.discovery_ttl_s);
    let issuer = Issuer::new(ring.clone(), issuer_cfg)?;
    let validator = Validator::new(ring.clone(), ValidatorConfig::new(public_url.clone()))?;

    // The server certificate: localhost, loopback, the public host and any configured names.
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    names.extend(host_of(&public_url));
    names.extend(config.tls_names.iter().cloned());
    if !addr.ip().is_unspecified() {
        names.push(addr.ip().to_string());
    }
    names.sort();
    names.dedup();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let server_cert = ca.issue_server_certificate(&name_refs)?;
    let chain = vec![
        CertificateDer::from(server_cert.certificate.der.clone()),
        CertificateDer::from(ca.certificates().intermediate_der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_cert.key_pkcs8_der.to_vec()));
    let client_verifier = Arc::new(ReloadableClientVerifier::new(
        CertificateDer::from(ca.certificates().root_der().to_vec()),
        crls(&ca, &*clock)?,
    )?);
    let tls = Arc::new(server_config(chain, key, Arc::clone(&client_verifier))?);

    let rp_origin =
        Url::parse(&public_url).map_err(|e| StartError::Other(format!("public_url: {e}")))?;
    let rp_id = rp_origin.host_str().unwrap_or("localhost").to_owned();
    let webauthn = webauthn_rs::WebauthnBuilder::new(&rp_id, &rp_origin)
        .and_then(|b| b.rp_name("Tether").build())
        .map_err(|e| StartError::Other(format!("WebAuthn relying party: {e}")))?;

    let gateway_signer = gateway_signer(&*keystore)?;
    let url_key = objects_url_key(&*keystore)?;
    let objects = tether_objects::open(&config.objects, &config.data_dir, &public_url, &url_key)
        .await
        .map_err(|e| StartError::Other(format!("objects: {e}")))?;
    let (webhook, webhook_worker) =
        crate::alerts::Webhook::from_config(&config.alerts, Arc::clone(&clock))
            .map_err(|e| StartError::Other(e.to_string()))?;
    let signatures = crate::gateway::SignatureChecker::start()
        .map_err(|e| StartError::Other(format!("starting the signature checker: {e}")))?;
    let session_reads = crate::offload::Offload::start("tether-session-reads")
        .map_err(|e| StartError::Other(format!("starting the session reads' thread: {e}")))?;
    let device_reads =
        crate::gateway::DeviceReads::start(Arc::clone(&session_store), &session_reads);
    let state = AppState::new(Inner {
        config: config.clone(),
        public_url: public_url.clone(),
        clock: Arc::clone(&clock),
        store,
        session_store,
        bus,
        keystore,
        ca,
        ring,
        issuer,
        validator,
        gateway_signer,
        client_verifier,
        webauthn,
        node_id: crate::random::id("node"),
        webhook,
        objects,
        live: crate::live::LiveHub::new(),
        telemetry_backlog: std::sync::atomic::AtomicU64::new(0),
        telemetry_out: crate::gateway::TelemetryBatcher::default(),
        signatures,
        session_reads,
        device_reads,
    });

    let shutdown = CancellationToken::new();
    crate::prom::install();
    let router = crate::routes::router(state.clone());
    let serve_task = tokio::spawn(crate::serve::serve(
        listener,
        tls,
        router,
        shutdown.clone(),
        Duration::from_secs(10),
    ));
    let upkeep_task = tokio::spawn(upkeep(state.clone(), shutdown.clone()));
    // The live hub: fans the bus's live events out to this process's clients and agents.
    let live_task = tokio::spawn(crate::live::LiveHub::run(state.clone(), shutdown.clone()));

    // The telemetry pipeline: analytics, rollups, offline alerts, the alert webhook.
    let worker_tasks = crate::workers::spawn_all(
        &state,
        analytics_thread,
        analytics_store,
        webhook_worker,
        &shutdown,
    );

    if let Some(path) = &config.ready_file {
        write_ready_file(path, addr, &public_url, &state)?;
    }
    tracing::info!(%addr, %public_url, roles = %state.config.roles_label(), store = state.store.backend(), bus = state.bus.backend(), "tether-server listening");
    let mut tasks = vec![serve_task, upkeep_task, live_task];
    tasks.push(tokio::spawn(crate::prom::upkeep(shutdown.clone())));
    tasks.extend(worker_tasks);
    Ok(Running {
        addr,
        public_url,
        state,
        shutdown,
        tasks,
    })
}

fn write_ready_file(
    path: &PathBuf,
    addr: SocketAddr,
    public_url: &str,
    state: &AppState,
) -> Result<(), StartError> {
    let body = serde_json::json!({
        "addr": addr.to_string(),
        "public_url": public_url,
        "ca_pem": state.ca.certificates().root_pem(),
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string()).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("writing {}", path.display())))
}

async fn upkeep(state: AppState, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(UPKEEP_EVERY) => {}
        }
        let now = state.now();
        match state.ring.rotate_if_due(now) {
            Ok(true) => {
                if let Err(e) = state.ring.read().save(&*state.keystore) {
                    tracing::error!(error = %e, "saving the rotated JWT key ring failed");
                } else {
                    tracing::info!("rotated the JWT signing key");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "JWT key rotation failed"),
        }
        if let Err(e) = reload_crl(&state) {
            tracing::error!(error = %e, "refreshing the CRL failed");
        }
    }
}
