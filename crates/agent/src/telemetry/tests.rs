#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tether_proto::{EnvelopeSigner, KeyId, StaticKeys, SystemClock, UnixMillis};

use super::*;
use crate::sequence::SeqCounter;
use crate::state::StateDir;
use crate::wire::{Outbox, verify};

fn raw() -> RawSample {
    RawSample {
        cpu_pct: 12.5,
        mem_used_bytes: 6 << 30,
        mem_total_bytes: 16 << 30,
        disks: vec![RawDisk {
            mount: "/".into(),
            file_system: "ext4".into(),
            total_bytes: 100,
            available_bytes: 40,
        }],
        rx_total_bytes: 1000,
        tx_total_bytes: 2000,
    }
}

/// Seals `t` and verifies it the way the gateway does (which runs `Validate` and the
/// frame size limit).
fn seal_and_verify(t: &Telemetry) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let key = SigningKey::from_bytes(&[5; 32]);
    let mut keys = StaticKeys::new();
    keys.insert(
        KeyId::for_ed25519(key.verifying_key().as_bytes()),
        key.verifying_key(),
    );
    let mut out = Outbox::new(
        EnvelopeSigner::new(key),
        Arc::new(SystemClock),
        SeqCounter::load(&state).unwrap(),
    );
    let frame = out.seal(t).unwrap();
    assert!(frame.len() <= MessageType::Telemetry.max_frame_bytes());
    let v = verify(frame.as_bytes(), &keys, &SystemClock).unwrap();
    assert_eq!(v.into_body::<Telemetry>().unwrap(), *t);
}

#[test]
fn a_real_sample_passes_validate_and_verifies() {
    let mut s = Sampler::new();
    let start = Instant::now();
    let first = s.sample(SystemClock.now(), start).unwrap();
    first.validate().unwrap();
    assert_eq!(first.net.rx_bps, 0.0, "no rate before a second sample");
    std::thread::sleep(Duration::from_millis(250));
    let second = s
        .sample(SystemClock.now(), start + Duration::from_millis(250))
        .unwrap();
    second.validate().unwrap();
    assert!((0.0..=100.0).contains(&second.cpu_pct));
    assert!(second.mem_total_bytes > 0, "memory is read on Linux");
    assert!(second.disks.len() <= MAX_DISKS);
    seal_and_verify(&second);
}

#[test]
fn raw_numbers_are_made_valid() {
    let t = build(raw(), UnixMillis(1), 0.0, 0.0).unwrap();
    assert_eq!(t.cpu_pct, 12.5);
    assert_eq!(t.disks[0].used_bytes, 60);

    let mut r = raw();
    r.cpu_pct = f32::NAN;
    assert_eq!(build(r, UnixMillis(1), 0.0, 0.0).unwrap().cpu_pct, 0.0);
    let mut r = raw();
    r.cpu_pct = 130.0;
    assert_eq!(build(r, UnixMillis(1), 0.0, 0.0).unwrap().cpu_pct, 100.0);
    let mut r = raw();
    r.cpu_pct = -1.0;
    assert_eq!(build(r, UnixMillis(1), 0.0, 0.0).unwrap().cpu_pct, 0.0);

    // Used above total, counters past JSON's safe integers, rates out of range.
    let mut r = raw();
    r.mem_used_bytes = u64::MAX;
    r.mem_total_bytes = 10;
    r.rx_total_bytes = u64::MAX;
    r.disks[0].available_bytes = 1000;
    r.disks[0].total_bytes = u64::MAX;
    let t = build(r, UnixMillis(1), f64::INFINITY, f64::NAN).unwrap();
    assert_eq!(t.mem_used_bytes, 10);
    assert_eq!(t.net.rx_total_bytes, MAX_SAFE_INTEGER);
    assert_eq!(t.disks[0].total_bytes, MAX_SAFE_INTEGER);
    assert_eq!(t.net.rx_bps, MAX_RATE_BPS);
    assert_eq!(t.net.tx_bps, 0.0);
    t.validate().unwrap();
    seal_and_verify(&t);
}

#[test]
fn mounts_are_cleaned_deduplicated_and_bounded() {
    let mut r = raw();
    r.disks = vec![
        RawDisk {
            mount: String::new(),
            file_system: "ext4".into(),
            total_bytes: 1,
            available_bytes: 1,
        },
        RawDisk {
            mount: "/da\u{7}ta\n".into(),
            file_system: "ext4".into(),
            total_bytes: 10,
            available_bytes: 20,
        },
        RawDisk {
            mount: "/data".into(),
            file_system: "ext4".into(),
            total_bytes: 99,
            available_bytes: 0,
        },
    ];
    #[cfg(unix)]
    r.disks.push(RawDisk {
        mount: "/snap/core/1".into(),
        file_system: "squashfs".into(),
        total_bytes: 5,
        available_bytes: 0,
    });
    let t = build(r, UnixMillis(1), 0.0, 0.0).unwrap();
    assert_eq!(t.disks.len(), 1, "{:?}", t.disks);
    assert_eq!(t.disks[0].mount, "/data");
    assert_eq!(
        t.disks[0].used_bytes, 0,
        "available above total means nothing used"
    );

    // 100 disks with the longest names: at most 64, and the frame still fits.
    let mut r = raw();
    r.disks = (0..100)
        .map(|i| RawDisk {
            mount: format!("/{i:03}{}", "m".repeat(400)),
            file_system: "ext4".into(),
            total_bytes: MAX_SAFE_INTEGER,
            available_bytes: 1,
        })
        .collect();
    let t = build(r, UnixMillis(1), 0.0, 0.0).unwrap();
    assert!(t.disks.len() <= MAX_DISKS);
    assert!(!t.disks.is_empty());
    assert!(
        t.disks
            .iter()
            .all(|d| d.mount.chars().count() == MAX_MOUNT_CHARS)
    );
    seal_and_verify(&t);

    let mut r = raw();
    r.disks = (0..100)
        .map(|i| RawDisk {
            mount: format!("/d{i}"),
            file_system: "ext4".into(),
            total_bytes: 1,
            available_bytes: 0,
        })
        .collect();
    assert_eq!(
        build(r, UnixMillis(1), 0.0, 0.0).unwrap().disks.len(),
        MAX_DISKS
    );
}

#[test]
fn rates_come_from_counters_between_samples() {
    let mut m = RateMeter::default();
    let t0 = Instant::now();
    assert_eq!(m.update(t0, 1000, 500), (0.0, 0.0));
    assert_eq!(
        m.update(t0 + Duration::from_secs(2), 3000, 1500),
        (1000.0, 500.0)
    );
    // A counter that went down (an interface went away) gives 0, not a huge rate.
    assert_eq!(
        m.update(t0 + Duration::from_secs(3), 100, 1600),
        (0.0, 100.0)
    );
    // No time passed: no rate.
    assert_eq!(m.update(t0 + Duration::from_secs(3), 900, 1700), (0.0, 0.0));
    assert_eq!(
        m.update(t0 + Duration::from_secs(4), u64::MAX, 1700).0,
        MAX_RATE_BPS
    );
}
