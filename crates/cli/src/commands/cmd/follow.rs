//! Following one command until it finishes or the deadline passes.
//!
//! The live view (opened before the command was sent) brings each state change as it
//! happens. The store is the truth, though, and a live event is best effort on the
//! server: so the command is also read back (`GET /api/command/{id}`, every transition)
//! when the view says events were dropped (`lagged`), after a quiet spell, at the end,
//! and every second once the view is gone (closed or lost). A state change is printed
//! once, whichever way it arrived first.

use std::collections::HashSet;
use std::time::Duration;

use tether_client::sse::{EventStream, SseEvent};
use tokio::time::Instant;

use crate::context::{Conn, Ctx};
use crate::error::CliError;
use crate::output::command::StateChange;
use crate::views::{CommandEventView, CommandView, LiveEventView, TERMINAL_STATES};

/// How often the command is read back once the live view is gone.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long the live view may stay quiet before the command is read back anyway.
const RESYNC_AFTER: Duration = Duration::from_secs(10);

/// Where following ended.
#[derive(Debug)]
pub(super) struct Followed {
    /// The command as last read (with its transitions once read back).
    pub view: CommandView,
    /// Whether it finished (else the deadline passed).
    pub finished: bool,
}

/// Prints each state change once.
struct Printer<'a> {
    ctx: &'a Ctx,
    /// (state, at): a live event and its stored transition carry the same pair.
    seen: HashSet<(String, u64)>,
}

impl Printer<'_> {
    fn show(&mut self, state: &str, at: u64, change: &StateChange) {
        if self.seen.insert((state.to_owned(), at)) {
            self.ctx.out.human(&change.line());
        }
    }
}

/// What one live event means here.
enum Seen {
    /// A state change of our command; `true` if it is final.
    Ours(bool),
    /// Events were dropped: read the command back.
    Lagged,
    /// Another command, or another kind of event.
    Other,
}

/// Follows `accepted` (already printed) on `stream` until it finishes or `deadline`.
pub(super) async fn follow(
    ctx: &Ctx,
    conn: &Conn,
    stream: EventStream,
    accepted: &CommandView,
    deadline: Instant,
) -> Result<Followed, CliError> {
    let id = accepted.command_id.as_str();
    let mut printer = Printer {
        ctx,
        seen: HashSet::new(),
    };
    // Its first state was printed with the "accepted" line.
    printer
        .seen
        .insert((accepted.state.clone(), accepted.updated_at));
    let mut last = accepted.clone();
    // A command finished at once (denied at ingest) is only read back.
    let mut read_now = accepted.is_terminal();
    let mut stream = (!read_now).then_some(stream);
    loop {
        if !read_now {
            if let Some(s) = stream.as_mut() {
                let wake = soon(RESYNC_AFTER, deadline);
                match tokio::time::timeout_at(wake, s.next_event()).await {
                    Ok(Ok(Some(e))) => match seen(&e, id, &mut printer) {
                        Seen::Ours(false) | Seen::Other => continue,
                        // The end: read it back for the result (polling if that fails).
                        Seen::Ours(true) => stream = None,
                        Seen::Lagged => {}
                    },
                    // Quiet for a while, or the deadline: read back below.
                    Err(_) => {}
                    Ok(Ok(None)) => {
                        ctx.out
                            .note("(the live view closed; following the command by polling)");
                        stream = None;
                    }
                    Ok(Err(e)) => {
                        ctx.out.note(&format!(
                            "(the live view was lost: {}; following the command by polling)",
                            CliError::from(e)
                        ));
                        stream = None;
                    }
                }
            } else {
                tokio::time::sleep_until(soon(POLL_EVERY, deadline)).await;
            }
        }
        read_now = false;
        if let Some(v) = read_back(ctx, conn, id, &mut printer).await? {
            last = v;
        }
        if last.is_terminal() {
            return Ok(Followed {
                view: last,
                finished: true,
            });
        }
        if Instant::now() >= deadline {
            return Ok(Followed {
                view: last,
                finished: false,
            });
        }
    }
}

/// `after` from now, but no later than `deadline`.
fn soon(after: Duration, deadline: Instant) -> Instant {
    Instant::now()
        .checked_add(after)
        .map_or(deadline, |t| t.min(deadline))
}

/// Prints our command's state changes from a live event.
fn seen(e: &SseEvent, id: &str, printer: &mut Printer<'_>) -> Seen {
    match e.event.as_str() {
        "lagged" => Seen::Lagged,
        "command_status" => {
            let Ok(live) = serde_json::from_str::<LiveEventView>(&e.data) else {
                return Seen::Other;
            };
            let Ok(ev) = serde_json::from_value::<CommandEventView>(live.data) else {
                return Seen::Other;
            };
            if ev.command_id != id {
                return Seen::Other;
            }
            printer.show(&ev.state, live.at, &StateChange::from_event(&ev));
            Seen::Ours(TERMINAL_STATES.contains(&ev.state.as_str()))
        }
        _ => Seen::Other,
    }
}

/// Reads the command back and prints the state changes not shown yet. A server that
/// cannot be reached right now is waited out (until the deadline); a refusal ends it.
async fn read_back(
    ctx: &Ctx,
    conn: &Conn,
    id: &str,
    printer: &mut Printer<'_>,
) -> Result<Option<CommandView>, CliError> {
    match conn.get::<CommandView>(&format!("/api/command/{id}")).await {
        Ok(v) => {
            for t in v.transitions.iter().flatten() {
                printer.show(&t.to, t.at, &StateChange::from_transition(t, &v));
            }
            Ok(Some(v))
        }
        Err(e @ CliError::Unreachable(_)) => {
            ctx.out.note(&format!("({e}; trying again)"));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
