//! Central policy through the real `tether` and `tether-server` binaries (a device paired
//! by the real `tether-agent`, then taken offline so accepted commands stay queued): an
//! admin saves a policy with `tether policy set` (a bad bundle is refused naming the
//! field; a student may not), and then `tether cmd` is refused by a time-window rule
//! (the rule named), by a rate rule at the N+1th command, and for `memory_dump` until
//! `tether step-up` with a TOTP code; `tether policy check` names the deciding rule; a
//! rule wanting two approvers leaves a command waiting until `tether approve` by two
//! distinct admins (the same admin twice and the originator are refused).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tether_e2e::cli::{Run, Tether};
use tether_e2e::{Backends, Server, pair_agent, register_user};
use tether_store::Role;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn totp_code(secret_base32: &str, at: u64) -> String {
    totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret_base32).unwrap())
        .build()
        .unwrap()
        .generate(at)
        .to_string()
}

/// `HH:MM` (UTC) `minutes` from now.
fn utc_hhmm_in(minutes: u64) -> String {
    let m = (now_secs() / 60 + minutes) % 1440;
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// The command id in `accepted: command <id> (trace <trace>) <state>`.
fn accepted_id(run: &Run) -> String {
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("accepted: command "))
        .unwrap_or_else(|| panic!("no accepted line: {run:#?}"));
    line.split_whitespace().nth(2).unwrap().to_owned()
}

