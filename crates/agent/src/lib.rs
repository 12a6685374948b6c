//! `tether-agent`: runs on each PC (Windows first, Linux second) and keeps it reachable by
//! its owner.
//!
//! On first run it creates its Ed25519 key, comes to trust the server's root CA, and pairs
//! (flows 0 and 1 of docs/protocol.md): a signed `discovery_hello` over WSS, the discovery
//! proof and pair request over HTTPS, a QR code for the owner, and polling until the
//! signed `device_activate` arrives with the device certificate. From then on it keeps one
//! mutual-TLS session to the gateway (flow 3): signed `auth`, verified `connected`,
//! heartbeats, and reconnection with backoff.
//!
//! Lines on stdout are for the person at the PC (and for tests that wait for them);
//! diagnostics go to stderr through `tracing` (`TETHER_LOG=debug` for more).

#[macro_use]
mod out;

pub mod backoff;
pub mod cli;
pub mod config;
pub mod error;
pub mod identity;
pub mod pairing;
pub mod platform;
pub mod qr;
pub mod random;
pub mod sequence;
pub mod session;
pub mod socket;
pub mod state;
pub mod status;
pub mod trust;
pub mod wire;

use std::process::ExitCode;
use std::sync::Arc;

use rand_core::OsRng;
use tether_proto::{Clock, SystemClock};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, RunArgs};
use crate::config::{DeviceName, RunConfig, ServerUrl};
use crate::error::AgentError;
use crate::identity::AgentIdentity;
use crate::sequence::SeqCounter;
use crate::state::{ServerRecord, StateDir};
use crate::trust::TrustedCa;
use crate::wire::Outbox;

/// Sends diagnostics to stderr, filtered by `TETHER_LOG` (default `warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command line to its exit code.
pub async fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Status(args) => status::print(&args.state_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say_err!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// What every step of a run shares: settled once at start-up, then passed down.
#[derive(Debug)]
pub struct Context {
    /// The state directory.
    pub state: StateDir,
    /// The server.
    pub server: ServerUrl,
    /// Its trusted root CA.
    pub ca: TrustedCa,
    /// The agent key.
    pub identity: AgentIdentity,
    /// Seals the agent's envelopes (one sequence counter for all of them).
    pub outbox: Outbox,
    /// The clock envelopes are stamped and checked with.
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the agent must stop (Ctrl-C, SIGTERM, service stop).
    pub shutdown: CancellationToken,
    /// When the agent started (for `uptime_s`).
    pub started: tokio::time::Instant,
}

async fn run(args: RunArgs) -> Result<(), AgentError> {
    let cfg = RunConfig::from_args(args)?;
    let state = StateDir::open(&cfg.state_dir)?;
    let server = resolve_server(&state, cfg.server.as_ref())?;
    let ca = trust::establish(&state, &server, &cfg.trust).await?;
    let record = ServerRecord {
        server_url: server.as_str().to_owned(),
        ca_fingerprint: ca.fingerprint.clone(),
    };
    if state.server()?.as_ref() != Some(&record) {
        state.save_server(&record)?;
    }
    let (identity, created) = state.load_or_create_identity(&mut OsRng)?;
    if created {
        say!("Created this PC's agent key (kid {}).", identity.kid());
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let outbox = Outbox::new(
        identity.envelope_signer(),
        clock.clone(),
        SeqCounter::load(&state)?,
    );
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            platform::shutdown_signal().await;
            shutdown.cancel();
        }
    });
    let mut ctx = Context {
        state,
        server,
        ca,
        identity,
        outbox,
        clock,
        shutdown,
        started: tokio::time::Instant::now(),
    };
    let result = run_paired(&mut ctx, cfg.device_name).await;
    signals.abort();
    if ctx.shutdown.is_cancelled() {
        say!("tether-agent stopped.");
    }
    result
}

async fn run_paired(ctx: &mut Context, name: Option<DeviceName>) -> Result<(), AgentError> {
    let device = match ctx.state.device()? {
        Some(d) => d,
        None => {
            let name = name.unwrap_or_else(|| {
                DeviceName::sanitize(&platform::hostname().unwrap_or_else(|| "pc".to_owned()))
            });
            match pairing::pair(ctx, &name).await? {
                Some(d) => d,
                None => return Ok(()),
            }
        }
    };
    if device.record.server_url != ctx.server.as_str() {
        return Err(AgentError::Config(format!(
            "this state dir is paired with {}, not {}",
            device.record.server_url, ctx.server
        )));
    }
    session::run(ctx, &device).await
}

fn resolve_server(state: &StateDir, given: Option<&ServerUrl>) -> Result<ServerUrl, AgentError> {
    let saved = state.server()?;
    match (given, saved) {
        (Some(g), Some(s)) if g.as_str() != s.server_url => Err(AgentError::Config(format!(
            "the state dir {} belongs to {}, not {g}; use another state dir for another server",
            state.root().display(),
            s.server_url
        ))),
        (Some(g), _) => Ok(g.clone()),
        (None, Some(s)) => ServerUrl::parse(&s.server_url),
        (None, None) => Err(AgentError::Config(
            "--server is required the first time (the state dir does not name a server yet)".into(),
        )),
    }
}
