//! The baselines Tether's figures are divided by: the least a server could do with the
//! same agents.
//!
//! - **B1** (`Kind::Idle`): a bare tokio-tungstenite + rustls server, TLS 1.3 only, that
//!   requires the same device certificates (verified against the Tether root CA the
//!   devices chain to) and holds WebSocket connections, reading and dropping every
//!   message. Its memory per connection is the floor for the gateway's.
//! - **B2** (`Kind::Verify`): the same, verifying each text message as a Tether envelope
//!   signed by one of the enrolled device keys (one Ed25519 signature, the header, the
//!   body's schema and its freshness: what `tether_proto::Verifier` does). Its rate of
//!   verified messages is the ceiling for the gateway's telemetry.
//!
//! Both use the same WebSocket buffer settings as the gateway (4 KiB read buffer, no
//! write buffering) and one tokio runtime, like the server. The server's certificate is
//! issued by a throw-away CA of its own, written with the address to a ready file in the
//! shape `tether-server --ready-file` writes, so `tether-loadgen connect --bare` can be
//! pointed at either. Counters go to a stats file every 500 ms (there is no HTTP here).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use tether_proto::envelope::EnvelopeSigner;
use tether_proto::{Clock, MAX_FRAME_BYTES, StaticKeys, SystemClock, Verifier};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::LoadError;
use crate::identities::IdentityFile;

/// How often the stats file is rewritten.
const STATS_EVERY: Duration = Duration::from_millis(500);

/// Which baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// B1: hold connections, read and drop messages.
    Idle,
    /// B2: verify every text message as a device-signed envelope.
    Verify,
}

/// What to serve.
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    /// B1 or B2.
    pub kind: Kind,
    /// The devices (their certificates' root is the one client certificates must chain
    /// to; their keys are the ones B2 verifies with).
    pub identities: PathBuf,
    /// The Tether root CA (PEM) the device certificates chain to.
    pub client_ca_pem: String,
    /// Where to write `{public_url, ca_pem, addr}` once listening.
    pub ready_file: PathBuf,
    /// Where to write the counters.
    pub stats_file: PathBuf,
}

/// The counters in the stats file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineStats {
    /// Connections that completed TLS and the WebSocket upgrade.
    pub connections: u64,
    /// Connections open now.
    pub open: u64,
    /// Text messages received.
    pub messages: u64,
    /// Of those, verified (B2 only).
    pub verified: u64,
    /// Of those, refused by the verifier (B2 only).
    pub refused: u64,
    /// TLS or WebSocket handshakes that failed.
    pub handshake_failures: u64,
}

