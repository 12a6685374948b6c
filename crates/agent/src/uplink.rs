//! Where telemetry goes: straight onto the session when one is up, into the offline
//! queue when not, and out of the queue — oldest first — right after the next
//! `connected`, before anything new is sent.
//!
//! One task (the session's) owns the queue, the sample channel and the outbox, so the
//! order of sequence numbers and the order of frames on the wire cannot disagree: while
//! the agent is offline or flushing, every sample is sealed for the queue behind the rows
//! already there; only once the queue is empty are samples sent live.

use std::future::Future;
use std::time::Duration;

use rand_core::RngCore;
use tether_client::WsStream;
use tether_proto::messages::session::{Telemetry, telemetry_backoff};
use tether_proto::{Clock, UnixMillis};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::AgentError;
use crate::queue::{Queue, QueueStats, QueuedFrame};
use crate::socket;
use crate::wire::{Outbox, UnverifiedFrame};

/// The telemetry interval before any server has named one, seconds (the protocol's
/// example value, and what the gateway asks for today).
pub const DEFAULT_TELEMETRY_INTERVAL_S: u32 = 10;
/// A queued frame this close to its expiry is not sent: it could expire on the way.
const EXPIRY_MARGIN_MS: u64 = 60_000;

/// What a flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Frames written to the socket and deleted from the queue.
    pub sent: u64,
    /// Of those, frames signed again because their number was no longer usable.
    pub resealed: u64,
    /// Frames deleted because they had expired (or were about to).
    pub expired: u64,
}

/// Telemetry routing between the sampler, the session and the offline queue.
#[derive(Debug)]
pub struct Uplink {
    queue: Queue,
    samples: mpsc::Receiver<Telemetry>,
    interval: watch::Sender<Duration>,
    offline_interval: Option<Duration>,
    server_interval: Duration,
    clock: std::sync::Arc<dyn Clock>,
    online: bool,
    queued_this_outage: u64,
    dropped_this_outage: u64,
    /// Live samples skipped after a `9002` ([`Self::back_off`]).
    pause: Pause,
}

/// A pause of live telemetry: until when, and how many samples it skipped so far.
#[derive(Debug, Default)]
struct Pause {
    until: Option<tokio::time::Instant>,
    skipped: u64,
}

/// What a pause says about a sample due now.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    /// Send it.
    Send,
    /// Skip it: paused.
    Skip,
    /// Send it: the pause just ended, having skipped this many.
    Resume(u64),
}

impl Pause {
    /// Pauses until `length` after `now` (a later refusal pushes the end on); true when
    /// no pause was on.
    fn start(&mut self, now: tokio::time::Instant, length: Duration) -> bool {
        let fresh = self.until.is_none();
        self.until = Some(now.checked_add(length).unwrap_or(now));
        fresh
    }

    fn due(&mut self, now: tokio::time::Instant) -> Due {
        match self.until {
            None => Due::Send,
            Some(until) if now < until => {
                self.skipped = self.skipped.saturating_add(1);
                Due::Skip
            }
            Some(_) => {
                self.until = None;
                Due::Resume(std::mem::take(&mut self.skipped))
            }
        }
    }
}

impl Uplink {
    /// Routes `samples`, steering the sampler's `interval`. `offline_interval` (the
    /// `--telemetry-interval-s` override) replaces the server's interval while offline;
    /// `server_interval` is the last one a server asked for.
    pub fn new(
        queue: Queue,
        samples: mpsc::Receiver<Telemetry>,
        interval: watch::Sender<Duration>,
        offline_interval: Option<Duration>,
        server_interval: Duration,
        clock: std::sync::Arc<dyn Clock>,
    ) -> Self {
        let u = Self {
            queue,
            samples,
            interval,
            offline_interval,
            server_interval,
            clock,
            online: false,
            queued_this_outage: 0,
            dropped_this_outage: 0,
            pause: Pause::default(),
        };
        u.interval.send_replace(u.offline_period());
        u
    }

    fn offline_period(&self) -> Duration {
        self.offline_interval.unwrap_or(self.server_interval)
    }

    /// A session is up: sample at the server's interval.
    pub fn go_online(&mut self, telemetry_interval_s: u32) {
        self.server_interval = Duration::from_secs(u64::from(telemetry_interval_s.max(1)));
        self.interval.send_replace(self.server_interval);
        self.online = true;
        self.queued_this_outage = 0;
        self.dropped_this_outage = 0;
    }

    /// The session is gone: keep sampling, into the queue, at the offline interval.
    pub fn go_offline(&mut self) {
        self.interval.send_replace(self.offline_period());
        self.online = false;
    }

