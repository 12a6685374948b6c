//! Commands under faults, with the real binaries: `tether-server`, `tether-agent` and
//! `tether-helper` (recording executor).
//!
//! - an agent that is down gets its command when it comes back (the command waits
//!   `queued`), and the helper runs it once;
//! - a command whose TTL passes while the agent is down ends `expired` (2004), its
//!   originator sees that on the live view, and it is never executed afterwards;
//! - the test-mode fault hooks: `kernel_failure` ends `failed` (6001) after exactly one
//!   retry, `slow` shows `executing` on the live view before `completed`;
//! - no loss, no duplicates: 100 commands with the server SIGKILLed mid-flight (embedded
//!   backends and MariaDB + Redis), and 100 with the agent SIGKILLed after acknowledging
//!   them, each end `completed` exactly once, every state path valid, and the helper's
//!   record holds each command exactly once; and the same with the roles split into an
//!   api process and a gateway process (MariaDB + Redis + S3) whose gateway is SIGKILLed
//!   while the api process carries on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_client::sse::EventStream;
use tether_e2e::{
    Backends, Helper, Proc, Server, on_mysql_and_redis, pair_agent, register_user, run_agent,
    signed_command, uuid,
};

const DEVICE_NAME: &str = "lab-pc-faults";
const TERMINAL: &[&str] = &["completed", "failed", "dlq", "expired", "denied"];

/// A server in test mode, a user, an agent paired to it that talks to a recording
/// helper.
struct Rig {
    server: Server,
    /// A separate gateway-role process the agent talks to (when the rig splits roles);
    /// otherwise the agent talks to `server`.
    gateway: Option<Server>,
    user: tether_client::Api,
    device: String,
    agent: Proc,
    state: tempfile::TempDir,
    helper: Helper,
    /// The agent's helper arguments (`--helper-socket`, `--helper-key-file`), for restarts.
    agent_args: Vec<String>,
}

impl Rig {
    async fn start(backends: &Backends, env: &[(&str, &str)]) -> Rig {
        Self::start_inner(backends, env, false).await
    }

    /// A rig whose `server` runs the api role and both roles' shared routes, and whose
    /// agent talks to a second, gateway-only process (MariaDB + Redis + S3 only).
    async fn start_split(backends: &Backends) -> Rig {
        Self::start_inner(backends, &[], true).await
    }

    async fn start_inner(backends: &Backends, env: &[(&str, &str)], split: bool) -> Rig {
        let mut all = vec![("TETHER_SERVER_TEST_MODE", "true")];
        all.extend_from_slice(env);
        if split {
            all.push(("TETHER_SERVER_ROLES", "[\"api\"]"));
        }
        let server = Server::start_with(backends, &all);
        let gateway = split.then(|| server.start_gateway());
        let user = register_user(&server, "ada@lab.example").await;
        let helper_dir = tempfile::tempdir().unwrap();
        let (socket, key_file) = Helper::paths(helper_dir.path());
        let agent_args = vec![
            "--helper-socket".to_owned(),
            socket.to_str().unwrap().to_owned(),
            "--helper-key-file".to_owned(),
            key_file.to_str().unwrap().to_owned(),
        ];
        let args: Vec<&str> = agent_args.iter().map(String::as_str).collect();
        let agent_server = gateway.as_ref().unwrap_or(&server);
        let (agent, state) = pair_agent(agent_server, &user, DEVICE_NAME, &args).await;
        let helper = Helper::start_in(helper_dir, state.path());
        let (_, devices): (u16, Value) = user.get("/api/devices").await.unwrap();
        let device = devices[0]["id"].as_str().unwrap().to_owned();
        Rig {
            server,
            gateway,
            user,
            device,
            agent,
            state,
            helper,
            agent_args,
        }
    }

    /// Starts the agent again on its state dir with the same helper flags; waits until it
    /// is connected.
    fn restart_agent(&mut self) {
        self.agent.kill();
        let args: Vec<&str> = self.agent_args.iter().map(String::as_str).collect();
        let agent_server = self.gateway.as_ref().unwrap_or(&self.server);
        self.agent = run_agent(agent_server, self.state.path(), DEVICE_NAME, &args);
        self.agent
            .wait_for_line("connected: session", Duration::from_secs(60));
    }

