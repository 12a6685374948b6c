//! How long sealing and checking a telemetry envelope take on this machine, one at a
//! time and in batches (docs/benchmarks.md):
//!
//!     cargo run --release -p tether-proto --example verify_speed
//!
//! Each figure is the median of 5 rounds of `ROUNDS` envelopes, in µs per envelope.

// A measuring program: a failure here is a failed measurement, not a crashed service.
#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::as_conversions
)]

use std::time::Instant;

use ed25519_dalek::SigningKey;
use tether_proto::clock::ManualClock;
use tether_proto::envelope::{EnvelopeSigner, Stamp, StaticKeys, Verifier, check_batch};
use tether_proto::{MessageId, MessageType, TraceId, UnixMillis, examples};

const ROUNDS: usize = 4_096;

fn stamp(i: usize, now: UnixMillis) -> Stamp {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Stamp {
        iat: now,
        ttl: 60,
        seq: i as u64 + 1,
        message_id: MessageId::from_random_bytes(id),
        trace_id: TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").expect("a trace id"),
    }
}

fn main() {
    let now = UnixMillis(1_764_115_200_000);
    let clock = ManualClock::new(now);
    let mut keys = StaticKeys::new();
    let devices: Vec<EnvelopeSigner> = (0..64u8)
        .map(|i| {
            let signer = EnvelopeSigner::new(SigningKey::from_bytes(&[i.wrapping_add(1); 32]));
            keys.insert(signer.kid().clone(), signer.verifying_key());
            signer
        })
        .collect();
    let body = examples::body(MessageType::Telemetry);
    let seal_all = || -> Vec<Vec<u8>> {
        (0..ROUNDS)
            .map(|i| {
                devices[i % devices.len()]
                    .seal_value(MessageType::Telemetry, stamp(i, now), body.clone())
                    .expect("sealed")
            })
            .collect()
    };
    let frames = seal_all();
    println!(
        "a telemetry envelope of {} bytes, {ROUNDS} per round",
        frames[0].len()
    );
    let seal = median(|| {
        let _ = seal_all();
    });
    println!("seal:                       {seal:6.1} µs");
    let verifier = Verifier::new(&keys, &clock);
    let one = median(|| {
        for f in &frames {
            verifier.verify(f).expect("verified");
        }
    });
    println!("verify, one at a time:      {one:6.1} µs");
    for size in [2, 4, 8, 16, 32, 64, 128] {
        let batched = median(|| {
            for chunk in frames.chunks(size) {
                let prepared: Vec<_> = chunk
                    .iter()
                    .map(|f| verifier.prepare(f).expect("prepared"))
                    .collect();
                for outcome in check_batch(prepared) {
                    outcome.expect("checked").finish(&clock).expect("verified");
                }
            }
        });
        println!("verify, in batches of {size:3}: {batched:6.1} µs");
    }
}

/// The median of 5 rounds of `f`, in µs per envelope.
fn median(mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e6 / ROUNDS as f64
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[2]
}
