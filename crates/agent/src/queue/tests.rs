#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use tether_proto::messages::session::{DiskUsage, NetUsage, Telemetry};
use tether_proto::{EnvelopeSigner, KeyId, StaticKeys, SystemClock};

use super::*;
use crate::sequence::SeqCounter;
use crate::wire::{Outbox, QUEUED_TTL_S, verify};

struct Fixture {
    _dir: tempfile::TempDir,
    state: StateDir,
    outbox: Outbox,
    keys: StaticKeys,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(&dir.path().join("state")).unwrap();
    let key = SigningKey::from_bytes(&[4; 32]);
    let mut keys = StaticKeys::new();
    keys.insert(
        KeyId::for_ed25519(key.verifying_key().as_bytes()),
        key.verifying_key(),
    );
    let outbox = Outbox::new(
        EnvelopeSigner::new(key),
        Arc::new(SystemClock),
        SeqCounter::load(&state).unwrap(),
    );
    Fixture {
        _dir: dir,
        state,
        outbox,
        keys,
    }
}

fn sample(mount: &str, at: u64) -> Telemetry {
    Telemetry {
        collected_at: UnixMillis(at),
        cpu_pct: 1.5,
        mem_used_bytes: 1,
        mem_total_bytes: 2,
        disks: vec![DiskUsage {
            mount: mount.into(),
            used_bytes: 1,
            total_bytes: 2,
        }],
        net: NetUsage {
            rx_bps: 0.0,
            tx_bps: 0.0,
            rx_total_bytes: 0,
            tx_total_bytes: 0,
        },
    }
}

async fn push_sample(f: &mut Fixture, q: &mut Queue, mount: &str, at: u64) -> (Sealed, u64) {
    let sealed = f.outbox.seal_queued(&sample(mount, at)).unwrap();
    let dropped = q.push(&sealed).await.unwrap();
    (sealed, dropped)
}

async fn drain(q: &mut Queue) -> Vec<QueuedFrame> {
    let mut out = Vec::new();
    while let Some(r) = q.oldest().await.unwrap() {
        q.remove(r.seq).await.unwrap();
        out.push(r);
    }
    out
}

#[tokio::test]
async fn frames_round_trip_in_order_and_survive_reopening() {
    let mut f = fixture();
    let mut q = Queue::open(&f.state, QueueLimits::default()).await.unwrap();
    assert!(q.oldest().await.unwrap().is_none());
    let mut sealed = Vec::new();
    for i in 0..5 {
        sealed.push(push_sample(&mut f, &mut q, "/", i).await.0);
    }
    assert_eq!(q.stats().await.unwrap().entries, 5);
    q.close().await;

    let mut q = Queue::open(&f.state, QueueLimits::default()).await.unwrap();
    let got = drain(&mut q).await;
    assert_eq!(got.len(), 5);
    for (g, s) in got.iter().zip(&sealed) {
        assert_eq!(
            g.frame, s.frame,
            "decrypts to the very frame that was signed"
        );
        assert_eq!(g.seq, s.seq);
        assert_eq!(g.expires_at, s.expires_at);
        let v = verify(g.frame.as_bytes(), &f.keys, &SystemClock).unwrap();
        assert_eq!(v.header.seq, g.seq);
        assert_eq!(v.header.ttl, QUEUED_TTL_S);
    }
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
    let collected: Vec<u64> = got
        .iter()
        .map(|g| {
            verify(g.frame.as_bytes(), &f.keys, &SystemClock)
                .unwrap()
                .into_body::<Telemetry>()
                .unwrap()
                .collected_at
                .0
        })
        .collect();
    assert_eq!(collected, [0, 1, 2, 3, 4]);
    assert_eq!(q.stats().await.unwrap(), QueueStats::default());
    q.close().await;
}

