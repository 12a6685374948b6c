//! How `tether watch`, `tether alerts` and `tether metrics` print: one line per live
//! event (command state changes as `tether cmd --wait` shows them), an alerts table, a
//! rollups table. Everything from the server goes through
//! [`clean`] (a PC names itself, and an alert message may quote what it reported).

use std::collections::HashMap;

use serde_json::Value;

use super::command::StateChange;
use super::{clean, table, utc};
use crate::views::{AlertView, Bucket, CommandEventView, LiveEventView, MetricsView};

/// The one line `tether watch` prints for an event. `names` maps device ids to names.
pub fn event_line(e: &LiveEventView, names: &HashMap<String, String>) -> String {
    let device = names
        .get(&e.device_id)
        .map_or_else(|| clean(&e.device_id), |n| clean(n));
    let what = match e.kind.as_str() {
        "presence" => presence(&e.data),
        "telemetry" => telemetry(&e.data),
        "alert" => alert(&e.data),
        "command_status" => command(&e.data),
        _ => clean(&compact(&e.data)).into_owned(),
    };
    format!("{}  {device}  {}  {what}", utc(e.at), clean(&e.kind))
}

/// The line for a `lagged` notice.
pub fn lagged_line(missed: u64) -> String {
    format!("(the server dropped {missed} events this client was too slow for)")
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn presence(d: &Value) -> String {
    match d.get("online").and_then(Value::as_bool) {
        Some(true) => "online".to_owned(),
        Some(false) => "offline".to_owned(),
        None => clean(&compact(d)).into_owned(),
    }
}

fn num(d: &Value, k: &str) -> Option<f64> {
    d.get(k).and_then(Value::as_f64)
}

fn telemetry(d: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(cpu) = num(d, "cpu_pct") {
        parts.push(format!("cpu {cpu:.1}%"));
    }
    if let (Some(used), Some(total)) = (num(d, "mem_used_bytes"), num(d, "mem_total_bytes")) {
        parts.push(format!("mem {}/{}", bytes(used), bytes(total)));
    }
    let fullest = d
        .get("disks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|disk| {
            let used = num(disk, "used_bytes")?;
            let total = num(disk, "total_bytes")?;
            (total > 0.0).then(|| (used / total * 100.0, disk.get("mount")))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((pct, mount)) = fullest {
        let mount = mount.and_then(Value::as_str).unwrap_or("?");
        parts.push(format!("disk {} {pct:.0}%", clean(mount)));
    }
    if let Some(net) = d.get("net")
        && let (Some(rx), Some(tx)) = (num(net, "rx_bps"), num(net, "tx_bps"))
    {
        parts.push(format!("net in {}/s out {}/s", bytes(rx), bytes(tx)));
    }
    if let Some(r) = num(d, "risk_score") {
        parts.push(format!("risk {r:.2}"));
    }
    if parts.is_empty() {
        clean(&compact(d)).into_owned()
    } else {
        parts.join("  ")
    }
}

fn alert(d: &Value) -> String {
    match serde_json::from_value::<AlertView>(d.clone()) {
        Ok(a) => {
            let state = if a.acked_at.is_some() {
                "acknowledged".to_owned()
            } else {
                a.severity.to_uppercase()
            };
            let risk = a
                .risk_score
                .map_or_else(String::new, |r| format!(" (risk {r:.2})"));
            format!(
                "{} {}: {}{risk} [{}]",
                clean(&state),
                clean(&a.kind),
                clean(&a.message),
                clean(&a.id)
            )
        }
        Err(_) => clean(&compact(d)).into_owned(),
    }
}

/// `0b7e4c7e lock_screen sent (attempt 1)`: the short command id, the method and the
/// state line `tether cmd --wait` prints.
fn command(d: &Value) -> String {
    match serde_json::from_value::<CommandEventView>(d.clone()) {
        Ok(c) => {
            let method = d.get("method").and_then(Value::as_str).unwrap_or("?");
            format!(
                "{} {} {}",
                super::command::short_id(&c.command_id),
                clean(method),
                StateChange::from_event(&c).line().trim_start()
            )
        }
        Err(_) => clean(&compact(d)).into_owned(),
    }
}

/// Bytes (or bytes per second) in binary units, one decimal.
pub fn bytes(b: f64) -> String {
    let mut v = b.max(0.0);
    let mut unit = "B";
    for u in ["KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if unit == "B" {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {unit}")
    }
}

/// The table of `tether alerts`.
pub fn alerts_table(alerts: &[AlertView], names: &HashMap<String, String>) -> String {
    if alerts.is_empty() {
        return "No alerts.".into();
    }
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            vec![
                clean(&a.id).into_owned(),
                names
                    .get(&a.device_id)
                    .map_or_else(|| clean(&a.device_id), |n| clean(n))
                    .into_owned(),
                clean(&a.severity).into_owned(),
                clean(&a.kind).into_owned(),
                utc(a.created_at),
                a.acked_at.map_or("open".to_owned(), |_| "acked".to_owned()),
                clean(&a.message).into_owned(),
            ]
        })
        .collect();
    table(
        &[
            "ID", "DEVICE", "SEVERITY", "KIND", "RAISED", "STATE", "MESSAGE",
        ],
        &rows,
    )
}

fn stat(b: &Bucket, metric: &str, pick: fn(&crate::views::MetricStats) -> f64) -> Option<f64> {
    b.metrics.get(metric).map(pick)
}

/// The table of `tether metrics`: one row per bucket, oldest first.
pub fn metrics_table(m: &MetricsView) -> String {
    if m.buckets.is_empty() {
        return format!(
            "No {} rollups for {} yet (they are written as telemetry arrives).",
            clean(&m.period),
            clean(&m.device_id)
        );
    }
    let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let rate = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{}/s", bytes(v)));
    let daily = m.period == "daily";
    let rows: Vec<Vec<String>> = m
        .buckets
        .iter()
        .map(|b| {
            let start = utc(b.bucket_start);
            // `YYYY-MM-DD HH:MM:SS UTC`: a day needs the date, an hour the date and hour.
            let label = if daily {
                start.get(..10).unwrap_or(&start).to_owned()
            } else {
                start.get(..16).unwrap_or(&start).to_owned()
            };
            let samples = b.metrics.values().map(|s| s.count).max().unwrap_or(0);
            vec![
                label,
                samples.to_string(),
                pct(stat(b, "cpu_pct", |s| s.mean)),
                pct(stat(b, "cpu_pct", |s| s.p95)),
                pct(stat(b, "cpu_pct", |s| s.max)),
                pct(stat(b, "mem_used_pct", |s| s.mean)),
                pct(stat(b, "disk_used_pct", |s| s.max)),
                rate(stat(b, "rx_bps", |s| s.mean)),
                rate(stat(b, "tx_bps", |s| s.mean)),
                stat(b, "risk_score", |s| s.max).map_or("-".to_owned(), |v| format!("{v:.2}")),
            ]
        })
        .collect();
    table(
        &[
            if daily { "DAY (UTC)" } else { "HOUR (UTC)" },
            "SAMPLES",
            "CPU% AVG",
            "CPU% P95",
            "CPU% MAX",
            "MEM% AVG",
            "DISK% MAX",
            "IN AVG",
            "OUT AVG",
            "RISK MAX",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests;
