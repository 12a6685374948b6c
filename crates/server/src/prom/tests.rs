//! What each announced state change counts, on a recorder of the test's own (the process's
//! global one is shared with every other test).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use metrics_exporter_prometheus::PrometheusRecorder;
use serde_json::json;
use tether_proto::UnixMillis;
use tether_proto::messages::command::{CommandState, Method, Priority, Sensitivity};
use tether_store::{Command, NewCommand};

use super::*;

const T0: u64 = 1_764_115_200_000;

fn command(method: Method) -> Command {
    Command {
        command: NewCommand {
            id: "cmd".into(),
            device_id: "dev".into(),
            origin_user_id: "usr".into(),
            method,
            params: json!({}),
            priority: Priority::Normal,
            sensitivity: Sensitivity::Normal,
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            user_sig: None,
            request_hash: String::new(),
            simulate: None,
            state: CommandState::Queued,
            policy: tether_store::CommandPolicy::default(),
            created_at: UnixMillis(T0),
            expires_at: UnixMillis(T0 + 300_000),
        },
        state: CommandState::Queued,
        attempts: 0,
        next_attempt_at: None,
        updated_at: UnixMillis(T0),
        result: None,
        error_code: None,
        viewed_at: None,
    }
}

/// Announces `c` moved to `to` at `T0 + at_ms`.
fn moved(c: &mut Command, to: CommandState, at_ms: u64) {
    let from = c.state;
    c.state = to;
    c.updated_at = UnixMillis(T0 + at_ms);
    command_announced(c, Some(from));
}

/// The value of one series (`name{labels}` exactly as rendered), if rendered.
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().unwrap())
    })
}

/// The value of a series that must be there.
fn value(text: &str, name: &str) -> f64 {
    series(text, name).unwrap_or_else(|| panic!("{name} is not in\n{text}"))
}

/// The value of a series never touched on this recorder (absent) or touched at 0.
fn untouched(text: &str, name: &str) -> bool {
    series(text, name).is_none_or(|v| v == 0.0)
}

fn recorded(f: impl FnOnce()) -> String {
    let recorder: PrometheusRecorder = builder().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, f);
    handle.render()
}

