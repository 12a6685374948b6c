//! The live hub: one per server process. It reads every [`LiveEvent`] appended to the
//! bus's [`LIVE_STREAM`] since the process started, with a fan-out read
//! ([`Bus::read_after`](tether_bus::Bus::read_after): no consumer group, nothing pending,
//! nothing to acknowledge, so every process sees every event and a live event costs one
//! append and one read), and fans each one out to what is connected *here*:
//!
//! - every live-view subscriber (`GET /api/live`), through a broadcast channel; each
//!   subscriber applies its own access check per event;
//! - for an [`LiveKind::Alert`], the agent session of that device if it is connected to
//!   this process, which sends the agent a signed `alert_push`;
//! - a [`LiveKind::CommandWake`] goes only to the agent session of that device (if it is
//!   here), which then reads its command stream or redelivers the named command;
//! - a [`LiveKind::AgentFrame`] (test mode's `POST /api/test/agent_frame`) goes only to
//!   the agent session of that device (if it is here), which writes the frame verbatim;
//! - a [`LiveKind::OwnerKeys`] (an owner's signed key statement) goes only to the agent
//!   session of that device (if it is here), which sends it as `owner_keys_update`;
//! - a [`LiveKind::PolicyChanged`] makes the hub read the policy in force from the store
//!   once and hand it to **every** agent session here, which sends its agent a signed
//!   `policy_update` (flow 7) unless the agent has that version already. The policy goes
//!   through a watch channel, not the mailboxes: a session always sees the newest
//!   version, however busy its mailbox was.
//!
//! Agent sessions register a small bounded mailbox per device instead of subscribing to
//! the broadcast, so an event wakes only the one session it concerns (a process may hold
//! ten thousand idle agents). Delivery is best effort: a subscriber that falls behind is
//! told how many events it missed, a full agent mailbox drops the push (the alert stays
//! listed in the API).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether_proto::messages::notify::{AlertPush, PolicyUpdate};
use tether_proto::owner_sig::OwnerKeysUpdate;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::alerts::AlertView;
use crate::error::ApiError;
use crate::events::{LIVE_MAX_LEN, LIVE_STREAM, LiveEvent, LiveKind};
use crate::state::AppState;

/// How many events a slow live-view subscriber may fall behind before it misses some.
const BROADCAST_CAPACITY: usize = 1024;
/// How many pushes may wait for one agent session.
const AGENT_MAILBOX: usize = 8;
/// How many entries one bus read takes.
const READ_BATCH: usize = 256;
/// How long one bus read waits for entries.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// How many published live events may wait for the bus before publishers append
/// themselves.
const OUTBOX_CAPACITY: usize = 4096;
/// How long a device's owner, once read, is used for its live events.
const OWNER_FRESH: Duration = Duration::from_secs(2);
/// How many devices' owners are remembered at most.
const OWNERS_KEPT: usize = 10_000;
/// Pause after a bus failure before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long the outbox gathers events after the first before it appends them: a
/// command's six state changes come within a few milliseconds and then cost one bus
/// commit, not six. Other processes see an event at most this much later.
const OUTBOX_LINGER: Duration = Duration::from_millis(10);
/// How long the hub waits after a read that found events before it reads again: in one
/// process every event read back is its own (delivered already), so reading at each
/// append would be a query per event for nothing. Other processes' events wait at most
/// this much longer.
const READ_LINGER: Duration = Duration::from_millis(10);

type Mailboxes = Arc<Mutex<HashMap<String, Mailbox>>>;

#[derive(Debug)]
struct Mailbox {
    session_id: String,
    tx: mpsc::Sender<AgentPush>,
}

/// What the hub hands an agent session.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentPush {
    /// Send the agent this `alert_push` (boxed: a mailbox slot stays small).
    Alert(Box<AlertPush>),
    /// Read the device's command stream.
    Commands,
    /// Deliver this `queued` command, which ingest in this process handed over as it
    /// stored it (no stream entry was written); a moment later, do what
    /// [`AgentPush::Commands`] does (boxed: a mailbox slot stays small).
    Queued(Box<tether_store::Command>),
    /// Send this in-flight command again.
    Redeliver(String),
    /// Test mode only: write this frame to the agent as it is (no signing, no checks),
    /// as a compromised or buggy server would.
    Raw(String),
    /// Send the agent this `policy_update` unless it has this version already.
    Policy(Arc<PolicyUpdate>),
    /// Send the agent this `owner_keys_update` (its owner's signed statement) unless it
    /// applied this version already.
    OwnerKeys(Arc<OwnerKeysUpdate>),
}

