//! Health, settings and the audit trail.

use crate::fixtures::audit_event;
use crate::harness::Shared;

pub(crate) async fn ping_and_backend(s: Shared) {
    s.ping().await.unwrap();
    assert!(
        ["sqlite", "mysql"].contains(&s.backend()),
        "{}",
        s.backend()
    );
}

pub(crate) async fn settings(s: Shared) {
    assert_eq!(s.setting("ca.mode").await.unwrap(), None);
    s.set_setting("ca.mode", "local").await.unwrap();
    assert_eq!(
        s.setting("ca.mode").await.unwrap().as_deref(),
        Some("local")
    );
    s.set_setting("ca.mode", "pkcs11 — ünïcode ✓")
        .await
        .unwrap();
    assert_eq!(
        s.setting("ca.mode").await.unwrap().as_deref(),
        Some("pkcs11 — ünïcode ✓")
    );
    s.set_setting("other", "").await.unwrap();
    assert_eq!(s.setting("other").await.unwrap().as_deref(), Some(""));
    assert_eq!(
        s.setting("ca.mode").await.unwrap().as_deref(),
        Some("pkcs11 — ünïcode ✓")
    );
    // Keys are exact.
    assert_eq!(s.setting("CA.MODE").await.unwrap(), None);
}

pub(crate) async fn audit_sequence_and_paging(s: Shared) {
    assert!(s.audit_after(0, 10).await.unwrap().is_empty());
    let mut seqs = Vec::new();
    for n in 1..=7 {
        seqs.push(s.append_audit(&audit_event(n)).await.unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(seqs[0] > 0);

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = s.audit_after(after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.seq;
        seen.extend(page);
    }
    assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    for (e, n) in seen.iter().zip(1..) {
        assert_eq!(e.event, audit_event(n), "round trip of event {n}");
    }

    assert_eq!(s.audit_after(seqs[4], 100).await.unwrap().len(), 2);
    assert!(s.audit_after(seqs[6], 100).await.unwrap().is_empty());
    assert!(s.audit_after(0, 0).await.unwrap().is_empty());
    assert_eq!(s.audit_after(u64::MAX, 10).await.unwrap(), Vec::new());

    // Appending after a read continues the sequence.
    let next = s.append_audit(&audit_event(8)).await.unwrap();
    assert!(next > seqs[6]);
}