#[tokio::test]
async fn the_oldest_are_dropped_at_the_bound() {
    let mut f = fixture();
    let limits = QueueLimits {
        max_entries: 3,
        max_bytes: DEFAULT_MAX_BYTES,
    };
    let mut q = Queue::open(&f.state, limits).await.unwrap();
    let mut dropped = 0;
    for i in 0..5 {
        dropped += push_sample(&mut f, &mut q, "/", i).await.1;
    }
    assert_eq!(dropped, 2);
    let got = drain(&mut q).await;
    let collected: Vec<u64> = got
        .iter()
        .map(|g| {
            verify(g.frame.as_bytes(), &f.keys, &SystemClock)
                .unwrap()
                .into_body::<Telemetry>()
                .unwrap()
                .collected_at
                .0
        })
        .collect();
    assert_eq!(collected, [2, 3, 4], "the newest three are kept");
    q.close().await;

    // The byte bound drops the oldest too.
    let limits = QueueLimits {
        max_entries: DEFAULT_MAX_ENTRIES,
        max_bytes: MIN_MAX_BYTES,
    };
    let mut q = Queue::open(&f.state, limits).await.unwrap();
    let big = "b".repeat(200);
    for i in 0..200 {
        push_sample(&mut f, &mut q, &big, 100 + i).await;
    }
    let stats = q.stats().await.unwrap();
    assert!(stats.bytes <= MIN_MAX_BYTES, "{stats:?}");
    assert!(stats.entries < 200);
    assert!(stats.near_limit(&limits));
    let first = q.oldest().await.unwrap().unwrap();
    let v = verify(first.frame.as_bytes(), &f.keys, &SystemClock).unwrap();
    assert!(v.into_body::<Telemetry>().unwrap().collected_at.0 > 100);
    q.close().await;
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("queue.db"))
        .filter(|e| {
            std::fs::read(e.path())
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn the_queue_files_hold_no_plaintext() {
    let mut f = fixture();
    let mut q = Queue::open(&f.state, QueueLimits::default()).await.unwrap();
    for i in 0..3 {
        push_sample(&mut f, &mut q, "PLAINTEXT-CANARY", i).await;
    }
    let root = f.state.root().to_path_buf();
    // While open, the rows are in the write-ahead log.
    let wal = root.join("queue.db-wal");
    assert!(wal.exists());
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    assert_eq!(
        files_contain(&root, b"PLAINTEXT-CANARY"),
        Vec::<String>::new()
    );
    assert_eq!(files_contain(&root, b"collected_at"), Vec::<String>::new());
    q.close().await;
    // Closed, they are in the main file.
    assert!(std::fs::metadata(root.join("queue.db")).unwrap().len() > 0);
    assert_eq!(
        files_contain(&root, b"PLAINTEXT-CANARY"),
        Vec::<String>::new()
    );
    assert_eq!(files_contain(&root, b"collected_at"), Vec::<String>::new());
}

#[cfg(unix)]
#[tokio::test]
async fn the_key_and_database_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let q = Queue::open(&f.state, QueueLimits::default()).await.unwrap();
    for name in [files::QUEUE_KEY, files::QUEUE_DB] {
        let mode = std::fs::metadata(f.state.path(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    assert_eq!(
        std::fs::read(f.state.path(files::QUEUE_KEY)).unwrap().len(),
        32
    );
    q.close().await;
}

#[tokio::test]
async fn rows_that_were_moved_or_altered_do_not_decrypt() {
    let mut f = fixture();
    let mut q = Queue::open(&f.state, QueueLimits::default()).await.unwrap();
    let (a, _) = push_sample(&mut f, &mut q, "/a", 1).await;
    let (b, _) = push_sample(&mut f, &mut q, "/b", 2).await;
    // Re-date the first row: its associated data no longer matches.
    sqlx::query("UPDATE frames SET expires_at = expires_at + 1 WHERE seq = ?")
        .bind(i64::try_from(a.seq).unwrap())
        .execute(&mut q.conn)
        .await
        .unwrap();
    let got = q.oldest().await.unwrap().unwrap();
    assert_eq!(got.seq, b.seq, "the altered row is skipped and deleted");
    assert_eq!(q.stats().await.unwrap().entries, 1);
    q.close().await;

    // Without its key, the queue cannot be read: it starts over empty.
    std::fs::remove_file(f.state.path(files::QUEUE_KEY)).unwrap();
    let mut q = Queue::open(&f.state, QueueLimits::default()).await.unwrap();
    assert_eq!(q.stats().await.unwrap().entries, 0);
    push_sample(&mut f, &mut q, "/c", 3).await;
    q.close().await;
    // Nor with a damaged key.
    std::fs::write(f.state.path(files::QUEUE_KEY), b"short").unwrap();
    let mut q = Queue::open(&f.state, QueueLimits::default()).await.unwrap();
    assert_eq!(q.stats().await.unwrap().entries, 0);
    assert_eq!(
        f.state
            .read_secret(files::QUEUE_KEY)
            .unwrap()
            .unwrap()
            .len(),
        32
    );
    q.close().await;
}

#[tokio::test]
async fn an_unusable_queue_file_is_moved_aside() {
    let mut f = fixture();
    std::fs::write(f.state.path(files::QUEUE_DB), b"not a database, not at all").unwrap();
    assert!(Queue::open(&f.state, QueueLimits::default()).await.is_err());
    let mut q = Queue::open_or_reset(&f.state, QueueLimits::default())
        .await
        .unwrap();
    push_sample(&mut f, &mut q, "/", 1).await;
    assert_eq!(q.stats().await.unwrap().entries, 1);
    q.close().await;
    assert_eq!(
        std::fs::read(f.state.path("queue.db.broken")).unwrap(),
        b"not a database, not at all"
    );
}

#[tokio::test]
async fn auth_slots_sit_below_the_head_and_are_used_once() {
    let mut f = fixture();
    let mut q = Queue::open(&f.state, QueueLimits::default()).await.unwrap();
    assert_eq!(q.take_auth_slot().await.unwrap(), None, "nothing queued");
    let (a, _) = push_sample(&mut f, &mut q, "/", 1).await;
    let (b, _) = push_sample(&mut f, &mut q, "/", 2).await;
    let mut slots = Vec::new();
    while let Some(s) = q.take_auth_slot().await.unwrap() {
        slots.push(s);
    }
    let want: Vec<u64> = (a.seq - AUTH_SLOTS..a.seq).collect();
    assert_eq!(slots, want);
    q.close().await;
    // The record of used slots survives a restart.
    let mut q = Queue::open(&f.state, QueueLimits::default()).await.unwrap();
    assert_eq!(q.take_auth_slot().await.unwrap(), None);
    // Once the head is delivered, the next row's slots are free, and all above the
    // first row's.
    q.remove(a.seq).await.unwrap();
    let s = q.take_auth_slot().await.unwrap().unwrap();
    assert!(s > a.seq && s < b.seq, "{} < {s} < {}", a.seq, b.seq);
    q.close().await;
}

#[tokio::test]
async fn expiring_rows_are_pruned_and_status_reads_without_changing() {
    let mut f = fixture();
    assert_eq!(peek(&f.state).await.unwrap(), None);
    let mut q = Queue::open(&f.state, QueueLimits::default()).await.unwrap();
    let (a, _) = push_sample(&mut f, &mut q, "/", 1).await;
    push_sample(&mut f, &mut q, "/", 2).await;
    let seen = peek(&f.state).await.unwrap().unwrap();
    assert_eq!(seen.entries, 2);
    assert_eq!(q.remove_expiring(a.expires_at).await.unwrap(), 0);
    assert_eq!(
        q.remove_expiring(UnixMillis(a.expires_at.0 + 3_600_000))
            .await
            .unwrap(),
        2
    );
    q.close().await;
    assert_eq!(peek(&f.state).await.unwrap().unwrap().entries, 0);
}
