//! Fuzzes the envelope decoder: arbitrary bytes through `Verifier::verify`, and, so the
//! fuzzer also reaches the checks after the signature, arbitrary bytes as the body of a
//! correctly signed envelope. Nothing may panic, and nothing unsigned may verify.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use tether_proto::envelope::{EnvelopeSigner, Stamp};
use tether_proto::{ManualClock, MessageId, MessageType, StaticKeys, TraceId, UnixMillis, Verifier};

fuzz_target!(|data: &[u8]| {
    let signer = EnvelopeSigner::new(SigningKey::from_bytes(&[1; 32]));
    let mut keys = StaticKeys::new();
    keys.insert(signer.kid().clone(), signer.verifying_key());
    let clock = ManualClock::new(UnixMillis(1_764_115_200_000));
    let verifier = Verifier::new(&keys, &clock);

    // 1. Raw bytes: must never verify (the fuzzer cannot forge Ed25519).
    assert!(verifier.verify(data).is_err());

    // 2. Bytes as a signed body of a type chosen by the first byte.
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
    let types = MessageType::ALL;
    let t = types[usize::from(pick) % types.len()];
    let stamp = Stamp {
        iat: UnixMillis(1_764_115_200_000),
        ttl: 60,
        seq: 1,
        message_id: MessageId::from_random_bytes([pick; 16]),
        trace_id: TraceId::from_random_bytes([7; 16]),
    };
    if let Ok(frame) = signer.seal_value(t, stamp, body) {
        let _ = verifier.verify(&frame);
    }
});
