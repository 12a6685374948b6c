//! Durability of the embedded bus: what a restart must not lose.

// Tests may unwrap and index: a panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use tether_bus::{Bus, EmbeddedBus, OwnThread};
use tether_proto::{ManualClock, UnixMillis};

const NO_WAIT: Duration = Duration::ZERO;

#[tokio::test]
async fn entries_groups_pending_keys_and_counters_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.sqlite");
    let clock = Arc::new(ManualClock::new(UnixMillis(1_700_000_000_000)));
    let ttl = Duration::from_secs(60);

    let bus = EmbeddedBus::open(&path, "prod", clock.clone())
        .await
        .unwrap();
    bus.ensure_group("cmd", "workers").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            bus.append("cmd", format!("m{i}").as_bytes(), 100)
                .await
                .unwrap(),
        );
    }
    let read = bus
        .read_group("cmd", "workers", "c1", 3, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    assert_eq!(bus.ack("cmd", "workers", &ids[..1]).await.unwrap(), 1);
    bus.put_ttl("presence:dev", b"gw-1", ttl).await.unwrap();
    assert_eq!(bus.incr_window("rate", ttl).await.unwrap(), 1);
    bus.close().await;
    drop(bus);

    // A new process (a new bus on the same file, a different clock object at a later time).
    let clock = Arc::new(ManualClock::new(UnixMillis(1_700_000_010_000)));
    let bus = EmbeddedBus::open(&path, "prod", clock.clone())
        .await
        .unwrap();
    assert_eq!(bus.stream_len("cmd").await.unwrap(), 4);
    assert_eq!(bus.pending_count("cmd", "workers").await.unwrap(), 2);
    // The group's position survived: only the never-delivered entry is new.
    let fresh = bus
        .read_group("cmd", "workers", "c2", 10, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].id, ids[3]);
    // The pending entries (delivered before the restart, 10 s ago) can be reclaimed.
    let claimed = bus
        .claim_stale("cmd", "workers", "c2", Duration::from_secs(5), 10)
        .await
        .unwrap();
    let claimed_ids: Vec<_> = claimed.iter().map(|e| e.id.clone()).collect();
    assert_eq!(claimed_ids, ids[1..3]);
    assert!(claimed.iter().all(|e| e.deliveries == 2));
    assert_eq!(claimed[0].payload, b"m1");

    assert_eq!(
        bus.get("presence:dev").await.unwrap(),
        Some(b"gw-1".to_vec())
    );
    assert_eq!(bus.incr_window("rate", ttl).await.unwrap(), 2);
    let next = bus.append("cmd", b"after", 100).await.unwrap();
    let parse = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap();
        (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
    };
    assert!(parse(&next) > parse(&ids[3]));
    bus.close().await;
}

#[tokio::test]
async fn data_survives_without_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.sqlite");
    let clock = Arc::new(ManualClock::new(UnixMillis(1_700_000_000_000)));
    {
        let bus = EmbeddedBus::open(&path, "prod", clock.clone())
            .await
            .unwrap();
        bus.ensure_group("s", "g").await.unwrap();
        bus.append("s", b"x", 10).await.unwrap();
        bus.read_group("s", "g", "c", 10, NO_WAIT).await.unwrap();
        // Dropped without close(): committed transactions are in the WAL already.
    }
    let bus = EmbeddedBus::open(&path, "prod", clock).await.unwrap();
    assert_eq!(bus.stream_len("s").await.unwrap(), 1);
    assert_eq!(bus.pending_count("s", "g").await.unwrap(), 1);
}

/// Behind `OwnThread`, a blocking read whose caller stops waiting is cancelled on the
/// bus's thread as well: an entry appended afterwards is not delivered to nobody.
#[tokio::test]
async fn an_abandoned_read_on_the_bus_thread_takes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(UnixMillis(1_700_000_000_000)));
    let embedded = EmbeddedBus::open(&dir.path().join("bus.sqlite"), "prod", clock)
        .await
        .unwrap();
    let bus = OwnThread::start(Arc::new(embedded), "test-bus").unwrap();
    bus.ensure_group("s", "g").await.unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        bus.read_group("s", "g", "gone", 10, Duration::from_secs(5)),
    )
    .await;
    assert!(abandoned.is_err(), "the read blocks until the timeout");
    bus.append("s", b"x", 100).await.unwrap();
    // Were the abandoned read still running on the bus's thread, it would take the entry.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = bus.read_group("s", "g", "here", 10, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].deliveries, 1);
    assert_eq!(bus.pending_count("s", "g").await.unwrap(), 1);
}
