//! Alerts: at most one open per device and kind, listing, acknowledgement.

use tether_store::{Severity, StoreError};

use crate::fixtures::{NOW, active_device, alert, at, user};
use crate::harness::Shared;
use crate::suite::race;

pub(crate) async fn alerts_raise_list_ack(s: Shared) {
    user(&*s, "usr_a").await;
    user(&*s, "usr_b").await;
    active_device(&*s, "dev_a", "usr_a", NOW).await;
    active_device(&*s, "dev_b", "usr_b", NOW).await;

    let mut first = alert("alr_1", "dev_a", "usr_a", "anomaly", at(10));
    first.severity = Severity::Critical;
    first.risk_score = Some(0.9375);
    assert!(s.insert_alert(&first).await.unwrap());
    assert_eq!(
        s.alert("alr_1").await.unwrap(),
        Some(first.clone()),
        "round trip"
    );
    assert_eq!(s.alert("alr_none").await.unwrap(), None);

    // A second open alert of the same kind for the same device is not stored.
    assert!(
        !s.insert_alert(&alert("alr_2", "dev_a", "usr_a", "anomaly", at(20)))
            .await
            .unwrap()
    );
    assert_eq!(s.alert("alr_2").await.unwrap(), None);
    // Other kinds and other devices are independent.
    let cpu = alert("alr_3", "dev_a", "usr_a", "cpu_high", at(30));
    let other = alert("alr_4", "dev_b", "usr_b", "anomaly", at(40));
    assert!(s.insert_alert(&cpu).await.unwrap());
    assert!(s.insert_alert(&other).await.unwrap());

    let dup_id = s
        .insert_alert(&alert("alr_1", "dev_b", "usr_b", "offline", at(50)))
        .await;
    assert!(matches!(dup_id, Err(StoreError::Conflict(_))), "{dup_id:?}");
    let orphan = s
        .insert_alert(&alert("alr_5", "dev_none", "usr_a", "offline", at(50)))
        .await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");

    assert_eq!(
        s.open_alert("dev_a", "anomaly").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(s.open_alert("dev_a", "offline").await.unwrap(), None);
    assert_eq!(
        s.alerts_for_owner("usr_a", false, 10).await.unwrap(),
        vec![cpu.clone(), first.clone()],
        "newest first"
    );
    assert_eq!(
        s.alerts_for_owner("usr_a", false, 1).await.unwrap(),
        vec![cpu.clone()]
    );
    assert_eq!(
        s.all_alerts(false, 10).await.unwrap(),
        vec![other.clone(), cpu.clone(), first.clone()]
    );

    // Acknowledge: once; the first acknowledgement stands.
    assert!(s.ack_alert("alr_1", "usr_a", at(100)).await.unwrap());
    assert!(!s.ack_alert("alr_1", "usr_b", at(200)).await.unwrap());
    assert!(!s.ack_alert("alr_none", "usr_a", at(200)).await.unwrap());
    let unknown_user = s.ack_alert("alr_3", "usr_none", at(200)).await;
    assert!(
        matches!(unknown_user, Err(StoreError::NotFound(_))),
        "{unknown_user:?}"
    );
    let acked = s.alert("alr_1").await.unwrap().unwrap();
    assert_eq!(acked.acked_at, Some(at(100)));
    assert_eq!(acked.acked_by.as_deref(), Some("usr_a"));
    assert_eq!(s.open_alert("dev_a", "anomaly").await.unwrap(), None);
    assert_eq!(
        s.latest_alert("dev_a", "anomaly").await.unwrap(),
        Some(acked.clone())
    );
    assert_eq!(
        s.alerts_for_owner("usr_a", false, 10).await.unwrap(),
        vec![cpu.clone()]
    );
    assert_eq!(
        s.alerts_for_owner("usr_a", true, 10).await.unwrap(),
        vec![cpu.clone(), acked.clone()]
    );
    assert_eq!(s.all_alerts(true, 10).await.unwrap().len(), 3);
    assert_eq!(s.all_alerts(false, 10).await.unwrap().len(), 2);

    // Once acknowledged, the kind can fire again.
    let again = alert("alr_6", "dev_a", "usr_a", "anomaly", at(300));
    assert!(s.insert_alert(&again).await.unwrap());
    assert_eq!(
        s.open_alert("dev_a", "anomaly").await.unwrap(),
        Some(again.clone())
    );
    assert_eq!(
        s.latest_alert("dev_a", "anomaly").await.unwrap(),
        Some(again)
    );
    assert_eq!(s.latest_alert("dev_a", "offline").await.unwrap(), None);
    assert!(
        s.alerts_for_owner("usr_nobody", true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.all_alerts(true, 0).await.unwrap().is_empty());

    // A NaN risk score is refused.
    let mut nan = alert("alr_7", "dev_b", "usr_b", "disk_full", at(400));
    nan.risk_score = Some(f64::NAN);
    assert!(matches!(
        s.insert_alert(&nan).await,
        Err(StoreError::Corrupt(_))
    ));
}

pub(crate) async fn alerts_concurrent_raise_one_wins(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_a", "usr_a", NOW).await;
    let stored = race(&s, 8, |s, i| async move {
        s.insert_alert(&alert(
            &format!("alr_{i}"),
            "dev_a",
            "usr_a",
            "offline",
            at(10),
        ))
        .await
        .unwrap()
    })
    .await;
    assert_eq!(stored.iter().filter(|w| **w).count(), 1, "{stored:?}");
    assert_eq!(s.all_alerts(true, 100).await.unwrap().len(), 1);
}
