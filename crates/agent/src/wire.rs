//! Envelopes on the agent's side of the wire: sealing what the agent sends, reading what
//! the gateway sends, and the gateway keys pinned at pairing.

use std::sync::Arc;

use serde_json::Value;
use tether_proto::messages::decode_body;
use tether_proto::messages::notify::ErrorFrame;
use tether_proto::validate::b64url_decode;
use tether_proto::{
    Clock, EnvelopeSigner, KeyId, Message, MessageId, MessageType, StaticKeys, TraceId, UnixMillis,
    Verified, Verifier, envelope::Stamp,
};

use crate::error::AgentError;
use crate::random;
use crate::sequence::SeqCounter;
use crate::state::GatewayKey;

/// TTL of the envelopes the agent sends live, seconds.
pub const ENVELOPE_TTL_S: u32 = 60;

/// TTL of telemetry sealed for the offline queue: the protocol's longest (7 days), so a
/// sample buffered through a long outage is still valid when it is finally delivered.
pub const QUEUED_TTL_S: u32 = tether_proto::envelope::MAX_TTL_S;

/// A frame sealed for the offline queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The frame (text, as sent on the WebSocket).
    pub frame: String,
    /// Its envelope `seq`.
    pub seq: u64,
    /// `iat + ttl`: after this the server refuses it.
    pub expires_at: UnixMillis,
}

/// Seals the agent's envelopes: its key, its clock and its one sequence counter.
#[derive(Debug)]
pub struct Outbox {
    signer: EnvelopeSigner,
    clock: Arc<dyn Clock>,
    seq: SeqCounter,
}

impl Outbox {
    /// An outbox over the agent's key.
    pub fn new(signer: EnvelopeSigner, clock: Arc<dyn Clock>, seq: SeqCounter) -> Self {
        Self { signer, clock, seq }
    }

    /// Signs `body` into a frame to send now (text, as sent on the WebSocket).
    pub fn seal<T: Message>(&mut self, body: &T) -> Result<String, AgentError> {
        Ok(self.seal_live(body)?.frame)
    }

    /// [`seal`](Self::seal), also telling the number it took.
    pub fn seal_live<T: Message>(&mut self, body: &T) -> Result<Sealed, AgentError> {
        let seq = self.seq.take()?;
        self.seal_stamped(body, ENVELOPE_TTL_S, seq)
    }

    /// Signs `body` into a frame to send now under a given trace id (a command's frames
    /// carry the command's trace id, so one grep follows it through every hop).
    pub fn seal_traced<T: Message>(
        &mut self,
        body: &T,
        trace_id: &TraceId,
    ) -> Result<String, AgentError> {
        let seq = self.seq.take()?;
        Ok(self
            .seal_stamped_traced(body, ENVELOPE_TTL_S, seq, trace_id.clone())?
            .frame)
    }

    /// Signs `body` with a sequence number reserved earlier (see
    /// [`seal_queued`](Self::seal_queued)).
    pub fn seal_reserved<T: Message>(&mut self, body: &T, seq: u64) -> Result<String, AgentError> {
        Ok(self.seal_stamped(body, ENVELOPE_TTL_S, seq)?.frame)
    }

    /// Signs `body` for the offline queue: the long [`QUEUED_TTL_S`], and a sequence
    /// number with [`crate::queue::AUTH_SLOTS`] unused numbers just below it, which the
    /// `auth` of the session that delivers this frame may use.
    pub fn seal_queued<T: Message>(&mut self, body: &T) -> Result<Sealed, AgentError> {
        let first = self
            .seq
            .take_run(crate::queue::AUTH_SLOTS.saturating_add(1))?;
        self.seal_stamped(
            body,
            QUEUED_TTL_S,
            first.saturating_add(crate::queue::AUTH_SLOTS),
        )
    }

