//! What the CLI prints. Results go to stdout, as sentences and tables for people or as
//! JSON with `--json`; errors and prompts go to stderr. Text that came from the server
//! (device names above all, which a PC chooses) is shown with control characters
//! replaced, so it cannot move the cursor or recolour the terminal.

pub mod command;
pub mod live;

use std::borrow::Cow;

use serde::Serialize;
use serde_json::json;

use tether_proto::ErrorCode;

use crate::error::CliError;
use crate::views::{DeviceView, PairedView, UserView};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Human output, or JSON when `json`.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether `--json` is on.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints a result: `value` as JSON, or the `human` text.
    pub fn emit<T: Serialize + ?Sized>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.json {
            println!("{}", to_json(value));
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{}", text.trim_end_matches('\n'));
            }
        }
    }

    /// Prints one record of a stream: `value` as one line of compact JSON, or `human`.
    pub fn line<T: Serialize + ?Sized>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.json {
            match serde_json::to_string(value) {
                Ok(s) => println!("{s}"),
                Err(e) => println!("{{\"error\":{{\"message\":\"encoding the output: {e}\"}}}}"),
            }
        } else {
            println!("{}", human());
        }
    }

    /// A result line for people (stdout, human mode only): what `--json` leaves to the
    /// one document it prints at the end.
    pub fn human(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    /// A progress note for people (stderr, human mode only).
    pub fn note(&self, text: &str) {
        if !self.json {
            eprintln!("{text}");
        }
    }

    /// Prints an error: always the one-line message (and hint) on stderr; with `--json`
    /// also an `{"error": ...}` object on stdout.
    pub fn error(&self, e: &CliError) {
        eprintln!("{}", error_text(e));
        if self.json {
            println!("{}", to_json(&error_json(e)));
        }
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| format!("{{\"error\":{{\"message\":\"encoding the output: {e}\"}}}}"))
}

/// Replaces control characters (escape sequences, bells, newlines) with `?`.
pub fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// The stderr text of an error: `error <code> <NAME>: <message>` for server refusals,
/// `error: <message>` otherwise, then the hint on its own line.
pub fn error_text(e: &CliError) -> String {
    let head = match e {
        CliError::Refused { body, .. } => format!(
            "error {} {}: {}",
            body.code.number(),
            body.code.name(),
            clean(&body.message)
        ),
        // Their display is already `error <code> <NAME>: …` (messages quote the server).
        CliError::Command(_) | CliError::Integrity { .. } => clean(&e.to_string()).into_owned(),
        other => format!("error: {other}"),
    };
    match e.hint() {
        Some(h) => format!("{head}\n  hint: {h}"),
        None => head,
    }
}

/// The `--json` form of an error.
pub fn error_json(e: &CliError) -> serde_json::Value {
    let (code, name, message, trace_id) = match e {
        CliError::Refused { body, .. } => (
            Some(body.code.number()),
            Some(body.code.name()),
            body.message.clone(),
            body.trace_id.clone(),
        ),
        CliError::Command(f) => (
            f.code.map(ErrorCode::number),
            f.code.map(ErrorCode::name),
            f.message.clone(),
            f.view.as_ref().map(|v| v.trace_id.clone()),
        ),
        CliError::Integrity { code, message } => (
            Some(code.number()),
            Some(code.name()),
            message.clone(),
            None,
        ),
        other => (None, None, other.to_string(), None),
    };
    let mut error = json!({
        "exit_code": e.exit_status(),
        "code": code,
        "name": name,
        "message": message,
        "hint": e.hint(),
        "trace_id": trace_id,
    });
    // A command that did not succeed: how it ended, and the command as last seen.
    if let (CliError::Command(f), Some(obj)) = (e, error.as_object_mut()) {
        obj.insert("outcome".into(), json!(f.outcome.as_str()));
        obj.insert("command_id".into(), json!(f.command_id));
        obj.insert("command".into(), json!(f.view));
    }
    json!({ "error": error })
}

/// A plain-text table: a header row, then rows, columns padded to the widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            let pad = w.saturating_sub(cell.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The device table of `tether devices`.
pub fn devices_table(devices: &[DeviceView]) -> String {
    if devices.is_empty() {
        return "No devices yet. Pair one with: tether pair <pair URL shown by the PC>".into();
    }
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|d| {
            vec![
                clean(&d.id).into_owned(),
                clean(&d.name).into_owned(),
                clean(&d.os).into_owned(),
                clean(&d.status).into_owned(),
                if d.online { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    table(&["ID", "NAME", "OS", "STATUS", "ONLINE"], &rows)
}

/// The detail view of `tether device <id>`.
pub fn device_detail(d: &DeviceView) -> String {
    let opt = |v: &Option<String>| {
        v.as_deref()
            .map_or("-".to_owned(), |s| clean(s).into_owned())
    };
    let rows = [
        ("id", clean(&d.id).into_owned()),
        ("name", clean(&d.name).into_owned()),
        ("os", clean(&d.os).into_owned()),
        ("status", clean(&d.status).into_owned()),
        ("online", if d.online { "yes" } else { "no" }.to_owned()),
        ("owner", opt(&d.owner_id)),
        ("certificate", opt(&d.cert_serial)),
        ("paired at", d.paired_at.map_or("-".to_owned(), utc)),
        ("hardware id", format!("sha256:{}", clean(&d.hwid_hash))),
    ];
    rows.iter()
        .map(|(k, v)| format!("{k:<12} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ms} ms after 1970"),
    }
}

/// The sentence `tether pair` prints.
pub fn paired_line(p: &PairedView) -> String {
    let mut s = format!(
        "Paired {} ({}), status {}. Pairing code: {} — the PC shows the same number.",
        clean(&p.device_name),
        clean(&p.device_id),
        clean(&p.status),
        clean(&p.pairing_code),
    );
    if p.status == "awaiting_approval" {
        s.push_str("\nAn admin must approve the device before it accepts commands.");
    }
    s
}

/// A user in a few lines.
pub fn user_lines(u: &UserView) -> String {
    format!(
        "{} ({})\nrole: {}\ntwo-factor (TOTP): {}",
        clean(&u.email),
        clean(&u.id),
        clean(&u.role),
        if u.totp_enabled { "on" } else { "off" },
    )
}

#[cfg(test)]
mod tests;