/// This process's fan-out point for live events.
#[derive(Debug)]
pub struct LiveHub {
    tx: broadcast::Sender<Arc<LiveEvent>>,
    /// Live events this process published, on their way to the bus for the other
    /// processes (see [`LiveHub::relay`]); taken by [`LiveHub::run`].
    outbox: mpsc::Sender<Vec<u8>>,
    outbox_rx: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    /// Whether [`LiveHub::run`] is relaying the outbox to the bus.
    relaying: std::sync::atomic::AtomicBool,
    /// Devices' owners as read lately (see [`LiveHub::owner_of`]).
    owners: Mutex<HashMap<String, (String, std::time::Instant)>>,
    agents: Mailboxes,
    stopped: CancellationToken,
    /// The newest saved policy this process heard of (none: none since it started).
    policy: watch::Sender<Option<Arc<PolicyUpdate>>>,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveHub {
    /// A hub with no subscribers.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
        Self {
            tx,
            outbox,
            outbox_rx: Mutex::new(Some(outbox_rx)),
            relaying: std::sync::atomic::AtomicBool::new(false),
            owners: Mutex::default(),
            agents: Arc::default(),
            stopped: CancellationToken::new(),
            policy: watch::Sender::new(None),
        }
    }

    /// Cancelled when the hub stops (at shutdown): live-view streams end then, so open
    /// streams do not hold up the server's drain.
    pub fn stopped(&self) -> CancellationToken {
        self.stopped.clone()
    }

    /// A new live-view subscription: every event fanned out from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }

    /// Registers the agent session of `device_id` for alert pushes. The registration ends
    /// when the returned value is dropped (a newer session of the same device replaces
    /// an older one, and the older one's drop leaves the newer in place).
    pub fn register_agent(&self, device_id: &str, session_id: &str) -> AgentMailbox {
        let (tx, rx) = mpsc::channel(AGENT_MAILBOX);
        lock(&self.agents).insert(
            device_id.to_owned(),
            Mailbox {
                session_id: session_id.to_owned(),
                tx,
            },
        );
        AgentMailbox {
            rx,
            policy: self.policy.subscribe(),
            device_id: device_id.to_owned(),
            session_id: session_id.to_owned(),
            agents: Arc::clone(&self.agents),
        }
    }

    /// Hands a newly saved policy to every agent session of this process (each sends
    /// its agent a `policy_update`). An older version than one handed on already is
    /// ignored: versions only go up.
    pub fn publish_policy(&self, update: PolicyUpdate) {
        let version = update.policy_version;
        let newer = self.policy.send_if_modified(|current| {
            if current
                .as_ref()
                .is_some_and(|c| c.policy_version >= version)
            {
                return false;
            }
            *current = Some(Arc::new(update));
            true
        });
        if newer {
            tracing::info!(
                policy_version = version,
                sessions = lock(&self.agents).len(),
                "relaying the new policy to the agents connected here"
            );
        }
    }

    /// Hands one event to everything connected to this process.
    pub fn fan_out(&self, event: LiveEvent) {
        if event.kind == LiveKind::CommandWake {
            let push = match event.data.get("redeliver").and_then(|v| v.as_str()) {
                Some(id) => AgentPush::Redeliver(id.to_owned()),
                None => AgentPush::Commands,
            };
            self.push(&event.device_id, push);
            return;
        }
        if event.kind == LiveKind::AgentFrame {
            // Never fanned out to live-view subscribers: it is not an event about the
            // device, and its frame may be anything.
            if let Some(frame) = event.data.get("frame").and_then(|v| v.as_str()) {
                self.push(&event.device_id, AgentPush::Raw(frame.to_owned()));
            }
            return;
        }
        if event.kind == LiveKind::OwnerKeys {
            // Only for the device's session: the statement is the owner's business.
            match event
                .data
                .get("update")
                .cloned()
                .map(serde_json::from_value)
            {
                Some(Ok(u)) => self.push(&event.device_id, AgentPush::OwnerKeys(Arc::new(u))),
                _ => {
                    tracing::warn!(device = %event.device_id, "an unreadable owner-keys event skipped")
                }
            }
            return;
        }
        if event.kind == LiveKind::Alert {
            self.push_alert(&event);
        }
        // No subscriber is not an error: nobody is watching.
        let _ = self.tx.send(Arc::new(event));
    }

