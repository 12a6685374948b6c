//! `tether-agent`: runs on each PC (Windows first, Linux second) and keeps it reachable by
//! its owner.
//!
//! On first run it creates its Ed25519 key, comes to trust the server's root CA, and pairs
//! (flows 0 and 1 of docs/protocol.md): a signed `discovery_hello` over WSS, the discovery
//! proof and pair request over HTTPS, a QR code for the owner, and polling until the
//! signed `device_activate` arrives with the device certificate. From then on it keeps one
//! mutual-TLS session to the gateway (flow 3): signed `auth`, verified `connected`,
//! heartbeats and signed telemetry at the intervals the server names, and reconnection
//! with backoff. While the server is unreachable, telemetry keeps being collected into an
//! encrypted, bounded offline queue and is delivered in order after the next `connected`.
//!
//! Lines on stdout are for the person at the PC (and for tests that wait for them);
//! diagnostics go to stderr through `tracing` (`TETHER_LOG=debug` for more).

#[macro_use]
mod out;

pub mod backoff;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod identity;
pub mod owner;
pub mod pairing;
pub mod platform;
pub mod policy;
pub mod qr;
pub mod queue;
pub mod random;
pub mod sequence;
pub mod service;
pub mod session;
pub mod socket;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod trust;
pub mod uplink;
pub mod wire;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;
use tether_proto::{Clock, SystemClock};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, RunArgs, ServiceAction, ServiceArgs};
use crate::commands::Commands;
use crate::config::{DeviceName, RunConfig, ServerUrl};
use crate::error::AgentError;
use crate::identity::AgentIdentity;
use crate::queue::Queue;
use crate::sequence::SeqCounter;
use crate::state::{PairedDevice, ServerRecord, StateDir};
use crate::trust::TrustedCa;
use crate::uplink::{DEFAULT_TELEMETRY_INTERVAL_S, Uplink};
use crate::wire::Outbox;

/// Sends diagnostics, filtered by `TETHER_LOG` (default `warn`), to stderr; under the
/// Windows service control manager (`service run`), together with what it would print
/// (default level `info`), to
/// `logs\tether-agent.log` beside its state dir (`%ProgramData%\Tether\logs`) instead.
pub fn init_logging(cli: &Cli) {
    let file = match &cli.command {
        Command::Service(ServiceArgs {
            action: ServiceAction::Run(run),
        }) if cfg!(windows) => Some((
            tether_service::log::logs_dir(&run.state_dir),
            service::SERVICE_NAME,
        )),
        _ => None,
    };
    if file.is_some() {
        out::to_log();
        // What the agent says at a prompt is what its log must record as a service.
        tether_service::log::init("info", file);
    } else {
        tether_service::log::init("warn", None);
    }
}

/// Runs a parsed command line to its exit code.
pub async fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Status(args) => status::print(&args.state_dir).await,
        Command::Install(args) => service::install(args),
        Command::Uninstall(args) => service::uninstall(args),
        Command::Service(args) => service::service(args).await,
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
    run_until(args, CancellationToken::new()).await
}

/// `run`, also stopped when `shutdown` is cancelled (the Windows service's Stop), besides
/// Ctrl-C and the platform's stop signals.
pub async fn run_until(args: RunArgs, shutdown: CancellationToken) -> Result<(), AgentError> {
    let cfg = RunConfig::from_args(args)?;
    let state = StateDir::open(&cfg.state_dir)?;
    let server = resolve_server(&state, cfg.server.as_ref())?;
    let Some(ca) = establish_trust(&state, &server, &cfg.trust, &shutdown).await? else {
        say!("tether-agent stopped.");
        return Ok(());
    };
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
    state.write_agent_pub(&identity)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let outbox = Outbox::new(
        identity.envelope_signer(),
        clock.clone(),
        SeqCounter::load(&state)?,
    );
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
    let result = run_paired(&mut ctx, &cfg).await;
    signals.abort();
    if ctx.shutdown.is_cancelled() {
        say!("tether-agent stopped.");
    }
    result
}

/// [`trust::establish`], waiting while the server cannot be reached: a PC whose agent
/// is installed before the server is up, or that boots off the network, keeps trying
/// (with the session's backoff) instead of exiting. Any other failure (a fingerprint that
/// does not match, a bad state dir) ends the run. `None` when stopped meanwhile.
async fn establish_trust(
    state: &StateDir,
    server: &ServerUrl,
    source: &config::TrustSource,
    shutdown: &CancellationToken,
) -> Result<Option<TrustedCa>, AgentError> {
    let mut backoff = backoff::Backoff::default();
    loop {
        match trust::establish(state, server, source).await {
            Ok(ca) => return Ok(Some(ca)),
            Err(AgentError::Client(tether_client::ClientError::Transport(why))) => {
                let delay = backoff.next_delay(random::u32());
                say!(
                    "Cannot reach {server} to fetch its CA ({why}); trying again in {} s.",
                    delay.as_secs().max(1)
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return Ok(None),
                    () = platform::shutdown_signal() => return Ok(None),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

async fn run_paired(ctx: &mut Context, cfg: &RunConfig) -> Result<(), AgentError> {
    let device = match ctx.state.device()? {
        Some(d) => d,
        None => {
            let name = cfg.device_name.clone().unwrap_or_else(|| {
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
    connected_with_telemetry(ctx, cfg, &device).await
}

/// The session, with the telemetry sampler and the offline queue around it.
async fn connected_with_telemetry(
    ctx: &mut Context,
    cfg: &RunConfig,
    device: &PairedDevice,
) -> Result<(), AgentError> {
    let queue = Queue::open_or_reset(&ctx.state, cfg.queue).await?;
    // Until a server names an interval in this run, the last one it named applies.
    let last_interval_s = ctx
        .state
        .session()
        .ok()
        .flatten()
        .and_then(|s| s.telemetry_interval_s)
        .unwrap_or(DEFAULT_TELEMETRY_INTERVAL_S);
    let server_interval = Duration::from_secs(u64::from(last_interval_s.clamp(1, 3600)));
    let (interval_tx, interval_rx) = tokio::sync::watch::channel(server_interval);
    let (samples_tx, samples_rx) = tokio::sync::mpsc::channel(16);
    let sampler = telemetry::spawn_sampler(
        ctx.clock.clone(),
        interval_rx,
        samples_tx,
        ctx.shutdown.child_token(),
    );
    let mut uplink = Uplink::new(
        queue,
        samples_rx,
        interval_tx,
        cfg.offline_telemetry_interval,
        server_interval,
        ctx.clock.clone(),
    );
    let uploader = tether_client::Api::with_identity(
        ctx.server.as_str(),
        &ctx.ca.pem,
        tether_client::ClientIdentity {
            chain: session::certificate_chain(device)?,
            key: ctx.identity.tls_key(),
        },
    )
    .map(|api| commands::artifact::Uploader { api })
    .map_err(|e| tracing::warn!(error = %e, "no artifact uploads: the API client failed"))
    .ok();
    let mut commands = Commands::start(
        &ctx.state,
        &ctx.identity,
        &device.record.device_id,
        owner::OwnerTrust::new(&device.record.owner_keys, &device.record.server_url)
            .at_version(device.record.owner_keys_version),
        cfg.helper.clone(),
        uploader,
        ctx.clock.clone(),
        ctx.shutdown.child_token(),
    )
    .await?;
    let result = session::run(ctx, device, &mut uplink, &mut commands).await;
    commands.stop().await;
    sampler.abort();
    let _ = sampler.await;
    uplink.close().await;
    result
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
