//! Checking many envelopes' signatures at once.
//!
//! Ed25519 batch verification checks one random linear combination of all the
//! signatures' equations with a single multiscalar multiplication, which costs well under
//! the sum of the separate checks (docs/benchmarks.md has the figures of this machine).
//! [`check_batch`] uses ed25519-dalek's `verify_batch`, and falls back to checking each
//! signature on its own (strictly, as [`Prepared::check_signature`] does) whenever the
//! batch does not verify, so one bad signature costs its batch the separate checks and
//! fails only its own envelope.
//!
//! What a batch accepts, against the strict check of each:
//!
//! - Every batch of signatures that each pass the strict check passes: the combination
//!   of equations that hold holds.
//! - A signature made without the private key does not pass (except with negligible
//!   probability): the batch's coefficients are derived from all its inputs, so the
//!   other members cannot be chosen to cancel it out.
//! - Keys of small order, which the strict check refuses and for which anyone could
//!   make a signature, are never batched: a batch with one is checked one by one.
//! - The one difference: the strict check also refuses an `R` of small order or with a
//!   small-order component, and the batch's (cofactorless) equation lets such a
//!   component through for some choices of coefficients. The hash of the signature
//!   covers `R`'s encoding, so such a signature can only be made with the private key:
//!   it is the key holder's own signature of a message it chose, which is what the
//!   strict check would have been asked to believe anyway.

use ed25519_dalek::{Signature, VerifyingKey};

use super::{Checked, Prepared};
use crate::error::ProtoError;