    /// Submits `lock_screen` (through the test-mode hook when `simulate` is given).
    async fn submit(&self, id: &str, ttl_seconds: u32, simulate: Option<&str>) -> Value {
        let path = match simulate {
            Some(s) => format!("/api/test/command?simulate={s}"),
            None => "/api/command".to_owned(),
        };
        let body = signed_command(
            "ada@lab.example",
            json!({"device_id": self.device, "method": "lock_screen", "message_id": id,
                   "ttl_seconds": ttl_seconds}),
        );
        let (s, accepted): (u16, Value) = self.user.post(&path, &body).await.unwrap();
        assert_eq!(s, 202, "{accepted}");
        assert_eq!(accepted["state"], "queued", "{accepted}");
        accepted
    }

    /// A GET that tolerates a connection to a killed server lingering in the client's
    /// pool: a transport error is retried (briefly).
    async fn get(&self, path: &str) -> Value {
        let mut tries = 0;
        loop {
            match self.user.get::<Value>(path).await {
                Ok((s, v)) => {
                    assert_eq!(s, 200, "{path}: {v}");
                    return v;
                }
                Err(e) => {
                    tries += 1;
                    assert!(tries < 20, "{path}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn command(&self, id: &str) -> Value {
        self.get(&format!("/api/command/{id}")).await
    }

    /// Polls the command until its state is one of `states`.
    async fn wait_state(&self, id: &str, states: &[&str], within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let c = self.command(id).await;
            if states.iter().any(|st| c["state"] == *st) {
                return c;
            }
            assert!(
                start.elapsed() < within,
                "command {id} not in {states:?} within {within:?}: {c}\nagent:\n{}\nhelper:\n{}",
                self.agent.output(),
                self.helper.proc.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every command of the device: id → state.
    async fn states(&self) -> HashMap<String, String> {
        let list = self
            .get(&format!("/api/commands?device={}&limit=500", self.device))
            .await;
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["command_id"].as_str().unwrap().to_owned(),
                    c["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// How many helper executions name `id`.
    fn executions_of(&self, id: &str) -> usize {
        self.helper
            .executions()
            .iter()
            .filter(|e| e["command_message_id"] == id)
            .count()
    }

    /// The owner's live view narrowed to this device.
    async fn live(&self) -> EventStream {
        self.user
            .get_stream(&format!("/api/live?device={}", self.device))
            .await
            .expect("the live view opens")
    }
}

/// How many commands are in each state.
fn tally(states: &HashMap<String, String>, ids: &[String]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for id in ids {
        let s = states.get(id).cloned().unwrap_or_else(|| "missing".into());
        *t.entry(s).or_insert(0) += 1;
    }
    t
}

/// The transitions the server may make (docs/protocol.md 7.4, plus `sent → executing`
/// and `sent → result_posted` for an agent whose ack was lost, and `result_posted →`
/// `failed`/`denied`/`expired` as the result's status says).
fn allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("queued", "sent" | "expired")
            | (
                "sent",
                "sent"
                    | "ack_received"
                    | "executing"
                    | "result_posted"
                    | "denied"
                    | "expired"
                    | "failed"
                    | "dlq"
            )
            | ("ack_received", "executing" | "result_posted" | "expired")
            | ("executing", "result_posted")
            | (
                "result_posted",
                "completed" | "failed" | "denied" | "expired"
            )
    )
}

/// The command's transitions form one valid path from ingest to `end`, which it reaches
/// exactly once; returns the states visited.
fn assert_valid_path(c: &Value, end: &str) -> Vec<String> {
    let ts = c["transitions"].as_array().unwrap();
    let mut prev: Option<&str> = None;
    let mut steps = Vec::new();
    for t in ts {
        let from = t["from"].as_str();
        let to = t["to"].as_str().unwrap();
        assert_eq!(
            from, prev,
            "a transition does not start where the last ended: {c}"
        );
        match from {
            None => assert_eq!(to, "queued", "{c}"),
            Some(f) => assert!(allowed(f, to), "{f} → {to} is not a transition: {c}"),
        }
        steps.push(to.to_owned());
        prev = Some(to);
    }
    assert_eq!(prev, Some(end), "{c}");
    assert_eq!(
        steps.iter().filter(|s| s.as_str() == end).count(),
        1,
        "{end} reached more than once: {c}"
    );
    let times: Vec<u64> = ts.iter().map(|t| t["at"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{c}");
    steps
}

/// The `command_status` live events about `id`, in order, until one in a terminal state.
async fn live_states(live: &mut EventStream, id: &str, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout_at(deadline, live.next_event())
            .await
            .unwrap_or_else(|_| panic!("command {id} not finished on the live view: {seen:?}"))
            .expect("the live stream reads")
            .expect("the live stream stays open");
        if e.event != "command_status" {
            continue;
        }
        let v: Value = serde_json::from_str(&e.data).expect("live events are JSON");
        if v["data"]["command_id"] != id {
            continue;
        }
        let terminal = TERMINAL.iter().any(|t| v["data"]["state"] == *t);
        seen.push(v);
        if terminal {
            return seen;
        }
    }
}

/// 1. The agent is down: the command waits `queued`; the agent comes back and it runs,
///    once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_for_a_stopped_agent_waits_and_runs_when_it_returns() {
    let mut rig = Rig::start(&Backends::Embedded, &[]).await;
    rig.agent.kill();

    let id = uuid();
    rig.submit(&id, 120, None).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = rig.command(&id).await;
    assert_eq!(c["state"], "queued", "{c}");
    assert_eq!(rig.executions_of(&id), 0);

    rig.restart_agent();
    let done = rig.wait_state(&id, TERMINAL, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["result"]["status"], "ok", "{done}");
    let steps = assert_valid_path(&done, "completed");
    assert_eq!(
        steps,
        [
            "queued",
            "sent",
            "ack_received",
            "executing",
            "result_posted",
            "completed"
        ],
        "{done}"
    );
    assert_eq!(rig.executions_of(&id), 1, "{:?}", rig.helper.executions());
    assert_eq!(rig.helper.executions().len(), 1);
}

/// 2. The agent is down past the command's TTL: the CommandWorker expires it (2004), the
///    originator sees that live, and the agent never runs it after it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_ttl_passes_while_the_agent_is_down_expires_and_never_runs() {
    let mut rig = Rig::start(&Backends::Embedded, &[]).await;
    rig.agent.kill();
    let mut live = rig.live().await;

    let id = uuid();
    let submitted = Instant::now();
    rig.submit(&id, 3, None).await;
    let c = rig
        .wait_state(&id, &["expired"], Duration::from_secs(20))
        .await;
    // Not before its TTL, and within a few sweeps after it.
    assert!(
        submitted.elapsed() >= Duration::from_millis(2900),
        "expired after {:?}: {c}",
        submitted.elapsed()
    );
    assert_eq!(c["error"], 2004, "{c}");
    assert_eq!(
        assert_valid_path(&c, "expired"),
        ["queued", "expired"],
        "{c}"
    );

    let seen = live_states(&mut live, &id, Duration::from_secs(20)).await;
    let states: Vec<&str> = seen
        .iter()
        .map(|v| v["data"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["queued", "expired"], "{seen:?}");
    let last = seen.last().unwrap();
    assert_eq!(last["data"]["error"], 2004, "{last}");
    assert_eq!(last["data"]["from"], "queued", "{last}");

    // The agent comes back: the expired command is not delivered (or is refused); a
    // command sent after it completes, and only that one was executed.
    rig.restart_agent();
    let after = uuid();
    rig.submit(&after, 120, None).await;
    let done = rig
        .wait_state(&after, TERMINAL, Duration::from_secs(60))
        .await;
    assert_eq!(done["state"], "completed", "{done}");
    let c = rig.command(&id).await;
    assert_eq!(c["state"], "expired", "a terminal state never changes: {c}");
    assert_eq!(rig.executions_of(&id), 0, "{:?}", rig.helper.executions());
    assert_eq!(rig.executions_of(&after), 1);
    assert_eq!(rig.helper.executions().len(), 1);
}

/// 3. The test-mode hooks: a kernel failure is retried once, then the command fails
///    (6001); a slow execution is seen `executing` before `completed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_kernel_failure_is_retried_once_and_slow_shows_executing() {
    let rig = Rig::start(&Backends::Embedded, &[]).await;
    let mut live = rig.live().await;

    let failing = uuid();
    rig.submit(&failing, 120, Some("kernel_failure")).await;
    let c = rig
        .wait_state(&failing, TERMINAL, Duration::from_secs(60))
        .await;
    assert_eq!(c["state"], "failed", "{c}");
    assert_eq!(c["error"], 6001, "{c}");
    assert_eq!(c["result"]["status"], "failed", "{c}");
    assert_valid_path(&c, "failed");
    let runs: Vec<Value> = rig
        .helper
        .executions()
        .into_iter()
        .filter(|e| e["command_message_id"] == failing.as_str())
        .collect();
    assert_eq!(runs.len(), 2, "one execution and one retry: {runs:?}");
    assert!(
        runs.iter().all(|r| r["simulate"] == "kernel_failure"),
        "{runs:?}"
    );
    let failed_live = live_states(&mut live, &failing, Duration::from_secs(10)).await;
    let last = failed_live.last().unwrap();
    assert_eq!(last["data"]["state"], "failed", "{last}");
    assert_eq!(last["data"]["error"], 6001, "{last}");

    let slow = uuid();
    rig.submit(&slow, 120, Some("slow")).await;
    let seen = live_states(&mut live, &slow, Duration::from_secs(60)).await;
    let states: Vec<&str> = seen
        .iter()
        .map(|v| v["data"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "queued",
            "sent",
            "ack_received",
            "executing",
            "result_posted",
            "completed"
        ],
        "{seen:?}"
    );
    // `executing` was visible for the whole slow execution (3 s), not just a blink.
    let at = |s: &str| {
        seen.iter()
            .find(|v| v["data"]["state"] == s)
            .and_then(|v| v["at"].as_u64())
            .unwrap()
    };
    assert!(
        at("result_posted") - at("executing") >= 2500,
        "executing for only {} ms: {seen:?}",
        at("result_posted") - at("executing")
    );
    assert_eq!(rig.executions_of(&slow), 1);
}

/// Waits until all of `ids` are finished; every one must be `completed` with a valid
/// path, and the helper must have run each exactly once and nothing else.
async fn assert_all_completed_once(rig: &Rig, ids: &[String], within: Duration) {
    let start = Instant::now();
    loop {
        let states = rig.states().await;
        let t = tally(&states, ids);
        if t.get("completed") == Some(&ids.len()) {
            break;
        }
        let stuck: Vec<(&String, &String)> = ids
            .iter()
            .filter_map(|id| states.get(id).map(|s| (id, s)))
            .filter(|(_, s)| TERMINAL.contains(&s.as_str()) && s.as_str() != "completed")
            .collect();
        assert!(stuck.is_empty(), "commands ended otherwise: {stuck:?}");
        assert!(
            start.elapsed() < within,
            "not all completed within {within:?}: {t:?}\nagent:\n{}\nhelper:\n{}",
            rig.agent.output(),
            rig.helper.proc.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut paths: BTreeMap<String, usize> = BTreeMap::new();
    for id in ids {
        let c = rig.command(id).await;
        assert_eq!(c["result"]["status"], "ok", "{c}");
        *paths
            .entry(assert_valid_path(&c, "completed").join(" → "))
            .or_insert(0) += 1;
    }
    eprintln!("state paths: {paths:#?}");
    let runs = rig.helper.executions();
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in &runs {
        *count
            .entry(r["command_message_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "executed more than once: {twice:?}");
    let lost: Vec<_> = ids.iter().filter(|id| !count.contains_key(*id)).collect();
    assert!(lost.is_empty(), "never executed: {lost:?}");
    assert_eq!(
        runs.len(),
        ids.len(),
        "executions of other commands: {runs:?}"
    );
}

/// Which of the 100 commands run `slow` (so the executor holds a queue behind them).
const SLOW: [usize; 2] = [19, 59];

/// Submits `ids` in order (the [`SLOW`] ones `slow`), going on through server crashes: a
/// POST the dead server did not answer is sent again, the same `message_id` giving the
/// same command if it was stored. Returns how many POSTs failed and how many were
/// answered as the command stored before.
async fn submit_through_crashes(
    user: tether_client::Api,
    device: String,
    ids: Vec<String>,
    progress: Arc<AtomicUsize>,
) -> (usize, usize) {
    let (mut failed, mut stored_before) = (0, 0);
    for (i, id) in ids.iter().enumerate() {
        let path = if SLOW.contains(&i) {
            "/api/test/command?simulate=slow"
        } else {
            "/api/command"
        };
        // Signed once: a retry is the same request (the same signature) under its id.
        let body = signed_command(
            "ada@lab.example",
            json!({"device_id": device, "method": "lock_screen", "message_id": id,
                   "ttl_seconds": 600}),
        );
        let start = Instant::now();
        loop {
            match user.post::<_, Value>(path, &body).await {
                Ok((202, v)) => {
                    assert_eq!(v["state"], "queued", "{v}");
                    progress.store(i + 1, Ordering::SeqCst);
                    break;
                }
                Ok((200, v)) => {
                    assert_eq!(v["command_id"], id.as_str(), "{v}");
                    stored_before += 1;
                    progress.store(i + 1, Ordering::SeqCst);
                    break;
                }
                Ok((503, _)) | Err(_) => {
                    failed += 1;
                    assert!(
                        start.elapsed() < Duration::from_secs(60),
                        "command {i} not accepted within 60 s"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok((s, v)) => panic!("command {i}: {s} {v}"),
            }
        }
    }
    (failed, stored_before)
}

/// Waits until `ids[slow]` is `executing` (or, on a machine too slow to catch that, has
/// completed while others are still on their way); returns the states then.
async fn wait_for_slow(rig: &Rig, ids: &[String], slow: usize) -> BTreeMap<String, usize> {
    let start = Instant::now();
    loop {
        let states = rig.states().await;
        let t = tally(&states, ids);
        let in_flight = ["sent", "ack_received", "executing"]
            .iter()
            .any(|s| t.contains_key(*s));
        let s = states.get(&ids[slow]).map(String::as_str);
        if s == Some("executing") || (s == Some("completed") && in_flight) {
            return t;
        }
        assert!(
            t.get("completed") != Some(&ids.len()),
            "all completed before the kill: {t:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "{t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILLs the server, lets the agent carry on alone for a moment, starts the server
/// again on the same data and port, and waits for the agent to reconnect.
fn crash_server(rig: &mut Rig) {
    rig.server.kill();
    let before = rig.agent.count_lines("connected: session");
    std::thread::sleep(Duration::from_millis(300));
    rig.server.restart();
    rig.agent
        .wait_for_new_line("connected: session", before, Duration::from_secs(60));
}

/// 4a. The server is SIGKILLed twice: once while commands are still being submitted
///     (and one runs in the helper), once with 40 acknowledged commands queued behind a
///     running one whose results the agent produces while the server is down. All 100
///     end `completed` once, each executed once.
async fn server_killed_mid_flight(backends: Backends) {
    let mut rig = Rig::start(&backends, &[]).await;
    let started = Instant::now();
    let ids: Vec<String> = (0..100).map(|_| uuid()).collect();
    let progress = Arc::new(AtomicUsize::new(0));
    let submitter = tokio::spawn(submit_through_crashes(
        rig.user.clone(),
        rig.device.clone(),
        ids.clone(),
        Arc::clone(&progress),
    ));
    // Kill 1: a third of the commands submitted, the first slow one (most likely) running.
    while progress.load(Ordering::SeqCst) < 33 {
        assert!(!submitter.is_finished());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_kill = tally(&rig.states().await, &ids);
    assert!(
        at_kill.get("completed") != Some(&ids.len()),
        "all completed before the kill: {at_kill:?}"
    );
    eprintln!("server killed during submission with {at_kill:?}");
    crash_server(&mut rig);
    // Kill 2: the second slow one running, the commands behind it acknowledged.
    let at_kill = wait_for_slow(&rig, &ids, SLOW[1]).await;
    eprintln!("server killed with {at_kill:?}");
    crash_server(&mut rig);
    let (failed, stored_before) = submitter.await.unwrap();
    eprintln!(
        "submissions: {failed} failed and were sent again, {stored_before} of them stored before"
    );
    assert_all_completed_once(&rig, &ids, Duration::from_secs(90)).await;
    eprintln!("server kills: all completed after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sigkill_mid_flight_loses_and_duplicates_nothing_on_embedded_backends() {
    server_killed_mid_flight(Backends::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sigkill_mid_flight_loses_and_duplicates_nothing_on_mariadb_and_redis() {
    on_mysql_and_redis(server_killed_mid_flight).await;
}

/// SIGKILLs the gateway process, lets the agent carry on alone for a moment, starts the
/// gateway again on the same port, and waits for the agent to reconnect to it.
fn crash_gateway(rig: &mut Rig) {
    let before = rig.agent.count_lines("connected: session");
    let gateway = rig.gateway.as_mut().expect("a split rig");
    gateway.kill();
    std::thread::sleep(Duration::from_millis(300));
    gateway.restart();
    rig.agent
        .wait_for_new_line("connected: session", before, Duration::from_secs(60));
}

/// 4c. With the roles split (an api process and a gateway process on MariaDB + Redis +
///     S3), the gateway is SIGKILLed twice after dispatch and before the results: once
///     during submission, once while the helper runs a slow command with acknowledged
///     ones queued behind it. The api process never stops: every submission is
///     accepted at the first try, and all 100 end `completed` once.
async fn gateway_killed_mid_flight(backends: Backends) {
    let mut rig = Rig::start_split(&backends).await;
    let started = Instant::now();
    let ids: Vec<String> = (0..100).map(|_| uuid()).collect();
    let progress = Arc::new(AtomicUsize::new(0));
    let submitter = tokio::spawn(submit_through_crashes(
        rig.user.clone(),
        rig.device.clone(),
        ids.clone(),
        Arc::clone(&progress),
    ));
    // Kill 1: a third submitted, the first slow one (most likely) running.
    while progress.load(Ordering::SeqCst) < 33 {
        assert!(!submitter.is_finished());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_kill = tally(&rig.states().await, &ids);
    eprintln!("gateway killed during submission with {at_kill:?}");
    crash_gateway(&mut rig);
    // Kill 2: the second slow one running, the commands behind it acknowledged.
    let at_kill = wait_for_slow(&rig, &ids, SLOW[1]).await;
    eprintln!("gateway killed with {at_kill:?}");
    crash_gateway(&mut rig);
    let (failed, _) = submitter.await.unwrap();
    assert_eq!(failed, 0, "the api process refused or dropped submissions");
    assert_all_completed_once(&rig, &ids, Duration::from_secs(120)).await;
    assert_eq!(
        rig.server.proc.count_lines("tether-server listening"),
        1,
        "the api process was restarted"
    );
    eprintln!("gateway kills: all completed after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_process_sigkill_mid_flight_loses_and_duplicates_nothing() {
    on_mysql_and_redis(gateway_killed_mid_flight).await;
}

/// 4b. The agent is SIGKILLed after acknowledging commands (one of them running in the
///     helper) and started again on the same state: it resumes them from its ledger, the
///     helper dedupes the one it was running, all 100 end `completed` once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sigkill_after_ack_loses_and_duplicates_nothing() {
    let mut rig = Rig::start(&Backends::Embedded, &[]).await;
    let started = Instant::now();
    let ids: Vec<String> = (0..100).map(|_| uuid()).collect();
    let progress = Arc::new(AtomicUsize::new(0));
    let submitter = tokio::spawn(submit_through_crashes(
        rig.user.clone(),
        rig.device.clone(),
        ids.clone(),
        Arc::clone(&progress),
    ));
    // Kill the agent while the helper runs the second slow command (the ones behind it
    // acknowledged and waiting in the agent's ledger, later ones maybe still coming).
    let start = Instant::now();
    let slow_running = loop {
        if progress.load(Ordering::SeqCst) > SLOW[1] {
            match rig.command(&ids[SLOW[1]]).await["state"].as_str() {
                Some("executing") => break true,
                Some("completed") => break false, // missed it (a slow machine)
                _ => {}
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Kill at once: the slow command runs for 3 s, and reading 100 states first can take
    // longer than that on a loaded machine (it then finished before the kill).
    rig.agent.kill();
    let at_kill = tally(&rig.states().await, &ids);
    eprintln!("agent killed; states just after: {at_kill:?}");
    let first_run = rig.agent.output();
    rig.restart_agent();
    submitter.await.unwrap();
    assert_all_completed_once(&rig, &ids, Duration::from_secs(90)).await;
    eprintln!("agent kill: all completed after {:?}", started.elapsed());
    // Commands the first run had received but not finished when it was killed (by its
    // own output: the server's view of the states may lag behind on a loaded machine)
    // were in its ledger, and the second run resumes them.
    let finished: Vec<&str> = first_run
        .lines()
        .filter_map(|l| l.strip_prefix("command ")?.split_once(": ok"))
        .map(|(id, _)| id)
        .collect();
    let unfinished = first_run
        .lines()
        .filter_map(|l| l.strip_prefix("command ")?.split_once(": "))
        .filter(|(id, rest)| rest.contains(" received") && !finished.contains(id))
        .count();
    eprintln!("slow command seen executing: {slow_running}; unfinished at the kill: {unfinished}");
    if unfinished > 0 {
        assert!(
            rig.agent.output().contains("resuming"),
            "the agent resumed from its ledger:\n{}\nfirst run:\n{first_run}",
            rig.agent.output()
        );
    }
}
