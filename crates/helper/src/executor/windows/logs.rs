//! Event-log bundles: `wevtutil qe` per source as text, newest first (so a capped bundle
//! keeps the most recent events), in one text file with a `==== source ====` header per
//! source, like the Linux journal bundle.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tether_proto::UnixMillis;
use tether_proto::helper::CollectLogsParams;
use tokio::io::AsyncReadExt;

use crate::error::HelperError;
use crate::executor::Artifacts;

/// Time limit of collecting logs.
const LOGS_LIMIT: Duration = Duration::from_secs(120);

/// The event log and the XPath condition (inside `System[…]`) of one source.
fn source_query(source: &str) -> (&'static str, Option<&'static str>) {
    match source {
        "application" => ("Application", None),
        "security" => ("Security", None),
        "tether" => (
            "Application",
            Some("Provider[@Name='tether-agent' or @Name='tether-helper']"),
        ),
        // "system" and anything else: the System log.
        _ => ("System", None),
    }
}

/// `wevtutil qe` arguments for one source, with events no older than `window_ms` when
/// given (`timediff` counts back from the moment of the query).
pub(super) fn wevtutil_args(source: &str, window_ms: Option<u64>) -> Vec<String> {
    let (log, cond) = source_query(source);
    let mut conds: Vec<String> = cond.iter().map(|c| (*c).to_owned()).collect();
    if let Some(ms) = window_ms {
        conds.push(format!("TimeCreated[timediff(@SystemTime) <= {ms}]"));
    }
    let mut a = vec![
        "qe".to_owned(),
        log.to_owned(),
        "/f:text".to_owned(),
        "/rd:true".to_owned(),
    ];
    if !conds.is_empty() {
        a.push(format!("/q:*[System[{}]]", conds.join(" and ")));
    }
    a
}

pub(super) async fn collect(
    artifacts: &Artifacts,
    kernel_exec_id: &str,
    p: &CollectLogsParams,
    accepted_at: UnixMillis,
) -> Result<Value, HelperError> {
    let cap = usize::try_from(p.max_bytes).unwrap_or(usize::MAX);
    let sources: Vec<&str> = if p.sources.is_empty() {
        vec!["system"]
    } else {
        p.sources.iter().map(String::as_str).collect()
    };
    let window_ms = p.since_ms.map(|since| accepted_at.0.saturating_sub(since));
    let now = tokio::time::Instant::now();
    let deadline = now.checked_add(LOGS_LIMIT).unwrap_or(now);
    let mut bundle = Vec::new();
    for source in sources {
        let header = format!("==== {source} ====\n");
        let room = cap
            .saturating_sub(bundle.len())
            .saturating_sub(header.len());
        if room == 0 {
            break;
        }
        bundle.extend_from_slice(header.as_bytes());
        let out =
            tokio::time::timeout_at(deadline, wevtutil(&wevtutil_args(source, window_ms), room))
                .await
                .map_err(|_| HelperError::ExecutionTimeout {
                    what: "wevtutil".into(),
                    limit: LOGS_LIMIT,
                })??;
        bundle.extend_from_slice(&out);
    }
    let path = artifacts.path_for(kernel_exec_id, "log");
    let artifacts = artifacts.clone();
    tokio::task::spawn_blocking(move || artifacts.write(&path, &bundle, "text/plain"))
        .await
        .map_err(|e| HelperError::Kernel(e.to_string()))?
}

/// Runs wevtutil and keeps at most `cap` bytes of its output as UTF-8.
async fn wevtutil(a: &[String], cap: usize) -> Result<Vec<u8>, HelperError> {
    let mut child = tokio::process::Command::new("wevtutil")
        .args(a)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HelperError::Kernel(format!("cannot start wevtutil: {e}")))?;
    let mut raw = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        // UTF-16 output may take up to twice the bytes of its UTF-8 form.
        let limit = u64::try_from(cap.saturating_mul(2)).unwrap_or(u64::MAX);
        stdout
            .take(limit)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| HelperError::Kernel(format!("reading wevtutil: {e}")))?;
    }
    let _ = child.start_kill();
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| HelperError::Kernel(format!("wevtutil: {e}")))?;
    if raw.is_empty() && !out.status.success() && out.status.code().is_some() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(HelperError::Kernel(format!(
            "wevtutil {} failed ({}): {}",
            a.get(1).map_or("", String::as_str),
            out.status,
            err.lines().next().unwrap_or("").trim()
        )));
    }
    let mut text = to_utf8(&raw);
    text.truncate(cap);
    Ok(text)
}

/// wevtutil writes UTF-16LE when its output is not a console on some Windows versions
/// and the console code page on others: UTF-16 (a BOM, or NULs in the high bytes) is
/// converted, anything else kept as it is.
pub(super) fn to_utf8(raw: &[u8]) -> Vec<u8> {
    let bom = raw.starts_with(&[0xFF, 0xFE]);
    let looks_utf16 = bom || (raw.len() >= 2 && raw.get(1) == Some(&0) && raw.first() != Some(&0));
    if !looks_utf16 {
        return raw.to_vec();
    }
    let body = if bom {
        raw.get(2..).unwrap_or_default()
    } else {
        raw
    };
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| match c {
            [lo, hi] => u16::from_le_bytes([*lo, *hi]),
            _ => 0,
        })
        .collect();
    String::from_utf16_lossy(&units).into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn sources_map_to_event_logs_and_time_windows() {
        assert_eq!(
            wevtutil_args("system", None),
            ["qe", "System", "/f:text", "/rd:true"]
        );
        assert_eq!(
            wevtutil_args("application", Some(60_000))[4],
            "/q:*[System[TimeCreated[timediff(@SystemTime) <= 60000]]]"
        );
        let t = wevtutil_args("tether", Some(5));
        assert_eq!(t[1], "Application");
        assert!(t[4].contains("@Name='tether-agent'") && t[4].contains(" and TimeCreated"));
    }

    #[test]
    fn utf16_output_becomes_utf8() {
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("Event[0]".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(to_utf8(&utf16), b"Event[0]");
        assert_eq!(to_utf8(b"plain"), b"plain");
    }
}
