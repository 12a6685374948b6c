//! Holds N idle agent sessions and measures what they cost the server.
//!
//! Each session is what a paired agent keeps open: an mTLS WebSocket with the device
//! certificate, a signed `auth`, a signed `connected` back, then one signed heartbeat per
//! `heartbeat_interval_s` (which the gateway answers by refreshing presence on the bus).
//! At most `concurrency` sessions are being set up at once; once all are up (or failed),
//! they are held for `hold` while the server's `VmRSS` is sampled every second.
//!
//! With `telemetry_every`, each held session also sends a signed `telemetry` sample at
//! that interval (the sessions' first samples spread over one interval), and the report
//! has the rate sent, the rate the server counted as accepted (its
//! `tether_telemetry_accepted_total`, scraped from `/metrics` before and after the hold),
//! what it refused by code, and its CPU use over the hold (`/proc/<pid>/stat`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use tether_client::WsStream;
use tether_proto::envelope::EnvelopeSigner;
use tether_proto::messages::session::{
    Auth, DiskUsage, Heartbeat, HeartbeatStatus, NetUsage, Telemetry, telemetry_backoff,
};
use tether_proto::validate::b64url_encode;
use tether_proto::{Clock, ErrorCode, MAX_FRAME_BYTES, Payload, StaticKeys};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::LoadError;
use crate::commands::{self, Answer, Answerer, CommandOptions, CommandReport};
use crate::identities::{DeviceIdentity, IdentityFile};
use crate::rss::{self, Memory};
use crate::server_stats::{self, TelemetryCounters};
use crate::server_trust::{self, SharedServerVerifier};
use crate::target::{Target, gateway_key_set, verify_gateway_frame, verify_gateway_payload};
use crate::wire::{Outbox, next_frame, random, send};

