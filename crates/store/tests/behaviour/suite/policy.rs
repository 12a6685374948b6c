//! Central policy: versions claimed once, approvals once per user, commands awaiting
//! approval (listed, expired, moved on), the counts of rate rules, sessions' second
//! factors.

use serde_json::json;
use tether_proto::messages::command::{CommandState, Method};
use tether_store::{
    CommandApproval, CommandCount, CommandPolicy, CommandUpdate, OwnerKeysRecord, PolicyRecord,
    StoreError,
};

use crate::fixtures::{NOW, active_device, at, user};
use crate::harness::Shared;
use crate::suite::{new_command, race};

fn policy(version: u64, author: &str) -> PolicyRecord {
    PolicyRecord {
        version,
        bundle: json!({"format": 1, "rules": [{"id": format!("r{version}"), "effect": "deny"}]}),
        hash: format!("{version:064x}"),
        author: author.to_owned(),
        created_at: at(i64::try_from(version).unwrap()),
    }
}

pub(crate) async fn policy_versions_claimed_once(s: Shared) {
    user(&*s, "usr_admin").await;
    assert_eq!(
        s.current_policy().await.unwrap(),
        None,
        "built-in until saved"
    );
    assert!(s.insert_policy(&policy(1, "usr_admin")).await.unwrap());
    assert!(!s.insert_policy(&policy(1, "usr_admin")).await.unwrap());
    assert!(s.insert_policy(&policy(2, "usr_admin")).await.unwrap());
    let current = s.current_policy().await.unwrap().unwrap();
    assert_eq!(
        current,
        policy(2, "usr_admin"),
        "round trip, highest version"
    );
    let orphan = s.insert_policy(&policy(3, "usr_none")).await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
    // Two admins saving from the same version: one wins.
    let won = race(&s, 6, |s, _| async move {
        s.insert_policy(&policy(3, "usr_admin")).await.unwrap()
    })
    .await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    assert_eq!(s.current_policy().await.unwrap().unwrap().version, 3);
}

