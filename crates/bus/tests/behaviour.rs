//! The bus's behaviour, one suite for both backends: every test body below runs once
//! against the embedded bus and once against Redis (see `common`).

// Tests may unwrap, index and add freely: a panic here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Backend, Harness};
use tether_bus::{Bus, BusError, Entry};
use tokio::time::Instant;

/// Room Redis's approximate (`MAXLEN ~`) trimming may leave above `max_len`: it trims
/// whole macro-nodes of up to 100 entries.
const TRIM_SLACK: u64 = 100;

/// Defines each listed test three times: `embedded::name`, `own_thread::name` (the
/// embedded bus behind [`tether_bus::OwnThread`]) and `redis::name`.
macro_rules! behaviour_tests {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::common::run(crate::common::Backend::Embedded, super::$name).await;
                }
            )*
        }
        mod own_thread {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::common::run(crate::common::Backend::EmbeddedOwnThread, super::$name).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::common::run(crate::common::Backend::Redis, super::$name).await;
                }
            )*
        }
    };
}

behaviour_tests!(
    ping_and_backend,
    append_and_read_in_order_exactly_once,
    concurrent_consumers_share_without_duplicates,
    each_group_gets_every_entry,
    ack_reduces_pending,
    unacked_entries_are_reclaimed_after_min_idle,
    blocking_read_wakes_on_append,
    blocking_read_times_out_empty,
    blocking_read_does_not_stall_other_operations,
    keys_expire_after_ttl,
    delete_if_only_deletes_a_matching_value,
    incr_window_counts_and_resets,
    stream_len_and_trim,
    missing_group_is_an_invalid_argument,
    arguments_are_checked,
    namespaces_are_isolated,
    fan_out_readers_each_see_every_entry_from_their_position,
    backlog_counts_what_a_group_has_not_been_delivered,
);

const NO_WAIT: Duration = Duration::ZERO;

/// Parses `ms-seq`.
fn id_parts(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap();
    assert!(
        !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()),
        "bad id {id}"
    );
    assert!(
        !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()),
        "bad id {id}"
    );
    (ms.parse().unwrap(), seq.parse().unwrap())
}

async fn append_n(bus: &dyn Bus, stream: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(
            bus.append(stream, format!("m{i}").as_bytes(), 10_000)
                .await
                .unwrap(),
        );
    }
    ids
}