    /// Runs `work` (waiting, connecting, waiting for `connected`) while queueing every
    /// sample that arrives meanwhile.
    pub async fn while_offline<F: Future>(&mut self, outbox: &mut Outbox, work: F) -> F::Output {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                Some(sample) = self.samples.recv() => self.enqueue(outbox, &sample).await,
            }
        }
    }

    /// The next sample (for the session's loop). Pending forever once the sampler ends.
    pub async fn next_sample(&mut self) -> Telemetry {
        match self.samples.recv().await {
            Some(s) => s,
            None => std::future::pending().await,
        }
    }

    /// Seals a sample for the queue and stores it. Failures are logged, not fatal: a
    /// sample that cannot be kept is lost, the agent goes on.
    async fn enqueue(&mut self, outbox: &mut Outbox, sample: &Telemetry) {
        let sealed = match outbox.seal_queued(sample) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "a telemetry sample could not be sealed for the queue");
                return;
            }
        };
        match self.queue.push(&sealed).await {
            Ok(dropped) => {
                if self.queued_this_outage == 0 && !self.online {
                    say!("keeping telemetry in the offline queue until the server is back");
                }
                self.queued_this_outage = self.queued_this_outage.saturating_add(1);
                if dropped > 0 {
                    if self.dropped_this_outage == 0 {
                        let l = self.queue.limits();
                        say!(
                            "offline queue full ({} entries / {} bytes): dropping the oldest \
                             samples",
                            l.max_entries,
                            l.max_bytes
                        );
                    }
                    self.dropped_this_outage = self.dropped_this_outage.saturating_add(dropped);
                }
            }
            Err(e) => tracing::warn!(error = %e, "a telemetry sample could not be queued"),
        }
    }

    /// The sequence number the next `auth` should carry: a slot below the queue's head
    /// when there is a queue to flush, else `None` (a fresh number).
    pub async fn auth_seq(&mut self) -> Option<u64> {
        let deadline = self.deadline();
        if let Err(e) = self.queue.remove_expiring(deadline).await {
            tracing::warn!(error = %e, "pruning the offline queue");
        }
        match self.queue.take_auth_slot().await {
            Ok(slot) => slot,
            Err(e) => {
                tracing::warn!(error = %e, "reading the offline queue");
                None
            }
        }
    }

    fn deadline(&self) -> UnixMillis {
        UnixMillis(self.clock.now().0.saturating_add(EXPIRY_MARGIN_MS))
    }

    /// Sends the queue oldest first, deleting each row once its frame is written to the
    /// socket; samples arriving meanwhile join the end of the queue. `last_sent` is the
    /// `seq` of the auth. A row whose number is not above the last one sent (the
    /// auth's slots ran out) is signed again with a fresh number, body unchanged.
    ///
    /// Only a socket failure is an error (the session is then lost, the rest stays
    /// queued). A queue failure stops the flush and leaves the rest for the next one.
    pub async fn flush(
        &mut self,
        outbox: &mut Outbox,
        ws: &mut WsStream,
        mut last_sent: u64,
        shutdown: &CancellationToken,
    ) -> Result<FlushReport, AgentError> {
        let mut report = FlushReport::default();
        loop {
            while let Ok(sample) = self.samples.try_recv() {
                self.enqueue(outbox, &sample).await;
            }
            if shutdown.is_cancelled() {
                break;
            }
            let row = match self.queue.oldest().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the offline queue; the rest waits");
                    break;
                }
            };
            if row.expires_at <= self.deadline() {
                report.expired = report.expired.saturating_add(1);
                self.remove(row.seq).await;
                continue;
            }
            let frame = if row.seq > last_sent {
                last_sent = row.seq;
                row.frame.clone()
            } else {
                match reseal(outbox, &row) {
                    Ok((frame, seq)) => {
                        report.resealed = report.resealed.saturating_add(1);
                        last_sent = seq;
                        frame
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "discarding a queued frame that cannot be re-signed");
                        self.remove(row.seq).await;
                        continue;
                    }
                }
            };
            socket::send(ws, frame).await?;
            report.sent = report.sent.saturating_add(1);
            self.remove(row.seq).await;
        }
        Ok(report)
    }

    /// Deletes a delivered row; a failure is logged (the row may then be sent again, and
    /// the server keeps telemetry once per message id).
    async fn remove(&mut self, seq: u64) {
        if let Err(e) = self.queue.remove(seq).await {
            tracing::warn!(error = %e, "deleting a delivered queue entry");
        }
    }

    /// Seals and sends a sample now; while paused ([`Self::back_off`]) the sample is
    /// skipped instead.
    pub async fn send_live(
        &mut self,
        outbox: &mut Outbox,
        ws: &mut WsStream,
        sample: &Telemetry,
    ) -> Result<(), AgentError> {
        match self.pause.due(tokio::time::Instant::now()) {
            Due::Send => {}
            Due::Skip => return Ok(()),
            Due::Resume(skipped) => say!(
                "sending telemetry again ({skipped} samples skipped while the server was behind)"
            ),
        }
        let frame = outbox.seal(sample)?;
        socket::send(ws, frame).await
    }

    /// The gateway refused one of this agent's messages with `9002 UNAVAILABLE` (it is
    /// behind on storing telemetry, or one of its backends failed): live samples are
    /// skipped for 3 to 5 of the server's telemetry intervals
    /// ([`telemetry_backoff`]; docs/protocol.md 4.3, "Back-off"), counted from the
    /// latest refusal, so that an overloaded server is not sent samples it would refuse.
    pub fn back_off(&mut self) {
        let mut spread = [0u8; 1];
        rand_core::OsRng.fill_bytes(&mut spread);
        let pause = telemetry_backoff(self.server_interval, spread[0]);
        if self.pause.start(tokio::time::Instant::now(), pause) {
            say!(
                "the server is behind on telemetry: skipping samples for {} s",
                pause.as_secs()
            );
        }
    }

    /// What the queue holds (zero if it cannot be read).
    pub async fn stats(&mut self) -> QueueStats {
        self.queue.stats().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the offline queue");
            QueueStats::default()
        })
    }

    /// Whether the queue is near its bounds.
    pub fn near_limit(&self, stats: &QueueStats) -> bool {
        stats.near_limit(&self.queue.limits())
    }

    /// Closes the queue.
    pub async fn close(self) {
        self.queue.close().await;
    }
}

