//! Embedded-only behaviour: schema versioning, ids under a clock that goes backwards,
//! trimming around pending entries, several bus instances on one file, expiry sweeps.
//! (What both backends share is in `tests/behaviour.rs`.)

// Tests may unwrap and index: a panic here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tether_proto::{ManualClock, UnixMillis};
use tokio::time::Instant;

use super::{EmbeddedBus, schema};
use crate::{Bus, BusError};

const NO_WAIT: Duration = Duration::ZERO;

async fn open(path: &Path, clock: &Arc<ManualClock>) -> EmbeddedBus {
    EmbeddedBus::open(path, "t", clock.clone()).await.unwrap()
}

fn setup() -> (TempDir, Arc<ManualClock>) {
    let dir = tempfile::tempdir().unwrap();
    (dir, Arc::new(ManualClock::new(UnixMillis(1_000_000))))
}

async fn scalar(bus: &EmbeddedBus, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&bus.reader)
        .await
        .unwrap()
}

#[tokio::test]
async fn schema_is_versioned_and_a_newer_file_is_refused() {
    let (dir, clock) = setup();
    let path = dir.path().join("bus.sqlite");
    let bus = open(&path, &clock).await;
    let version = scalar(&bus, "PRAGMA user_version").await;
    assert_eq!(usize::try_from(version).unwrap(), schema::latest_version());
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&bus.writer)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    // 1 = NORMAL.
    assert_eq!(scalar(&bus, "PRAGMA synchronous").await, 1);
    bus.append("s", b"kept", 10).await.unwrap();
    bus.close().await;

    // Reopening runs no migration again and keeps the data.
    let bus = open(&path, &clock).await;
    assert_eq!(bus.stream_len("s").await.unwrap(), 1);
    sqlx::query("PRAGMA user_version = 99")
        .execute(&bus.writer)
        .await
        .unwrap();
    bus.close().await;
    let err = EmbeddedBus::open(&path, "t", clock.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn ids_keep_increasing_when_the_clock_goes_backwards() {
    let (dir, clock) = setup();
    let path = dir.path().join("bus.sqlite");
    let bus = open(&path, &clock).await;
    let a = bus.append("s", b"a", 10).await.unwrap();
    assert_eq!(a, "1000000-0");
    let b = bus.append("s", b"b", 10).await.unwrap();
    assert_eq!(b, "1000000-1");
    clock.set(UnixMillis(5));
    let c = bus.append("s", b"c", 10).await.unwrap();
    assert_eq!(c, "1000000-2");
    clock.set(UnixMillis(2_000_000));
    assert_eq!(bus.append("s", b"d", 10).await.unwrap(), "2000000-0");

    // The last id is remembered even when every entry has been trimmed, and across a
    // reopen.
    clock.set(UnixMillis(7));
    bus.append("s", b"e", 1).await.unwrap();
    bus.close().await;
    let bus = open(&path, &clock).await;
    assert_eq!(bus.stream_len("s").await.unwrap(), 1);
    assert_eq!(bus.append("s", b"f", 1).await.unwrap(), "2000000-2");
}

#[tokio::test]
async fn trimming_keeps_pending_entries_until_acknowledged() {
    let (dir, clock) = setup();
    let bus = open(&dir.path().join("bus.sqlite"), &clock).await;
    bus.ensure_group("s", "g").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        clock.advance(Duration::from_millis(1));
        ids.push(bus.append("s", format!("{i}").as_bytes(), 3).await.unwrap());
    }
    let read = bus.read_group("s", "g", "c", 2, NO_WAIT).await.unwrap();
    assert_eq!(read.len(), 2);

    // Over max_len, but the two oldest are pending: they stay, and so do the newest three.
    for i in 3..5 {
        ids.push(bus.append("s", format!("{i}").as_bytes(), 3).await.unwrap());
    }
    assert_eq!(bus.stream_len("s").await.unwrap(), 5);
    // Even a pending entry can be claimed: its payload is still there.
    clock.advance(Duration::from_secs(60));
    let claimed = bus
        .claim_stale("s", "g", "c2", Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].payload, b"0");

    // Acknowledged, they go on the next append, with the undelivered entry 2 that is no
    // longer among the newest three.
    assert_eq!(bus.ack("s", "g", &ids[..2]).await.unwrap(), 2);
    ids.push(bus.append("s", b"5", 3).await.unwrap());
    assert_eq!(bus.stream_len("s").await.unwrap(), 3);
    let rest = bus.read_group("s", "g", "c", 10, NO_WAIT).await.unwrap();
    let rest: Vec<_> = rest.into_iter().map(|e| e.id).collect();
    assert_eq!(rest, ids[3..]);
}

#[tokio::test]
async fn a_long_stream_is_trimmed_in_steps_of_a_sixty_fourth() {
    let (dir, clock) = setup();
    let bus = open(&dir.path().join("bus.sqlite"), &clock).await;
    let count = || scalar(&bus, "SELECT COUNT(*) FROM bus_entries");
    for i in 0..130 {
        bus.append("s", format!("{i}").as_bytes(), 128)
            .await
            .unwrap();
    }
    // 128 + 128/64 = 130: not over yet.
    assert_eq!(count().await, 130);
    bus.append("s", b"130", 128).await.unwrap();
    assert_eq!(count().await, 128, "back to max_len at once");
    for i in 131..400 {
        bus.append("s", format!("{i}").as_bytes(), 128)
            .await
            .unwrap();
        assert!((128..=130).contains(&count().await));
    }
    // The newest are the ones kept.
    let newest = bus.read_after("s", "0-0", 1000, NO_WAIT).await.unwrap();
    assert_eq!(newest.last().unwrap().payload, b"399");
}