/// Makes a registered user an admin, in the server's own store.
async fn make_admin(server: &Server, api: &tether_client::Api) {
    let (_, me): (u16, Value) = api.get("/api/me").await.unwrap();
    let store = server.store().await;
    store
        .set_user_role(me["id"].as_str().unwrap(), Role::Admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_decides_what_tether_cmd_may_do() {
    let server = Server::start_with(
        &Backends::Embedded,
        &[
            ("TETHER_SERVER_GATEWAY__HEARTBEAT_INTERVAL_S", "5"),
            ("TETHER_SERVER_GATEWAY__PRESENCE_TTL_S", "10"),
        ],
    );
    let ada_api = register_user(&server, "ada@lab.example").await;
    for admin in ["root1@lab.example", "root2@lab.example"] {
        let api = register_user(&server, admin).await;
        make_admin(&server, &api).await;
    }
    let (mut agent, _state) = pair_agent(&server, &ada_api, "lab-pc-7", &[]).await;
    agent.kill();
    let start = Instant::now();
    while {
        let (_, devices): (u16, Value) = ada_api.get("/api/devices").await.unwrap();
        devices[0]["online"] != false
    } {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the device stays online"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ada = Tether::login(&server, "ada@lab.example");
    let root1 = Tether::login(&server, "root1@lab.example");
    let root2 = Tether::login(&server, "root2@lab.example");

    // The built-in policy until an admin saves one.
    let shown = ada.run(&["policy", "show", "--json"]).code(0).json();
    assert_eq!(shown["policy_version"], 0);
    assert_eq!(shown["builtin"], true);

    // A bad bundle is refused naming the field; a student may not save one.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        json!({"format": 1, "rules": [{"id": "x", "effect": "deny", "match": {"methods": ["format_disk"]}}]})
            .to_string(),
    )
    .unwrap();
    let refused = root1.run(&["policy", "set", bad.to_str().unwrap()]).code(1);
    assert!(
        refused.stderr.contains("1005 INVALID_FIELD")
            && refused.stderr.contains("rules[0].match.methods[0]"),
        "{refused:#?}"
    );
    let policy = json!({"format": 1, "rules": [
        {"id": "no-night-reboots", "effect": "deny",
         "match": {"methods": ["reboot"],
                   "outside_window": {"start": utc_hhmm_in(180), "end": utc_hhmm_in(240)}}},
        {"id": "lock-rate", "effect": "deny", "match": {"methods": ["lock_screen"]},
         "rate": {"max": 2, "per_s": 3600, "scope": "user"}},
        {"id": "shutdown-two", "effect": "sensitive", "match": {"methods": ["shutdown"]},
         "approvals": 2}
    ]});
    let good = dir.path().join("policy.json");
    std::fs::write(&good, policy.to_string()).unwrap();
    let forbidden = ada.run(&["policy", "set", good.to_str().unwrap()]).code(1);
    assert!(
        forbidden.stderr.contains("3004 FORBIDDEN"),
        "{forbidden:#?}"
    );
    let saved = root1
        .run(&["policy", "set", good.to_str().unwrap()])
        .code(0);
    assert!(
        saved.stdout.starts_with("Saved policy version 1 (hash "),
        "{saved:#?}"
    );

    // A time-window rule: now is outside the window.
    let denied = ada.run(&["cmd", "lab-pc-7", "reboot"]).code(1);
    assert!(
        denied.stderr.contains("4001 POLICY_DENIED")
            && denied
                .stderr
                .contains("rule no-night-reboots: reboot is not allowed outside"),
        "{denied:#?}"
    );
    let check = ada.run(&["policy", "check", "lab-pc-7", "reboot"]).code(0);
    assert!(
        check.stdout.contains("DENIED") && check.stdout.contains("rule:   no-night-reboots"),
        "{check:#?}"
    );
    let check = ada
        .run(&["policy", "check", "lab-pc-7", "logoff", "--json"])
        .code(0)
        .json();
    assert_eq!(check["decision"], "allow");

    // A rate rule: the third lock_screen within the hour is denied.
    for _ in 0..2 {
        ada.run(&["cmd", "lab-pc-7", "lock_screen"]).code(0);
    }
    let third = ada.run(&["cmd", "lab-pc-7", "lock_screen"]).code(1);
    assert!(
        third.stderr.contains("4001 POLICY_DENIED") && third.stderr.contains("rule lock-rate"),
        "{third:#?}"
    );

    // memory_dump needs a fresh second factor: TOTP, then `tether step-up`.
    let dump = ["cmd", "lab-pc-7", "memory_dump", "-p", "max_bytes=1048576"];
    let step = ada.run(&dump).code(1);
    assert!(
        step.stderr.contains("4003 STEP_UP_REQUIRED") && step.stderr.contains("tether step-up"),
        "{step:#?}"
    );
    let enroll = ada.run(&["totp", "enroll", "--json"]).code(0).json();
    let secret = enroll["secret_base32"].as_str().unwrap().to_owned();
    let now = now_secs();
    ada.run(&["totp", "confirm", "--code", &totp_code(&secret, now)])
        .code(0);
    // The next step's code (within the server's one-step skew): each code works once.
    let up = ada
        .run(&["step-up", "--totp", &totp_code(&secret, now + 30), "--json"])
        .code(0)
        .json();
    assert!(up["second_factor_at"].as_u64().unwrap() > 0, "{up}");
    let allowed = ada.run(&dump).code(0);
    assert!(allowed.stdout.contains(") queued"), "{allowed:#?}");

    // Two approvers.
    let waiting = ada.run(&["cmd", "lab-pc-7", "shutdown"]).code(0);
    assert!(
        waiting.stdout.contains(") awaiting_approval") && waiting.stdout.contains("2 approval(s)"),
        "{waiting:#?}"
    );
    let id = accepted_id(&waiting);
    let listed = root1.run(&["approvals"]).code(0);
    assert!(
        listed.stdout.contains(&id[..8]) && listed.stdout.contains("shutdown-two"),
        "{listed:#?}"
    );
    let own = ada.run(&["approve", &id]).code(1);
    assert!(own.stderr.contains("3004 FORBIDDEN"), "{own:#?}");
    let first = root1.run(&["approve", &id[..8]]).code(0);
    assert!(
        first
            .stdout
            .contains("1/2 approvals; it waits for more approvals"),
        "{first:#?}"
    );
    let twice = root1.run(&["approve", &id]).code(1);
    assert!(
        twice.stderr.contains("9004 CONFLICT")
            && twice.stderr.contains("approved this command already"),
        "{twice:#?}"
    );
    let still = ada.run(&["command", &id, "--json"]).code(0).json();
    assert_eq!(still["state"], "awaiting_approval");
    let second = root2.run(&["approve", &id]).code(0);
    assert!(
        second.stdout.contains("2/2 approvals; it is queued"),
        "{second:#?}"
    );
    let queued = ada.run(&["command", &id, "--json"]).code(0).json();
    assert_eq!(queued["state"], "queued");
    assert_eq!(queued["policy_version"], 1);
    let none = root1.run(&["approvals"]).code(0);
    assert!(
        none.stdout.contains("No command waits for your approval"),
        "{none:#?}"
    );
}