    fn push_alert(&self, event: &LiveEvent) {
        if let Some(push) = alert_push(event) {
            self.push(&event.device_id, AgentPush::Alert(Box::new(push)));
        }
    }

    /// Hands a push to the device's session if it is connected here. A full mailbox
    /// drops it: an alert stays listed in the API, and commands are found again at the
    /// next wake, redelivery or connect.
    fn push(&self, device_id: &str, push: AgentPush) {
        if let Err(Some(e)) = self.try_push(device_id, push) {
            tracing::warn!(device = %device_id, error = %e, "push to the agent session dropped");
        }
    }

    /// Hands a queued command straight to the device's session when that session is in
    /// this process and its mailbox has room; `false` otherwise (then the caller goes
    /// through the bus: stream entry and wake).
    pub fn hand_over(&self, c: &tether_store::Command) -> bool {
        self.try_push(&c.command.device_id, AgentPush::Queued(Box::new(c.clone())))
            .is_ok()
    }

    /// Puts a push in the device's mailbox: `Err(None)` when no session of the device is
    /// here, `Err(Some(_))` when its mailbox is full or closing.
    fn try_push(
        &self,
        device_id: &str,
        push: AgentPush,
    ) -> Result<(), Option<mpsc::error::TrySendError<AgentPush>>> {
        let agents = lock(&self.agents);
        let mailbox = agents.get(device_id).ok_or(None)?;
        mailbox.tx.try_send(push).map_err(Some)
    }

    /// Until `shutdown`: reads the live stream from where it stood when the hub started
    /// (a process does not replay old history to its clients) and fans out the events
    /// other processes published, and relays this process's own to the bus (the
    /// outbox, see [`LiveHub::publish`]).
    pub async fn run(state: AppState, shutdown: CancellationToken) {
        let outbox = lock(&state.live.outbox_rx).take();
        match outbox {
            Some(outbox) => {
                state
                    .live
                    .relaying
                    .store(true, std::sync::atomic::Ordering::Release);
                tokio::join!(
                    Self::consume(&state, &shutdown),
                    Self::relay(&state, outbox, &shutdown)
                );
            }
            None => Self::consume(&state, &shutdown).await,
        }
        state.live.stopped.cancel();
    }

    /// Publishes a live event: fans it out here at once, then appends it to the bus's
    /// [`LIVE_STREAM`] for every other process. While the hub runs, the append goes
    /// through its outbox (in order, batched; this process's own events are skipped when
    /// read back), so a publisher does not wait for the bus; otherwise (a hub not
    /// started, or an outbox full) the publisher appends itself.
    pub async fn publish(state: &AppState, event: LiveEvent) -> Result<(), ApiError> {
        let bytes = Self::deliver_here(state, event).await?;
        let bytes = if state
            .live
            .relaying
            .load(std::sync::atomic::Ordering::Acquire)
        {
            match state.live.outbox.try_send(bytes) {
                Ok(()) => return Ok(()),
                Err(
                    mpsc::error::TrySendError::Full(bytes)
                    | mpsc::error::TrySendError::Closed(bytes),
                ) => bytes,
            }
        } else {
            bytes
        };
        state.bus.append(LIVE_STREAM, &bytes, LIVE_MAX_LEN).await?;
        Ok(())
    }

    /// Publishes a live event that may be lost (a telemetry sample's: the sample is
    /// stored, the view is a convenience): like [`Self::publish`], but it never waits for
    /// the bus. When the outbox is full the event reaches this process's clients only,
    /// and is counted in `tether_live_events_dropped_total`; the publisher (the
    /// analytics, storing thousands of samples a second) is not held up behind appends
    /// one by one.
    pub async fn publish_or_drop(state: &AppState, event: LiveEvent) -> Result<(), ApiError> {
        let bytes = Self::deliver_here(state, event).await?;
        if !state
            .live
            .relaying
            .load(std::sync::atomic::Ordering::Acquire)
        {
            state.bus.append(LIVE_STREAM, &bytes, LIVE_MAX_LEN).await?;
            return Ok(());
        }
        if state.live.outbox.try_send(bytes).is_err() {
            crate::prom::live_dropped();
        }
        Ok(())
    }

