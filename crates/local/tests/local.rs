//! The README's run command as a new user meets it: the real `tether-local` binary on a
//! fresh data dir and port 0 starts the server, this PC's agent and its helper; the banner
//! gives the pair link; a new user registers, logs in and pairs the PC with the real
//! `tether` CLI, then locks its screen with a signed command (`tether cmd --wait`), which
//! the helper's recording executor records. SIGTERM then stops all three processes and
//! `tether-local` exits 0, leaving no process behind.
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tether_e2e::cli::Tether;
use tether_e2e::{PASSWORD, Proc};

const EMAIL: &str = "new-user@lab.example";
const DEVICE: &str = "local-pc-1";

/// The processes whose parent is `pid`, with their command lines (`/proc/*/stat`).
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces and parentheses.
        let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let ppid = after_comm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            found.push((child, cmdline(child)));
        }
    }
    found
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Every process whose command line names `dir` (none should outlive tether-local).
fn processes_using(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .map(|pid| (pid, cmdline(pid)))
        .filter(|(_, c)| c.contains(&needle))
        .collect()
}

/// The value after `label` on the line that has it.
fn after<'a>(line: &'a str, label: &str) -> &'a str {
    line.split_once(label)
        .map(|(_, v)| v.trim())
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"))
}

#[test]
fn one_command_runs_the_server_and_a_pc_a_new_user_pairs_and_commands() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether-local"));
    cmd.arg("--data-dir").arg(data.path()).args([
        "--listen",
        "127.0.0.1:0",
        "--device-name",
        DEVICE,
    ]);
    let mut local = Proc::spawn("tether-local", cmd);

    // The banner: the web app's URL, and the link the QR code above it holds.
    let link = local.wait_for_line("    pair link: ", Duration::from_secs(60));
    let link = after(&link, "pair link:").to_owned();
    let url = local.wait_for_line("   web app ", Duration::from_secs(5));
    let url = after(&url, "web app").to_owned();
    assert!(
        link.starts_with(&format!("{url}/pair#token=")),
        "{link} vs {url}"
    );
    let out = local.output();
    assert!(out.contains("create an account"), "{out}");
    assert!(out.contains("CA fingerprint   "), "{out}");
    assert!(out.contains("████"), "the QR code is in the banner:\n{out}");

    // Three processes of its own, one per role.
    let children = children_of(local.id());
    let mut roles: Vec<&str> = children
        .iter()
        .filter_map(|(_, c)| c.split_whitespace().nth(1))
        .collect();
    roles.sort_unstable();
    assert_eq!(roles, ["__agent", "__helper", "__server"], "{children:?}");

    // A new user, with nothing but the CLI and the CA file the banner's data dir holds.
    let ca = data.path().join("local-pc").join("ca.pem");
    let ca = ca.to_str().unwrap();
    let tether = Tether::fresh();
    let stdin = format!("{PASSWORD}\n");
    tether
        .run_with_stdin(
            &[
                "--server",
                &url,
                "--ca-file",
                ca,
                "register",
                "--email",
                EMAIL,
                "--password-stdin",
            ],
            &stdin,
        )
        .ok();
    tether
        .run_with_stdin(&["login", "--email", EMAIL, "--password-stdin"], &stdin)
        .ok();
    let paired = tether.run(&["pair", &link]).ok();
    assert!(paired.stdout.contains(DEVICE), "{paired:#?}");
    local.wait_for_line("tether-local: this PC is paired", Duration::from_secs(30));
    local.wait_for_line("connected: session", Duration::from_secs(30));

    // A signed lock_screen, followed to its end, carried out by the local helper.
    let done = tether
        .run(&[
            "cmd",
            DEVICE,
            "lock_screen",
            "--wait",
            "--timeout",
            "30",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["result"]["status"], "ok", "{done}");
    let record = data.path().join("local-pc").join("recorded.jsonl");
    let runs: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["opcode"], "EXEC_LOCK_SCREEN");
    assert_eq!(runs[0]["command_message_id"], done["command_id"]);

    // SIGTERM: agent, helper, server stop in order; a clean exit; nothing left running.
    let pid = rustix::process::Pid::from_raw(i32::try_from(local.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = local
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("tether-local still runs:\n{}", local.output()));
    assert!(status.success(), "{status}:\n{}", local.output());
    // In order (lines are compared within one stream: the harness reads stdout and
    // stderr on two threads).
    let out = local.output();
    let at = |line: &str| {
        out.find(line)
            .unwrap_or_else(|| panic!("no {line:?} in:\n{out}"))
    };
    assert!(
        at("stopping: the agent, then the helper, then the server") < at("tether-agent stopped.")
    );
    assert!(
        at("tether-agent stopped.") < at("tether-local: stopped"),
        "{out}"
    );
    assert!(at("helper stopped") < at("[server] shutting down"), "{out}");
    for (pid, cmd) in &children {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} ({cmd}) outlived tether-local"
        );
    }
    assert_eq!(processes_using(data.path()), [], "left behind");
}
