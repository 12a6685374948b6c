//! How `tether cmd`, `tether commands` and `tether command` print: the submission line,
//! one line per state change, the result, the commands table and one command's timeline.
//! Everything from the server goes through [`clean`]: a result's notes and values come
//! from the PC.

use serde_json::Value;
use tether_proto::ErrorCode;

use super::live::bytes;
use super::{clean, table, utc};
use crate::views::{CommandEventView, CommandView, ResultView, TERMINAL_STATES, TransitionView};

/// `2004 TTL_EXPIRED` for a known code, else the bare number.
pub fn code_label(code: u16) -> String {
    match ErrorCode::from_number(code) {
        Some(c) => format!("{} {}", c.number(), c.name()),
        None => format!("{code}"),
    }
}

/// The first 8 characters of a command id (the start of its UUID).
pub fn short_id(id: &str) -> String {
    clean(id).chars().take(8).collect()
}

/// A device as `name (id)`, or the id alone when the name is unknown.
pub fn device_label(id: &str, name: Option<&str>) -> String {
    match name {
        Some(n) if n != id => format!("{} ({})", clean(n), clean(id)),
        _ => clean(id).into_owned(),
    }
}

/// What `tether cmd` prints once the server accepted the command.
pub fn accepted_lines(v: &CommandView, device: &str) -> String {
    let mut s = format!(
        "accepted: command {} (trace {}) {}",
        clean(&v.command_id),
        clean(&v.trace_id),
        clean(&v.state)
    );
    if v.state == "awaiting_approval" {
        s.push_str(&format!(
            "\nit waits for {} approval(s) by other users (they run: tether approve {}){}",
            v.approvals_required.unwrap_or(1),
            clean(&v.command_id),
            v.reason
                .as_deref()
                .map(|r| format!("\n{}", clean(r)))
                .unwrap_or_default()
        ));
    }
    if v.device_online == Some(false) && !v.is_terminal() {
        s.push_str(&format!(
            "\n{device} is offline: the command waits for it until {}",
            utc(v.expires_at)
        ));
    }
    s
}

/// One state change, from a live event or a stored transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The state entered.
    pub state: String,
    /// The delivery attempt (`sent` only).
    pub attempt: Option<u64>,
    /// The error code it carries.
    pub error: Option<u16>,
    /// The result's status (`result_posted` only).
    pub status: Option<String>,
    /// The helper's execution time (`result_posted` only).
    pub duration_ms: Option<u64>,
}

fn detail_u64(d: Option<&Value>, k: &str) -> Option<u64> {
    d.and_then(|d| d.get(k)).and_then(Value::as_u64)
}

fn detail_str(d: Option<&Value>, k: &str) -> Option<String> {
    d.and_then(|d| d.get(k))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Whether a state carries the command's error code when it has one.
fn carries_error(state: &str) -> bool {
    state == "result_posted" || TERMINAL_STATES.contains(&state)
}

impl StateChange {
    /// From a live `command_status` event.
    pub fn from_event(e: &CommandEventView) -> Self {
        let d = e.detail.as_ref();
        Self {
            state: e.state.clone(),
            attempt: (e.state == "sent").then_some(u64::from(e.attempts)),
            error: e.error.filter(|_| carries_error(&e.state)),
            status: detail_str(d, "status"),
            duration_ms: detail_u64(d, "duration_ms"),
        }
    }

    /// From a stored transition of `v`.
    pub fn from_transition(t: &TransitionView, v: &CommandView) -> Self {
        let d = Some(&t.detail);
        let error = detail_u64(d, "error")
            .and_then(|n| u16::try_from(n).ok())
            .or_else(|| v.error.filter(|_| carries_error(&t.to) && t.to == v.state));
        Self {
            state: t.to.clone(),
            attempt: detail_u64(d, "attempt").filter(|_| t.to == "sent"),
            error,
            status: detail_str(d, "status"),
            duration_ms: detail_u64(d, "duration_ms"),
        }
    }

    /// `  sent (attempt 1)`, `  executing`, `  expired (error 2004 TTL_EXPIRED)`.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = self.attempt {
            parts.push(format!("attempt {a}"));
        }
        if let Some(s) = &self.status {
            parts.push(clean(s).into_owned());
        }
        if let Some(ms) = self.duration_ms {
            parts.push(format!("{ms} ms"));
        }
        if let Some(e) = self.error {
            parts.push(format!("error {}", code_label(e)));
        }
        if parts.is_empty() {
            format!("  {}", clean(&self.state))
        } else {
            format!("  {} ({})", clean(&self.state), parts.join(", "))
        }
    }
}

