//! [`SignatureChecker`]: the signatures of telemetry samples and heartbeats, checked in
//! batches on a thread of their own.
//!
//! Checking an Ed25519 signature is the largest part of what a telemetry sample costs
//! the gateway (a fifth of the server's CPU at 10,000 samples a second). Checked in a
//! batch (`tether_proto::envelope::check_batch`), a signature costs well under half as
//! much (docs/benchmarks.md). The sessions' tasks hand each sample, parsed and with its
//! key found ([`Prepared`]), to one checker thread; it takes whatever has been handed
//! to it meanwhile (up to [`MAX_BATCH`]), checks that as one batch and hands each
//! outcome back. Nothing waits to fill a batch: a sample that arrives while the thread
//! is idle is checked at once, on its own, and batches form by themselves exactly when
//! samples arrive faster than they are checked one by one.
//!
//! Telemetry and heartbeats go here: nobody waits for either, and at 18,000 agents the
//! heartbeats alone are 600 signatures a second, which cost the sessions' runtime about
//! 45 µs each when checked one at a time. A command's frames are checked in place: a
//! hand-over to the thread costs their session a wake-up on the shared runtime, which is
//! tens of milliseconds when tens of thousands of sessions are ready to run, and a
//! command's round trip waits for each of them.

use std::sync::mpsc;

use tether_proto::ProtoError;
use tether_proto::envelope::{Checked, Prepared, check_batch};
use tokio::sync::oneshot;

/// The most signatures checked in one batch.
const MAX_BATCH: usize = 128;

/// One envelope to check and where its outcome goes.
struct Job {
    envelope: Prepared,
    done: oneshot::Sender<Result<Checked, ProtoError>>,
}

/// Checks envelopes' signatures in batches on a thread of its own (see the module docs).
/// The thread ends when the checker is dropped.
#[derive(Debug)]
pub struct SignatureChecker {
    jobs: mpsc::Sender<Job>,
}

impl SignatureChecker {
    /// Starts the checker's thread. It runs at the server's priority, not at the bulk
    /// work's (`crate::priority`): a session waits for its frame's check before it
    /// reads its next frame or takes a command from its mailbox.
    pub fn start() -> std::io::Result<Self> {
        let (jobs, queued) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tether-signatures".to_owned())
            .spawn(move || check_until_closed(&queued))?;
        Ok(Self { jobs })
    }

    /// Checks `envelope`'s signature, batched with whatever else is waiting. `None` if
    /// the checker's thread stopped (by a panic) with the envelope.
    pub async fn check(&self, envelope: Prepared) -> Option<Result<Checked, ProtoError>> {
        let (done, outcome) = oneshot::channel();
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job { envelope, done }) {
            // The thread is gone (it only ends with the checker, or by a panic): the
            // signature is checked here instead.
            return Some(job.envelope.check_signature());
        }
        outcome.await.ok()
    }
}

/// The checker's thread: until every sender is gone, takes what is waiting and checks it.
fn check_until_closed(queued: &mpsc::Receiver<Job>) {
    while let Ok(first) = queued.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        crate::prom::signature_batch(batch.len());
        let (envelopes, answers): (Vec<Prepared>, Vec<_>) =
            batch.into_iter().map(|j| (j.envelope, j.done)).unzip();
        for (outcome, done) in check_batch(envelopes).into_iter().zip(answers) {
            // A session that ended meanwhile has nothing to be told.
            let _ = done.send(outcome);
        }
    }
}
