//! Devices.

use tether_store::{DeviceStatus, StoreError};

use crate::fixtures::{at, device, user};
use crate::harness::Shared;

pub(crate) async fn devices_insert_update_list(s: Shared) {
    user(&*s, "usr_a").await;
    user(&*s, "usr_b").await;
    assert!(s.all_devices().await.unwrap().is_empty());

    let d1 = device("dev_1", Some("usr_a"), at(10));
    let d2 = device("dev_2", Some("usr_a"), at(20));
    let d3 = device("dev_3", None, at(5));
    let d4 = device("dev_4", Some("usr_b"), at(15));
    for d in [&d2, &d1, &d3, &d4] {
        s.insert_device(d).await.unwrap();
    }
    assert_eq!(s.device("dev_1").await.unwrap(), Some(d1.clone()));
    assert_eq!(s.device("dev_unknown").await.unwrap(), None);
    assert_eq!(
        s.devices_for_owner("usr_a").await.unwrap(),
        vec![d1.clone(), d2.clone()],
        "oldest first"
    );
    assert!(s.devices_for_owner("usr_nobody").await.unwrap().is_empty());
    assert_eq!(
        s.all_devices().await.unwrap(),
        vec![d3.clone(), d1.clone(), d4.clone(), d2.clone()]
    );

    let dup = s.insert_device(&device("dev_1", None, at(1))).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let orphan = s
        .insert_device(&device("dev_9", Some("usr_nobody"), at(1)))
        .await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");

    // Pair dev_3 to usr_b.
    let mut paired = d3.clone();
    paired.name = "Renamed".into();
    paired.owner_id = Some("usr_b".into());
    paired.status = DeviceStatus::AwaitingApproval;
    paired.cert_serial = Some("0a1b2c".into());
    paired.cert_pem = Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into());
    paired.paired_at = Some(at(100));
    s.update_device(&paired).await.unwrap();
    assert_eq!(s.device("dev_3").await.unwrap(), Some(paired.clone()));
    assert_eq!(
        s.devices_for_owner("usr_b").await.unwrap(),
        vec![paired.clone(), d4]
    );
    // Updating with identical values is not "not found".
    s.update_device(&paired).await.unwrap();

    let mut active = paired.clone();
    active.status = DeviceStatus::Active;
    s.update_device(&active).await.unwrap();
    assert_eq!(
        s.device("dev_3").await.unwrap().unwrap().status,
        DeviceStatus::Active
    );

    let missing = s.update_device(&device("dev_unknown", None, at(1))).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

pub(crate) async fn devices_by_cert_serial(s: Shared) {
    user(&*s, "usr_a").await;
    let mut d1 = device("dev_1", Some("usr_a"), at(1));
    d1.cert_serial = Some("00ff".into());
    d1.status = DeviceStatus::Active;
    s.insert_device(&d1).await.unwrap();
    let d2 = device("dev_2", None, at(2));
    s.insert_device(&d2).await.unwrap();
    // Several devices without a certificate are fine.
    s.insert_device(&device("dev_3", None, at(3)))
        .await
        .unwrap();

    assert_eq!(
        s.device_by_cert_serial("00ff").await.unwrap(),
        Some(d1.clone())
    );
    assert_eq!(s.device_by_cert_serial("abcd").await.unwrap(), None);

    // A serial belongs to one device.
    let mut clash = d2.clone();
    clash.cert_serial = Some("00ff".into());
    let refused = s.update_device(&clash).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let mut dup = device("dev_4", None, at(4));
    dup.cert_serial = Some("00ff".into());
    let refused = s.insert_device(&dup).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );

    // Re-issued: the old serial no longer finds it.
    let mut reissued = d1;
    reissued.cert_serial = Some("0100".into());
    s.update_device(&reissued).await.unwrap();
    assert_eq!(s.device_by_cert_serial("00ff").await.unwrap(), None);
    assert_eq!(
        s.device_by_cert_serial("0100").await.unwrap(),
        Some(reissued)
    );
}

pub(crate) async fn devices_read_many_by_id(s: Shared) {
    user(&*s, "usr_a").await;
    assert!(s.devices_by_id(&[]).await.unwrap().is_empty());
    // More than one statement's worth of ids (256 a statement).
    let mut made = Vec::new();
    for n in 0..300_i64 {
        let d = device(&format!("dev_{n:03}"), Some("usr_a"), at(n));
        s.insert_device(&d).await.unwrap();
        made.push(d);
    }
    let mut revoked = made[299].clone();
    revoked.status = DeviceStatus::Revoked;
    s.update_device(&revoked).await.unwrap();
    made[299] = revoked;

    // Every other device, an unknown id, and two ids asked twice (answered once).
    let mut ids: Vec<String> = made.iter().step_by(2).map(|d| d.id.clone()).collect();
    ids.push("dev_unknown".into());
    ids.push("dev_000".into());
    ids.push("dev_299".into());
    let asked: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut found = s.devices_by_id(&asked).await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    let mut want: Vec<_> = made.iter().step_by(2).cloned().collect();
    want.push(made[299].clone());
    assert_eq!(found, want);
    assert_eq!(found.last().unwrap().status, DeviceStatus::Revoked);
}