/// How long the gateway may take to answer `auth`.
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing session waits for the server's close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often memory is sampled while the sessions are held.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The heartbeat interval against a baseline server (the gateway's default).
const BARE_HEARTBEAT: Duration = Duration::from_secs(30);
/// How long the server may take, after the hold, to count the telemetry it was sent.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a progress line is printed while the sessions are held.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The server's telemetry counters: from a baseline's stats file (verified messages
/// count as accepted), or from `/metrics` when a metrics token was given.
async fn counters(
    target: &Target,
    opts: &ConnectOptions,
) -> Result<Option<TelemetryCounters>, LoadError> {
    if let Some(stats) = &opts.bare {
        let s = crate::baseline::BaselineStats::read(stats)?;
        let mut c = TelemetryCounters {
            accepted: s.verified,
            stored: 0,
            rejected: BTreeMap::new(),
        };
        if s.refused > 0 {
            c.rejected.insert("REFUSED".into(), s.refused);
        }
        return Ok(Some(c));
    }
    match opts.metrics_token.as_deref() {
        Some(t) => server_stats::scrape(target, t).await.map(Some),
        None => Ok(None),
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How many sessions (at most the number of identities past `offset`).
    pub count: usize,
    /// Skip this many identities first (several load generator processes share one
    /// identities file, each with its own slice).
    pub offset: usize,
    /// How many sessions are being set up at once.
    pub concurrency: usize,
    /// How long all sessions stay idle once they are up.
    pub hold: Duration,
    /// How long setting all of them up may take.
    pub setup_timeout: Duration,
    /// The server process whose memory is sampled.
    pub server_pid: Option<u32>,
    /// Each session sends a telemetry sample this often while held (none when `None`).
    pub telemetry_every: Option<Duration>,
    /// The server's `metrics.token`, to read its telemetry counters from `/metrics`.
    pub metrics_token: Option<String>,
    /// Against a baseline server (B1, B2): no `auth`/`connected` exchange, heartbeats
    /// every 30 s; the telemetry counters come from the baseline's stats file.
    pub bare: Option<PathBuf>,
    /// Local addresses the sessions connect from, in turn (e.g. 127.0.0.1 … 127.0.0.4):
    /// each pair of addresses has its own ~28,000 ephemeral ports. Empty: the OS picks.
    pub sources: Vec<std::net::IpAddr>,
    /// Command senders run over the hold (none when `None`); needs the identities
    /// file's owner.
    pub commands: Option<CommandOptions>,
    /// After the hold, every session drops its connection at once (no close frame) and
    /// reconnects: the report says how long until all were back.
    pub storm: bool,
}

/// What a run measured. Memory is in KiB (`/proc`'s "kB").
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectReport {
    /// Sessions asked for.
    pub requested: usize,
    /// Sessions that got `connected`.
    pub established: usize,
    /// Sessions that failed before `connected`.
    pub failed: usize,
    /// Established sessions that ended before the hold was over, or were sent a frame
    /// they do not expect (an `error` frame that names none of their messages).
    pub dropped: usize,
    /// Frames of the sessions the server refused one by one (an `error` frame naming
    /// the frame, such as a sample refused with 9002 while the server is behind on
    /// storing telemetry); the session goes on. Reasons in `errors`.
    pub frames_refused: usize,
    /// Times a session paused its telemetry after a `9002` naming one of its frames,
    /// for 3 to 5 telemetry intervals (`tether_proto`'s `telemetry_backoff`), as
    /// Tether's agent does.
    pub telemetry_pauses: u64,
    /// Heartbeats sent while the sessions were held.
    pub heartbeats_sent: u64,
    /// The server's heartbeat interval, from `connected`.
    pub heartbeat_interval_s: u64,
    /// From the first connect to the last `connected` (or failure), seconds.
    pub establish_s: f64,
    /// How long the sessions were held once all were up, seconds.
    pub hold_s: f64,
    /// Server `VmRSS` before the first connection.
    pub rss_before_kib: Option<u64>,
    /// Server `VmRSS` right after the last session was established.
    pub rss_connected_kib: Option<u64>,
    /// Highest server `VmRSS` sampled while all sessions were held.
    pub rss_held_peak_kib: Option<u64>,
    /// Server `VmRSS` at the end of the hold.
    pub rss_held_end_kib: Option<u64>,
    /// Server `VmRSS` after every session was closed.
    pub rss_closed_kib: Option<u64>,
    /// Server `VmHWM` (peak resident size since it started) at the end of the hold.
    pub hwm_kib: Option<u64>,
    /// `(rss_held_peak − rss_before) / established`, in bytes.
    pub bytes_per_connection: Option<u64>,
    /// Failure reasons and how often each happened.
    pub errors: BTreeMap<String, usize>,
    /// Telemetry samples sent while the sessions were held.
    pub telemetry_sent: u64,
    /// `telemetry_sent / hold_s`.
    pub telemetry_sent_per_s: f64,
    /// How many more samples the server counted as accepted over the hold (its
    /// `tether_telemetry_accepted_total`), when a metrics token was given.
    pub telemetry_accepted: Option<u64>,
    /// `telemetry_accepted / hold_s`.
    pub telemetry_accepted_per_s: Option<f64>,
    /// How many more samples the server's analytics stored over the hold (its
    /// `tether_telemetry_stored_total`), when a metrics token was given.
    pub telemetry_stored: Option<u64>,
    /// `telemetry_stored / hold_s`.
    pub telemetry_stored_per_s: Option<f64>,
    /// Samples sent in all (the hold, and those sealed as it closed).
    pub telemetry_sent_total: u64,
    /// Samples the server counted as accepted in all, once it had worked through its
    /// backlog (or [`DRAIN_TIMEOUT`] passed): equal to `telemetry_sent_total` when none
    /// was lost.
    pub telemetry_accepted_total: Option<u64>,
    /// How long the server took, after the hold, to count the rest.
    pub telemetry_drain_s: f64,
    /// Telemetry the server refused over the hold, by error code.
    pub telemetry_rejected: BTreeMap<String, u64>,
    /// The server's CPU use over the hold, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Deliveries the sessions answered (acked and ran, or rejected).
    pub deliveries_answered: u64,
    /// Command round trips seen by the senders.
    pub commands: Option<CommandReport>,
    /// Why the command senders failed, when they did (then `commands` is `None`).
    pub commands_failed: Option<String>,
    /// The reconnect storm, when asked for.
    pub storm: Option<StormReport>,
}

/// How a reconnect storm went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StormReport {
    /// Sessions that dropped their connection at once.
    pub dropped: usize,
    /// Of those, how many were authenticated again (`connected`).
    pub reconnected: usize,
    /// How many could not reconnect (reasons in `errors`).
    pub failed: usize,
    /// From the drop to the last `connected`, seconds.
    pub seconds: f64,
}