fn ids(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

async fn ping_and_backend(h: Arc<Harness>) {
    h.bus.ping().await.unwrap();
    let expected = match h.backend() {
        Backend::Embedded | Backend::EmbeddedOwnThread => "embedded",
        Backend::Redis => "redis",
    };
    assert_eq!(h.bus.backend(), expected);
}

async fn append_and_read_in_order_exactly_once(h: Arc<Harness>) {
    let bus = &*h.bus;
    bus.ensure_group("cmd", "workers").await.unwrap();
    bus.ensure_group("cmd", "workers").await.unwrap(); // idempotent
    let appended = append_n(bus, "cmd", 10).await;
    let parts: Vec<_> = appended.iter().map(|id| id_parts(id)).collect();
    assert!(
        parts.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {appended:?}"
    );

    // Two consumers in one group take turns: each entry goes to exactly one, in order.
    let mut seen = Vec::new();
    let mut by_consumer = [0usize; 2];
    for turn in 0.. {
        let consumer = ["c1", "c2"][turn % 2];
        let got = bus
            .read_group("cmd", "workers", consumer, 3, NO_WAIT)
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        by_consumer[turn % 2] += got.len();
        for entry in got {
            assert_eq!(entry.deliveries, 1);
            let i = appended.iter().position(|id| *id == entry.id).unwrap();
            assert_eq!(entry.payload, format!("m{i}").into_bytes());
            seen.push(entry.id);
        }
    }
    assert_eq!(seen, appended);
    assert_eq!(by_consumer, [6, 4]);
    // Nothing new: both get nothing, and everything is pending.
    assert!(
        bus.read_group("cmd", "workers", "c1", 10, NO_WAIT)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(bus.pending_count("cmd", "workers").await.unwrap(), 10);

    // Later appends are delivered after the earlier ones.
    let more = append_n(bus, "cmd", 2).await;
    assert!(id_parts(&more[0]) > id_parts(appended.last().unwrap()));
    let got = bus
        .read_group("cmd", "workers", "c2", 10, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(ids(&got), more);
}

async fn concurrent_consumers_share_without_duplicates(h: Arc<Harness>) {
    h.bus.ensure_group("jobs", "g").await.unwrap();
    let appended = append_n(&*h.bus, "jobs", 40).await;
    let mut tasks = Vec::new();
    for consumer in ["a", "b", "c"] {
        let bus = h.bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = bus
                    .read_group("jobs", "g", consumer, 2, NO_WAIT)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(ids(&got));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 40, "an entry was delivered twice or lost");
    assert_eq!(unique, appended.into_iter().collect::<HashSet<_>>());
}

async fn each_group_gets_every_entry(h: Arc<Harness>) {
    let bus = &*h.bus;
    bus.ensure_group("events", "api").await.unwrap();
    bus.ensure_group("events", "gateway").await.unwrap();
    let appended = append_n(bus, "events", 5).await;
    let api = bus
        .read_group("events", "api", "x", 100, NO_WAIT)
        .await
        .unwrap();
    let gateway = bus
        .read_group("events", "gateway", "x", 100, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(ids(&api), appended);
    assert_eq!(ids(&gateway), appended);
    // Acknowledging in one group leaves the other's pending entries alone.
    assert_eq!(bus.ack("events", "api", &appended).await.unwrap(), 5);
    assert_eq!(bus.pending_count("events", "api").await.unwrap(), 0);
    assert_eq!(bus.pending_count("events", "gateway").await.unwrap(), 5);

    // A group created later still starts from the beginning.
    bus.ensure_group("events", "late").await.unwrap();
    let late = bus
        .read_group("events", "late", "x", 100, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(ids(&late), appended);
}

async fn ack_reduces_pending(h: Arc<Harness>) {
    let bus = &*h.bus;
    bus.ensure_group("s", "g").await.unwrap();
    append_n(bus, "s", 3).await;
    let got = ids(&bus.read_group("s", "g", "c", 10, NO_WAIT).await.unwrap());
    assert_eq!(bus.pending_count("s", "g").await.unwrap(), 3);

    assert_eq!(bus.ack("s", "g", &got[..2]).await.unwrap(), 2);
    assert_eq!(bus.pending_count("s", "g").await.unwrap(), 1);
    // Acknowledging again, or ids never delivered, counts nothing.
    assert_eq!(bus.ack("s", "g", &got[..2]).await.unwrap(), 0);
    assert_eq!(bus.ack("s", "g", &["1-0".to_string()]).await.unwrap(), 0);
    assert_eq!(bus.ack("s", "g", &[]).await.unwrap(), 0);
    // An unknown group has nothing pending to acknowledge.
    assert_eq!(bus.ack("s", "nobody", &got).await.unwrap(), 0);
    // A malformed id is a caller bug.
    let err = bus
        .ack("s", "g", &["not-an-id".to_string()])
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Invalid(_)), "{err:?}");

    assert_eq!(bus.ack("s", "g", &got[2..]).await.unwrap(), 1);
    assert_eq!(bus.pending_count("s", "g").await.unwrap(), 0);
    // Acknowledged entries stay in the stream (until trimmed).
    assert_eq!(bus.stream_len("s").await.unwrap(), 3);
}

async fn unacked_entries_are_reclaimed_after_min_idle(h: Arc<Harness>) {
    let bus = &*h.bus;
    let min_idle = Duration::from_millis(50);
    let past_idle = Duration::from_millis(100);
    bus.ensure_group("s", "g").await.unwrap();
    let appended = append_n(bus, "s", 3).await;
    let first = bus.read_group("s", "g", "dead", 2, NO_WAIT).await.unwrap();
    assert_eq!(ids(&first), appended[..2]);

    // Not idle long enough yet.
    assert!(
        bus.claim_stale("s", "g", "alive", min_idle, 10)
            .await
            .unwrap()
            .is_empty()
    );

    h.pass(past_idle).await;
    let claimed = bus
        .claim_stale("s", "g", "alive", min_idle, 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), appended[..2]);
    assert!(claimed.iter().all(|e| e.deliveries == 2), "{claimed:?}");
    assert_eq!(claimed[0].payload, b"m0");
    // Claiming moves entries, it does not add any.
    assert_eq!(bus.pending_count("s", "g").await.unwrap(), 2);
    // The claim restarted their idle time.
    assert!(
        bus.claim_stale("s", "g", "other", min_idle, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // `count` limits a claim; oldest first.
    h.pass(past_idle).await;
    let one = bus
        .claim_stale("s", "g", "third", min_idle, 1)
        .await
        .unwrap();
    assert_eq!(ids(&one), appended[..1]);
    assert_eq!(one[0].deliveries, 3);

    // Acknowledged entries are no longer claimable; undelivered ones never were.
    bus.ack("s", "g", &appended[..2]).await.unwrap();
    h.pass(past_idle).await;
    assert!(
        bus.claim_stale("s", "g", "alive", min_idle, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let rest = bus
        .read_group("s", "g", "alive", 10, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(ids(&rest), appended[2..]);
    assert_eq!(rest[0].deliveries, 1);
}

async fn blocking_read_wakes_on_append(h: Arc<Harness>) {
    h.bus.ensure_group("wake", "g").await.unwrap();
    let bus = h.bus.clone();
    let appender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        bus.append("wake", b"late", 100).await.unwrap()
    });
    let started = Instant::now();
    let got = h
        .bus
        .read_group("wake", "g", "c", 10, Duration::from_secs(5))
        .await
        .unwrap();
    let waited = started.elapsed();
    let id = appender.await.unwrap();
    assert_eq!(ids(&got), [id]);
    assert_eq!(got[0].payload, b"late");
    assert!(
        waited < Duration::from_secs(1),
        "woke only after {waited:?}"
    );
}

async fn blocking_read_times_out_empty(h: Arc<Harness>) {
    h.bus.ensure_group("quiet", "g").await.unwrap();
    let block = Duration::from_millis(150);
    let started = Instant::now();
    let got = h
        .bus
        .read_group("quiet", "g", "c", 10, block)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(got.is_empty());
    // Redis measures BLOCK itself and may return a hair early.
    assert!(
        waited >= Duration::from_millis(120),
        "returned after {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "returned after {waited:?}");
}

async fn blocking_read_does_not_stall_other_operations(h: Arc<Harness>) {
    h.bus.ensure_group("idle", "g").await.unwrap();
    let bus = h.bus.clone();
    let blocked = tokio::spawn(async move {
        bus.read_group("idle", "g", "c", 10, Duration::from_secs(2))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    for i in 0..20 {
        h.bus.ping().await.unwrap();
        h.bus
            .put_ttl("k", b"v", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(h.bus.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        h.bus
            .append("elsewhere", format!("{i}").as_bytes(), 100)
            .await
            .unwrap();
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "other operations waited {took:?}"
    );
    // Meanwhile the blocked read is still waiting; an append ends it.
    assert!(!blocked.is_finished());
    h.bus.append("idle", b"x", 100).await.unwrap();
    assert_eq!(blocked.await.unwrap().len(), 1);
}

async fn keys_expire_after_ttl(h: Arc<Harness>) {
    let bus = &*h.bus;
    let ttl = Duration::from_millis(50);
    assert_eq!(bus.get("presence:dev1").await.unwrap(), None);
    bus.put_ttl("presence:dev1", b"gw-a", ttl).await.unwrap();
    assert_eq!(
        bus.get("presence:dev1").await.unwrap(),
        Some(b"gw-a".to_vec())
    );
    // Putting again replaces the value and restarts the TTL.
    bus.put_ttl("presence:dev1", b"gw-b", ttl).await.unwrap();
    assert_eq!(
        bus.get("presence:dev1").await.unwrap(),
        Some(b"gw-b".to_vec())
    );
    bus.put_ttl("presence:dev2", b"gw-a", Duration::from_secs(60))
        .await
        .unwrap();

    h.pass(Duration::from_millis(120)).await;
    assert_eq!(bus.get("presence:dev1").await.unwrap(), None);
    assert!(!bus.delete_if("presence:dev1", b"gw-b").await.unwrap());
    assert_eq!(
        bus.get("presence:dev2").await.unwrap(),
        Some(b"gw-a".to_vec())
    );
    // An expired key can be set again.
    bus.put_ttl("presence:dev1", b"gw-c", ttl).await.unwrap();
    assert_eq!(
        bus.get("presence:dev1").await.unwrap(),
        Some(b"gw-c".to_vec())
    );
}

async fn delete_if_only_deletes_a_matching_value(h: Arc<Harness>) {
    let bus = &*h.bus;
    let ttl = Duration::from_secs(60);
    bus.put_ttl("presence:dev", b"session-2", ttl)
        .await
        .unwrap();
    // The old session must not remove its successor's presence.
    assert!(!bus.delete_if("presence:dev", b"session-1").await.unwrap());
    assert!(!bus.delete_if("presence:dev", b"session-").await.unwrap());
    assert_eq!(
        bus.get("presence:dev").await.unwrap(),
        Some(b"session-2".to_vec())
    );
    assert!(bus.delete_if("presence:dev", b"session-2").await.unwrap());
    assert_eq!(bus.get("presence:dev").await.unwrap(), None);
    assert!(!bus.delete_if("presence:dev", b"session-2").await.unwrap());
    assert!(!bus.delete_if("never-set", b"x").await.unwrap());
    // Binary values compare byte for byte.
    bus.put_ttl("bin", &[0, 255, 0], ttl).await.unwrap();
    assert!(!bus.delete_if("bin", &[0, 255]).await.unwrap());
    assert!(bus.delete_if("bin", &[0, 255, 0]).await.unwrap());
}

async fn incr_window_counts_and_resets(h: Arc<Harness>) {
    let bus = &*h.bus;
    let window = Duration::from_millis(100);
    for expected in 1..=3 {
        assert_eq!(bus.incr_window("rate:ip1", window).await.unwrap(), expected);
    }
    assert_eq!(bus.incr_window("rate:ip2", window).await.unwrap(), 1);
    // Counters and keys do not collide.
    assert_eq!(bus.get("rate:ip1").await.unwrap(), None);

    h.pass(Duration::from_millis(40)).await;
    assert_eq!(bus.incr_window("rate:ip1", window).await.unwrap(), 4);
    // The window runs from the first increment, not the last.
    h.pass(Duration::from_millis(110)).await;
    assert_eq!(bus.incr_window("rate:ip1", window).await.unwrap(), 1);
    assert_eq!(bus.incr_window("rate:ip1", window).await.unwrap(), 2);
}

async fn stream_len_and_trim(h: Arc<Harness>) {
    let bus = &*h.bus;
    assert_eq!(bus.stream_len("nothing").await.unwrap(), 0);
    append_n(bus, "t", 5).await;
    assert_eq!(bus.stream_len("t").await.unwrap(), 5);

    let max_len = 10u64;
    let mut first = None;
    let mut last = None;
    for i in 0..300 {
        let id = bus
            .append("capped", format!("{i}").as_bytes(), max_len)
            .await
            .unwrap();
        first.get_or_insert(id.clone());
        last = Some(id);
    }
    let len = bus.stream_len("capped").await.unwrap();
    assert!(len >= max_len, "trimmed to {len}");
    assert!(len <= max_len + TRIM_SLACK, "not trimmed: {len}");
    if matches!(h.backend(), Backend::Embedded | Backend::EmbeddedOwnThread) {
        assert_eq!(len, max_len, "the embedded bus trims exactly");
    }
    // The oldest entries went; the newest are all there, in order.
    bus.ensure_group("capped", "g").await.unwrap();
    let kept = bus
        .read_group("capped", "g", "c", 1000, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(kept.len() as u64, len);
    assert_ne!(kept.first().map(|e| e.id.clone()), first);
    assert_eq!(kept.last().map(|e| e.id.clone()), last);
    assert_eq!(kept.last().unwrap().payload, b"299");
}

async fn missing_group_is_an_invalid_argument(h: Arc<Harness>) {
    let bus = &*h.bus;
    for stream in ["absent", "present"] {
        if stream == "present" {
            bus.append(stream, b"x", 10).await.unwrap();
        }
        let err = bus
            .read_group(stream, "g", "c", 1, NO_WAIT)
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::Invalid(_)), "{err:?}");
        let err = bus
            .read_group(stream, "g", "c", 1, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::Invalid(_)), "{err:?}");
        let err = bus.pending_count(stream, "g").await.unwrap_err();
        assert!(matches!(err, BusError::Invalid(_)), "{err:?}");
        let err = bus
            .claim_stale(stream, "g", "c", Duration::ZERO, 1)
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::Invalid(_)), "{err:?}");
    }
    // ensure_group on a stream that does not exist yet creates it, empty.
    bus.ensure_group("fresh", "g").await.unwrap();
    assert_eq!(bus.stream_len("fresh").await.unwrap(), 0);
    assert_eq!(bus.pending_count("fresh", "g").await.unwrap(), 0);
}

async fn arguments_are_checked(h: Arc<Harness>) {
    let bus = &*h.bus;
    let invalid = |r: Result<(), BusError>| {
        assert!(matches!(r, Err(BusError::Invalid(_))), "{r:?}");
    };
    invalid(bus.append("", b"x", 10).await.map(drop));
    invalid(bus.append("s", b"x", 0).await.map(drop));
    invalid(bus.ensure_group("s", "").await);
    bus.ensure_group("s", "g").await.unwrap();
    invalid(bus.read_group("s", "g", "", 1, NO_WAIT).await.map(drop));
    invalid(bus.read_group("s", "g", "c", 0, NO_WAIT).await.map(drop));
    invalid(bus.claim_stale("s", "g", "c", NO_WAIT, 0).await.map(drop));
    invalid(bus.put_ttl("k", b"v", Duration::ZERO).await);
    invalid(bus.put_ttl("", b"v", Duration::from_secs(1)).await);
    invalid(bus.get("").await.map(drop));
    invalid(bus.incr_window("k", Duration::ZERO).await.map(drop));
    // A sub-millisecond TTL is one millisecond, not "no TTL".
    bus.put_ttl("short", b"v", Duration::from_micros(10))
        .await
        .unwrap();
    h.pass(Duration::from_millis(20)).await;
    assert_eq!(bus.get("short").await.unwrap(), None);
}

async fn namespaces_are_isolated(h: Arc<Harness>) {
    let other = h.other_namespace().await;
    let ttl = Duration::from_secs(60);
    h.bus.put_ttl("k", b"mine", ttl).await.unwrap();
    assert_eq!(other.get("k").await.unwrap(), None);
    assert!(!other.delete_if("k", b"mine").await.unwrap());
    other.put_ttl("k", b"theirs", ttl).await.unwrap();
    assert_eq!(h.bus.get("k").await.unwrap(), Some(b"mine".to_vec()));

    h.bus.append("s", b"x", 10).await.unwrap();
    assert_eq!(other.stream_len("s").await.unwrap(), 0);
    assert_eq!(h.bus.incr_window("n", ttl).await.unwrap(), 1);
    assert_eq!(other.incr_window("n", ttl).await.unwrap(), 1);
}

async fn backlog_counts_what_a_group_has_not_been_delivered(h: Arc<Harness>) {
    assert!(matches!(
        h.bus.backlog("lag", "g").await,
        Err(BusError::Invalid(_))
    ));
    append_n(&*h.bus, "lag", 5).await;
    h.bus.ensure_group("lag", "g").await.unwrap();
    assert_eq!(h.bus.backlog("lag", "g").await.unwrap(), 5);
    let got = h.bus.read_group("lag", "g", "c", 2, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 2);
    // Delivered counts as read, acknowledged or not.
    assert_eq!(h.bus.backlog("lag", "g").await.unwrap(), 3);
    append_n(&*h.bus, "lag", 1).await;
    assert_eq!(h.bus.backlog("lag", "g").await.unwrap(), 4);
    h.bus
        .read_group("lag", "g", "c", 10, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(h.bus.backlog("lag", "g").await.unwrap(), 0);
    assert!(matches!(
        h.bus.backlog("lag", "other").await,
        Err(BusError::Invalid(_))
    ));
}

async fn fan_out_readers_each_see_every_entry_from_their_position(h: Arc<Harness>) {
    assert_eq!(h.bus.last_id("fan").await.unwrap(), "0-0");
    let before = append_n(&*h.bus, "fan", 3).await;
    let start = h.bus.last_id("fan").await.unwrap();
    assert_eq!(start, before[2]);
    let after = append_n(&*h.bus, "fan", 4).await;

    // Two readers from the start and one from `last_id`: no group, nothing pending, and
    // each sees every entry from its own position, in order, in as many reads as it takes.
    for from in ["0-0", "0-0", start.as_str()] {
        let mut position = from.to_owned();
        let mut seen = Vec::new();
        loop {
            let got = h
                .bus
                .read_after("fan", &position, 2, NO_WAIT)
                .await
                .unwrap();
            if got.is_empty() {
                break;
            }
            assert!(got.len() <= 2);
            assert!(got.iter().all(|e| e.deliveries == 1));
            position = got.last().unwrap().id.clone();
            seen.extend(ids(&got));
        }
        let expected: Vec<String> = if from == "0-0" {
            before.iter().chain(&after).cloned().collect()
        } else {
            after.clone()
        };
        assert_eq!(seen, expected, "reading after {from}");
    }

    // A blocked reader wakes on the next append and gets just that entry.
    let bus = h.bus.clone();
    let appender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        bus.append("fan", b"late", 100).await.unwrap()
    });
    let started = Instant::now();
    let got = h
        .bus
        .read_after("fan", &after[3], 10, Duration::from_secs(5))
        .await
        .unwrap();
    let id = appender.await.unwrap();
    assert_eq!(ids(&got), [id]);
    assert_eq!(got[0].payload, b"late");
    assert!(started.elapsed() < Duration::from_secs(1));

    // Nothing new: an empty answer after the block; a malformed id is refused.
    let quiet = h
        .bus
        .read_after("fan", &got[0].id, 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(quiet.is_empty());
    assert!(matches!(
        h.bus.read_after("fan", "latest", 10, NO_WAIT).await,
        Err(BusError::Invalid(_))
    ));
    assert!(matches!(
        h.bus.read_after("fan", "0-0", 0, NO_WAIT).await,
        Err(BusError::Invalid(_))
    ));
}