    fn seal_stamped<T: Message>(
        &mut self,
        body: &T,
        ttl: u32,
        seq: u64,
    ) -> Result<Sealed, AgentError> {
        let trace_id = TraceId::from_random_bytes(random::bytes::<16>());
        self.seal_stamped_traced(body, ttl, seq, trace_id)
    }

    fn seal_stamped_traced<T: Message>(
        &mut self,
        body: &T,
        ttl: u32,
        seq: u64,
        trace_id: TraceId,
    ) -> Result<Sealed, AgentError> {
        let iat = self.clock.now();
        let stamp = Stamp {
            iat,
            ttl,
            seq,
            message_id: MessageId::time_ordered(iat, random::bytes::<16>()),
            trace_id,
        };
        let frame = self.signer.seal(stamp, body)?;
        let frame = String::from_utf8(frame)
            .map_err(|_| AgentError::Protocol("sealed frame is not UTF-8".into()))?;
        Ok(Sealed {
            frame,
            seq,
            expires_at: UnixMillis(iat.0.saturating_add(u64::from(ttl).saturating_mul(1000))),
        })
    }
}

/// The gateway keys as a key set for [`Verifier`].
pub fn gateway_key_set(keys: &[GatewayKey]) -> Result<StaticKeys, AgentError> {
    let mut set = StaticKeys::new();
    for k in keys {
        let kid = KeyId::parse(&k.kid)
            .map_err(|e| AgentError::Protocol(format!("gateway key id {:?}: {e}", k.kid)))?;
        let raw: [u8; 32] = b64url_decode(&k.public_key)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| AgentError::Protocol(format!("gateway key {kid} is not 32 bytes")))?;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map_err(|_| AgentError::Protocol(format!("gateway key {kid} is not Ed25519")))?;
        set.insert(kid, vk);
    }
    Ok(set)
}

/// Verifies a gateway frame with the pinned keys.
pub fn verify(frame: &[u8], keys: &StaticKeys, clock: &dyn Clock) -> Result<Verified, AgentError> {
    Ok(Verifier::new(keys, clock).verify(frame)?)
}

/// A clock stopped at one instant: verifies a frame as of when it was received, for a
/// frame that can only be checked once the keys arrive later (the discovery challenge).
#[derive(Debug, Clone, Copy)]
pub struct FrozenClock(pub UnixMillis);

impl Clock for FrozenClock {
    fn now(&self) -> UnixMillis {
        self.0
    }
}

/// A gateway frame read before its keys are known: its type and body, nothing believed.
/// Used only for the discovery exchange, which runs over TLS verified against the pinned
/// root CA, and the frame is verified as soon as the gateway keys arrive.
#[derive(Debug, Clone)]
pub struct UnverifiedFrame {
    /// The header's type.
    pub msg_type: MessageType,
    body: Value,
}

impl UnverifiedFrame {
    /// Reads type and body of an envelope.
    pub fn parse(frame: &[u8]) -> Result<Self, AgentError> {
        let bad = |why: &str| AgentError::Protocol(format!("not an envelope: {why}"));
        if frame.len() > tether_proto::MAX_FRAME_BYTES {
            return Err(bad("too large"));
        }
        let v: Value = serde_json::from_slice(frame).map_err(|_| bad("not JSON"))?;
        let msg_type = v
            .pointer("/header/type")
            .and_then(Value::as_str)
            .and_then(MessageType::from_name)
            .ok_or_else(|| bad("no known header.type"))?;
        let body = v.get("body").cloned().ok_or_else(|| bad("no body"))?;
        Ok(Self { msg_type, body })
    }

    /// The body as `T`, checked like a verified body would be.
    pub fn body<T: Message>(&self) -> Result<T, AgentError> {
        if self.msg_type != T::TYPE {
            return Err(AgentError::Protocol(format!(
                "expected {}, got {}",
                T::TYPE.name(),
                self.msg_type.name()
            )));
        }
        Ok(decode_body::<T>(&self.body)?)
    }