impl ConnectReport {
    /// The bytes per connection in KiB, for display.
    pub fn kib_per_connection(&self) -> Option<f64> {
        self.bytes_per_connection.map(|b| b as f64 / 1024.0)
    }
}

/// What every session task shares.
struct Shared {
    target: Target,
    /// Verifies the server's chain for every session (once a minute, see the module).
    server_trust: Arc<SharedServerVerifier>,
    keys: StaticKeys,
    clock: Arc<dyn Clock>,
    setup: Semaphore,
    stop: CancellationToken,
    /// Against a baseline server: no `auth`.
    bare: bool,
    /// Cancelled when every session is up: telemetry starts then.
    hold: CancellationToken,
    established: AtomicUsize,
    failed: AtomicUsize,
    dropped: AtomicUsize,
    refused: AtomicUsize,
    telemetry_pauses: AtomicU64,
    heartbeats: AtomicU64,
    telemetry: AtomicU64,
    telemetry_every: Option<Duration>,
    /// Set when the hold is over: no more telemetry.
    quiet: std::sync::atomic::AtomicBool,
    interval_s: AtomicU64,
    errors: Mutex<BTreeMap<String, usize>>,
    /// Answers command deliveries.
    answerer: Answerer,
    answered: AtomicU64,
    /// Cancelled to drop every connection at once and reconnect.
    storm: CancellationToken,
    storm_started: Mutex<Option<Instant>>,
    reconnected: AtomicUsize,
    storm_failed: AtomicUsize,
    /// Milliseconds from the storm to the latest reconnection.
    storm_last_ms: AtomicU64,
}

impl Shared {
    fn record(&self, counter: &AtomicUsize, why: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = errors.entry(why).or_insert(0);
        *n = n.saturating_add(1);
    }

    fn settled(&self) -> usize {
        self.established
            .load(Ordering::Relaxed)
            .saturating_add(self.failed.load(Ordering::Relaxed))
    }
}

fn sample(pid: Option<u32>) -> Result<Option<Memory>, LoadError> {
    pid.map(rss::sample).transpose()
}