/// Checks the signatures of `envelopes` (check 5 of the module docs), in one batch where
/// it can (see the module docs), and returns each one's outcome, in order.
pub fn check_batch(envelopes: Vec<Prepared>) -> Vec<Result<Checked, ProtoError>> {
    let batchable = envelopes.len() > 1 && envelopes.iter().all(|p| !p.key.is_weak());
    if batchable {
        let messages: Vec<&[u8]> = envelopes
            .iter()
            .map(|p| p.raw.signing_input.as_slice())
            .collect();
        let signatures: Vec<Signature> = envelopes.iter().map(|p| p.sig).collect();
        let keys: Vec<VerifyingKey> = envelopes.iter().map(|p| p.key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return envelopes.into_iter().map(|p| Ok(Checked(p))).collect();
        }
    }
    envelopes
        .into_iter()
        .map(Prepared::check_signature)
        .collect()
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{SigningKey, VerifyingKey};
    use serde_json::Value;

    use super::check_batch;
    use crate::canonical::canonicalize;
    use crate::clock::ManualClock;
    use crate::envelope::{EnvelopeSigner, Stamp, StaticKeys, Verifier};
    use crate::error::ErrorCode;
    use crate::ids::{KeyId, MessageId, TraceId};
    use crate::messages::MessageType;
    use crate::validate::b64url_encode;
    use crate::{UnixMillis, examples};

    const NOW: UnixMillis = UnixMillis(1_764_115_200_000);

    fn stamp(seq: u64) -> Stamp {
        Stamp {
            iat: NOW,
            ttl: 60,
            seq,
            message_id: MessageId::from_random_bytes([seq.to_le_bytes()[0]; 16]),
            trace_id: TraceId::from_random_bytes([7; 16]),
        }
    }

    /// Eight devices' keys and one sample sealed by each.
    fn fleet(keys: &mut StaticKeys) -> Vec<Vec<u8>> {
        (1..=8u8)
            .map(|i| {
                let signer = EnvelopeSigner::new(SigningKey::from_bytes(&[i; 32]));
                keys.insert(signer.kid().clone(), signer.verifying_key());
                signer
                    .seal_value(
                        MessageType::Telemetry,
                        stamp(u64::from(i)),
                        examples::body(MessageType::Telemetry),
                    )
                    .unwrap()
            })
            .collect()
    }

    /// `frame` with one character of its signature changed (still 64 bytes of base64url).
    fn tampered(frame: &[u8]) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(frame).unwrap();
        let mut sig = v["sig"].as_str().unwrap().to_owned();
        let other = if &sig[10..11] == "A" { "B" } else { "A" };
        sig.replace_range(10..11, other);
        v["sig"] = Value::String(sig);
        canonicalize(&v).unwrap().into_bytes()
    }

    fn outcomes(keys: &StaticKeys, frames: &[Vec<u8>]) -> Vec<Result<(), ErrorCode>> {
        let clock = ManualClock::new(NOW);
        let verifier = Verifier::new(keys, &clock);
        let prepared = frames
            .iter()
            .map(|f| verifier.prepare(f).unwrap())
            .collect();
        check_batch(prepared)
            .into_iter()
            .map(|c| {
                c.and_then(|c| c.finish(&clock))
                    .map(drop)
                    .map_err(|e| e.code())
            })
            .collect()
    }

    #[test]
    fn a_batch_of_good_signatures_verifies_as_each_does_alone() {
        let mut keys = StaticKeys::new();
        let frames = fleet(&mut keys);
        let clock = ManualClock::new(NOW);
        let verifier = Verifier::new(&keys, &clock);
        let prepared = frames
            .iter()
            .map(|f| verifier.prepare(f).unwrap())
            .collect();
        for (checked, frame) in check_batch(prepared).into_iter().zip(&frames) {
            let batched = checked.unwrap().finish(&clock).unwrap();
            assert_eq!(batched, verifier.verify(frame).unwrap());
        }
    }

    #[test]
    fn one_bad_signature_fails_only_its_own_envelope() {
        let mut keys = StaticKeys::new();
        let mut frames = fleet(&mut keys);
        frames[3] = tampered(&frames[3]);
        let got = outcomes(&keys, &frames);
        for (i, outcome) in got.iter().enumerate() {
            if i == 3 {
                assert_eq!(*outcome, Err(ErrorCode::SignatureInvalid));
            } else {
                assert_eq!(*outcome, Ok(()), "envelope {i}");
            }
        }
    }

    #[test]
    fn a_forgery_under_a_small_order_key_is_refused_in_a_batch_too() {
        // The identity point as a public key: (R = B, s = 1) satisfies the cofactorless
        // equation sB = R + H(R, A, M)·A for every message. `verify_strict` refuses such a
        // key; a batch must not let it through with the others.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        assert!(weak.is_weak());
        let kid = KeyId::for_ed25519(&identity);
        let mut keys = StaticKeys::new();
        let mut frames = fleet(&mut keys);
        keys.insert(kid.clone(), weak);
        let mut forged: Value = serde_json::from_slice(&frames[0]).unwrap();
        forged["header"]["kid"] = Value::String(kid.to_string());
        // R: the base point's encoding (y = 4/5); s: 1.
        let mut sig = [0x66u8; 64];
        sig[0] = 0x58;
        sig[32..].fill(0);
        sig[32] = 1;
        forged["sig"] = Value::String(b64url_encode(&sig));
        frames.push(canonicalize(&forged).unwrap().into_bytes());
        // The forgery does pass dalek's batch equation on its own: the guard is needed.
        let clock = ManualClock::new(NOW);
        let alone = Verifier::new(&keys, &clock)
            .prepare(frames.last().unwrap())
            .unwrap();
        assert!(
            ed25519_dalek::verify_batch(
                &[alone.raw.signing_input.as_slice()],
                &[alone.sig],
                &[alone.key]
            )
            .is_ok()
        );
        let got = outcomes(&keys, &frames);
        assert_eq!(got.last(), Some(&Err(ErrorCode::SignatureInvalid)));
        assert!(got[..8].iter().all(Result::is_ok), "{got:?}");
    }

    #[test]
    fn a_batch_of_one_is_the_strict_check() {
        let mut keys = StaticKeys::new();
        let frames = fleet(&mut keys);
        assert_eq!(outcomes(&keys, &frames[..1]), vec![Ok(())]);
        assert_eq!(
            outcomes(&keys, &[tampered(&frames[0])]),
            vec![Err(ErrorCode::SignatureInvalid)]
        );
        assert!(outcomes(&keys, &[]).is_empty());
    }
}
