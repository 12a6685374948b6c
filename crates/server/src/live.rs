//! The live hub: one per server process. It reads every [`LiveEvent`] on the bus's
//! [`LIVE_STREAM`] with this process's own consumer group (`live-<node_id>`, so every
//! process sees every event) and fans each one out to what is connected *here*:
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

use serde::Deserialize;
use tether_proto::messages::notify::{AlertPush, PolicyUpdate};
use tether_proto::owner_sig::OwnerKeysUpdate;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::alerts::AlertView;
use crate::events::{LIVE_STREAM, LiveEvent, LiveKind};
use crate::state::AppState;

/// How many events a slow live-view subscriber may fall behind before it misses some.
const BROADCAST_CAPACITY: usize = 1024;
/// How many pushes may wait for one agent session.
const AGENT_MAILBOX: usize = 8;
/// How many entries one bus read takes.
const READ_BATCH: usize = 256;
/// How long one bus read waits for entries.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// Pause after a bus failure before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

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
        Self {
            tx,
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
        let agents = lock(&self.agents);
        let Some(mailbox) = agents.get(device_id) else {
            return;
        };
        if let Err(e) = mailbox.tx.try_send(push) {
            tracing::warn!(device = %device_id, error = %e, "push to the agent session dropped");
        }
    }

    /// Consumes the live stream until `shutdown`: read as this process's group, fan out,
    /// acknowledge. Events dated before the hub started are skipped, so a process (whose
    /// group is new at every start) does not replay old history to its clients.
    pub async fn run(state: AppState, shutdown: CancellationToken) {
        Self::consume(&state, &shutdown).await;
        state.live.stopped.cancel();
    }

    async fn consume(state: &AppState, shutdown: &CancellationToken) {
        let group = format!("live-{}", state.node_id);
        let consumer = state.node_id.clone();
        let started = state.now();
        loop {
            let ready = tokio::select! {
                () = shutdown.cancelled() => return,
                r = state.bus.ensure_group(LIVE_STREAM, &group) => r,
            };
            match ready {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "live hub: cannot create its consumer group");
                    if pause(shutdown).await {
                        return;
                    }
                }
            }
        }
        loop {
            let read = tokio::select! {
                () = shutdown.cancelled() => return,
                r = state.bus.read_group(LIVE_STREAM, &group, &consumer, READ_BATCH, READ_BLOCK) => r,
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(error = %e, "live hub: reading the live stream failed");
                    if pause(shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            if entries.is_empty() {
                continue;
            }
            let mut ids = Vec::with_capacity(entries.len());
            for entry in entries {
                match serde_json::from_slice::<LiveEvent>(&entry.payload) {
                    Ok(event) if event.at >= started => {
                        if event.kind == LiveKind::PolicyChanged {
                            crate::gateway::relay_policy(state).await;
                        }
                        state.live.fan_out(event);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(id = %entry.id, error = %e, "live hub: skipping an unreadable live event");
                    }
                }
                ids.push(entry.id);
            }
            if let Err(e) = state.bus.ack(LIVE_STREAM, &group, &ids).await {
                tracing::warn!(error = %e, "live hub: acknowledging live events failed");
            }
        }
    }
}

/// Waits [`RETRY_AFTER`]; true when shutdown came first.
async fn pause(shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(RETRY_AFTER) => false,
    }
}

fn lock(
    m: &Mutex<HashMap<String, Mailbox>>,
) -> std::sync::MutexGuard<'_, HashMap<String, Mailbox>> {
    // The map holds no invariant a panicking holder could break halfway.
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