/// Opens `opts.count` sessions with the identities in `file`, holds them, closes them,
/// and reports.
pub async fn run(
    target: &Target,
    file: &IdentityFile,
    opts: &ConnectOptions,
    clock: Arc<dyn Clock>,
) -> Result<ConnectReport, LoadError> {
    if opts.offset.saturating_add(opts.count) > file.devices.len() {
        return Err(LoadError::Unmet(format!(
            "{} sessions from identity {} on asked for, but the identities file holds {} devices",
            opts.count,
            opts.offset,
            file.devices.len()
        )));
    }
    let shared = Arc::new(Shared {
        target: target.clone(),
        server_trust: SharedServerVerifier::new(&target.ca_pem)?,
        keys: gateway_key_set(&file.gateway_keys)?,
        clock,
        setup: Semaphore::new(opts.concurrency.max(1)),
        stop: CancellationToken::new(),
        hold: CancellationToken::new(),
        bare: opts.bare.is_some(),
        established: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        dropped: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
        telemetry_pauses: AtomicU64::new(0),
        heartbeats: AtomicU64::new(0),
        telemetry: AtomicU64::new(0),
        telemetry_every: opts.telemetry_every.filter(|d| !d.is_zero()),
        quiet: std::sync::atomic::AtomicBool::new(false),
        interval_s: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
        answerer: Answerer::new(file.owner.as_ref().map_or(&[][..], |o| &o.pinned)),
        answered: AtomicU64::new(0),
        storm: CancellationToken::new(),
        storm_started: Mutex::new(None),
        reconnected: AtomicUsize::new(0),
        storm_failed: AtomicUsize::new(0),
        storm_last_ms: AtomicU64::new(0),
    });
    let owner = match (&opts.commands, &file.owner) {
        (Some(_), None) => {
            return Err(LoadError::Unmet(
                "--command-senders needs an identities file whose owner `enroll` registered \
                 (it holds the owner key commands are signed with)"
                    .into(),
            ));
        }
        (Some(c), Some(o)) => Some((c.clone(), o.clone())),
        (None, _) => None,
    };
    let mut report = ConnectReport {
        requested: opts.count,
        rss_before_kib: sample(opts.server_pid)?.map(|m| m.rss_kib),
        ..ConnectReport::default()
    };

    let started = Instant::now();
    let mut sessions = JoinSet::new();
    for (i, device) in file
        .devices
        .iter()
        .skip(opts.offset)
        .take(opts.count)
        .enumerate()
    {
        let source = opts
            .sources
            .get(i.checked_rem(opts.sources.len()).unwrap_or(0))
            .copied();
        sessions.spawn(session(device.clone(), source, Arc::clone(&shared)));
    }
    let deadline = started.checked_add(opts.setup_timeout);
    while shared.settled() < opts.count {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!(
                "setup timed out after {}s with {} of {} sessions settled",
                opts.setup_timeout.as_secs(),
                shared.settled(),
                opts.count
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report.establish_s = started.elapsed().as_secs_f64();
    report.rss_connected_kib = sample(opts.server_pid)?.map(|m| m.rss_kib);
    eprintln!(
        "{} established, {} failed in {:.1}s; holding for {}s",
        shared.established.load(Ordering::Relaxed),
        shared.failed.load(Ordering::Relaxed),
        report.establish_s,
        opts.hold.as_secs()
    );

    let counters_before = counters(target, opts).await?;
    let cpu_before = opts.server_pid.map(server_stats::cpu_seconds).transpose()?;
    let telemetry_before = shared.telemetry.load(Ordering::Relaxed);
    shared.hold.cancel();
    let senders_stop = CancellationToken::new();
    // The senders' thread stops with this function, however it returns.
    let _senders_stopped = senders_stop.clone().drop_guard();
    let senders = owner.map(|(c, o)| {
        let (url, ca_pem) = (target.url.clone(), target.ca_pem.clone());
        let devices: Vec<String> = file
            .devices
            .iter()
            .skip(opts.offset)
            .take(opts.count)
            .map(|d| d.device_id.clone())
            .collect();
        let clock = Arc::clone(&shared.clock);
        let stop = senders_stop.clone();
        commands::on_own_thread(async move {
            let api = tether_client::Api::new(&url, &ca_pem)?;
            commands::send_commands(&api, &o, &devices, &c, clock, stop).await
        })
    });
    let held = Instant::now();
    let mut last = None;
    let mut progress = Instant::now();
    while held.elapsed() < opts.hold {
        tokio::time::sleep(SAMPLE_EVERY.min(opts.hold.saturating_sub(held.elapsed()))).await;
        if let Some(m) = sample(opts.server_pid)? {
            report.rss_held_peak_kib = report.rss_held_peak_kib.max(Some(m.rss_kib));
            last = Some(m);
        }
        if progress.elapsed() >= PROGRESS_EVERY {
            progress = Instant::now();
            eprintln!(
                "  held {:>4.0}s of {}s: {} up, {} dropped, {} heartbeats, {} telemetry sent, {} deliveries answered",
                held.elapsed().as_secs_f64(),
                opts.hold.as_secs(),
                shared.established.load(Ordering::Relaxed),
                shared.dropped.load(Ordering::Relaxed),
                shared.heartbeats.load(Ordering::Relaxed),
                shared.telemetry.load(Ordering::Relaxed),
                shared.answered.load(Ordering::Relaxed),
            );
        }
    }
    let hold_s = held.elapsed().as_secs_f64();
    // The senders stop with the hold; their last commands are waited for below, after
    // the telemetry window's figures are taken.
    senders_stop.cancel();
    // The window closes: what the server counted by now is its sustained rate; then the
    // sessions stop sending and whatever it still has queued must arrive, none lost.
    let at_end = counters(target, opts).await?;
    shared.quiet.store(true, Ordering::Relaxed);
    report.telemetry_sent = shared
        .telemetry
        .load(Ordering::Relaxed)
        .saturating_sub(telemetry_before);
    if let (Some(before), Some(pid)) = (cpu_before, opts.server_pid) {
        let after = server_stats::cpu_seconds(pid)?;
        report.server_cpu_pct = Some((after - before) / hold_s.max(f64::EPSILON) * 100.0);
    }
    if let (Some(before), Some(at_end)) = (&counters_before, &at_end) {
        let d = at_end.since(before);
        report.telemetry_accepted = Some(d.accepted);
        report.telemetry_accepted_per_s = Some(d.accepted as f64 / hold_s.max(f64::EPSILON));
        report.telemetry_stored = Some(d.stored);
        report.telemetry_stored_per_s = Some(d.stored as f64 / hold_s.max(f64::EPSILON));
    }
    if let Some(before) = &counters_before
        && shared.telemetry_every.is_some()
    {
        // A sample being sealed as the window closed may still be counted as sent.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = shared
            .telemetry
            .load(Ordering::Relaxed)
            .saturating_sub(telemetry_before);
        let waited = Instant::now();
        loop {
            let now = counters(target, opts)
                .await?
                .unwrap_or_default()
                .since(before);
            let settled = now
                .accepted
                .saturating_add(now.rejected.values().sum::<u64>());
            if settled >= sent || waited.elapsed() >= DRAIN_TIMEOUT {
                report.telemetry_sent_total = sent;
                report.telemetry_accepted_total = Some(now.accepted);
                report.telemetry_drain_s = waited.elapsed().as_secs_f64();
                report.telemetry_rejected = now.rejected;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    report.telemetry_sent_per_s = report.telemetry_sent as f64 / hold_s.max(f64::EPSILON);
    // A sender that failed (its login timed out on an overloaded server, say) is
    // reported, and fails the run after the report is written: the telemetry and storm
    // figures of the run are not thrown away with it.
    if let Some(task) = senders {
        match task.await {
            Ok(Ok(r)) => report.commands = Some(r),
            Ok(Err(e)) => report.commands_failed = Some(e.to_string()),
            Err(_) => report.commands_failed = Some("the command senders' thread stopped".into()),
        }
    }
    if opts.hold.is_zero() {
        last = sample(opts.server_pid)?;
        report.rss_held_peak_kib = last.map(|m| m.rss_kib);
    }
    report.hold_s = hold_s;
    report.rss_held_end_kib = last.map(|m| m.rss_kib);
    report.hwm_kib = last.map(|m| m.hwm_kib);
    report.established = shared.established.load(Ordering::Relaxed);
    report.failed = shared.failed.load(Ordering::Relaxed);
    report.dropped = shared.dropped.load(Ordering::Relaxed);
    report.frames_refused = shared.refused.load(Ordering::Relaxed);
    report.telemetry_pauses = shared.telemetry_pauses.load(Ordering::Relaxed);
    report.heartbeats_sent = shared.heartbeats.load(Ordering::Relaxed);
    report.heartbeat_interval_s = shared.interval_s.load(Ordering::Relaxed);
    report.bytes_per_connection = match (report.rss_before_kib, report.rss_held_peak_kib) {
        (Some(before), Some(peak)) if report.established > 0 => peak
            .saturating_sub(before)
            .saturating_mul(1024)
            .checked_div(u64::try_from(report.established).unwrap_or(u64::MAX)),
        _ => None,
    };

    if opts.storm {
        report.storm = Some(storm(&shared, opts).await);
    }
    report.deliveries_answered = shared.answered.load(Ordering::Relaxed);

    shared.stop.cancel();
    while sessions.join_next().await.is_some() {}
    // Let the server finish its disconnect bookkeeping before the last sample.
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.rss_closed_kib = sample(opts.server_pid)?.map(|m| m.rss_kib);
    report.errors = std::mem::take(
        &mut *shared
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok(report)
}

/// Drops every held session's connection at once and waits until all are back (or the
/// setup timeout passes).
async fn storm(shared: &Shared, opts: &ConnectOptions) -> StormReport {
    let dropped = shared
        .established
        .load(Ordering::Relaxed)
        .saturating_sub(shared.dropped.load(Ordering::Relaxed));
    eprintln!("reconnect storm: dropping {dropped} connections at once");
    *shared
        .storm_started
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    shared.storm.cancel();
    let started = Instant::now();
    let mut progress = Instant::now();
    loop {
        let back = shared.reconnected.load(Ordering::Relaxed);
        let failed = shared.storm_failed.load(Ordering::Relaxed);
        if back.saturating_add(failed) >= dropped || started.elapsed() >= opts.setup_timeout {
            break;
        }
        if progress.elapsed() >= Duration::from_secs(2) {
            progress = Instant::now();
            eprintln!(
                "  storm {:>4.1}s: {back} of {dropped} back, {failed} failed",
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = StormReport {
        dropped,
        reconnected: shared.reconnected.load(Ordering::Relaxed),
        failed: shared.storm_failed.load(Ordering::Relaxed),
        seconds: shared.storm_last_ms.load(Ordering::Relaxed) as f64 / 1000.0,
    };
    eprintln!(
        "reconnect storm: {} of {} back in {:.1}s, {} failed",
        r.reconnected, r.dropped, r.seconds, r.failed
    );
    r
}

/// Sets a session up under the setup semaphore.
async fn setup(
    device: &DeviceIdentity,
    source: Option<std::net::IpAddr>,
    shared: &Shared,
) -> Result<(WsStream, Outbox, Duration), LoadError> {
    let Ok(_permit) = shared.setup.acquire().await else {
        return Err(LoadError::Unmet("stopped before connected".into()));
    };
    tokio::select! {
        r = open(device, source, shared) => r,
        () = shared.stop.cancelled() => Err(LoadError::Unmet("stopped before connected".into())),
    }
}

/// How a held session ended.
enum Ended {
    /// Stopped, or dropped (already recorded).
    Over,
    /// The storm: reconnect.
    Storm,
}

/// One agent session: set up under the semaphore, held until told to stop; in a storm,
/// dropped and set up again.
async fn session(device: DeviceIdentity, source: Option<std::net::IpAddr>, shared: Arc<Shared>) {
    let (mut ws, mut outbox, interval) = match setup(&device, source, &shared).await {
        Ok(s) => s,
        Err(e) => {
            shared.record(&shared.failed, e.to_string());
            return;
        }
    };
    shared
        .interval_s
        .store(interval.as_secs(), Ordering::Relaxed);
    shared.established.fetch_add(1, Ordering::Relaxed);
    let mut stormed = false;
    loop {
        match held(&mut ws, &mut outbox, interval, &device, &shared, !stormed).await {
            Ended::Over => return,
            Ended::Storm => {
                stormed = true;
                // Dropped, not closed: the server sees the TCP connection end.
                drop(ws);
                match setup(&device, source, &shared).await {
                    Ok((w, o, _)) => {
                        (ws, outbox) = (w, o);
                        let since = shared
                            .storm_started
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .map_or(0, |t| {
                                u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
                            });
                        shared.storm_last_ms.fetch_max(since, Ordering::Relaxed);
                        shared.reconnected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        shared.record(&shared.storm_failed, format!("storm: {e}"));
                        return;
                    }
                }
            }
        }
    }
}

/// Holds an established session: heartbeats, telemetry, answers to deliveries.
async fn held(
    ws: &mut WsStream,
    outbox: &mut Outbox,
    interval: Duration,
    device: &DeviceIdentity,
    shared: &Shared,
    storm_pending: bool,
) -> Ended {
    let connected_at = Instant::now();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now()
            .checked_add(interval)
            .unwrap_or_else(tokio::time::Instant::now),
        interval,
    );
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Telemetry: a ticker that never fires without `telemetry_every`, else from the hold
    // on, the first sample at a random point of the first interval.
    let every = shared
        .telemetry_every
        .unwrap_or(Duration::from_secs(86_400));
    let later = |d: Duration| {
        let now = tokio::time::Instant::now();
        now.checked_add(d).unwrap_or(now)
    };
    let mut telemetry = tokio::time::interval_at(later(every), every);
    telemetry.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut sending = false;
    loop {
        if !sending
            && shared.telemetry_every.is_some()
            && shared.hold.is_cancelled()
            && !shared.quiet.load(Ordering::Relaxed)
        {
            sending = true;
            let offset = every.mul_f64(f64::from(random::<1>()[0]) / 256.0);
            telemetry.reset_at(later(offset));
        }
        tokio::select! {
            () = shared.hold.cancelled(), if !sending && !shared.hold.is_cancelled() && shared.telemetry_every.is_some() => {}
            _ = telemetry.tick(), if sending => {
                if shared.quiet.load(Ordering::Relaxed) {
                    sending = false;
                    continue;
                }
                let sample = sample_telemetry(shared.clock.now());
                if !seal_and_send(ws, outbox, shared, &sample, "telemetry", &shared.telemetry).await {
                    return Ended::Over;
                }
            }
            () = shared.storm.cancelled(), if storm_pending => return Ended::Storm,
            () = shared.stop.cancelled() => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
                return Ended::Over;
            }
            _ = ticker.tick() => {
                let hb = Heartbeat {
                    status: HeartbeatStatus::Alive,
                    uptime_s: connected_at.elapsed().as_secs(),
                    queue_depth: 0,
                };
                if !seal_and_send(ws, outbox, shared, &hb, "heartbeat", &shared.heartbeats).await {
                    return Ended::Over;
                }
            }
            incoming = ws.next() => match incoming {
                Some(Ok(WsMessage::Text(t))) => {
                    let why = match verify_gateway_payload(t.as_bytes(), &shared.keys, &*shared.clock) {
                        Err(e) => e.to_string(),
                        // One of our frames refused (a sample while the server is
                        // behind, 9002): the session goes on; after a 9002 it sends no
                        // telemetry for 3 to 5 intervals, as Tether's agent does.
                        Ok(Payload::Error(e)) if e.ref_message_id.is_some() => {
                            shared.record(
                                &shared.refused,
                                format!("a frame refused: {} {}", e.code.number(), e.code.name()),
                            );
                            if e.code == ErrorCode::Unavailable && sending {
                                let pause = telemetry_backoff(every, random::<1>()[0]);
                                telemetry.reset_at(later(pause));
                                shared.telemetry_pauses.fetch_add(1, Ordering::Relaxed);
                            }
                            continue;
                        }
                        Ok(Payload::Error(e)) => format!(
                            "the gateway refused: {} {}: {}",
                            e.code.number(),
                            e.code.name(),
                            e.message
                        ),
                        Ok(Payload::CommandDelivery(d)) => {
                            if answer(ws, outbox, device, shared, &d).await {
                                continue;
                            }
                            return Ended::Over;
                        }
                        Ok(p) => format!("unexpected {} frame", p.message_type().name()),
                    };
                    shared.record(&shared.dropped, why);
                    return Ended::Over;
                }
                Some(Ok(WsMessage::Close(c))) => {
                    let reason = c.map(|c| c.reason.to_string()).unwrap_or_default();
                    shared.record(&shared.dropped, format!("closed by the server ({reason})"));
                    return Ended::Over;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    shared.record(&shared.dropped, format!("websocket: {e}"));
                    return Ended::Over;
                }
                None => {
                    shared.record(&shared.dropped, "connection ended".into());
                    return Ended::Over;
                }
            },
        }
    }
}

/// Answers a delivery (ack, status, result; or a rejecting ack); `false` when the
/// session is over.
async fn answer(
    ws: &mut WsStream,
    outbox: &mut Outbox,
    device: &DeviceIdentity,
    shared: &Shared,
    d: &tether_proto::messages::command::CommandDelivery,
) -> bool {
    let ok = match shared
        .answerer
        .answer(&device.device_id, d, shared.clock.now())
    {
        Answer::Ran(ack, status, result) => {
            let none = AtomicU64::new(0);
            seal_and_send(ws, outbox, shared, &ack, "command_ack", &none).await
                && seal_and_send(ws, outbox, shared, &status, "command_status", &none).await
                && seal_and_send(ws, outbox, shared, &*result, "command_result", &none).await
        }
        Answer::Rejected(ack) => {
            let none = AtomicU64::new(0);
            seal_and_send(ws, outbox, shared, &ack, "command_ack", &none).await
        }
    };
    if ok {
        shared.answered.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

/// Seals `body` on the session's sequence and sends it, counting it in `sent`; a failure
/// is recorded as a drop (`false`: the session is over).
async fn seal_and_send<M: tether_proto::Message>(
    ws: &mut WsStream,
    outbox: &mut Outbox,
    shared: &Shared,
    body: &M,
    what: &str,
    sent: &AtomicU64,
) -> bool {
    let result = match outbox.seal(shared.clock.now(), body) {
        Ok(frame) => send(ws, frame).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            sent.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(e) => {
            shared.record(&shared.dropped, format!("{what}: {e}"));
            false
        }
    }
}

/// A TCP connection to the server of `url` (`https://host:port`) from `source`.
async fn connect_from(
    source: std::net::IpAddr,
    url: &str,
) -> Result<tokio::net::TcpStream, LoadError> {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let addrs = tokio::net::lookup_host(authority)
        .await
        .map_err(|e| LoadError::Socket(format!("resolving {authority}: {e}")))?;
    let dest = addrs
        .into_iter()
        .find(|a| a.is_ipv4() == source.is_ipv4())
        .ok_or_else(|| LoadError::Socket(format!("{authority} has no address like {source}")))?;
    let socket = if source.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| LoadError::Socket(e.to_string()))?;
    socket
        .bind(std::net::SocketAddr::new(source, 0))
        .map_err(|e| LoadError::Socket(format!("binding {source}: {e}")))?;
    let tcp = socket
        .connect(dest)
        .await
        .map_err(|e| LoadError::Socket(format!("connecting {source} -> {dest}: {e}")))?;
    // As the agent does (tether_client::connect_agent_ws): no Nagle delay.
    tcp.set_nodelay(true)
        .map_err(|e| LoadError::Socket(format!("TCP_NODELAY: {e}")))?;
    Ok(tcp)
}

/// A plausible sample (a PC at a third of its CPU, half its memory, one disk).
fn sample_telemetry(now: tether_proto::UnixMillis) -> Telemetry {
    Telemetry {
        collected_at: now,
        cpu_pct: 33.0,
        mem_used_bytes: 8 << 30,
        mem_total_bytes: 16 << 30,
        disks: vec![DiskUsage {
            mount: "C:\\".into(),
            used_bytes: 200 << 30,
            total_bytes: 500 << 30,
        }],
        net: NetUsage {
            rx_bps: 12_000.0,
            tx_bps: 3_000.0,
            rx_total_bytes: 1 << 30,
            tx_total_bytes: 1 << 28,
        },
    }
}

/// mTLS connect, signed `auth`, verified `connected`; returns the open socket, the
/// session's outbox and the heartbeat interval.
async fn open(
    device: &DeviceIdentity,
    source: Option<std::net::IpAddr>,
    shared: &Shared,
) -> Result<(WsStream, Outbox, Duration), LoadError> {
    let key = device.signing_key()?;
    let tls = server_trust::client_config(
        Arc::clone(&shared.server_trust),
        device.client_identity(&key)?,
    )?;
    // Small buffers: the client's memory does not count, but 10,000 sockets with the
    // 128 KiB defaults would still take over a gigabyte here.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let connector = Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls)));
    let url = tether_client::agent_ws_url(&shared.target.url);
    let (mut ws, _) = match source {
        None => {
            tokio_tungstenite::connect_async_tls_with_config(url, Some(ws_config), true, connector)
                .await
        }
        Some(ip) => {
            let tcp = connect_from(ip, &shared.target.url).await?;
            tokio_tungstenite::client_async_tls_with_config(url, tcp, Some(ws_config), connector)
                .await
        }
    }
    .map_err(|e| LoadError::Socket(e.to_string()))?;

    let mut outbox = Outbox::new(EnvelopeSigner::new(key));
    if shared.bare {
        return Ok((ws, outbox, BARE_HEARTBEAT));
    }
    let auth = Auth {
        device_id: device.device_id.clone(),
        nonce: b64url_encode(&random::<32>()),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        last_seq_received: 0,
        policy_version: None,
        owner_keys_version: None,
    };
    send(&mut ws, outbox.seal(shared.clock.now(), &auth)?).await?;
    let frame = next_frame(&mut ws, AUTH_TIMEOUT).await?;
    match verify_gateway_frame(&frame, &shared.keys, &*shared.clock)? {
        Payload::Connected(c) => Ok((
            ws,
            outbox,
            Duration::from_secs(u64::from(c.heartbeat_interval_s.max(5))),
        )),
        other => Err(LoadError::Protocol(format!(
            "expected connected, got {}",
            other.message_type().name()
        ))),
    }
}
