//! The stop signals: the first Ctrl-C, SIGTERM or SIGHUP cancels `shutdown` (stop in
//! order, each process with its grace period); a second one cancels `hurry` (kill what is
//! left).

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts the task that listens for the signals. The handlers are in place when this
/// returns (it must be called on the runtime).
pub fn spawn(shutdown: CancellationToken, hurry: CancellationToken) -> JoinHandle<()> {
    let mut signals = imp::Signals::new();
    tokio::spawn(async move {
        signals.next().await;
        shutdown.cancel();
        signals.next().await;
        hurry.cancel();
    })
}

#[cfg(unix)]
mod imp {
    use tokio::signal::unix::{Signal, SignalKind, signal};

    pub(super) struct Signals {
        streams: Vec<Signal>,
    }

    impl Signals {
        pub(super) fn new() -> Self {
            let streams = [
                SignalKind::interrupt(),
                SignalKind::terminate(),
                SignalKind::hangup(),
            ]
            .into_iter()
            .filter_map(|kind| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    crate::console::warn(&format!("cannot listen for signal {kind:?}: {e}"));
                    None
                }
            })
            .collect();
            Self { streams }
        }

        /// The next of any of the signals.
        pub(super) async fn next(&mut self) {
            let [int, term, hup] = self.streams.as_mut_slice() else {
                // Some could not be registered: Ctrl-C still works.
                let _ = tokio::signal::ctrl_c().await;
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
        }
    }
}

#[cfg(not(unix))]
mod imp {
    pub(super) struct Signals;

    impl Signals {
        pub(super) fn new() -> Self {
            Self
        }

        pub(super) async fn next(&mut self) {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