impl BaselineStats {
    /// Reads a stats file.
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(LoadError::io(format!(
            "reading the stats file {}",
            path.display()
        )))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| LoadError::Format(format!("stats file {}: {e}", path.display())))
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    open: AtomicU64,
    messages: AtomicU64,
    verified: AtomicU64,
    refused: AtomicU64,
    handshake_failures: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> BaselineStats {
        BaselineStats {
            connections: self.connections.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            verified: self.verified.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Listens on 127.0.0.1 (a free port) and writes the ready file `connect` and `relay`
/// read: `{public_url, ca_pem, addr}`, in the shape `tether-server --ready-file` writes.
pub(crate) async fn listen(
    ready_file: &Path,
    ca_pem: &str,
) -> Result<(TcpListener, std::net::SocketAddr), LoadError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(LoadError::io("binding 127.0.0.1:0"))?;
    let addr = listener
        .local_addr()
        .map_err(LoadError::io("the listening address"))?;
    let ready = serde_json::json!({
        "public_url": format!("https://localhost:{}", addr.port()),
        "ca_pem": ca_pem,
        "addr": addr.to_string(),
    });
    std::fs::write(ready_file, ready.to_string())
        .map_err(LoadError::io(format!("writing {}", ready_file.display())))?;
    Ok((listener, addr))
}

/// The next accepted connection (with `TCP_NODELAY`), or `None` once `stop` is
/// cancelled. A failed accept (out of descriptors, say: the benchmark will show the
/// failures) is logged and retried after 50 ms.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    stop: &CancellationToken,
) -> Option<tokio::net::TcpStream> {
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            r = listener.accept() => match r {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    return Some(tcp);
                }
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves until `stop` is cancelled.
pub async fn serve(opts: &BaselineOptions, stop: CancellationToken) -> Result<(), LoadError> {
    let file = IdentityFile::read(&opts.identities)?;
    let mut keys = StaticKeys::new();
    for d in &file.devices {
        let signer = EnvelopeSigner::new(d.signing_key()?);
        keys.insert(signer.kid().clone(), signer.verifying_key());
    }
    let keys = Arc::new(keys);
    let (acceptor, ca_pem) = tls(&opts.client_ca_pem)?;
    let (listener, addr) = listen(&opts.ready_file, &ca_pem).await?;
    eprintln!(
        "baseline {:?} listening on {addr} ({} device keys)",
        opts.kind,
        file.devices.len()
    );

    let counters = Arc::new(Counters::default());
    let stats = tokio::spawn(write_stats(
        opts.stats_file.clone(),
        Arc::clone(&counters),
        stop.clone(),
    ));
    while let Some(tcp) = next_connection(&listener, &stop).await {
        tokio::spawn(connection(
            tcp,
            acceptor.clone(),
            opts.kind,
            Arc::clone(&keys),
            Arc::clone(&counters),
            stop.clone(),
        ));
    }
    let _ = stats.await;
    std::fs::write(
        &opts.stats_file,
        serde_json::to_vec(&counters.snapshot()).unwrap_or_default(),
    )
    .map_err(LoadError::io("writing the stats file"))?;
    Ok(())
}

async fn write_stats(path: PathBuf, counters: Arc<Counters>, stop: CancellationToken) {
    let tmp = path.with_extension("tmp");
    loop {
        let body = serde_json::to_vec(&counters.snapshot()).unwrap_or_default();
        if std::fs::write(&tmp, body).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(STATS_EVERY) => {}
        }
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    kind: Kind,
    keys: Arc<StaticKeys>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    // As tether-server does.
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let handshake = async {
        let tls = acceptor.accept(tcp).await.ok()?;
        tokio_tungstenite::accept_async_with_config(tls, Some(config))
            .await
            .ok()
    };
    let Some(mut ws) = tokio::time::timeout(Duration::from_secs(30), handshake)
        .await
        .ok()
        .flatten()
    else {
        bump(&counters.handshake_failures);
        return;
    };
    bump(&counters.connections);
    bump(&counters.open);
    let clock = SystemClock;
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            m = ws.next() => m,
        };
        match msg {
            Some(Ok(WsMessage::Text(t))) => {
                bump(&counters.messages);
                if kind == Kind::Verify {
                    match Verifier::new(&*keys, &clock as &dyn Clock).verify(t.as_bytes()) {
                        Ok(_) => bump(&counters.verified),
                        Err(_) => bump(&counters.refused),
                    }
                }
            }
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    counters.open.fetch_sub(1, Ordering::Relaxed);
}

/// A server certificate for `localhost` and 127.0.0.1, issued by a throw-away CA: the
/// chain, its key, and the CA's PEM for the clients to trust.
pub(crate) fn server_identity()
-> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String), LoadError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| LoadError::Format(format!("{what}: {e}"));
    let ca_key = KeyPair::generate().map_err(|e| bad("CA key", &e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| bad("CA", &e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tether-loadgen baseline CA");
    let ca = ca_params
        .self_signed(&ca_key)
        .map_err(|e| bad("CA certificate", &e))?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(|e| bad("server key", &e))?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])
        .map_err(|e| bad("server certificate", &e))?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| bad("server certificate", &e))?;
    Ok((
        vec![cert.der().clone(), ca.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ca.pem(),
    ))
}

/// The TLS 1.3 acceptor (client certificates required, chaining to `client_ca_pem`) and
/// the PEM of the throw-away CA that issued the server's certificate.
fn tls(client_ca_pem: &str) -> Result<(TlsAcceptor, String), LoadError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| LoadError::Format(format!("{what}: {e}"));
    let (chain, key, ca_pem) = server_identity()?;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        let c = c.map_err(|e| bad("the client CA", &e))?;
        roots.add(c).map_err(|e| bad("the client CA", &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| bad("client verifier", &e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad("TLS", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad("server certificate", &e))?;
    Ok((TlsAcceptor::from(Arc::new(config)), ca_pem))
}
