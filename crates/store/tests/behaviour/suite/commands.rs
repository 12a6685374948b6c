//! Commands: ingest once per id, compare-and-set transitions with their history, the
//! retry, expiry and in-flight queries, viewing, artifacts.

use serde_json::json;
use tether_proto::messages::command::{CommandState, Method, Priority, Sensitivity, Simulation};
use tether_store::{
    Artifact, AuditFilter, AuditOrder, CommandPolicy, CommandUpdate, NewCommand, StoreError,
    is_terminal,
};

use crate::fixtures::{NOW, active_device, at, user};
use crate::harness::Shared;
use crate::suite::race;

pub(crate) fn new_command(id: &str, device: &str, user: &str, expires_in_ms: i64) -> NewCommand {
    NewCommand {
        id: id.to_owned(),
        device_id: device.to_owned(),
        origin_user_id: user.to_owned(),
        method: Method::Reboot,
        params: json!({"delay_s": 30, "reason": "patch"}),
        priority: Priority::Normal,
        sensitivity: Sensitivity::Normal,
        trace_id: format!("trace-{id}"),
        user_sig: None,
        request_hash: "ab".repeat(32),
        simulate: None,
        state: CommandState::Queued,
        policy: CommandPolicy::default(),
        created_at: NOW,
        expires_at: at(expires_in_ms),
    }
}

