//! What the command-floor baselines share ([`crate::nats`], [`crate::relay`]): a
//! command-sized request signed by the sender and an answer signed by the agent, both
//! as `body ‖ Ed25519 signature`, and the round-trip report.

use std::time::Duration;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::Serialize;

use crate::LoadError;
use crate::commands::percentile;

/// The request body's size before its signature: about a signed `command_delivery`.
pub const BODY_LEN: usize = 600;
/// The length of the id that opens each request and is all an answer carries.
pub const ID_LEN: usize = 32;
/// The largest message either side accepts.
pub const MAX_PAYLOAD: usize = 64 * 1024;

fn refused(what: impl std::fmt::Display) -> LoadError {
    LoadError::Protocol(what.to_string())
}

/// `body ‖ signature(body)`.
pub fn signed(key: &SigningKey, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len().saturating_add(64));
    out.extend_from_slice(body);
    out.extend_from_slice(&key.sign(body).to_bytes());
    out
}

/// The body of a `body ‖ signature` message signed by `key`.
pub fn verified<'a>(key: &VerifyingKey, message: &'a [u8]) -> Result<&'a [u8], LoadError> {
    let split = message
        .len()
        .checked_sub(64)
        .ok_or_else(|| refused("a message shorter than its signature"))?;
    let (body, sig) = message.split_at(split);
    let sig = Signature::from_slice(sig).map_err(|e| refused(format!("signature: {e}")))?;
    key.verify(body, &sig)
        .map_err(|e| refused(format!("a signature did not verify: {e}")))?;
    Ok(body)
}

/// The id a request opens with: the requester's number and its request's.
pub fn request_id(worker: usize, i: usize) -> [u8; ID_LEN] {
    let text = format!("{worker:08}-{i:023}");
    let mut id = [b'0'; ID_LEN];
    for (d, s) in id.iter_mut().zip(text.bytes()) {
        *d = s;
    }
    id
}

/// A signed request: `id`, padded to [`BODY_LEN`], signed by the sender.
pub fn request(sender: &SigningKey, id: &[u8; ID_LEN]) -> Vec<u8> {
    let mut body = vec![b'x'; BODY_LEN];
    if let Some(head) = body.get_mut(..ID_LEN) {
        head.copy_from_slice(id);
    }
    signed(sender, &body)
}

/// The agent's side: verifies a request with the sender's key and answers with its id,
/// signed by the agent.
pub fn answer(
    sender: &VerifyingKey,
    agent: &SigningKey,
    request: &[u8],
) -> Result<Vec<u8>, LoadError> {
    let body = verified(sender, request)?;
    let id = body
        .get(..ID_LEN)
        .ok_or_else(|| refused("a request shorter than its id"))?;
    Ok(signed(agent, id))
}

/// The sender's side: the answer is the agent's and names `id`.
pub fn check_answer(
    agent: &VerifyingKey,
    id: &[u8; ID_LEN],
    answer: &[u8],
) -> Result<(), LoadError> {
    if verified(agent, answer)? == id {
        Ok(())
    } else {
        Err(refused("an answer to another request"))
    }
}

/// The round trips, as the command senders report theirs.
#[derive(Debug, Clone, Serialize)]
pub struct FloorReport {
    /// Requests answered.
    pub completed: usize,
    /// Requesters.
    pub concurrency: usize,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// Median round trip.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// The slowest.
    pub max_ms: Option<f64>,
    /// The mean.
    pub mean_ms: Option<f64>,
}

impl FloorReport {
    /// The report of round trips in ms (any order).
    pub fn from_samples(mut samples: Vec<f64>, concurrency: usize, elapsed: Duration) -> Self {
        samples.sort_by(f64::total_cmp);
        let mean =
            (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64);
        FloorReport {
            completed: samples.len(),
            concurrency,
            elapsed_s: elapsed.as_secs_f64(),
            p50_ms: percentile(&samples, 50.0),
            p90_ms: percentile(&samples, 90.0),
            p99_ms: percentile(&samples, 99.0),
            max_ms: samples.last().copied(),
            mean_ms: mean,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand_core::OsRng;

    use super::*;

    #[test]
    fn a_signed_message_verifies_and_a_changed_one_does_not() {
        let key = SigningKey::generate(&mut OsRng);
        let mut m = signed(&key, b"lock_screen");
        assert_eq!(verified(&key.verifying_key(), &m).unwrap(), b"lock_screen");
        if let Some(b) = m.first_mut() {
            *b ^= 1;
        }
        assert!(verified(&key.verifying_key(), &m).is_err());
        assert!(verified(&key.verifying_key(), b"short").is_err());
    }

    #[test]
    fn an_answer_is_checked_against_its_request() {
        let (sender, agent) = (
            SigningKey::generate(&mut OsRng),
            SigningKey::generate(&mut OsRng),
        );
        let id = request_id(3, 17);
        let req = request(&sender, &id);
        assert_eq!(req.len(), BODY_LEN + 64);
        let ans = answer(&sender.verifying_key(), &agent, &req).unwrap();
        check_answer(&agent.verifying_key(), &id, &ans).unwrap();
        assert!(check_answer(&agent.verifying_key(), &request_id(3, 18), &ans).is_err());
        // A request the sender did not sign is refused by the agent.
        assert!(answer(&agent.verifying_key(), &agent, &req).is_err());
    }
}
