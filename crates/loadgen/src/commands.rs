//! Commands under load, both ends of flow 2.
//!
//! **Senders** ([`send_commands`]) are owners' clients: each logs in once, opens the
//! live view (`GET /api/live?device=…`) for its own slice of the devices, then, one
//! command at a time, signs a `lock_screen` with the owner key (the command statement of
//! docs/protocol.md section 6.11), submits it (`POST /api/command`) and waits until the
//! live view shows it `completed` (or another final state). The round trip is timed from
//! just before the request to the moment that event arrives: what a user on the phone
//! waits. A `lagged` view or a quiet spell falls back to reading the command
//! (`GET /api/command/{id}`), as the CLI does.
//!
//! **Agents** ([`Answerer`]) are the held sessions of [`crate::connect`]: a
//! `command_delivery` is checked as the real agent checks it (the gateway's signature is
//! verified by the caller; here: its device, its deadlines, the owner's signature with a
//! pinned key), then answered with `command_ack` `received`, `command_status`
//! `executing` and `command_result` `ok` from a simulated helper that does nothing. A
//! delivery that fails a check is answered `rejected` with the agent's code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tether_client::Api;
use tether_proto::messages::command::{
    AckStatus, CommandAck, CommandDelivery, CommandResult, CommandState, CommandStatus, Method,
    ResultStatus,
};
use tether_proto::messages::discovery::OwnerKey;
use tether_proto::owner_sig::{UserSig, command_statement, sign_ed25519, verify_ed25519};
use tether_proto::validate::b64url_decode;
use tether_proto::{Clock, ErrorCode, MessageId, TraceId};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::LoadError;
use crate::identities::OwnerIdentity;
use crate::wire::random;

/// The TTL of each command.
const TTL_S: u32 = 60;
/// How long a sender waits for one command to finish before it counts as timed out.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the live view may stay quiet before the command is read back.
const RESYNC_AFTER: Duration = Duration::from_secs(2);
/// At most this many devices per sender's live view (its query string stays short).
const DEVICES_PER_SENDER: usize = 64;

/// The states a command ends in.
const FINAL: [&str; 5] = ["completed", "failed", "expired", "denied", "dlq"];

/// What the command senders do.
#[derive(Debug, Clone)]
pub struct CommandOptions {
    /// How many senders, each with one command in flight at a time.
    pub senders: usize,
    /// How long each sender waits after a command ends before it sends the next.
    pub pause: Duration,
}

/// Command round trips, as the senders saw them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommandReport {
    /// Senders that ran.
    pub senders: usize,
    /// Commands submitted (accepted or refused by the API).
    pub submitted: u64,
    /// Commands seen `completed`.
    pub completed: u64,
    /// Every other outcome: a final state other than `completed`, an API error code, or
    /// `timeout`.
    pub unsuccessful: BTreeMap<String, u64>,
    /// Completed commands per second over the run.
    pub completed_per_s: f64,
    /// Round trips of completed commands, milliseconds.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// The slowest.
    pub max_ms: Option<f64>,
    /// The mean.
    pub mean_ms: Option<f64>,
}

/// The nearest-rank percentile `p` (0..=100) of sorted `v`.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // The rank is in 1..=len; the float-to-int cast saturates.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()).saturating_sub(1))
        .copied()
}

impl CommandReport {
    fn from_samples(
        senders: usize,
        mut samples: Vec<f64>,
        submitted: u64,
        unsuccessful: BTreeMap<String, u64>,
        elapsed: Duration,
    ) -> Self {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        Self {
            senders,
            submitted,
            completed: n as u64,
            unsuccessful,
            completed_per_s: n as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
            p50_ms: percentile(&samples, 50.0),
            p90_ms: percentile(&samples, 90.0),
            p99_ms: percentile(&samples, 99.0),
            max_ms: samples.last().copied(),
            mean_ms: (n > 0).then(|| samples.iter().sum::<f64>() / n as f64),
        }
    }
}

/// What all senders share.
struct Senders {
    api: Api,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    pause: Duration,
    stop: CancellationToken,
    results: Mutex<(Vec<f64>, u64, BTreeMap<String, u64>)>,
}

/// Logs the owner in.
async fn login(target_api: &Api, owner: &OwnerIdentity) -> Result<Api, LoadError> {
    let token = crate::enroll::access_token(target_api, &owner.email, &owner.password).await?;
    Ok(target_api.clone().with_bearer(&token))
}

