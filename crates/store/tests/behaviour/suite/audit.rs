//! Reading the audit trail back: filters, order, keyset paging and counts.

use serde_json::json;
use tether_store::{AuditEvent, AuditFilter, AuditOrder, NewAuditEvent, UnixMillis};

use crate::fixtures::at;
use crate::harness::Shared;

fn event(actor: &str, action: &str, device: Option<&str>, outcome: &str, t: i64) -> NewAuditEvent {
    NewAuditEvent {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: device.map(str::to_owned),
        outcome: outcome.to_owned(),
        detail: json!({"t": t}),
        trace_id: None,
        at: at(t),
        device_id: device.map(str::to_owned),
    }
}

/// The `t` of each event (its detail), in the order read.
fn ts(found: &[AuditEvent]) -> Vec<i64> {
    found
        .iter()
        .map(|e| e.event.detail["t"].as_i64().unwrap())
        .collect()
}

async fn newest(s: &Shared, f: AuditFilter) -> Vec<i64> {
    let found = s
        .audit_query(&f, AuditOrder::NewestFirst, 100)
        .await
        .unwrap();
    assert_eq!(
        s.audit_count(&f).await.unwrap(),
        u64::try_from(found.len()).unwrap(),
        "count agrees with {f:?}"
    );
    ts(&found)
}

pub(crate) async fn audit_query_filters(s: Shared) {
    let events = [
        event("usr_a", "command.queued", Some("dev_1"), "success", 1),
        event("usr_a", "command.refused", Some("dev_2"), "denied", 2),
        event("usr_ab", "command", None, "success", 3),
        event("usr_b", "commands.other", Some("dev_1"), "success", 4),
        event("usr_b", "command_x", Some("dev_1"), "failure", 5),
        event("usr_b", "Command.queued", None, "success", 6),
        event("dev_1", "device.connect", Some("dev_1"), "success", 7),
        event("usr_a", "user.login_failed", None, "failure", 8),
        event("usr_a", "user.login", None, "success", 9),
    ];
    for e in &events {
        s.append_audit(e).await.unwrap();
    }
    let all = newest(&s, AuditFilter::default()).await;
    assert_eq!(all, vec![9, 8, 7, 6, 5, 4, 3, 2, 1], "newest first");

    let actor = |a: &str| AuditFilter {
        actor: Some(a.into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        newest(&s, actor("usr_a")).await,
        vec![9, 8, 2, 1],
        "exact, not a prefix"
    );
    assert_eq!(
        newest(&s, actor("USR_A")).await,
        Vec::<i64>::new(),
        "case-sensitive"
    );

    let device = |d: &str| AuditFilter {
        device_id: Some(d.into()),
        ..AuditFilter::default()
    };
    assert_eq!(newest(&s, device("dev_1")).await, vec![7, 5, 4, 1]);
    assert_eq!(newest(&s, device("dev_9")).await, Vec::<i64>::new());

    let action = |a: &str| AuditFilter {
        action: Some(a.into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        newest(&s, action("command")).await,
        vec![3, 2, 1],
        "itself and below a dot; not `commands.`, `command_x` or another case"
    );
    assert_eq!(newest(&s, action("command.queued")).await, vec![1]);
    assert_eq!(
        newest(&s, action("user.login")).await,
        vec![9],
        "not user.login_failed"
    );
    assert_eq!(newest(&s, action("user")).await, vec![9, 8]);
    assert_eq!(newest(&s, action("user.log")).await, Vec::<i64>::new());
    assert_eq!(
        newest(&s, action("%")).await,
        Vec::<i64>::new(),
        "no wildcards"
    );
    assert_eq!(newest(&s, action("command_")).await, Vec::<i64>::new());

    let outcome = |o: &str| AuditFilter {
        outcome: Some(o.into()),
        ..AuditFilter::default()
    };
    assert_eq!(newest(&s, outcome("failure")).await, vec![8, 5]);
    assert_eq!(newest(&s, outcome("denied")).await, vec![2]);

    let window = AuditFilter {
        since: Some(at(3)),
        until: Some(at(7)),
        ..AuditFilter::default()
    };
    assert_eq!(
        newest(&s, window).await,
        vec![6, 5, 4, 3],
        "since inclusive, until exclusive"
    );
    let open_ended = AuditFilter {
        since: Some(at(8)),
        ..AuditFilter::default()
    };
    assert_eq!(newest(&s, open_ended).await, vec![9, 8]);
    let before_all = AuditFilter {
        until: Some(at(1)),
        ..AuditFilter::default()
    };
    assert_eq!(newest(&s, before_all).await, Vec::<i64>::new());
    let far = AuditFilter {
        since: Some(UnixMillis(u64::MAX)),
        ..AuditFilter::default()
    };
    assert_eq!(newest(&s, far).await, Vec::<i64>::new());

    let combined = AuditFilter {
        actor: Some("usr_b".into()),
        device_id: Some("dev_1".into()),
        outcome: Some("success".into()),
        since: Some(at(2)),
        ..AuditFilter::default()
    };
    assert_eq!(newest(&s, combined).await, vec![4]);

    // The device id round-trips, set or not.
    let read = s
        .audit_query(&device("dev_2"), AuditOrder::OldestFirst, 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].event, events[1]);
    let read = s
        .audit_query(&actor("usr_ab"), AuditOrder::OldestFirst, 10)
        .await
        .unwrap();
    assert_eq!(read[0].event.device_id, None);
}

pub(crate) async fn audit_query_pages_both_ways(s: Shared) {
    let mut seqs = Vec::new();
    for t in 1..=25 {
        let outcome = if t % 5 == 0 { "failure" } else { "success" };
        let e = event("usr_a", "user.login", Some("dev_1"), outcome, t);
        seqs.push(s.append_audit(&e).await.unwrap());
    }

    // Newest first, 10 a page, each page continuing below the last seq seen.
    let mut pages = Vec::new();
    let mut f = AuditFilter::default();
    loop {
        let page = s
            .audit_query(&f, AuditOrder::NewestFirst, 10)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        f.before_seq = Some(last.seq);
        pages.push(page.iter().map(|e| e.seq).collect::<Vec<_>>());
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![10, 10, 5]
    );
    let mut descending = seqs.clone();
    descending.reverse();
    assert_eq!(pages.concat(), descending);

    // Oldest first with `after_seq`, under a filter and an upper bound.
    let mut f = AuditFilter {
        outcome: Some("success".into()),
        before_seq: Some(seqs[19]),
        ..AuditFilter::default()
    };
    let mut read = Vec::new();
    loop {
        let page = s.audit_query(&f, AuditOrder::OldestFirst, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        f.after_seq = Some(last.seq);
        read.extend(ts(&page));
    }
    assert_eq!(
        read,
        (1..20).filter(|t| t % 5 != 0).collect::<Vec<_>>(),
        "seq below the 20th, failures left out"
    );

    let unbounded = AuditFilter {
        before_seq: Some(u64::MAX),
        ..AuditFilter::default()
    };
    assert_eq!(s.audit_count(&unbounded).await.unwrap(), 25);
    let none = AuditFilter {
        before_seq: Some(seqs[0]),
        ..AuditFilter::default()
    };
    assert_eq!(s.audit_count(&none).await.unwrap(), 0);
    assert!(
        s.audit_query(&AuditFilter::default(), AuditOrder::NewestFirst, 0)
            .await
            .unwrap()
            .is_empty()
    );
}
