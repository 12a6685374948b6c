//! Application state shared by every handler: configuration, clock, backends and the
//! trust objects. Cloning is cheap (one `Arc`).

use std::sync::Arc;

use tether_bus::Bus;
use tether_proto::envelope::EnvelopeSigner;
use tether_proto::{Clock, UnixMillis};
use tether_store::Store;
use tether_trust::{CertificateAuthority, Issuer, Keystore, SharedKeyRing, Validator};
use webauthn_rs::Webauthn;

use crate::config::Config;
use crate::tls::ReloadableClientVerifier;

/// The JWT audience of tokens for this server's API.
pub const API_AUDIENCE: &str = "tether-api";

/// Everything a handler may need.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// Validated configuration.
    pub config: Config,
    /// The URL clients use (`https://host:port`, no trailing slash).
    pub public_url: String,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// The same store through pools of its own, for the agent sessions' reads of their
    /// device (at connect, on `session_reads`, and at each heartbeat, many in a query
    /// through `device_reads`): a fleet's heartbeats arriving together queue there, not
    /// in front of commands and the API ([`tether_store::FileTuning::SESSION_READS`]).
    pub session_store: Arc<dyn Store>,
    /// The bus.
    pub bus: Arc<dyn Bus>,
    /// Keys and sealed blobs.
    pub keystore: Arc<dyn Keystore>,
    /// The CA (intermediate online).
    pub ca: Arc<CertificateAuthority>,
    /// JWT signing keys.
    pub ring: SharedKeyRing,
    /// Issues JWTs.
    pub issuer: Issuer,
    /// Validates JWTs.
    pub validator: Validator,
    /// Signs envelopes the gateway sends to agents.
    pub gateway_signer: EnvelopeSigner,
    /// The TLS client verifier, reloaded when the CRL changes.
    pub client_verifier: Arc<ReloadableClientVerifier>,
    /// WebAuthn relying party.
    pub webauthn: Webauthn,
    /// This process's id on the bus (for presence and consumer names).
    pub node_id: String,
    /// Where alerts are posted (a no-op without `alerts.webhook_url`).
    pub webhook: crate::alerts::Webhook,
    /// The object store (artifacts); with the local backend the server serves its
    /// signed URLs itself.
    pub objects: tether_objects::ObjectsBackend,
    /// This process's fan-out of live events to live-view clients and agent sessions.
    pub live: crate::live::LiveHub,
    /// The telemetry stream's backlog as last read (by the `telemetry-backlog` worker,
    /// once a second), for the gateway's admission of samples.
    pub telemetry_backlog: std::sync::atomic::AtomicU64,
    /// Appends the samples this process's sessions accept to the telemetry stream, many
    /// an entry.
    pub telemetry_out: crate::gateway::TelemetryBatcher,
    /// Checks the telemetry samples' signatures in batches, on a thread of its own.
    pub signatures: crate::gateway::SignatureChecker,
    /// Where the agent sessions' store work at connect and at each heartbeat runs (see
    /// [`crate::offload`]).
    pub session_reads: crate::offload::Offload,
    /// The sessions' reads of their device at each heartbeat, asked together (on
    /// `session_reads`, from `session_store`).
    pub device_reads: crate::gateway::DeviceReads,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Now, from the injected clock.
    pub fn now(&self) -> UnixMillis {
        self.0.clock.now()
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
