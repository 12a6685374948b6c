//! The CPU priority of the server's bulk work.
//!
//! Storing a fleet's telemetry is most of what the server does under load, and none of
//! it is waited for by a person: a sample stored a second later is as good. A command's
//! round trip, a login, a live view and a reconnecting agent's handshake are waited for.
//! When the cores are saturated (18,000 agents sending on two cores), the operating
//! system shares them out among every thread that is ready to run, and a command's
//! store write waited behind the analytics' threads as long as behind anything else.
//!
//! So the analytics' thread can run at a lower priority (`telemetry.bulk_nice`), and with
//! it the threads of the store connections it opens (on SQLite each connection has a
//! thread of its own, started from the thread that opens it, whose priority it
//! inherits). It still gets all the CPU that nothing else wants and gives way when
//! something interactive is ready. Telemetry the analytics then do not keep up with is
//! refused at the gateway with `9002`, and the agent skips its samples for a few
//! intervals (docs/protocol.md, "Back-off"): on a saturated machine fewer samples are
//! stored, none that was accepted is lost.
//!
//! It is off by default (0). Measured on 2 cores (docs/benchmarks.md, "Bulk work at a
//! lower priority"), at 10 it cut the command round trip's p99 under a fleet's telemetry
//! by a half to two thirds, and the stored rate by a sixth at 10,000 samples a second
//! offered and by 30–60 % at the telemetry ceiling: a trade for a deployment to choose.
//!
//! What stays at the server's priority, because something interactive waits on it: the
//! signature checker (a session reads its next frame, a command's acknowledgement among
//! them, only once its last sample's check is back), alerts the analytics raise (they go
//! through the shared pool that commands use, and are raised on the server's runtime so
//! that no connection of that pool is opened from the lowered thread), and everything
//! with a Redis bus (a bus connection the analytics open is shared with the live hub).
//! The analytics' connections to the main file still take its write lock for the
//! devices' last-seen times, a short update a few times a second; a command's write that
//! comes meanwhile waits while that lowered thread finishes it.
//!
//! On Linux a thread's nice value is its own (`setpriority(PRIO_PROCESS, 0)` sets the
//! calling thread's), threads started from it inherit it, and any thread may raise its
//! own. Elsewhere this does nothing.

/// The highest nice value there is.
#[cfg(target_os = "linux")]
const NICE_MAX: i32 = 19;

/// Lowers the calling thread's CPU priority by `step` (a nice value added to its own, up
/// to the lowest priority there is; `telemetry.bulk_nice`, 0 by default; at 10 the
/// scheduler gives a ready thread of the server's about nine times the CPU of a ready
/// bulk thread); threads it starts afterwards inherit it. 0 leaves it as it is. A failure is
/// logged and otherwise ignored: the thread works as before, at the server's priority.
pub fn lower_current_thread(step: u8) {
    #[cfg(target_os = "linux")]
    if step > 0 {
        use rustix::process::{getpriority_process, setpriority_process};
        let lowered = getpriority_process(None).and_then(|nice| {
            setpriority_process(None, nice.saturating_add(i32::from(step)).min(NICE_MAX))
        });
        if let Err(e) = lowered {
            tracing::warn!(error = %e, thread = ?std::thread::current().name(), "could not lower a bulk thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = step;
}

/// The calling thread's nice value (Linux; `None` elsewhere or if it cannot be read).
pub fn current_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(None).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{NICE_MAX, current_nice, lower_current_thread};

    /// Whether a thread of this test process can be lowered by `step` and show it: not if
    /// the process already runs within `step` of the lowest priority.
    fn room_for(step: i32) -> bool {
        let Some(own) = current_nice() else {
            eprintln!("skipped: this thread's nice value cannot be read");
            return false;
        };
        let room = own.saturating_add(step) <= NICE_MAX;
        if !room {
            eprintln!("skipped: this test process already runs at nice {own}");
        }
        room
    }

    #[test]
    fn a_lowered_thread_and_the_threads_it_starts_run_at_the_bulk_priority() {
        if !room_for(10) {
            return;
        }
        let (own, lowered, child) = std::thread::spawn(|| {
            let own = current_nice().unwrap();
            lower_current_thread(10);
            let lowered = current_nice().unwrap();
            let child = std::thread::spawn(current_nice).join().unwrap().unwrap();
            (own, lowered, child)
        })
        .join()
        .unwrap();
        assert_eq!(lowered, own.saturating_add(10));
        assert_eq!(child, lowered);
        // Only that thread: the test's own thread keeps its priority.
        assert_eq!(current_nice().unwrap(), own);
    }

    #[test]
    fn a_step_of_zero_leaves_the_thread_as_it_is_and_none_goes_past_the_lowest() {
        if !room_for(1) {
            return;
        }
        let (own, unchanged, lowest) = std::thread::spawn(|| {
            let own = current_nice().unwrap();
            lower_current_thread(0);
            let unchanged = current_nice().unwrap();
            lower_current_thread(19);
            lower_current_thread(19);
            (own, unchanged, current_nice().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(unchanged, own);
        assert!(lowest > own);
        assert_eq!(lowest, NICE_MAX);
    }
}
