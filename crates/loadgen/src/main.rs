//! `tether-loadgen`: pairs devices with a Tether server, then holds idle agent sessions
//! and reports what they cost the server. A benchmarking tool (see docs/benchmarks.md
//! and bench/idle_connections.sh); never point it at a server that matters.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tether_loadgen::LoadError;
use tether_loadgen::baseline::{self, BaselineOptions, Kind};
use tether_loadgen::commands::CommandOptions;
use tether_loadgen::connect::{self, ConnectOptions, ConnectReport};
use tether_loadgen::enroll::{self, EnrollOptions};
use tether_loadgen::identities::IdentityFile;
use tether_loadgen::target::Target;
use tether_proto::{Clock, SystemClock};

/// Load generator for the Tether gateway: many idle mTLS agent sessions.
///
/// Step 1, `enroll`, pairs N devices through the server's real API (discovery, confirm,
/// pair request, owner confirm, activate) and writes their keys and certificates to a
/// file. The server must allow that many pairings a minute from one address
/// (pairing.discovery_per_minute) and must not require admin approval.
///
/// Step 2, `connect`, opens one mTLS WebSocket per device, authenticates, keeps the
/// sessions with heartbeats (and telemetry at a chosen rate), and samples the server's
/// VmRSS and CPU (pass --server-pid). Run it as its own process so that only the
/// server's use is measured.
///
/// `baseline` serves a bare TLS 1.3 WebSocket server (B1: holds connections; B2: also
/// verifies each message's signature) for `connect --bare-stats` to measure beside
/// Tether (docs/benchmarks.md).
///
/// The command round trip has two floors: `relay-server` + `relay` (B3: HTTPS in, a Redis
/// stream, a WebSocket push to the agent and back) and `nats` (request-reply through a
/// nats-server); both sign and verify at each end.
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Args {
    /// The JSON file `tether-server --ready-file` wrote (the URL and the root CA).
    #[arg(long, global = true, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pair N devices through the API and write their identities to a file.
    Enroll {
        /// How many devices.
        #[arg(long)]
        count: usize,
        /// Where to write the identities (device keys: keep it to benchmarks).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// How many pairings run at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// The owner account (registered if missing).
        #[arg(long, default_value = "loadgen@bench.example")]
        email: String,
        /// The owner's password.
        #[arg(long, default_value = "loadgen-benchmark-password")]
        password: String,
    },
    /// Serve a baseline (B1 or B2) for the devices in an identities file, until stopped
    /// (SIGTERM, Ctrl-C). --ready-file is the Tether server's: its root CA is the one
    /// client certificates must chain to.
    Baseline {
        /// idle: B1, hold connections; verify: B2, also verify each message.
        #[arg(long, value_enum)]
        kind: Kind,
        /// The identities file `enroll` wrote (B2 verifies with their keys).
        #[arg(long, value_name = "FILE")]
        identities: PathBuf,
        /// Where to write this server's own ready file (URL, CA) for `connect`.
        #[arg(long, value_name = "FILE")]
        out_ready_file: PathBuf,
        /// Where to keep the counters (connections, messages, verified, refused).
        #[arg(long, value_name = "FILE")]
        stats_file: PathBuf,
    },
    /// Hold N agent sessions and report what they cost the server.
    Connect {
        /// The identities file `enroll` wrote.
        #[arg(long, value_name = "FILE")]
        identities: PathBuf,
        /// How many sessions [default: every identity in the file past --offset].
        #[arg(long)]
        count: Option<usize>,
        /// Start at this identity (to split one file between several processes).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// How many sessions are being set up at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds to hold all sessions idle once they are up (at least one heartbeat
        /// interval, so that presence refreshes are part of the figure).
        #[arg(long, default_value_t = 45)]
        hold_s: u64,
        /// Seconds that setting up every session may take.
        #[arg(long, default_value_t = 600)]
        setup_timeout_s: u64,
        /// The server's process id, whose VmRSS is sampled.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Also write the report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Exit with an error when the server's memory per connection is this many KiB
        /// or more.
        #[arg(long, value_name = "KIB")]
        max_kib_per_connection: Option<f64>,
        /// While held, each session sends a signed telemetry sample every this many
        /// milliseconds (so N sessions send N × 1000 / MS samples a second). None by
        /// default: the sessions idle with heartbeats only.
        #[arg(long, value_name = "MS")]
        telemetry_interval_ms: Option<u64>,
        /// The server's `metrics.token`: the report then has the telemetry the server
        /// counted as accepted and refused (from its /metrics).
        #[arg(long, env = "TETHER_LOADGEN_METRICS_TOKEN", value_name = "TOKEN")]
        metrics_token: Option<String>,
        /// Exit with an error when the server accepted fewer telemetry samples per second
        /// than this (needs --metrics-token).
        #[arg(long, value_name = "PER_S")]
        min_telemetry_per_s: Option<f64>,
        /// Connect from these local addresses in turn (comma-separated, e.g.
        /// 127.0.0.1,127.0.0.2): past the ~28,000 ephemeral ports one source address has
        /// toward one server port. Loopback only.
        #[arg(long, value_delimiter = ',', value_name = "IP,...")]
        source_addrs: Vec<std::net::IpAddr>,
        /// The server is a baseline (`baseline`, its --out-ready-file as --ready-file):
        /// no auth, heartbeats every 30 s, and its counters from this stats file.
        #[arg(long, value_name = "FILE")]
        bare_stats: Option<PathBuf>,
        /// Run this many command senders over the hold, each with one signed
        /// `lock_screen` in flight at a time (the sessions answer from a simulated
        /// helper); the report has the round trips' percentiles. Needs the owner in the
        /// identities file (an owner `enroll` registered).
        #[arg(long, value_name = "M")]
        command_senders: Option<usize>,
        /// How long each sender waits between one command's end and its next.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        command_pause_ms: u64,
        /// Fail unless the commands' p99 round trip is at most this.
        #[arg(long, value_name = "MS")]
        max_command_p99_ms: Option<f64>,
        /// After the hold, drop every connection at once and reconnect them all
        /// (a reconnect storm); the report says how long that took.
        #[arg(long)]
        storm: bool,
        /// Fail unless every session is back within this many seconds of the storm.
        #[arg(long, value_name = "S")]
        max_storm_s: Option<f64>,
    },
    /// The NATS baseline: request-reply through a nats-server, with an Ed25519 sign and
    /// verify at each end, timed like the command senders (no Tether server involved;
    /// --ready-file is not needed).
    Nats {
        /// The nats-server (`host:port`).
        #[arg(long, default_value = "127.0.0.1:4222")]
        addr: String,
        /// Requests in all.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Requesters, each with one request in flight.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Also write the report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Serve B3, the command floor, until stopped (SIGTERM, Ctrl-C): HTTPS `POST
    /// /command` → Redis `XADD` → `XREADGROUP` → WebSocket push to the agent → its
    /// answer back as the response. --ready-file is not needed.
    RelayServer {
        /// The Redis server.
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis: String,
        /// Where to write this relay's ready file (URL, CA) for `relay`.
        #[arg(long, value_name = "FILE")]
        out_ready_file: PathBuf,
    },
    /// Time commands through B3 (`relay-server`, whose ready file --ready-file names):
    /// one agent and the senders, with an Ed25519 sign and verify at each end, timed
    /// like the command senders.
    Relay {
        /// Requests in all.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Senders, each with one request in flight.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Also write the report as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), LoadError> {
    match &args.command {
        Command::Nats {
            addr,
            requests,
            concurrency,
            json,
        } => {
            let opts = tether_loadgen::nats::NatsOptions {
                addr: addr.clone(),
                requests: *requests,
                concurrency: *concurrency,
            };
            let r = tether_loadgen::nats::run(&opts).await?;
            return print_floor("nats request-reply", &r, json.as_deref());
        }
        Command::RelayServer {
            redis,
            out_ready_file,
        } => {
            let opts = tether_loadgen::relay::RelayServeOptions {
                redis_url: redis.clone(),
                ready_file: out_ready_file.clone(),
            };
            let stop = tokio_util::sync::CancellationToken::new();
            let serving = tether_loadgen::relay::serve(&opts, stop.clone());
            tokio::pin!(serving);
            return tokio::select! {
                r = &mut serving => r,
                () = stopped() => {
                    stop.cancel();
                    serving.await
                }
            };
        }
        _ => {}
    }
    let ready = args
        .ready_file
        .ok_or_else(|| LoadError::Unmet("--ready-file is required".into()))?;
    let target = Target::from_ready_file(&ready)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match args.command {
        // Answered above, before the ready file is read.
        Command::Nats { .. } | Command::RelayServer { .. } => Ok(()),
        Command::Relay {
            requests,
            concurrency,
            json,
        } => {
            let opts = tether_loadgen::relay::RelayOptions {
                target,
                requests,
                concurrency,
            };
            let r = tether_loadgen::relay::run(&opts).await?;
            print_floor("relay (B3)", &r, json.as_deref())
        }
        Command::Baseline {
            kind,
            identities,
            out_ready_file,
            stats_file,
        } => {
            let opts = BaselineOptions {
                kind,
                identities,
                client_ca_pem: target.ca_pem,
                ready_file: out_ready_file,
                stats_file,
            };
            let stop = tokio_util::sync::CancellationToken::new();
            let serving = baseline::serve(&opts, stop.clone());
            tokio::pin!(serving);
            tokio::select! {
                r = &mut serving => r,
                () = stopped() => {
                    stop.cancel();
                    serving.await
                }
            }
        }
        Command::Enroll {
            count,
            out,
            concurrency,
            email,
            password,
        } => {
            let opts = EnrollOptions {
                count,
                concurrency,
                email,
                password,
            };
            let (file, report) = enroll::enroll(&target, &opts, clock).await?;
            file.write(&out)?;
            let secs = report.elapsed.as_secs_f64();
            println!(
                "enrolled {} devices ({} failed) in {secs:.1}s ({:.0}/s) -> {}",
                report.enrolled,
                report.failed,
                report.enrolled as f64 / secs.max(0.001),
                out.display()
            );
            for (why, n) in &report.errors {
                println!("  {n} × {why}");
            }
            if report.failed > 0 {
                return Err(LoadError::Unmet(format!(
                    "{} devices could not be enrolled",
                    report.failed
                )));
            }
            Ok(())
        }
        Command::Connect {
            identities,
            count,
            offset,
            concurrency,
            hold_s,
            setup_timeout_s,
            server_pid,
            json,
            max_kib_per_connection,
            telemetry_interval_ms,
            metrics_token,
            min_telemetry_per_s,
            source_addrs,
            bare_stats,
            command_senders,
            command_pause_ms,
            max_command_p99_ms,
            storm,
            max_storm_s,
        } => {
            if let Some(ip) = source_addrs.iter().find(|ip| !ip.is_loopback()) {
                return Err(LoadError::Unmet(format!(
                    "--source-addrs: {ip} is not a loopback address (the load generator \
                     runs against a server on this machine only)"
                )));
            }
            let file = IdentityFile::read(&identities)?;
            let opts = ConnectOptions {
                count: count.unwrap_or(file.devices.len().saturating_sub(offset)),
                offset,
                concurrency,
                hold: Duration::from_secs(hold_s),
                setup_timeout: Duration::from_secs(setup_timeout_s),
                server_pid,
                telemetry_every: telemetry_interval_ms.map(Duration::from_millis),
                metrics_token,
                sources: source_addrs,
                bare: bare_stats,
                commands: command_senders.map(|senders| CommandOptions {
                    senders,
                    pause: Duration::from_millis(command_pause_ms),
                }),
                storm,
            };
            let report = connect::run(&target, &file, &opts, clock).await?;
            print_report(&report);
            if let Some(path) = json {
                let body = serde_json::to_vec_pretty(&report)
                    .map_err(|e| LoadError::Format(e.to_string()))?;
                std::fs::write(&path, body)
                    .map_err(LoadError::io(format!("writing {}", path.display())))?;
            }
            check(&report, max_kib_per_connection, min_telemetry_per_s)?;
            check_commands(&report, max_command_p99_ms, max_storm_s)
        }
    }
}

/// Prints a floor baseline's round trips (and writes them as JSON when asked).
fn print_floor(
    name: &str,
    r: &tether_loadgen::floor::FloorReport,
    json: Option<&std::path::Path>,
) -> Result<(), LoadError> {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2} ms"));
    println!(
        "{name}:  {} requests by {} requesters in {:.1} s\n\
         round trip:  p50 {}  p90 {}  p99 {}  max {}  (mean {})",
        r.completed,
        r.concurrency,
        r.elapsed_s,
        ms(r.p50_ms),
        ms(r.p90_ms),
        ms(r.p99_ms),
        ms(r.max_ms),
        ms(r.mean_ms)
    );
    if let Some(path) = json {
        let body = serde_json::to_vec_pretty(r).map_err(|e| LoadError::Format(e.to_string()))?;
        std::fs::write(path, body).map_err(LoadError::io(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn kib(v: Option<u64>) -> String {
    v.map_or_else(
        || "-".into(),
        |k| format!("{k} KiB ({:.1} MiB)", k as f64 / 1024.0),
    )
}

fn print_report(r: &ConnectReport) {
    println!("connections requested:   {}", r.requested);
    println!("established / failed:    {} / {}", r.established, r.failed);
    println!("dropped while held:      {}", r.dropped);
    println!("frames refused:          {}", r.frames_refused);
    println!(
        "time to establish:       {:.1} s ({:.0} connections/s)",
        r.establish_s,
        r.established as f64 / r.establish_s.max(0.001)
    );
    println!(
        "held idle:               {:.0} s, {} heartbeats sent (interval {} s)",
        r.hold_s, r.heartbeats_sent, r.heartbeat_interval_s
    );
    println!("server RSS before:       {}", kib(r.rss_before_kib));
    println!("server RSS connected:    {}", kib(r.rss_connected_kib));
    println!("server RSS held (peak):  {}", kib(r.rss_held_peak_kib));
    println!("server RSS held (end):   {}", kib(r.rss_held_end_kib));
    println!("server RSS after close:  {}", kib(r.rss_closed_kib));
    println!("server VmHWM:            {}", kib(r.hwm_kib));
    match (r.bytes_per_connection, r.kib_per_connection()) {
        (Some(b), Some(k)) => {
            println!(
                "per connection:          {k:.1} KiB ({b} bytes) = (held peak - before) / established"
            );
        }
        _ => println!("per connection:          - (pass --server-pid)"),
    }
    if r.telemetry_sent > 0 {
        println!(
            "telemetry sent:          {} ({:.0}/s while held)",
            r.telemetry_sent, r.telemetry_sent_per_s
        );
        match (r.telemetry_accepted, r.telemetry_accepted_per_s) {
            (Some(n), Some(rate)) => {
                println!("telemetry accepted:      {n} ({rate:.0}/s, by the server's count)");
            }
            _ => println!("telemetry accepted:      - (pass --metrics-token)"),
        }
        if let (Some(n), Some(rate)) = (r.telemetry_stored, r.telemetry_stored_per_s) {
            println!("telemetry stored:        {n} ({rate:.0}/s, by the server's count)");
        }
        if let Some(all) = r.telemetry_accepted_total {
            println!(
                "telemetry in all:        {all} of {} accepted ({:.1} s after the hold)",
                r.telemetry_sent_total, r.telemetry_drain_s
            );
        }
        for (code, n) in &r.telemetry_rejected {
            println!("  {n} refused: {code}");
        }
        if r.telemetry_pauses > 0 {
            println!(
                "telemetry paused:        {} times (after a 9002, for 3 to 5 intervals)",
                r.telemetry_pauses
            );
        }
    }
    if let Some(cpu) = r.server_cpu_pct {
        println!("server CPU while held:   {cpu:.0} % of one core");
    }
    if let Some(c) = &r.commands {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1} ms"));
        println!(
            "commands:                {} submitted by {} senders, {} completed ({:.0}/s), {} deliveries answered",
            c.submitted, c.senders, c.completed, c.completed_per_s, r.deliveries_answered
        );
        println!(
            "command round trip:      p50 {}  p90 {}  p99 {}  max {}  (mean {})",
            ms(c.p50_ms),
            ms(c.p90_ms),
            ms(c.p99_ms),
            ms(c.max_ms),
            ms(c.mean_ms)
        );
        for (why, n) in &c.unsuccessful {
            println!("  {n} commands: {why}");
        }
    }
    if let Some(why) = &r.commands_failed {
        println!("commands:                the senders failed: {why}");
    }
    if let Some(s) = &r.storm {
        println!(
            "reconnect storm:         {} of {} dropped sessions back in {:.1} s, {} failed",
            s.reconnected, s.dropped, s.seconds, s.failed
        );
    }
    for (why, n) in &r.errors {
        println!("  {n} × {why}");
    }
}

fn check_commands(
    r: &ConnectReport,
    max_p99_ms: Option<f64>,
    max_storm_s: Option<f64>,
) -> Result<(), LoadError> {
    if let Some(why) = &r.commands_failed {
        return Err(LoadError::Unmet(format!(
            "the command senders failed: {why}"
        )));
    }
    if let Some(c) = &r.commands {
        if c.completed == 0 || !c.unsuccessful.is_empty() {
            return Err(LoadError::Unmet(format!(
                "{} of {} commands completed: {:?}",
                c.completed, c.submitted, c.unsuccessful
            )));
        }
        if let (Some(max), Some(p99)) = (max_p99_ms, c.p99_ms)
            && p99 > max
        {
            return Err(LoadError::Unmet(format!(
                "the commands' p99 round trip is {p99:.1} ms, over {max} ms"
            )));
        }
    }
    if let Some(s) = &r.storm {
        if s.failed > 0 || s.reconnected < s.dropped {
            return Err(LoadError::Unmet(format!(
                "after the storm {} of {} sessions came back, {} failed",
                s.reconnected, s.dropped, s.failed
            )));
        }
        if let Some(max) = max_storm_s
            && s.seconds > max
        {
            return Err(LoadError::Unmet(format!(
                "the sessions took {:.1} s to come back, over {max} s",
                s.seconds
            )));
        }
    }
    Ok(())
}

fn check(
    r: &ConnectReport,
    max_kib: Option<f64>,
    min_telemetry_per_s: Option<f64>,
) -> Result<(), LoadError> {
    if r.failed > 0 || r.dropped > 0 || r.established < r.requested {
        return Err(LoadError::Unmet(format!(
            "{} of {} sessions established, {} failed, {} dropped",
            r.established, r.requested, r.failed, r.dropped
        )));
    }
    if let (Some(max), Some(k)) = (max_kib, r.kib_per_connection())
        && k >= max
    {
        return Err(LoadError::Unmet(format!(
            "{k:.1} KiB per connection is not under {max} KiB"
        )));
    }
    if let Some(all) = r.telemetry_accepted_total
        && all < r.telemetry_sent_total
    {
        return Err(LoadError::Unmet(format!(
            "the server counted {all} of {} telemetry samples",
            r.telemetry_sent_total
        )));
    }
    if !r.telemetry_rejected.is_empty() {
        return Err(LoadError::Unmet(format!(
            "the server refused telemetry: {:?}",
            r.telemetry_rejected
        )));
    }
    if let Some(min) = min_telemetry_per_s {
        match r.telemetry_accepted_per_s {
            Some(rate) if rate >= min => {}
            Some(rate) => {
                return Err(LoadError::Unmet(format!(
                    "the server accepted {rate:.0} telemetry samples/s, not at least {min}"
                )));
            }
            None => {
                return Err(LoadError::Unmet(
                    "--min-telemetry-per-s needs --metrics-token".into(),
                ));
            }
        }
    }
    Ok(())
}