#[test]
fn a_completed_command_counts_its_ingest_each_move_its_dispatch_and_its_execution() {
    let text = recorded(|| {
        let mut c = command(Method::Screenshot);
        command_announced(&c, None);
        moved(&mut c, CommandState::Sent, 2_500);
        moved(&mut c, CommandState::AckReceived, 2_600);
        moved(&mut c, CommandState::Executing, 2_700);
        c.result = Some(json!({"status": "ok", "duration_ms": 1_250}));
        moved(&mut c, CommandState::ResultPosted, 9_000);
        moved(&mut c, CommandState::Completed, 9_000);
    });
    assert_eq!(
        value(
            &text,
            r#"tether_commands_ingested_total{method="screenshot"}"#
        ),
        1.0
    );
    for to in [
        "queued",
        "sent",
        "ack_received",
        "executing",
        "result_posted",
        "completed",
    ] {
        assert_eq!(
            value(
                &text,
                &format!(r#"tether_command_transitions_total{{to="{to}"}}"#)
            ),
            1.0,
            "{to}"
        );
    }
    assert_eq!(
        value(
            &text,
            r#"tether_commands_finished_total{state="completed"}"#
        ),
        1.0
    );
    assert!(untouched(&text, "tether_commands_dlq_total"));
    // Dispatch: created at T0, sent 2.5 s later; execution: the result's 1.25 s (not
    // the 6.3 s between executing and result_posted on the server's clock).
    assert_eq!(
        value(&text, "tether_command_dispatch_latency_seconds_count"),
        1.0
    );
    assert_eq!(
        value(&text, "tether_command_dispatch_latency_seconds_sum"),
        2.5
    );
    assert_eq!(
        value(
            &text,
            r#"tether_command_dispatch_latency_seconds_bucket{le="1"}"#
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            r#"tether_command_dispatch_latency_seconds_bucket{le="2.5"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, "tether_command_execution_seconds_count"), 1.0);
    assert_eq!(value(&text, "tether_command_execution_seconds_sum"), 1.25);
    assert_eq!(
        value(&text, r#"tether_command_execution_seconds_bucket{le="1"}"#),
        0.0
    );
    assert_eq!(
        value(
            &text,
            r#"tether_command_execution_seconds_bucket{le="2.5"}"#
        ),
        1.0
    );
}

#[test]
fn a_retry_is_not_a_dispatch_and_the_dead_letter_queue_is_counted_as_finished() {
    let text = recorded(|| {
        let mut c = command(Method::LockScreen);
        command_announced(&c, None);
        moved(&mut c, CommandState::Sent, 0);
        moved(&mut c, CommandState::Sent, 30_000);
        moved(&mut c, CommandState::Sent, 150_000);
        moved(&mut c, CommandState::Dlq, 750_000);
    });
    assert_eq!(
        value(&text, r#"tether_command_transitions_total{to="sent"}"#),
        3.0
    );
    assert_eq!(
        value(&text, "tether_command_dispatch_latency_seconds_count"),
        1.0,
        "only queued → sent is a first delivery"
    );
    assert_eq!(
        value(&text, "tether_command_dispatch_latency_seconds_sum"),
        0.0
    );
    assert_eq!(value(&text, "tether_commands_dlq_total"), 1.0);
    assert_eq!(
        value(&text, r#"tether_commands_finished_total{state="dlq"}"#),
        1.0
    );
    assert!(untouched(
        &text,
        r#"tether_commands_finished_total{state="completed"}"#
    ));
    assert!(untouched(&text, "tether_command_execution_seconds_count"));
}

#[test]
fn a_command_refused_by_the_agent_finishes_without_an_execution_time() {
    let text = recorded(|| {
        let mut c = command(Method::Reboot);
        command_announced(&c, None);
        moved(&mut c, CommandState::Sent, 10);
        moved(&mut c, CommandState::Denied, 20);
    });
    assert_eq!(
        value(&text, r#"tether_commands_finished_total{state="denied"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"tether_commands_ingested_total{method="reboot"}"#),
        1.0
    );
    assert!(untouched(&text, "tether_command_execution_seconds_count"));
}

#[test]
fn telemetry_is_counted_and_sessions_and_streams_are_counted_while_their_guards_live() {
    let recorder: PrometheusRecorder = builder().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        telemetry_accepted();
        telemetry_accepted();
        telemetry_rejected(ErrorCode::SignatureInvalid);
        let text = handle.render();
        assert_eq!(value(&text, "tether_telemetry_accepted_total"), 2.0);
        assert_eq!(
            value(
                &text,
                r#"tether_telemetry_rejected_total{code="SIGNATURE_INVALID"}"#
            ),
            1.0
        );

        let a = AgentSession::open();
        let b = AgentSession::open();
        let s = LiveSubscriber::open();
        let text = handle.render();
        assert_eq!(value(&text, "tether_agents_connected"), 2.0);
        assert_eq!(value(&text, "tether_live_subscribers"), 1.0);
        drop(a);
        assert_eq!(value(&handle.render(), "tether_agents_connected"), 1.0);
        drop((b, s));
        let text = handle.render();
        assert_eq!(value(&text, "tether_agents_connected"), 0.0);
        assert_eq!(value(&text, "tether_live_subscribers"), 0.0);
    });
}

#[test]
fn method_labels_are_the_wire_spellings() {
    for m in Method::ALL {
        assert_eq!(json!(m), json!(method_label(*m)));
    }
}

#[test]
fn the_metrics_token_is_compared_whole() {
    let t = "0123456789abcdef0123456789abcdef";
    assert!(same_secret(t, t));
    assert!(!same_secret("0123456789abcdef0123456789abcdeF", t));
    assert!(!same_secret("0123456789abcdef", t));
    assert!(!same_secret(&format!("{t}0"), t));
    assert!(!same_secret("", t));
}
