//! Telemetry events, rollups and last-seen times.

use std::sync::Arc;

use tether_store::{Rollup, RollupPeriod, StoreError, UnixMillis};

use crate::fixtures::{NOW, active_device, at, device, telemetry, user};
use crate::harness::Shared;

pub(crate) async fn telemetry_insert_once_and_list(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_1", "usr_a", NOW).await;
    active_device(&*s, "dev_2", "usr_a", NOW).await;
    let events: Vec<_> = (1..=5)
        .map(|n| telemetry("dev_1", &format!("msg-{n}"), n, at(i64::from(n) * 1000)))
        .collect();
    for e in &events {
        assert!(s.insert_telemetry_event(e).await.unwrap());
    }
    s.insert_telemetry_event(&telemetry("dev_2", "msg-other", 9, at(3000)))
        .await
        .unwrap();

    // The same message id again (a redelivery) is not stored twice, whatever it says.
    let mut again = events[2].clone();
    again.cpu_pct = 99.0;
    assert!(!s.insert_telemetry_event(&again).await.unwrap());

    let all = s.telemetry_events("dev_1", NOW, 100).await.unwrap();
    let got: Vec<_> = all.iter().map(|e| e.event.clone()).collect();
    let mut newest_first = events.clone();
    newest_first.reverse();
    assert_eq!(got, newest_first, "round trip, newest first");
    assert!(
        all.windows(2).all(|w| w[0].id > w[1].id),
        "ids follow insertion"
    );

    let since = s.telemetry_events("dev_1", at(3000), 100).await.unwrap();
    assert_eq!(
        since.iter().map(|e| e.event.seq).collect::<Vec<_>>(),
        vec![5, 4, 3],
        "since is inclusive"
    );
    let limited = s.telemetry_events("dev_1", NOW, 2).await.unwrap();
    assert_eq!(
        limited.iter().map(|e| e.event.seq).collect::<Vec<_>>(),
        vec![5, 4],
        "the limit keeps the newest"
    );
    assert!(
        s.telemetry_events("dev_1", at(6000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.telemetry_events("dev_none", NOW, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let orphan = s
        .insert_telemetry_event(&telemetry("dev_none", "msg-orphan", 1, NOW))
        .await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
    let mut nan = telemetry("dev_1", "msg-nan", 1, NOW);
    nan.cpu_pct = f64::NAN;
    let refused = s.insert_telemetry_event(&nan).await;
    assert!(
        matches!(refused, Err(StoreError::Corrupt(_))),
        "{refused:?}"
    );
    let mut inf = telemetry("dev_1", "msg-inf", 1, NOW);
    inf.disk_used_pct = Some(f64::INFINITY);
    assert!(s.insert_telemetry_event(&inf).await.is_err());
    assert_eq!(
        s.telemetry_events("dev_1", NOW, 100).await.unwrap().len(),
        5
    );
}

/// Many devices' newest points in one read: each device's own newest `per_device`,
/// oldest first, equal to `telemetry_events` for that device; devices without events
/// are absent; more devices than one statement takes.
pub(crate) async fn telemetry_latest_points_of_many_devices(s: Shared) {
    user(&*s, "usr_a").await;
    let ids: Vec<String> = (0..70).map(|i| format!("dev_{i:02}")).collect();
    for id in &ids {
        active_device(&*s, id, "usr_a", NOW).await;
    }
    // dev_00 has 6 events, dev_01 has 2 (out of order), dev_69 has 1, the rest none.
    let mut events: Vec<_> = (1..=6)
        .map(|n| telemetry("dev_00", &format!("a-{n}"), n, at(i64::from(n) * 1000)))
        .collect();
    events.push(telemetry("dev_01", "b-2", 2, at(9000)));
    events.push(telemetry("dev_01", "b-1", 1, at(8000)));
    events.push(telemetry("dev_69", "c-1", 1, at(5000)));
    assert_eq!(s.insert_telemetry_events(&events).await.unwrap().len(), 9);

    let asked: Vec<&str> = ids.iter().map(String::as_str).chain(["dev_none"]).collect();
    let latest = s.latest_points(&asked, 4).await.unwrap();
    let mut devices: Vec<_> = latest.keys().cloned().collect();
    devices.sort();
    assert_eq!(devices, ["dev_00", "dev_01", "dev_69"]);
    for (device, want) in [("dev_00", 4), ("dev_01", 2), ("dev_69", 1)] {
        let mut one = s.telemetry_events(device, NOW, 4).await.unwrap();
        one.reverse();
        let expected: Vec<_> = one
            .iter()
            .map(|e| (e.event.collected_at, e.event.cpu_pct, e.event.risk_score))
            .collect();
        let got: Vec<_> = latest[device]
            .iter()
            .map(|p| (p.collected_at, p.cpu_pct, p.risk_score))
            .collect();
        assert_eq!(got.len(), want, "{device}");
        assert_eq!(got, expected, "{device}: its newest, oldest first");
    }
    assert_eq!(
        latest["dev_00"][0].collected_at,
        at(3000),
        "the limit keeps the newest"
    );
    assert!(s.latest_points(&[], 4).await.unwrap().is_empty());
}

pub(crate) async fn telemetry_between_and_prune(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_1", "usr_a", NOW).await;
    active_device(&*s, "dev_2", "usr_a", NOW).await;
    // Inserted out of order: reads come back by collection time.
    for n in [3, 1, 4, 2, 5] {
        let e = telemetry("dev_1", &format!("m{n}"), n, at(i64::from(n) * 1000));
        s.insert_telemetry_event(&e).await.unwrap();
    }
    s.insert_telemetry_event(&telemetry("dev_2", "x1", 7, at(1000)))
        .await
        .unwrap();

    let window = s
        .telemetry_between("dev_1", at(2000), at(4000))
        .await
        .unwrap();
    let expected: Vec<_> = [2, 3]
        .iter()
        .map(|&n| {
            let e = telemetry("dev_1", "", n, at(i64::from(n) * 1000));
            (
                e.collected_at,
                e.cpu_pct,
                e.mem_used_bytes,
                e.mem_total_bytes,
                e.disk_used_pct,
                e.rx_bps,
                e.tx_bps,
                e.risk_score,
            )
        })
        .collect();
    let got: Vec<_> = window
        .iter()
        .map(|p| {
            (
                p.collected_at,
                p.cpu_pct,
                p.mem_used_bytes,
                p.mem_total_bytes,
                p.disk_used_pct,
                p.rx_bps,
                p.tx_bps,
                p.risk_score,
            )
        })
        .collect();
    assert_eq!(got, expected, "[from, to), oldest first");
    assert!(
        s.telemetry_between("dev_1", at(6000), at(9000))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.telemetry_between("dev_1", at(3000), at(3000))
            .await
            .unwrap()
            .is_empty()
    );

    // Retention: strictly older than the cut-off, every device.
    assert_eq!(s.prune_telemetry_before(at(3000)).await.unwrap(), 3);
    let left: Vec<_> = s
        .telemetry_events("dev_1", NOW, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.seq)
        .collect();
    assert_eq!(left, vec![5, 4, 3]);
    assert!(
        s.telemetry_events("dev_2", NOW, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.prune_telemetry_before(at(3000)).await.unwrap(), 0);
    // A pruned message id may arrive again (it is long past its envelope TTL anyway).
    assert!(
        s.insert_telemetry_event(&telemetry("dev_1", "m1", 1, at(1000)))
            .await
            .unwrap()
    );
}

fn rollup(
    device: &str,
    period: RollupPeriod,
    bucket: UnixMillis,
    metric: &str,
    base: f64,
) -> Rollup {
    Rollup {
        device_id: device.to_owned(),
        period,
        bucket_start: bucket,
        metric: metric.to_owned(),
        count: 12,
        min: base,
        max: base + 10.5,
        mean: base + 4.25,
        p95: base + 9.75,
    }
}

pub(crate) async fn rollups_upsert_and_list(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_1", "usr_a", NOW).await;
    active_device(&*s, "dev_2", "usr_a", NOW).await;
    let h = RollupPeriod::Hourly;
    let hour = |k: u64| UnixMillis(h.bucket_start(NOW).0 + k * h.millis());
    assert_eq!(h.bucket_start(hour(2)), hour(2));
    assert_eq!(h.bucket_start(UnixMillis(hour(2).0 + 3_599_999)), hour(2));

    let r0_cpu = rollup("dev_1", h, hour(0), "cpu_pct", 1.0);
    let r0_tx = rollup("dev_1", h, hour(0), "tx_bps", 2.0);
    let r1_cpu = rollup("dev_1", h, hour(1), "cpu_pct", 3.0);
    let daily = rollup(
        "dev_1",
        RollupPeriod::Daily,
        RollupPeriod::Daily.bucket_start(NOW),
        "cpu_pct",
        4.0,
    );
    // Both periods in one call, several devices, in any order.
    s.upsert_rollups(&[
        r1_cpu.clone(),
        r0_tx.clone(),
        r0_cpu.clone(),
        daily.clone(),
        rollup("dev_2", h, hour(0), "cpu_pct", 5.0),
    ])
    .await
    .unwrap();
    s.upsert_rollups(&[]).await.unwrap();
    assert_eq!(
        s.rollups("dev_1", h, hour(0), 100).await.unwrap(),
        vec![r0_cpu.clone(), r0_tx.clone(), r1_cpu.clone()],
        "by bucket, then metric"
    );
    assert_eq!(
        s.rollups("dev_1", h, hour(1), 100).await.unwrap(),
        vec![r1_cpu.clone()]
    );
    assert_eq!(
        s.rollups("dev_1", h, hour(0), 1).await.unwrap(),
        vec![r0_cpu.clone()]
    );
    assert_eq!(
        s.rollups("dev_1", RollupPeriod::Daily, UnixMillis(0), 100)
            .await
            .unwrap(),
        vec![daily.clone()],
        "periods are kept apart"
    );

    // Recomputing a bucket replaces it.
    let mut again = r0_cpu.clone();
    again.count = 13;
    again.max = 77.5;
    again.p95 = 70.0;
    s.upsert_rollups(std::slice::from_ref(&again))
        .await
        .unwrap();
    assert_eq!(
        s.rollups("dev_1", h, hour(0), 100).await.unwrap(),
        vec![again.clone(), r0_tx.clone(), r1_cpu.clone()]
    );

    // All or none: a batch with an unknown device, or a NaN, writes nothing.
    let mut changed = again.clone();
    changed.count = 99;
    let orphan = s
        .upsert_rollups(&[
            changed.clone(),
            rollup("dev_none", h, hour(0), "cpu_pct", 1.0),
        ])
        .await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
    let mut nan = rollup("dev_1", h, hour(5), "cpu_pct", 1.0);
    nan.mean = f64::NAN;
    assert!(matches!(
        s.upsert_rollups(&[changed, nan]).await,
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(
        s.rollups("dev_1", h, hour(0), 100).await.unwrap(),
        vec![again, r0_tx, r1_cpu]
    );

    // More rows than one statement takes (64), all kept.
    let many: Vec<Rollup> = (0..150)
        .map(|i| rollup("dev_2", h, hour(10 + i), "rx_bps", i as f64))
        .collect();
    s.upsert_rollups(&many).await.unwrap();
    assert_eq!(s.rollups("dev_2", h, hour(10), 1000).await.unwrap(), many);
}

pub(crate) async fn last_seen_and_silent_devices(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_seen", "usr_a", at(100)).await;
    active_device(&*s, "dev_never", "usr_a", at(200)).await;
    active_device(&*s, "dev_fresh", "usr_a", at(300)).await;
    // Not active: never a candidate.
    s.insert_device(&device("dev_pending", None, NOW))
        .await
        .unwrap();

    assert_eq!(s.device_last_seen("dev_seen").await.unwrap(), None);
    s.set_last_seen("dev_seen", at(5_000)).await.unwrap();
    s.set_last_seen("dev_seen", at(4_000)).await.unwrap();
    assert_eq!(
        s.device_last_seen("dev_seen").await.unwrap(),
        Some(at(5_000)),
        "never moves backwards"
    );
    s.set_last_seen("dev_seen", at(5_000)).await.unwrap();
    s.set_last_seen("dev_fresh", at(60_000)).await.unwrap();
    let unknown = s.set_last_seen("dev_none", at(1)).await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
    assert_eq!(s.device_last_seen("dev_none").await.unwrap(), None);

    let silent = s.devices_last_seen_before(at(10_000)).await.unwrap();
    let got: Vec<_> = silent
        .iter()
        .map(|d| (d.device.id.as_str(), d.last_seen_at))
        .collect();
    // Never seen counts from pairing (at 200); seen from its last time (5 000).
    assert_eq!(
        got,
        vec![("dev_never", None), ("dev_seen", Some(at(5_000)))]
    );
    assert_eq!(
        silent[1].device,
        s.device("dev_seen").await.unwrap().unwrap()
    );
    assert!(
        s.devices_last_seen_before(at(200))
            .await
            .unwrap()
            .iter()
            .all(|d| d.device.id != "dev_never")
    );
    assert_eq!(s.devices_last_seen_before(at(100)).await.unwrap(), vec![]);
    assert_eq!(
        s.devices_last_seen_before(at(60_001)).await.unwrap().len(),
        3
    );

    // Heard from at or after a time: seen devices only, any status.
    let ids = |v: Vec<tether_store::SeenDevice>| -> Vec<String> {
        v.into_iter().map(|d| d.device.id).collect()
    };
    assert_eq!(
        ids(s.devices_seen_since(at(5_000)).await.unwrap()),
        vec!["dev_fresh", "dev_seen"]
    );
    assert_eq!(
        ids(s.devices_seen_since(at(5_001)).await.unwrap()),
        vec!["dev_fresh"]
    );
    assert!(s.devices_seen_since(at(60_001)).await.unwrap().is_empty());
}

pub(crate) async fn telemetry_batch_insert_is_all_or_nothing(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_1", "usr_a", NOW).await;
    active_device(&*s, "dev_2", "usr_a", NOW).await;
    s.insert_telemetry_event(&telemetry("dev_1", "msg-old", 1, at(1000)))
        .await
        .unwrap();
    // Received at 2000, 4000 and 3000: last seen moves to the latest of each device.
    let mut batch = vec![
        telemetry("dev_1", "msg-a", 2, at(2000)),
        telemetry("dev_2", "msg-b", 1, at(2000)),
        // A redelivery inside the batch is skipped, the rest still stored.
        telemetry("dev_1", "msg-old", 1, at(1000)),
        telemetry("dev_1", "msg-c", 3, at(3000)),
    ];
    batch[0].received_at = at(4000);
    batch[3].received_at = at(3000);
    let inserted = s.insert_telemetry_events(&batch).await.unwrap();
    assert_eq!(inserted, vec![true, true, false, true]);
    assert_eq!(s.telemetry_events("dev_1", NOW, 10).await.unwrap().len(), 3);
    assert_eq!(s.device_last_seen("dev_1").await.unwrap(), Some(at(4000)));
    assert_eq!(
        s.device_last_seen("dev_2").await.unwrap(),
        Some(batch[1].received_at)
    );

    // An unknown device fails the whole batch: nothing of it is stored.
    let bad = vec![
        telemetry("dev_2", "msg-d", 2, at(5000)),
        telemetry("dev_none", "msg-e", 1, at(5000)),
    ];
    let refused = s.insert_telemetry_events(&bad).await;
    assert!(
        matches!(refused, Err(StoreError::NotFound(_))),
        "{refused:?}"
    );
    assert_eq!(s.telemetry_events("dev_2", NOW, 10).await.unwrap().len(), 1);

    // A batch bigger than one statement takes (128 rows), with redeliveries on both sides
    // of a statement's edge: each is stored once, the rest all are.
    let mut big: Vec<_> = (0..300u32)
        .map(|i| {
            let dev = if i % 2 == 0 { "dev_1" } else { "dev_2" };
            let mut e = telemetry(
                dev,
                &format!("msg-big-{i}"),
                100 + i,
                at(6000 + i64::from(i)),
            );
            e.received_at = at(40_000 + i64::from(i));
            e
        })
        .collect();
    big[10] = telemetry("dev_1", "msg-a", 2, at(2000));
    big[200] = telemetry("dev_2", "msg-big-3", 103, at(6003));
    let inserted = s.insert_telemetry_events(&big).await.unwrap();
    assert_eq!(inserted.iter().filter(|&&f| f).count(), 298);
    assert!(!inserted[10] && !inserted[200] && inserted[3]);
    assert_eq!(
        s.telemetry_events("dev_1", NOW, 1000).await.unwrap().len(),
        // 150 even ones, less the two replaced by redeliveries.
        3 + 148
    );
    // Last seen moved: more than 30 s past the stored 4 000.
    assert_eq!(s.device_last_seen("dev_1").await.unwrap(), Some(at(40_298)));
    assert_eq!(s.device_last_seen("dev_2").await.unwrap(), Some(at(40_299)));

    // A batch moves last seen only by 30 s or more: the row is not rewritten at every
    // sample of a device that sends every few seconds.
    let mut soon = telemetry("dev_1", "msg-soon", 500, at(50_000));
    soon.received_at = at(70_297);
    let mut later = telemetry("dev_2", "msg-later", 501, at(50_000));
    later.received_at = at(70_299);
    assert_eq!(
        s.insert_telemetry_events(&[soon, later]).await.unwrap(),
        vec![true, true]
    );
    assert_eq!(
        s.device_last_seen("dev_1").await.unwrap(),
        Some(at(40_298)),
        "29.999 s later: unchanged"
    );
    assert_eq!(
        s.device_last_seen("dev_2").await.unwrap(),
        Some(at(70_299)),
        "30 s later: moved"
    );
}

/// Two batches stored at once that share message ids (two analytics workers handed the
/// same entries): each id is stored once, and exactly one of the batches says it stored
/// it, whichever of them looked for the stored ids before the other wrote.
pub(crate) async fn telemetry_concurrent_batches_store_each_id_once(s: Shared) {
    user(&*s, "usr_a").await;
    active_device(&*s, "dev_1", "usr_a", NOW).await;
    active_device(&*s, "dev_2", "usr_a", NOW).await;
    for round in 0..5u32 {
        let batch = |from: u32, to: u32| -> Vec<_> {
            (from..to)
                .map(|i| {
                    let dev = if i % 2 == 0 { "dev_1" } else { "dev_2" };
                    telemetry(
                        dev,
                        &format!("msg-{round}-{i}"),
                        i,
                        at(1000 + i64::from(round * 1000 + i)),
                    )
                })
                .collect()
        };
        // 0..200 and 100..300: 100 ids in both, over more than one statement each.
        let (a, b) = (batch(0, 200), batch(100, 300));
        let (sa, sb) = (Arc::clone(&s), Arc::clone(&s));
        let (ia, ib) = tokio::join!(
            async move { sa.insert_telemetry_events(&a).await.unwrap() },
            async move { sb.insert_telemetry_events(&b).await.unwrap() }
        );
        assert_eq!(ia[..100].iter().filter(|&&f| f).count(), 100);
        assert_eq!(ib[100..].iter().filter(|&&f| f).count(), 100);
        for shared in 100..200usize {
            let (Some(&x), Some(&y)) = (ia.get(shared), ib.get(shared - 100)) else {
                panic!("a flag per event");
            };
            assert!(
                x != y,
                "round {round}: id {shared} stored by exactly one batch"
            );
        }
    }
    let stored = s
        .telemetry_events("dev_1", NOW, 10_000)
        .await
        .unwrap()
        .len()
        + s.telemetry_events("dev_2", NOW, 10_000)
            .await
            .unwrap()
            .len();
    assert_eq!(stored, 5 * 300);
}