    /// The owner of `device_id`, whom its live events are for. A device's owner is set
    /// when it is paired and does not change while it has commands, so an owner read in
    /// the last [`OWNER_FRESH`] is used again (a command's six state changes read it
    /// once); a device without an owner, or a failed read, is not remembered.
    pub async fn owner_of(state: &AppState, device_id: &str) -> Option<String> {
        if let Some((owner, at)) = lock(&state.live.owners).get(device_id)
            && at.elapsed() < OWNER_FRESH
        {
            return Some(owner.clone());
        }
        let owner = match state.store.device(device_id).await {
            Ok(d) => d.and_then(|d| d.owner_id)?,
            Err(e) => {
                tracing::warn!(device = %device_id, error = %e, "live event: device lookup failed");
                return None;
            }
        };
        state.live.remember_owner(device_id, &owner);
        Some(owner)
    }

    /// Remembers a device's owner just read from the store (ingest has the device in
    /// hand: the command's live events then need no read of their own).
    pub fn remember_owner(&self, device_id: &str, owner: &str) {
        let mut owners = lock(&self.owners);
        if owners.len() >= OWNERS_KEPT {
            owners.retain(|_, (_, at)| at.elapsed() < OWNER_FRESH);
            if owners.len() >= OWNERS_KEPT {
                owners.clear();
            }
        }
        owners.insert(
            device_id.to_owned(),
            (owner.to_owned(), std::time::Instant::now()),
        );
    }

    /// Encodes an event for the bus, then hands it to this process's clients and agent
    /// sessions; returns what is to be appended for the other processes.
    async fn deliver_here(state: &AppState, event: LiveEvent) -> Result<Vec<u8>, ApiError> {
        let bytes = serde_json::to_vec(&OnBus {
            origin: Some(state.node_id.as_str()),
            event: &event,
        })
        .map_err(ApiError::internal)?;
        Self::deliver(state, event).await;
        Ok(bytes)
    }

    /// Hands one event to this process's clients and agent sessions (a policy change
    /// first reads the policy in force and hands it to every agent session).
    async fn deliver(state: &AppState, event: LiveEvent) {
        if event.kind == LiveKind::PolicyChanged {
            crate::gateway::relay_policy(state).await;
        }
        state.live.fan_out(event);
    }