pub(crate) async fn command_approvals_once_per_user(s: Shared) {
    user(&*s, "usr_a").await;
    user(&*s, "usr_b").await;
    user(&*s, "usr_c").await;
    active_device(&*s, "dev_a", "usr_a", NOW).await;
    let mut c = new_command("cmd-ap", "dev_a", "usr_a", 60_000);
    c.state = CommandState::AwaitingApproval;
    c.policy = CommandPolicy {
        version: 4,
        rule: Some("two-approvers".into()),
        approvals_required: 2,
        approvers: Some(json!({"roles": ["admin"]})),
    };
    assert!(s.insert_command(&c, &json!({"by": "test"})).await.unwrap());
    assert_eq!(s.command("cmd-ap").await.unwrap().unwrap().command, c);
    let approve = |who: &str, t: i64| CommandApproval {
        command_id: "cmd-ap".into(),
        approver_id: who.into(),
        at: at(t),
        user_sig: Some(format!(r#"{{"kind":"ed25519","kid":"{who}","sig":"x"}}"#)),
    };
    assert!(s.add_command_approval(&approve("usr_b", 10)).await.unwrap());
    assert!(
        !s.add_command_approval(&approve("usr_b", 11)).await.unwrap(),
        "once"
    );
    // The same user racing with themselves: one approval.
    let won = race(&s, 6, |s, i| async move {
        s.add_command_approval(&CommandApproval {
            command_id: "cmd-ap".into(),
            approver_id: "usr_c".into(),
            at: at(20 + i64::try_from(i).unwrap()),
            user_sig: None,
        })
        .await
        .unwrap()
    })
    .await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let all = s.command_approvals("cmd-ap").await.unwrap();
    let who: Vec<_> = all.iter().map(|a| a.approver_id.as_str()).collect();
    assert_eq!(who, ["usr_b", "usr_c"]);
    assert_eq!(all[0].at, at(10));
    assert_eq!(all[0], approve("usr_b", 10), "the signature round-trips");
    assert_eq!(all[1].user_sig, None);
    let unknown = s
        .add_command_approval(&CommandApproval {
            command_id: "cmd-none".into(),
            approver_id: "usr_b".into(),
            at: at(1),
            user_sig: None,
        })
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
    assert!(s.command_approvals("cmd-none").await.unwrap().is_empty());
}

pub(crate) async fn commands_awaiting_approval_and_expiry(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_a", "usr_a", NOW).await;
    for (id, state, ttl) in [
        ("cmd-w1", CommandState::AwaitingApproval, 1_000),
        ("cmd-w2", CommandState::AwaitingApproval, 60_000),
        ("cmd-q", CommandState::Queued, 60_000),
    ] {
        let mut c = new_command(id, "dev_a", "usr_a", ttl);
        c.state = state;
        assert!(s.insert_command(&c, &json!({"by": "test"})).await.unwrap());
    }
    let waiting = s.commands_awaiting_approval(10).await.unwrap();
    let ids: Vec<_> = waiting.iter().map(|c| c.command.id.as_str()).collect();
    assert_eq!(ids, ["cmd-w1", "cmd-w2"]);
    assert_eq!(
        s.count_undelivered("dev_a").await.unwrap(),
        1,
        "awaiting is not undelivered"
    );
    assert!(
        s.commands_in_flight("dev_a", 10)
            .await
            .unwrap()
            .iter()
            .all(|c| c.state != CommandState::AwaitingApproval),
        "a command awaiting approval is never delivered"
    );
    let expired = s.commands_expired(at(1_000), 10).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].command.id, "cmd-w1");
    // Approved: awaiting_approval -> queued.
    let (before, after) = s
        .transition_command(
            "cmd-w2",
            &[CommandState::AwaitingApproval],
            CommandState::Queued,
            at(5),
            &CommandUpdate {
                detail: json!({"approvals": 2}),
                ..CommandUpdate::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (before, after.state),
        (CommandState::AwaitingApproval, CommandState::Queued)
    );
    assert_eq!(
        after.command.state,
        CommandState::AwaitingApproval,
        "initial state kept"
    );
    assert_eq!(s.commands_awaiting_approval(10).await.unwrap().len(), 1);
}

pub(crate) async fn count_commands_by_scope_and_method(s: Shared) {
    user(&*s, "usr_a").await;
    user(&*s, "usr_b").await;
    active_device(&*s, "dev_a", "usr_a", NOW).await;
    active_device(&*s, "dev_b", "usr_a", NOW).await;
    for (i, (device, who, method, t)) in [
        ("dev_a", "usr_a", Method::LockScreen, 0),
        ("dev_a", "usr_a", Method::LockScreen, 100),
        ("dev_b", "usr_a", Method::LockScreen, 200),
        ("dev_a", "usr_b", Method::LockScreen, 300),
        ("dev_a", "usr_a", Method::Reboot, 400),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = new_command(&format!("cmd-{i}"), device, who, 60_000);
        c.method = method;
        c.created_at = at(t);
        assert!(s.insert_command(&c, &json!({"by": "test"})).await.unwrap());
    }
    let count = |user: Option<&str>, device: Option<&str>, methods: &[Method], since: i64| {
        let q = CommandCount {
            user_id: user.map(str::to_owned),
            device_id: device.map(str::to_owned),
            methods: methods.to_vec(),
            since: at(since),
        };
        let s = s.clone();
        async move { s.count_commands(&q).await.unwrap() }
    };
    let lock = [Method::LockScreen];
    assert_eq!(count(Some("usr_a"), None, &lock, -1).await, 3);
    assert_eq!(count(Some("usr_a"), None, &[], -1).await, 4);
    assert_eq!(count(None, Some("dev_a"), &lock, -1).await, 3);
    assert_eq!(count(Some("usr_a"), Some("dev_a"), &lock, -1).await, 2);
    assert_eq!(
        count(Some("usr_a"), None, &lock, 0).await,
        2,
        "since is exclusive"
    );
    assert_eq!(
        count(Some("usr_a"), None, &[Method::Reboot, Method::Shutdown], -1).await,
        1
    );
    assert_eq!(count(None, None, &[], 1_000).await, 0);
}

pub(crate) async fn second_factor_per_session_never_backwards(s: Shared) {
    user(&*s, "usr_a").await;
    user(&*s, "usr_b").await;
    assert_eq!(s.last_second_factor("sess_1", "usr_a").await.unwrap(), None);
    s.record_second_factor("sess_1", "usr_a", at(100))
        .await
        .unwrap();
    assert_eq!(
        s.last_second_factor("sess_1", "usr_a").await.unwrap(),
        Some(at(100))
    );
    s.record_second_factor("sess_1", "usr_a", at(50))
        .await
        .unwrap();
    assert_eq!(
        s.last_second_factor("sess_1", "usr_a").await.unwrap(),
        Some(at(100)),
        "never backwards"
    );
    s.record_second_factor("sess_1", "usr_a", at(200))
        .await
        .unwrap();
    assert_eq!(
        s.last_second_factor("sess_1", "usr_a").await.unwrap(),
        Some(at(200))
    );
    // Another session of the same user, and another user naming this session, see nothing.
    assert_eq!(s.last_second_factor("sess_2", "usr_a").await.unwrap(), None);
    assert_eq!(s.last_second_factor("sess_1", "usr_b").await.unwrap(), None);
    s.record_second_factor("sess_1", "usr_b", at(300))
        .await
        .unwrap();
    assert_eq!(
        s.last_second_factor("sess_1", "usr_a").await.unwrap(),
        Some(at(200))
    );
    let unknown = s.record_second_factor("sess_9", "usr_none", at(1)).await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
}

pub(crate) async fn owner_keys_statements_once_per_version(s: Shared) {
    user(&*s, "usr_a").await;
    user(&*s, "usr_b").await;
    let rec = |who: &str, version: u64| OwnerKeysRecord {
        user_id: who.into(),
        version,
        body: json!({"statement": {"version": version}, "user_sig": {"kid": "k1"}}),
        signer_kid: "k1".into(),
        created_at: at(i64::try_from(version).unwrap()),
    };
    assert!(s.owner_keys_statements("usr_a").await.unwrap().is_empty());
    assert!(s.insert_owner_keys(&rec("usr_a", 7)).await.unwrap());
    assert!(s.insert_owner_keys(&rec("usr_a", 3)).await.unwrap());
    assert!(
        !s.insert_owner_keys(&rec("usr_a", 7)).await.unwrap(),
        "a version once per user"
    );
    assert!(
        s.insert_owner_keys(&rec("usr_b", 7)).await.unwrap(),
        "another user's versions are theirs"
    );
    let all = s.owner_keys_statements("usr_a").await.unwrap();
    assert_eq!(all, [rec("usr_a", 3), rec("usr_a", 7)], "version order");
    let orphan = s.insert_owner_keys(&rec("usr_none", 1)).await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
    let won = race(&s, 6, |s, _| async move {
        s.insert_owner_keys(&rec("usr_b", 9)).await.unwrap()
    })
    .await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}
