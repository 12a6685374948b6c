//! Screenshots and log bundles.

use std::process::Stdio;

use serde_json::Value;
use tether_proto::helper::{CollectLogsParams, ScreenshotParams};
use tokio::io::AsyncReadExt;

use super::{CAPTURE_LIMIT, LOGS_LIMIT, on_path, run_ok, spawn_error};
use crate::error::HelperError;
use crate::executor::Artifacts;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The screenshot tools tried, in order, with the arguments that write a PNG of the whole
/// screen to a path.
const SCREENSHOT_TOOLS: &[(&str, &[&str])] = &[
    ("grim", &[]),
    ("gnome-screenshot", &["-f"]),
    ("import", &["-window", "root"]),
    ("scrot", &[]),
];

pub(super) async fn screenshot(
    artifacts: &Artifacts,
    kernel_exec_id: &str,
    p: &ScreenshotParams,
) -> Result<Value, HelperError> {
    if p.display != 0 {
        return Err(HelperError::InvalidParams {
            opcode: "CAPTURE_SCREENSHOT",
            reason: "only display 0 (the whole screen) is captured on Linux".into(),
        });
    }
    let Some((tool, fixed)) = SCREENSHOT_TOOLS.iter().find(|(t, _)| on_path(t)) else {
        return Err(HelperError::Kernel(
            "no screenshot tool found: install grim (Wayland), gnome-screenshot, ImageMagick (import) or scrot".into(),
        ));
    };
    let a = artifacts.clone();
    tokio::task::spawn_blocking(move || a.prepare())
        .await
        .map_err(|e| HelperError::Kernel(e.to_string()))??;
    let path = artifacts.path_for(kernel_exec_id, "png");
    let mut a: Vec<String> = fixed.iter().map(|s| (*s).to_owned()).collect();
    a.push(path.display().to_string());
    run_ok(tool, &a, CAPTURE_LIMIT).await?;
    let artifacts = artifacts.clone();
    tokio::task::spawn_blocking(move || {
        let head = std::fs::read(&path).map_err(|e| HelperError::io(&path, e))?;
        if !head.starts_with(PNG_SIGNATURE) {
            return Err(HelperError::Kernel(format!(
                "{} did not write a PNG",
                path.display()
            )));
        }
        artifacts.publish(&path, "image/png")
    })
    .await
    .map_err(|e| HelperError::Kernel(e.to_string()))?
}

/// `journalctl` arguments for one source.
fn source_args(source: &str) -> Vec<&'static str> {
    match source {
        "application" => vec!["SYSLOG_FACILITY=1"],
        "security" => vec!["SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10"],
        "tether" => vec!["-u", "tether-agent.service", "-u", "tether-helper.service"],
        // "system" and anything else: the whole system journal.
        _ => vec!["--system"],
    }
}

pub(super) async fn logs(
    artifacts: &Artifacts,
    kernel_exec_id: &str,
    p: &CollectLogsParams,
) -> Result<Value, HelperError> {
    let cap = usize::try_from(p.max_bytes).unwrap_or(usize::MAX);
    let sources: Vec<&str> = if p.sources.is_empty() {
        vec!["system"]
    } else {
        p.sources.iter().map(String::as_str).collect()
    };
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
        let mut a: Vec<String> = ["--no-pager", "--quiet", "-o", "short-iso"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if let Some(ms) = p.since_ms {
            a.push("--since".into());
            a.push(format!("@{}", ms / 1000));
        }
        a.extend(source_args(source).into_iter().map(str::to_owned));
        let out = tokio::time::timeout_at(deadline, journal(&a, room))
            .await
            .map_err(|_| HelperError::ExecutionTimeout {
                what: "journalctl".into(),
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

/// Runs journalctl and keeps at most `cap` bytes of its output (then stops it).
async fn journal(a: &[String], cap: usize) -> Result<Vec<u8>, HelperError> {
    let mut child = tokio::process::Command::new("journalctl")
        .args(a)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_error("journalctl", &e))?;
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        stdout
            .take(u64::try_from(cap).unwrap_or(u64::MAX))
            .read_to_end(&mut out)
            .await
            .map_err(|e| HelperError::Kernel(format!("reading journalctl: {e}")))?;
    }
    // Whether it finished or we have enough, it is done.
    let _ = child.start_kill();
    let status = child
        .wait()
        .await
        .map_err(|e| HelperError::Kernel(format!("journalctl: {e}")))?;
    if out.is_empty() && !status.success() && status.code().is_some() {
        return Err(HelperError::Kernel(format!("journalctl failed ({status})")));
    }
    Ok(out)
}