#[tokio::test]
async fn a_blocked_reader_sees_appends_from_another_instance_by_polling() {
    let (dir, clock) = setup();
    let path = dir.path().join("bus.sqlite");
    let reader = Arc::new(open(&path, &clock).await);
    // Another process's bus on the same file: its appends do not signal `reader`.
    let writer = open(&path, &clock).await;
    reader.ensure_group("s", "g").await.unwrap();
    let blocked = {
        let reader = reader.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = reader
                .read_group("s", "g", "c", 10, Duration::from_secs(5))
                .await
                .unwrap();
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let id = writer.append("s", b"x", 10).await.unwrap();
    let (got, waited) = blocked.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert!(waited < Duration::from_secs(1), "polling took {waited:?}");
}

#[tokio::test]
async fn claim_with_idle_longer_than_the_epoch_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(UnixMillis(10)));
    let bus = open(&dir.path().join("bus.sqlite"), &clock).await;
    bus.ensure_group("s", "g").await.unwrap();
    bus.append("s", b"x", 10).await.unwrap();
    bus.read_group("s", "g", "c", 1, NO_WAIT).await.unwrap();
    let claimed = bus
        .claim_stale("s", "g", "c2", Duration::from_secs(1), 10)
        .await
        .unwrap();
    assert!(claimed.is_empty());
    // Idle zero claims everything pending.
    let claimed = bus.claim_stale("s", "g", "c2", NO_WAIT, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
}

#[tokio::test]
async fn expired_keys_and_counters_are_swept_by_later_writes() {
    let (dir, clock) = setup();
    let bus = open(&dir.path().join("bus.sqlite"), &clock).await;
    for i in 0..5 {
        bus.put_ttl(&format!("k{i}"), b"v", Duration::from_secs(1))
            .await
            .unwrap();
        bus.incr_window(&format!("c{i}"), Duration::from_secs(1))
            .await
            .unwrap();
    }
    assert_eq!(scalar(&bus, "SELECT COUNT(*) FROM bus_kv").await, 5);
    clock.advance(Duration::from_secs(2));
    bus.put_ttl("live", b"v", Duration::from_secs(1))
        .await
        .unwrap();
    bus.incr_window("live", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(scalar(&bus, "SELECT COUNT(*) FROM bus_kv").await, 1);
    assert_eq!(scalar(&bus, "SELECT COUNT(*) FROM bus_counters").await, 1);

    // Keys are swept at most once a second; an expired key is never read meanwhile.
    bus.put_ttl("short", b"v", Duration::from_millis(10))
        .await
        .unwrap();
    clock.advance(Duration::from_millis(20));
    bus.put_ttl("other", b"v", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(bus.get("short").await.unwrap(), None);
    assert_eq!(scalar(&bus, "SELECT COUNT(*) FROM bus_kv").await, 3);
    clock.advance(Duration::from_secs(1));
    bus.put_ttl("other", b"v", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(scalar(&bus, "SELECT COUNT(*) FROM bus_kv").await, 1);
}

#[tokio::test]
async fn closed_bus_fails_with_backend_error() {
    let (dir, clock) = setup();
    let bus = open(&dir.path().join("bus.sqlite"), &clock).await;
    bus.close().await;
    let err = bus.ping().await.unwrap_err();
    assert!(matches!(err, BusError::Backend(_)), "{err:?}");
}

/// Concurrent appends and puts are committed together (group commit), and each append
/// still gets its own id in its stream, with the stream's length as if written one by
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_committed_together_each_with_its_own_id() {
    let (dir, clock) = setup();
    let bus = Arc::new(open(&dir.path().join("bus.sqlite"), &clock).await);
    bus.ensure_group("a", "g").await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let bus = Arc::clone(&bus);
        tasks.spawn(async move {
            let stream = if i % 2 == 0 { "a" } else { "b" };
            let (id, ()) = tokio::join!(
                async { bus.append(stream, &i.to_be_bytes(), 150).await.unwrap() },
                async {
                    bus.put_ttl(&format!("k{i}"), &i.to_be_bytes(), Duration::from_secs(60))
                        .await
                        .unwrap();
                }
            );
            (stream, i, id)
        });
    }
    let mut ids = std::collections::HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (stream, i, id) = r.unwrap();
        assert!(
            ids.insert((stream, id.clone()), i).is_none(),
            "{stream} {id} given twice"
        );
    }
    assert_eq!(ids.len(), 200);
    // Stream a: its 100 entries, read in id order, are exactly those appended to it.
    let read = bus.read_group("a", "g", "c", 500, NO_WAIT).await.unwrap();
    assert_eq!(read.len(), 100);
    for e in &read {
        let i = u32::from_be_bytes(e.payload.as_slice().try_into().unwrap());
        assert_eq!(ids[&("a", e.id.clone())], i);
    }
    assert_eq!(bus.stream_len("a").await.unwrap(), 100);
    assert_eq!(bus.stream_len("b").await.unwrap(), 100);
    // The puts committed beside them.
    for i in [0u32, 77, 199] {
        let v = bus.get(&format!("k{i}")).await.unwrap().unwrap();
        assert_eq!(v, i.to_be_bytes());
    }
}
