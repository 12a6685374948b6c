//! Fuzzes the envelope decoder: arbitrary bytes through `Verifier::verify`, and, so the
//! fuzzer also reaches the checks after the signature, arbitrary bytes as the body of a
//! correctly signed envelope. Nothing may panic, and anything that verifies must be exactly
//! the bytes the key holder produces for that content (Ed25519 is deterministic), so the
//! fuzzer cannot find a second spelling or a forgery.
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

    // 1. Raw bytes: if they verify, they are the signer's own frame for that content.
    if let Ok(v) = verifier.verify(data) {
        let h = v.header;
        let stamp = Stamp { iat: h.iat, ttl: h.ttl, seq: h.seq, message_id: h.message_id, trace_id: h.trace_id };
        let body = v.payload.to_value().expect("a verified payload serializes");
        let again = signer.seal_value(h.msg_type, stamp, body).expect("a verified frame re-seals");
        assert_eq!(again.as_slice(), data, "a verified frame differs from the signer's own");
    }

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
