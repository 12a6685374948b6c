//! What the server says about itself during a run: its CPU time (from `/proc/<pid>/stat`,
//! Linux) and its own counters of accepted and refused telemetry (from `GET /metrics`, the
//! Prometheus text format, with the `metrics.token` the benchmark server is given).

use std::collections::BTreeMap;

use crate::LoadError;
use crate::target::Target;

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`sysconf(_SC_CLK_TCK)`, 100 on
/// every Linux this runs on).
const CLK_TCK: f64 = 100.0;

/// The CPU time process `pid` has used, user + system, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64, LoadError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(LoadError::io(format!("reading {path}")))?;
    parse_stat_cpu(&text).ok_or_else(|| LoadError::Format(format!("{path}: no utime/stime")))
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds. The command
/// name (field 2) is in parentheses and may hold spaces, so fields are counted after its
/// closing parenthesis.
pub fn parse_stat_cpu(text: &str) -> Option<f64> {
    let after = text.get(text.rfind(')')?.checked_add(1)?..)?;
    let mut fields = after.split_whitespace();
    // After the name: state (3), ppid (4), … utime is the 14th field overall: the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime) as f64 / CLK_TCK)
}

/// The server's telemetry counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryCounters {
    /// `tether_telemetry_accepted_total`.
    pub accepted: u64,
    /// `tether_telemetry_stored_total` (0 from a server without it).
    pub stored: u64,
    /// `tether_telemetry_rejected_total`, by its `code` label.
    pub rejected: BTreeMap<String, u64>,
}

impl TelemetryCounters {
    /// What was counted since `before`.
    pub fn since(&self, before: &TelemetryCounters) -> TelemetryCounters {
        TelemetryCounters {
            accepted: self.accepted.saturating_sub(before.accepted),
            stored: self.stored.saturating_sub(before.stored),
            rejected: self
                .rejected
                .iter()
                .map(|(code, n)| {
                    let was = before.rejected.get(code).copied().unwrap_or(0);
                    (code.clone(), n.saturating_sub(was))
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

/// A counter's value: an integer, or a float holding one (`1e+06`).
fn count(text: &str) -> Option<u64> {
    let text = text.trim();
    text.parse::<u64>().ok().or_else(|| {
        let f = text.parse::<f64>().ok()?;
        // Counters are whole and non-negative; below 2^53 a float holds them exactly.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (f.is_finite() && (0.0..9.0e15).contains(&f)).then(|| f.round() as u64)
    })
}

/// Reads the counters from the text of a Prometheus scrape.
pub fn parse_counters(text: &str) -> TelemetryCounters {
    let mut c = TelemetryCounters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(v) = count(value) else {
            continue;
        };
        if name == "tether_telemetry_accepted_total" {
            c.accepted = v;
        } else if name == "tether_telemetry_stored_total" {
            c.stored = v;
        } else if let Some(labels) = name.strip_prefix("tether_telemetry_rejected_total{") {
            let code = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("code=\""))
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("unknown");
            let n = c.rejected.entry(code.to_owned()).or_insert(0);
            *n = n.saturating_add(v);
        }
    }
    c
}

/// Scrapes the server's `/metrics` with `token`.
pub async fn scrape(target: &Target, token: &str) -> Result<TelemetryCounters, LoadError> {
    let api = tether_client::Api::new(&target.url, &target.ca_pem)?.with_bearer(token);
    let (status, body) = api.get_raw("/metrics").await?;
    if status != 200 {
        return Err(LoadError::Unmet(format!(
            "GET /metrics answered {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(parse_counters(&String::from_utf8_lossy(&body)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::float_cmp, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn reads_user_and_system_time_past_a_name_with_spaces() {
        let line = "4242 (tether server) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 3 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu(line), Some(3.0));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }

    #[test]
    fn reads_the_telemetry_counters_of_a_scrape() {
        let text = "# TYPE tether_telemetry_accepted_total counter\n\
                    tether_telemetry_accepted_total 1500\n\
                    tether_telemetry_stored_total 1400\n\
                    tether_telemetry_rejected_total{code=\"RATE_LIMITED\"} 2\n\
                    tether_telemetry_rejected_total{code=\"REPLAY\"} 1\n\
                    tether_sessions 10\n";
        let c = parse_counters(text);
        assert_eq!(c.accepted, 1500);
        assert_eq!(c.stored, 1400);
        assert_eq!(c.rejected.get("RATE_LIMITED"), Some(&2));
        assert_eq!(c.rejected.get("REPLAY"), Some(&1));
        assert_eq!(parse_counters("").accepted, 0);
        assert_eq!(
            parse_counters("tether_telemetry_accepted_total 1e+06\n").accepted,
            1_000_000
        );
        let later = parse_counters(
            "tether_telemetry_accepted_total 1600\ntether_telemetry_stored_total 1590\ntether_telemetry_rejected_total{code=\"REPLAY\"} 4\n",
        );
        let d = later.since(&c);
        assert_eq!(d.accepted, 100);
        assert_eq!(d.stored, 190);
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected.get("REPLAY"), Some(&3));
    }
}