/// The result of a finished command: status, notes, the structured result, the artifact.
/// Empty when there is no result (the command never ran).
pub fn result_block(v: &CommandView) -> String {
    let Some(r) = v.result_view() else {
        return String::new();
    };
    let mut out = result_head(&r);
    let mut shown = r.result.clone();
    // The agent puts the artifact's decryption key in the result; `tether artifact get`
    // fetches and uses it, so it need not sit in a terminal's scrollback.
    if let Some(key) = shown.get_mut("artifact_key").filter(|k| k.is_string()) {
        *key = Value::String("(hidden; tether artifact get uses it)".into());
    }
    let pretty = serde_json::to_string_pretty(&shown).unwrap_or_default();
    let is_empty_object = r.result.as_object().is_some_and(serde_json::Map::is_empty);
    if !is_empty_object && !r.result.is_null() {
        for line in pretty.lines() {
            out.push_str("\n  ");
            out.push_str(&clean(line));
        }
    }
    if let Some(a) = &r.artifact {
        out.push_str(&format!(
            "\nartifact: {} ({}, {})\n  sha256 {}\n  download it with: tether artifact get {}",
            clean(&a.artifact_id),
            clean(&a.content_type),
            size(a.size_bytes),
            clean(&a.sha256),
            clean(&a.artifact_id),
        ));
    }
    out
}

fn size(n: u64) -> String {
    // Display only: exactness beyond 2^53 bytes does not matter.
    #[allow(clippy::cast_precision_loss)]
    bytes(n as f64)
}

fn result_head(r: &ResultView) -> String {
    let mut head = format!("result: {}", clean(&r.status));
    if let Some(e) = r.error {
        head.push_str(&format!(" (error {})", code_label(e)));
    }
    if !r.notes.is_empty() {
        head.push_str(&format!(" — {}", clean(&r.notes)));
    }
    if let Some(ms) = r.duration_ms {
        head.push_str(&format!(" [{ms} ms]"));
    }
    head
}

/// The state column: the state, and what went wrong when something did.
fn state_cell(v: &CommandView) -> String {
    let mut s = clean(&v.state).into_owned();
    if let Some(r) = v.result_view().filter(|r| r.status != "ok") {
        s.push_str(&format!(" ({})", clean(&r.status)));
    } else if let Some(e) = v.error.and_then(ErrorCode::from_number) {
        s.push_str(&format!(" ({})", e.name()));
    }
    s
}

/// The table of `tether commands` (newest first, as the server lists them).
pub fn commands_table(commands: &[CommandView], device: &str) -> String {
    if commands.is_empty() {
        return format!(
            "No commands for {device} yet. Send one with: tether cmd {device} lock_screen"
        );
    }
    let rows: Vec<Vec<String>> = commands
        .iter()
        .map(|c| {
            vec![
                short_id(&c.command_id),
                clean(&c.method).into_owned(),
                state_cell(c),
                c.attempts.to_string(),
                utc(c.created_at),
                utc(c.updated_at),
            ]
        })
        .collect();
    table(
        &["ID", "METHOD", "STATE", "ATTEMPTS", "CREATED", "UPDATED"],
        &rows,
    )
}

/// `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub fn utc_ms(ms: u64) -> String {
    let s = utc(ms);
    match s.strip_suffix(" UTC") {
        Some(head) if head.len() == 19 => format!("{head}.{:03} UTC", ms % 1000),
        _ => s,
    }
}

/// A transition's details as `key=value` words (the server node that made it left out).
fn detail_words(d: &Value) -> String {
    let Some(obj) = d.as_object() else {
        return String::new();
    };
    obj.iter()
        .filter(|(k, v)| k.as_str() != "node" && !v.is_null())
        .map(|(k, v)| {
            let v = match (k.as_str(), v) {
                ("error", Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .map_or_else(|| n.to_string(), code_label),
                (_, Value::String(s)) => s.clone(),
                (_, other) => serde_json::to_string(other).unwrap_or_default(),
            };
            format!("{}={}", clean(k), clean(&v))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `tether command ID`: the command, its result and its timeline.
pub fn command_detail(v: &CommandView, device: &str) -> String {
    let params = serde_json::to_string(&v.params).unwrap_or_default();
    let mut rows = vec![
        ("command", clean(&v.command_id).into_owned()),
        ("device", device.to_owned()),
        ("method", format!("{} {}", clean(&v.method), clean(&params))),
        ("priority", clean(&v.priority).into_owned()),
        ("state", state_cell(v)),
        ("attempts", v.attempts.to_string()),
        ("trace", clean(&v.trace_id).into_owned()),
        ("created", utc(v.created_at)),
        ("expires", utc(v.expires_at)),
    ];
    if let Some(e) = v.error {
        rows.push(("error", code_label(e)));
    }
    if let Some(at) = v.viewed_at {
        rows.push(("viewed", utc(at)));
    }
    let mut out = rows
        .iter()
        .map(|(k, val)| format!("{k:<9} {val}"))
        .collect::<Vec<_>>()
        .join("\n");
    let result = result_block(v);
    if !result.is_empty() {
        out.push('\n');
        out.push_str(&result);
    }
    if let Some(ts) = &v.transitions {
        out.push_str("\n\ntimeline:");
        let rows: Vec<Vec<String>> = ts
            .iter()
            .map(|t| {
                vec![
                    format!("  {}", utc_ms(t.at)),
                    clean(&t.to).into_owned(),
                    detail_words(&t.detail),
                ]
            })
            .collect();
        // The table without its (empty) header line.
        let t = table(&["", "", ""], &rows);
        if let Some((_, body)) = t.split_once('\n') {
            out.push('\n');
            out.push_str(body);
        }
    }
    out
}

#[cfg(test)]
mod tests;