/// Runs `opts.senders` senders over `devices` until `stop` (each sends at least one
/// command), then reports.
pub async fn send_commands(
    api: &Api,
    owner: &OwnerIdentity,
    devices: &[String],
    opts: &CommandOptions,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) -> Result<CommandReport, LoadError> {
    let shared = Arc::new(Senders {
        api: login(api, owner).await?,
        key: owner.signing_key()?,
        clock,
        pause: opts.pause,
        stop,
        results: Mutex::new((Vec::new(), 0, BTreeMap::new())),
    });
    let senders = opts.senders.clamp(1, devices.len().max(1));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..senders {
        let mine: Vec<String> = devices
            .iter()
            .skip(i)
            .step_by(senders)
            .take(DEVICES_PER_SENDER)
            .cloned()
            .collect();
        tasks.spawn(sender(Arc::clone(&shared), mine));
    }
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let (samples, submitted, unsuccessful) = std::mem::take(&mut *shared.results.lock().await);
    Ok(CommandReport::from_samples(
        senders,
        samples,
        submitted,
        unsuccessful,
        started.elapsed(),
    ))
}

/// Runs the senders on a runtime of their own, on a thread of their own. A user's phone
/// does not share its CPU with the fleet: on the load generator's runtime, the senders'
/// live-view events and requests would wait their turn behind thousands of simulated
/// agents' tasks, and that wait would be counted in every round trip. The outcome
/// arrives on the returned channel (closed if the thread could not start or panicked).
pub fn on_own_thread<F>(
    senders: F,
) -> tokio::sync::oneshot::Receiver<Result<CommandReport, LoadError>>
where
    F: Future<Output = Result<CommandReport, LoadError>> + Send + 'static,
{
    let (done, outcome) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("loadgen-senders".to_owned())
        .spawn(move || {
            let report = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(LoadError::io("starting the senders' runtime"))
                .and_then(|runtime| runtime.block_on(senders));
            let _ = done.send(report);
        });
    if let Err(e) = started {
        eprintln!("the command senders' thread did not start: {e}");
    }
    outcome
}

/// One sender: its live view, then one command at a time round its devices.
async fn sender(shared: Arc<Senders>, devices: Vec<String>) -> Result<(), LoadError> {
    if devices.is_empty() {
        return Ok(());
    }
    let query: Vec<String> = devices.iter().map(|d| format!("device={d}")).collect();
    let mut live = shared
        .api
        .get_stream(&format!("/api/live?{}", query.join("&")))
        .await?;
    // Each sender sends at least one command, however late its login and live view came
    // (a loaded machine, a short hold): then stops when told, after the command in hand.
    for device in devices.iter().cycle() {
        let outcome = one(&shared, &mut live, device).await;
        {
            let mut r = shared.results.lock().await;
            r.1 = r.1.saturating_add(1);
            match outcome {
                Ok(Ok(ms)) => r.0.push(ms),
                Ok(Err(why)) => {
                    let n = r.2.entry(why).or_insert(0);
                    *n = n.saturating_add(1);
                }
                Err(e) => return Err(e),
            }
        }
        if shared.stop.is_cancelled() {
            break;
        }
        if !shared.pause.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(shared.pause) => {}
                () = shared.stop.cancelled() => break,
            }
        }
    }
    Ok(())
}

/// One command: `Ok(Ok(ms))` when it completed, `Ok(Err(why))` when it ended otherwise,
/// `Err` when the live view is gone.
async fn one(
    shared: &Senders,
    live: &mut tether_client::sse::EventStream,
    device: &str,
) -> Result<Result<f64, String>, LoadError> {
    let message_id = MessageId::from_random_bytes(random::<16>());
    let trace_id = TraceId::from_random_bytes(random::<16>());
    let params = json!({});
    let started = Instant::now();
    let not_after = shared
        .clock
        .now()
        .saturating_add(Duration::from_secs(u64::from(TTL_S)));
    let statement = command_statement(&message_id, device, Method::LockScreen, &params, not_after)?;
    let body = json!({
        "device_id": device,
        "method": Method::LockScreen,
        "params": params,
        "ttl_seconds": TTL_S,
        "message_id": message_id,
        "trace_id": trace_id,
        "priority": "normal",
        "not_after": not_after,
        "user_sig": sign_ed25519(&shared.key, &statement),
    });
    #[derive(Deserialize)]
    struct Accepted {
        state: String,
    }
    let accepted: Accepted = match shared.api.post("/api/command", &body).await {
        Ok((_, a)) => a,
        Err(tether_client::ClientError::Api { status, body }) => {
            return Ok(Err(format!(
                "HTTP {status} {} {}",
                body.code.number(),
                body.code.name()
            )));
        }
        Err(e) => return Ok(Err(e.to_string())),
    };
    if FINAL.contains(&accepted.state.as_str()) {
        return Ok(ended(&accepted.state, started));
    }
    let id = message_id.as_str();
    let deadline = tokio::time::Instant::now()
        .checked_add(ROUND_TRIP_TIMEOUT)
        .unwrap_or_else(tokio::time::Instant::now);
    loop {
        let wake = tokio::time::Instant::now()
            .checked_add(RESYNC_AFTER)
            .map_or(deadline, |t| t.min(deadline));
        match tokio::time::timeout_at(wake, live.next_event()).await {
            Ok(Ok(Some(e))) if e.event == "command_status" => {
                if let Some(state) = state_of(&e.data, id)
                    && FINAL.contains(&state.as_str())
                {
                    return Ok(ended(&state, started));
                }
            }
            Ok(Ok(Some(e))) if e.event == "lagged" => {
                if let Some(state) = read_back(shared, id).await {
                    return Ok(ended(&state, started));
                }
            }
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return Err(LoadError::Protocol("the live view closed".into())),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                if let Some(state) = read_back(shared, id).await {
                    return Ok(ended(&state, started));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(Err("timeout".into()));
                }
            }
        }
    }
}