    /// When this is an `error` frame, the refusal it carries.
    pub fn refusal(&self) -> Option<AgentError> {
        let e = self.body::<ErrorFrame>().ok()?;
        Some(AgentError::Refused {
            code: e.code,
            message: e.message,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ed25519_dalek::SigningKey;
    use tether_proto::messages::session::Heartbeat;
    use tether_proto::{ErrorCode, SystemClock};

    use super::*;
    use crate::state::StateDir;

    #[test]
    fn sealed_frames_verify_with_increasing_seq() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let kid = KeyId::for_ed25519(key.verifying_key().as_bytes());
        let mut out = Outbox::new(
            EnvelopeSigner::new(key.clone()),
            Arc::new(SystemClock),
            SeqCounter::load(&s).unwrap(),
        );
        let hb = Heartbeat {
            status: tether_proto::messages::session::HeartbeatStatus::Alive,
            uptime_s: 1,
            queue_depth: 0,
        };
        let mut keys = StaticKeys::new();
        keys.insert(kid, key.verifying_key());
        let a = verify(out.seal(&hb).unwrap().as_bytes(), &keys, &SystemClock).unwrap();
        let b = verify(out.seal(&hb).unwrap().as_bytes(), &keys, &SystemClock).unwrap();
        assert!(b.header.seq > a.header.seq);
        // A queued frame keeps numbers free below it for an auth, and expires in 7 days.
        let q = out.seal_queued(&hb).unwrap();
        let vq = verify(q.frame.as_bytes(), &keys, &SystemClock).unwrap();
        assert_eq!(vq.header.seq, q.seq);
        assert_eq!(q.seq, b.header.seq + crate::queue::AUTH_SLOTS + 1);
        assert_eq!(vq.header.ttl, QUEUED_TTL_S);
        assert_eq!(
            q.expires_at.0,
            vq.header.iat.0 + u64::from(QUEUED_TTL_S) * 1000
        );
        let r = out.seal_reserved(&hb, q.seq - 1).unwrap();
        assert_eq!(
            verify(r.as_bytes(), &keys, &SystemClock)
                .unwrap()
                .header
                .seq,
            q.seq - 1
        );
        let c = verify(out.seal(&hb).unwrap().as_bytes(), &keys, &SystemClock).unwrap();
        assert!(c.header.seq > q.seq);
    }

    #[test]
    fn gateway_keys_decode() {
        let vk = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let keys = [GatewayKey {
            kid: "gw-1".into(),
            public_key: tether_proto::validate::b64url_encode(vk.as_bytes()),
        }];
        let set = gateway_key_set(&keys).unwrap();
        assert_eq!(
            tether_proto::KeyResolver::resolve(&set, &KeyId::parse("gw-1").unwrap()),
            tether_proto::KeyStatus::Active(vk)
        );
        let bad = [GatewayKey {
            kid: "gw-1".into(),
            public_key: "AAAA".into(),
        }];
        assert!(gateway_key_set(&bad).is_err());
    }

    #[test]
    fn unverified_error_frames_give_their_code() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let frame = EnvelopeSigner::new(key)
            .seal(
                Stamp {
                    iat: SystemClock.now(),
                    ttl: 60,
                    seq: 1,
                    message_id: MessageId::from_random_bytes([1; 16]),
                    trace_id: TraceId::from_random_bytes([2; 16]),
                },
                &ErrorFrame {
                    code: ErrorCode::RateLimited,
                    message: "slow down".into(),
                    ref_message_id: None,
                },
            )
            .unwrap();
        let f = UnverifiedFrame::parse(&frame).unwrap();
        assert_eq!(f.msg_type, MessageType::Error);
        match f.refusal() {
            Some(AgentError::Refused { code, message }) => {
                assert_eq!(code, ErrorCode::RateLimited);
                assert_eq!(message, "slow down");
            }
            other => panic!("{other:?}"),
        }
        assert!(UnverifiedFrame::parse(b"{}").is_err());
    }
}