pub(crate) async fn commands_ingest_transitions_and_queries(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_a", "usr_a", NOW).await;

    let mut c1 = new_command("cmd-1", "dev_a", "usr_a", 60_000);
    c1.simulate = Some(Simulation::Slow);
    c1.user_sig = Some("c2ln".into());
    assert!(s.insert_command(&c1, &json!({"by": "test"})).await.unwrap());
    assert!(
        !s.insert_command(&c1, &json!({"by": "test"})).await.unwrap(),
        "the same id is stored once"
    );
    let stored = s.command("cmd-1").await.unwrap().unwrap();
    assert_eq!(stored.command, c1, "round trip");
    assert_eq!(stored.state, CommandState::Queued);
    assert_eq!((stored.attempts, stored.next_attempt_at), (0, None));
    assert_eq!(s.command("cmd-none").await.unwrap(), None);
    let orphan = s
        .insert_command(
            &new_command("cmd-x", "dev_none", "usr_a", 1),
            &json!({"by": "test"}),
        )
        .await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
    assert_eq!(s.count_undelivered("dev_a").await.unwrap(), 1);

    // queued -> sent, with an attempt and an ack deadline.
    let (before, sent) = s
        .transition_command(
            "cmd-1",
            &[CommandState::Queued],
            CommandState::Sent,
            at(10),
            &CommandUpdate {
                attempts: Some(1),
                next_attempt_at: Some(Some(at(30_010))),
                detail: json!({"attempt": 1}),
                ..CommandUpdate::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before, CommandState::Queued);
    assert_eq!(sent.state, CommandState::Sent);
    assert_eq!(sent.attempts, 1);
    assert_eq!(sent.next_attempt_at, Some(at(30_010)));
    assert_eq!(sent.updated_at, at(10));
    // A transition from a state it is not in changes nothing.
    assert!(
        s.transition_command(
            "cmd-1",
            &[CommandState::Queued],
            CommandState::Sent,
            at(11),
            &CommandUpdate::default()
        )
        .await
        .unwrap()
        .is_none()
    );
    assert!(
        s.transition_command(
            "cmd-none",
            &[CommandState::Queued],
            CommandState::Sent,
            at(11),
            &CommandUpdate::default()
        )
        .await
        .unwrap()
        .is_none()
    );

    // Retry due only once the deadline passed.
    assert!(
        s.commands_due_for_retry(at(30_009), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = s.commands_due_for_retry(at(30_010), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].command.id, "cmd-1");

    // ack -> executing -> result_posted -> completed, clearing the deadline.
    for (from, to, t) in [
        (CommandState::Sent, CommandState::AckReceived, 20),
        (CommandState::AckReceived, CommandState::Executing, 30),
    ] {
        s.transition_command(
            "cmd-1",
            &[from],
            to,
            at(t),
            &CommandUpdate {
                next_attempt_at: Some(None),
                ..CommandUpdate::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    }
    assert_eq!(s.count_undelivered("dev_a").await.unwrap(), 0);
    assert!(
        s.commands_due_for_retry(at(99_999), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let result = json!({"command_id": "cmd-1", "status": "ok", "result": {"scheduled_in_s": 30}});
    let (_, posted) = s
        .transition_command(
            "cmd-1",
            &[CommandState::Executing, CommandState::AckReceived],
            CommandState::ResultPosted,
            at(40),
            &CommandUpdate {
                result: Some(result.clone()),
                ..CommandUpdate::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(posted.result, Some(result.clone()));
    assert!(
        !s.mark_command_viewed("cmd-1", at(45)).await.unwrap(),
        "not finished"
    );
    let (_, done) = s
        .transition_command(
            "cmd-1",
            &[CommandState::ResultPosted],
            CommandState::Completed,
            at(50),
            &CommandUpdate::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(is_terminal(done.state));
    assert_eq!(
        done.result,
        Some(result),
        "an update without a result keeps it"
    );
    assert!(s.mark_command_viewed("cmd-1", at(60)).await.unwrap());
    assert!(
        !s.mark_command_viewed("cmd-1", at(61)).await.unwrap(),
        "once"
    );
    assert_eq!(
        s.command("cmd-1").await.unwrap().unwrap().viewed_at,
        Some(at(60))
    );

    let history = s.command_transitions("cmd-1").await.unwrap();
    let steps: Vec<_> = history.iter().map(|t| (t.from, t.to, t.at)).collect();
    assert_eq!(
        steps,
        vec![
            (None, CommandState::Queued, NOW),
            (Some(CommandState::Queued), CommandState::Sent, at(10)),
            (Some(CommandState::Sent), CommandState::AckReceived, at(20)),
            (
                Some(CommandState::AckReceived),
                CommandState::Executing,
                at(30)
            ),
            (
                Some(CommandState::Executing),
                CommandState::ResultPosted,
                at(40)
            ),
            (
                Some(CommandState::ResultPosted),
                CommandState::Completed,
                at(50)
            ),
        ]
    );
    assert_eq!(history[1].detail, json!({"attempt": 1}));

    // Expiry and in-flight queries.
    let mut c2 = new_command("cmd-2", "dev_a", "usr_a", 1_000);
    c2.created_at = at(100);
    assert!(s.insert_command(&c2, &json!({"by": "test"})).await.unwrap());
    let mut c3 = new_command("cmd-3", "dev_a", "usr_a", 900_000);
    c3.created_at = at(200);
    c3.state = CommandState::Denied;
    assert!(s.insert_command(&c3, &json!({"by": "test"})).await.unwrap());
    assert!(s.commands_expired(at(999), 10).await.unwrap().is_empty());
    let expired = s.commands_expired(at(1_000), 10).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].command.id, "cmd-2");
    let in_flight = s.commands_in_flight("dev_a", 10).await.unwrap();
    assert_eq!(
        in_flight
            .iter()
            .map(|c| c.command.id.as_str())
            .collect::<Vec<_>>(),
        vec!["cmd-2"],
        "denied and completed commands are not in flight"
    );
    let listed = s.device_commands("dev_a", 10).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|c| c.command.id.as_str())
            .collect::<Vec<_>>(),
        vec!["cmd-3", "cmd-2", "cmd-1"],
        "newest first"
    );
    assert_eq!(listed[0].state, CommandState::Denied);

    // Artifacts.
    let art = Artifact {
        id: "art-1".into(),
        device_id: "dev_a".into(),
        command_id: "cmd-1".into(),
        object_key: "artifacts/dev_a/art-1".into(),
        content_type: "image/png".into(),
        max_bytes: 1 << 20,
        created_at: at(70),
        expires_at: at(370_000),
        uploaded_at: None,
        size_bytes: None,
        sha256: None,
    };
    s.insert_artifact(&art).await.unwrap();
    assert_eq!(s.artifact("art-1").await.unwrap(), Some(art.clone()));
    let dup = s.insert_artifact(&art).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert!(
        s.mark_artifact_uploaded("art-1", 1234, &"cd".repeat(32), at(80))
            .await
            .unwrap()
    );
    assert!(
        !s.mark_artifact_uploaded("art-1", 1, &"ef".repeat(32), at(81))
            .await
            .unwrap()
    );
    let up = s.artifact("art-1").await.unwrap().unwrap();
    assert_eq!(up.size_bytes, Some(1234));
    assert_eq!(up.sha256, Some("cd".repeat(32)));
    assert_eq!(up.uploaded_at, Some(at(80)));
}

pub(crate) async fn commands_concurrent_transition_one_wins(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_a", "usr_a", NOW).await;
    assert!(
        s.insert_command(
            &new_command("cmd-r", "dev_a", "usr_a", 60_000),
            &json!({"by": "test"})
        )
        .await
        .unwrap()
    );
    let wins = race(&s, 8, |s, i| async move {
        s.transition_command(
            "cmd-r",
            &[CommandState::Queued],
            CommandState::Sent,
            at(i64::try_from(i).unwrap()),
            &CommandUpdate::default(),
        )
        .await
        .unwrap()
        .is_some()
    })
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    assert_eq!(s.command_transitions("cmd-r").await.unwrap().len(), 2);
}

/// A transition stamped a moment before the last one (two writers that committed in the
/// other order) is recorded at the last one's time: a command's times never go back.
pub(crate) async fn commands_transition_times_never_go_back(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_a", "usr_a", NOW).await;
    assert!(
        s.insert_command(
            &new_command("cmd-t", "dev_a", "usr_a", 60_000),
            &json!({"by": "test"})
        )
        .await
        .unwrap()
    );
    let step = |from, to, t| {
        let s = s.clone();
        async move {
            s.transition_command("cmd-t", &[from], to, at(t), &CommandUpdate::default())
                .await
                .unwrap()
                .unwrap()
        }
    };
    step(CommandState::Queued, CommandState::Sent, 100).await;
    let (_, c) = step(CommandState::Sent, CommandState::AckReceived, 50).await;
    assert_eq!(c.updated_at, at(100));
    let (_, c) = step(CommandState::AckReceived, CommandState::Executing, 120).await;
    assert_eq!(c.updated_at, at(120));
    let times: Vec<_> = s
        .command_transitions("cmd-t")
        .await
        .unwrap()
        .iter()
        .map(|t| t.at)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(times.last(), Some(&at(120)));
}

/// A transition guarded by a device moves only that device's command, and records
/// nothing otherwise; the state it left and the row after come back as stored.
pub(crate) async fn commands_transition_only_for_its_device(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_a", "usr_a", NOW).await;
    active_device(&*s, "dev_b", "usr_a", NOW).await;
    assert!(
        s.insert_command(
            &new_command("cmd-d", "dev_a", "usr_a", 60_000),
            &json!({"by": "test"})
        )
        .await
        .unwrap()
    );
    let guarded = |device: &str| CommandUpdate {
        attempts: Some(1),
        detail: json!({"by": "test"}),
        device_id: Some(device.to_owned()),
        ..CommandUpdate::default()
    };
    let from = [CommandState::Queued, CommandState::Sent];
    let other = s
        .transition_command(
            "cmd-d",
            &from,
            CommandState::Sent,
            at(10),
            &guarded("dev_b"),
        )
        .await
        .unwrap();
    assert_eq!(other, None, "another device's command stays put");
    assert_eq!(s.command_transitions("cmd-d").await.unwrap().len(), 1);
    let (before, after) = s
        .transition_command(
            "cmd-d",
            &from,
            CommandState::Sent,
            at(10),
            &guarded("dev_a"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before, CommandState::Queued);
    assert_eq!(after, s.command("cmd-d").await.unwrap().unwrap());
    assert_eq!((after.state, after.attempts), (CommandState::Sent, 1));
    let rows = s.command_transitions("cmd-d").await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[1].from, rows[1].to, rows[1].at),
        (Some(CommandState::Queued), CommandState::Sent, at(10))
    );
    assert_eq!(rows[1].detail, json!({"by": "test"}));
}

/// Ingest and every transition write their audit event `command.<state>` with them, the
/// same on both backends (SQLite's triggers, MySQL's transaction); a transition that does
/// not match writes none.
pub(crate) async fn commands_state_changes_are_audited_with_them(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_a", "usr_a", NOW).await;
    let c = new_command("cmd-au", "dev_a", "usr_a", 60_000);
    assert!(
        s.insert_command(&c, &json!({"by": "ingest", "rule": "r1"}))
            .await
            .unwrap()
    );
    let sent = CommandUpdate {
        attempts: Some(1),
        detail: json!({"via": "stream"}),
        ..CommandUpdate::default()
    };
    s.transition_command(
        "cmd-au",
        &[CommandState::Queued],
        CommandState::Sent,
        at(5),
        &sent,
    )
    .await
    .unwrap()
    .unwrap();
    let missed = s
        .transition_command(
            "cmd-au",
            &[CommandState::Queued],
            CommandState::Sent,
            at(6),
            &sent,
        )
        .await
        .unwrap();
    assert_eq!(missed, None);
    let failed = CommandUpdate {
        error_code: Some(5003),
        detail: json!("not an object"),
        ..CommandUpdate::default()
    };
    s.transition_command(
        "cmd-au",
        &[CommandState::Sent],
        CommandState::Dlq,
        at(9),
        &failed,
    )
    .await
    .unwrap()
    .unwrap();

    let filter = AuditFilter {
        action: Some("command".into()),
        ..AuditFilter::default()
    };
    let events: Vec<_> = s
        .audit_query(&filter, AuditOrder::OldestFirst, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    let trace = c.trace_id.as_str();
    let expected = [
        (
            "command.queued",
            "success",
            NOW,
            json!({"attempts": 0, "command_id": "cmd-au",
            "detail": {"by": "ingest", "rule": "r1"}, "error": null, "from": null,
            "method": "reboot", "trace_id": trace}),
        ),
        (
            "command.sent",
            "success",
            at(5),
            json!({"attempts": 1, "command_id": "cmd-au",
            "detail": {"via": "stream"}, "error": null, "from": "queued",
            "method": "reboot", "trace_id": trace}),
        ),
        (
            "command.dlq",
            "failure",
            at(9),
            json!({"attempts": 1, "command_id": "cmd-au",
            "detail": {}, "error": 5003, "from": "sent", "method": "reboot",
            "trace_id": trace}),
        ),
    ];
    assert_eq!(events.len(), expected.len(), "{events:?}");
    for (e, (action, outcome, when, detail)) in events.iter().zip(expected) {
        assert_eq!(e.action, action);
        assert_eq!(e.outcome, outcome, "{action}");
        assert_eq!(e.at, when, "{action}");
        assert_eq!(e.detail, detail, "{action}");
        assert_eq!(e.actor, "usr_a");
        assert_eq!(e.target.as_deref(), Some("dev_a"));
        assert_eq!(e.device_id.as_deref(), Some("dev_a"));
        assert_eq!(e.trace_id.as_deref(), Some(trace));
    }
}

/// Transitions of different commands beside other writers all go through: none fails
/// because another connection wrote while it was deciding (SQLite must not have to
/// upgrade a read lock, which fails at once as "database is locked").
pub(crate) async fn commands_transitions_beside_other_writers(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_a", "usr_a", NOW).await;
    for i in 0..8 {
        assert!(
            s.insert_command(
                &new_command(&format!("cmd-w{i}"), "dev_a", "usr_a", 60_000),
                &json!({"by": "test"})
            )
            .await
            .unwrap()
        );
    }
    let moved = race(&s, 16, |s, i| async move {
        let mut moved = 0;
        for round in 0..10_u64 {
            if i % 2 == 0 {
                let id = format!("cmd-w{}", i / 2);
                let (from, to) = if round % 2 == 0 {
                    (CommandState::Queued, CommandState::Sent)
                } else {
                    (CommandState::Sent, CommandState::Queued)
                };
                let r = s
                    .transition_command(&id, &[from], to, at(10), &CommandUpdate::default())
                    .await
                    .unwrap_or_else(|e| panic!("transition of {id}, round {round}: {e}"));
                moved += usize::from(r.is_some());
            } else {
                s.append_audit(&crate::fixtures::audit_event(round))
                    .await
                    .unwrap();
            }
        }
        moved
    })
    .await;
    assert_eq!(moved.iter().sum::<usize>(), 80, "every transition applied");
}