    /// Appends the outbox's events to the bus, oldest first, until `shutdown`; then
    /// appends what is still queued. Each batch is one entry, its events in order.
    async fn relay(
        state: &AppState,
        mut outbox: mpsc::Receiver<Vec<u8>>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                e = outbox.recv() => e,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            let linger = tokio::time::sleep(OUTBOX_LINGER);
            tokio::pin!(linger);
            while batch.len() < READ_BATCH {
                let next = tokio::select! {
                    () = &mut linger => break,
                    e = outbox.recv() => e,
                };
                match next {
                    Some(e) => batch.push(e),
                    None => break,
                }
            }
            Self::append_all(state, &batch).await;
        }
        // Shutdown: what was published before it still reaches the bus.
        outbox.close();
        let mut rest = Vec::new();
        while let Ok(e) = outbox.try_recv() {
            rest.push(e);
        }
        for batch in rest.chunks(READ_BATCH) {
            Self::append_all(state, batch).await;
        }
    }

    /// Appends a batch of this process's events (each an [`OnBus`]) as one entry (see
    /// [`batch_entry`]): an entry costs the bus the same whatever it holds, and a fleet's
    /// telemetry publishes thousands of events a second.
    async fn append_all(state: &AppState, batch: &[Vec<u8>]) {
        let entry = match batch {
            [one] => one.clone(),
            _ => batch_entry(&state.node_id, batch),
        };
        if let Err(e) = state.bus.append(LIVE_STREAM, &entry, LIVE_MAX_LEN).await {
            tracing::warn!(error = %e, events = batch.len(), "live hub: live events were not appended to the bus");
        }
    }

    async fn consume(state: &AppState, shutdown: &CancellationToken) {
        // Start after the newest event: a process does not replay old history to its
        // clients.
        let mut position = loop {
            let newest = tokio::select! {
                () = shutdown.cancelled() => return,
                r = state.bus.last_id(LIVE_STREAM) => r,
            };
            match newest {
                Ok(id) => break id,
                Err(e) => {
                    tracing::warn!(error = %e, "live hub: cannot read the live stream's position");
                    if pause(shutdown).await {
                        return;
                    }
                }
            }
        };
        loop {
            let read = tokio::select! {
                () = shutdown.cancelled() => return,
                r = state.bus.read_after(LIVE_STREAM, &position, READ_BATCH, READ_BLOCK) => r,
            };
            let entries = match read {
                Ok(entries) if entries.is_empty() => continue,
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(error = %e, "live hub: reading the live stream failed");
                    if pause(shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            for entry in entries {
                // Published here: delivered here already. Only the origin is read (the
                // rest skipped unparsed): in one process that is every event.
                let head = serde_json::from_slice::<Head>(&entry.payload).ok();
                let own = head
                    .as_ref()
                    .is_some_and(|h| h.origin.as_deref() == Some(state.node_id.as_str()));
                if !own {
                    match crate::events::live_events_of(&entry.payload) {
                        Ok(events) => {
                            for e in events {
                                Self::deliver(state, e).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(id = %entry.id, error = %e, "live hub: skipping an unreadable live event");
                        }
                    }
                }
                position = entry.id;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(READ_LINGER) => {}
            }
        }
    }
}

/// A live event as the bus carries it: with the id of the process that published it.
#[derive(Serialize)]
struct OnBus<'a> {
    origin: Option<&'a str>,
    #[serde(flatten)]
    event: &'a LiveEvent,
}

/// Just the publisher of a live entry read from the bus (absent: published by an earlier
/// build); the rest is skipped unparsed.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default, borrow)]
    origin: Option<std::borrow::Cow<'a, str>>,
}

/// The entry holding `events` (each an [`OnBus`] of this process):
/// `{"origin": node, "events": [...]}`.
fn batch_entry(node_id: &str, events: &[Vec<u8>]) -> Vec<u8> {
    let origin = serde_json::Value::from(node_id).to_string();
    let open = format!(r#"{{"origin":{origin},"events":["#);
    crate::events::join_json(open.as_bytes(), events, b"]}")
}

/// Waits [`RETRY_AFTER`]; true when shutdown came first.
async fn pause(shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(RETRY_AFTER) => false,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Neither the map nor the outbox slot holds an invariant a panicking holder could
    // break halfway.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One agent session's pushes. Dropping it unregisters the session.
#[derive(Debug)]
pub struct AgentMailbox {
    rx: mpsc::Receiver<AgentPush>,
    policy: watch::Receiver<Option<Arc<PolicyUpdate>>>,
    device_id: String,
    session_id: String,
    agents: Mailboxes,
}

impl AgentMailbox {
    /// The next push for this session (pending forever once the hub replaced it): a
    /// push from its mailbox, or the policy when a newer one was saved.
    pub async fn recv(&mut self) -> Option<AgentPush> {
        tokio::select! {
            push = self.rx.recv() => push,
            Ok(()) = self.policy.changed() => {
                self.policy.borrow_and_update().clone().map(AgentPush::Policy)
            }
        }
    }
}

impl Drop for AgentMailbox {
    fn drop(&mut self) {
        let mut agents = lock(&self.agents);
        if agents
            .get(&self.device_id)
            .is_some_and(|m| m.session_id == self.session_id)
        {
            agents.remove(&self.device_id);
        }
    }
}

/// The `alert_push` for an alert event: a newly raised alert (its data an
/// [`AlertView`] without `acked_at`); an acknowledgement is not pushed to the agent.
pub fn alert_push(event: &LiveEvent) -> Option<AlertPush> {
    let view = AlertView::deserialize(&event.data).ok()?;
    if view.acked_at.is_some() || view.device_id != event.device_id {
        return None;
    }
    let push = view.alert_push();
    tether_proto::validate::Validate::validate(&push).ok()?;
    Some(push)
}

#[cfg(test)]
mod tests;