fn ended(state: &str, started: Instant) -> Result<f64, String> {
    if state == "completed" {
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    } else {
        Err(state.to_owned())
    }
}

/// The state of command `id` in a live `command_status` event, if it is about it.
fn state_of(data: &str, id: &str) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    let d = v.get("data")?;
    (d.get("command_id")?.as_str()? == id).then(|| d.get("state")?.as_str().map(str::to_owned))?
}

/// The command's state if it is final, read from the store.
async fn read_back(shared: &Senders, id: &str) -> Option<String> {
    let (_, v): (u16, Value) = shared.api.get(&format!("/api/command/{id}")).await.ok()?;
    let state = v.get("state")?.as_str()?;
    FINAL.contains(&state).then(|| state.to_owned())
}

/// The agent side: checks deliveries and answers them from a helper that does nothing.
#[derive(Debug)]
pub struct Answerer {
    /// Pinned Ed25519 owner keys: (kid, raw public key).
    pinned: Vec<(String, Vec<u8>)>,
}

/// The frames that answer one delivery, in order.
#[derive(Debug)]
pub enum Answer {
    /// Stored and run: ack, status, result.
    Ran(CommandAck, CommandStatus, Box<CommandResult>),
    /// Refused: only the ack.
    Rejected(CommandAck),
}

impl Answerer {
    /// An answerer that trusts the owner keys the devices pinned (none: every command is
    /// refused 2011, as a real agent would).
    pub fn new(pinned: &[OwnerKey]) -> Self {
        let pinned = pinned
            .iter()
            .filter(|k| k.kind == tether_proto::owner_sig::KIND_ED25519)
            .filter_map(|k| Some((k.kid.clone(), b64url_decode(&k.public_key)?)))
            .collect();
        Self { pinned }
    }

    /// What the agent `device_id` answers to `d` at `now`.
    pub fn answer(
        &self,
        device_id: &str,
        d: &CommandDelivery,
        now: tether_proto::UnixMillis,
    ) -> Answer {
        let reject = |code: ErrorCode| {
            Answer::Rejected(CommandAck {
                command_id: d.command_id.clone(),
                status: AckStatus::Rejected,
                error: Some(code),
            })
        };
        if d.device_id != device_id {
            return reject(ErrorCode::Forbidden);
        }
        if now > d.expires_at || d.not_after.is_some_and(|n| now > n) {
            return reject(ErrorCode::TtlExpired);
        }
        let signed = match (&d.user_sig, d.not_after) {
            (Some(UserSig::Ed25519(sig)), Some(not_after)) => {
                command_statement(&d.command_id, &d.device_id, d.method, &d.params, not_after)
                    .ok()
                    .is_some_and(|statement| {
                        self.pinned.iter().any(|(kid, key)| {
                            *kid == sig.kid && verify_ed25519(key, &statement, sig)
                        })
                    })
            }
            _ => false,
        };
        if !signed {
            return reject(ErrorCode::OwnerSignatureInvalid);
        }
        let exec = format!(
            "kx_{}",
            tether_proto::ids::sha256_hex(&random::<8>())
                .get(..12)
                .unwrap_or("0")
        );
        Answer::Ran(
            CommandAck {
                command_id: d.command_id.clone(),
                status: AckStatus::Received,
                error: None,
            },
            CommandStatus {
                command_id: d.command_id.clone(),
                state: CommandState::Executing,
                kernel_exec_id: Some(exec.clone()),
            },
            Box::new(CommandResult {
                command_id: d.command_id.clone(),
                status: ResultStatus::Ok,
                error: None,
                notes: "simulated helper: nothing was done".into(),
                result: json!({"simulated": true}),
                artifact: None,
                kernel_exec_id: Some(exec),
                duration_ms: 0,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