/// Signs a queued body again with a fresh number (its `collected_at` is kept).
fn reseal(outbox: &mut Outbox, row: &QueuedFrame) -> Result<(String, u64), AgentError> {
    let body: Telemetry = UnverifiedFrame::parse(row.frame.as_bytes())?.body()?;
    let sealed = outbox.seal_queued(&body)?;
    Ok((sealed.frame, sealed.seq))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use ed25519_dalek::SigningKey;
    use tether_proto::messages::session::NetUsage;
    use tether_proto::{EnvelopeSigner, KeyId, StaticKeys, SystemClock};

    use super::*;
    use crate::sequence::SeqCounter;
    use crate::state::StateDir;
    use crate::wire::verify;

    #[test]
    fn a_resealed_frame_keeps_its_body_under_a_higher_number() {
        let t = tempfile::tempdir().unwrap();
        let state = StateDir::open(t.path()).unwrap();
        let key = SigningKey::from_bytes(&[6; 32]);
        let mut keys = StaticKeys::new();
        keys.insert(
            KeyId::for_ed25519(key.verifying_key().as_bytes()),
            key.verifying_key(),
        );
        let mut out = Outbox::new(
            EnvelopeSigner::new(key),
            Arc::new(SystemClock),
            SeqCounter::load(&state).unwrap(),
        );
        let body = Telemetry {
            collected_at: UnixMillis(42),
            cpu_pct: 3.0,
            mem_used_bytes: 1,
            mem_total_bytes: 2,
            disks: Vec::new(),
            net: NetUsage {
                rx_bps: 1.0,
                tx_bps: 2.0,
                rx_total_bytes: 3,
                tx_total_bytes: 4,
            },
        };
        let sealed = out.seal_queued(&body).unwrap();
        let auth_seq = out.seal_live(&body).unwrap().seq;
        let row = QueuedFrame {
            seq: sealed.seq,
            expires_at: sealed.expires_at,
            frame: sealed.frame,
        };
        assert!(row.seq < auth_seq, "a number the session can no longer use");
        let (frame, seq) = reseal(&mut out, &row).unwrap();
        assert!(seq > auth_seq);
        let v = verify(frame.as_bytes(), &keys, &SystemClock).unwrap();
        assert_eq!(v.header.seq, seq);
        assert_eq!(v.into_body::<Telemetry>().unwrap(), body);
    }

    #[test]
    fn a_pause_skips_samples_until_it_ends_and_a_later_refusal_extends_it() {
        let t0 = tokio::time::Instant::now();
        let s = Duration::from_secs;
        let mut pause = Pause::default();
        assert_eq!(pause.due(t0), Due::Send, "no pause: samples go");
        assert!(pause.start(t0, s(30)), "the first refusal starts a pause");
        assert_eq!(pause.due(t0 + s(10)), Due::Skip);
        assert!(
            !pause.start(t0 + s(10), s(30)),
            "a later one pushes its end on"
        );
        assert_eq!(pause.due(t0 + s(35)), Due::Skip, "still paused at 35 s");
        assert_eq!(
            pause.due(t0 + s(40)),
            Due::Resume(2),
            "ends at 40 s, two skipped"
        );
        assert_eq!(pause.due(t0 + s(41)), Due::Send);
        assert!(pause.start(t0 + s(50), s(30)), "a new pause after the end");
    }
}
