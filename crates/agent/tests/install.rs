//! `tether-agent install` / `uninstall` with the real binary, into a temporary unit dir.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn agent(args: &[&str], extra: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether-agent"));
    cmd.args(args);
    cmd.args(extra);
    cmd.env_remove("TETHER_SERVER")
        .env_remove("TETHER_AGENT_DIR");
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[cfg(unix)]
#[test]
fn install_writes_a_systemd_unit_and_uninstall_removes_it() {
    let t = tempfile::tempdir().unwrap();
    let units = t.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let state = t.path().join("state");
    let fp = vec!["0A"; 32].join(":");
    let o = agent(
        &[
            "install",
            "--server",
            "https://tether.example:8443",
            "--ca-fingerprint",
            &fp.to_lowercase(),
            "--queue-max",
            "500",
            "--unit-dir",
        ],
        &[&units, Path::new("--state-dir"), &state],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("systemctl enable --now tether-agent"), "{out}");

    let unit = std::fs::read_to_string(units.join("tether-agent.service")).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_tether-agent"))
        .canonicalize()
        .unwrap();
    let state = state.canonicalize().unwrap();
    let exec = format!(
        "ExecStart={} run --state-dir {} --server https://tether.example:8443 \
         --ca-fingerprint {fp} --queue-max 500",
        exe.display(),
        state.display()
    );
    assert!(unit.lines().any(|l| l == exec), "want {exec:?} in:\n{unit}");
    assert!(unit.contains(&format!("ReadWritePaths={}", state.display())));

    // Still enabled: uninstall refuses and says how to disable it.
    let wants = units.join("multi-user.target.wants");
    std::fs::create_dir(&wants).unwrap();
    std::os::unix::fs::symlink(
        units.join("tether-agent.service"),
        wants.join("tether-agent.service"),
    )
    .unwrap();
    let o = agent(&["uninstall", "--unit-dir"], &[&units]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("systemctl disable --now tether-agent"));
    assert!(units.join("tether-agent.service").exists());

    std::fs::remove_file(wants.join("tether-agent.service")).unwrap();
    let o = agent(&["uninstall", "--unit-dir"], &[&units]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!units.join("tether-agent.service").exists());
    assert!(state.exists(), "the state dir is kept");
}

#[test]
fn install_needs_a_server() {
    let t = tempfile::tempdir().unwrap();
    let o = agent(
        &["install", "--unit-dir"],
        &[t.path(), Path::new("--state-dir"), &t.path().join("s")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    #[cfg(unix)]
    assert!(text(&o).contains("--server is required"), "{}", text(&o));
}

#[test]
fn help_states_the_drop_policy() {
    let o = agent(&["run", "--help"], &[]);
    let help = text(&o);
    assert!(help.contains("--queue-max"), "{help}");
    assert!(help.contains("OLDEST samples are dropped first"), "{help}");
    assert!(help.contains("--telemetry-interval-s"), "{help}");
}
