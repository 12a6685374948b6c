//! The signed envelope every agent ↔ gateway and agent ↔ helper message travels in.
//!
//! Wire form (version 1), always sent as its RFC 8785 canonical JSON:
//!
//! ```json
//! {"body":{...},"header":{"alg":"EdDSA","iat":1764000000000,"kid":"3f2a…","message_id":"…",
//!  "seq":42,"trace_id":"…","ttl":60,"type":"heartbeat"},"sig":"<base64url>","v":1}
//! ```
//!
//! The signature is Ed25519 over `"TETHER-ENVELOPE-V1\n"` followed by the canonical JSON of
//! the envelope without its `sig` member. A receiver checks, in this order, and stops at the
//! first failure (the code in brackets):
//!
//! 1. length ≤ [`MAX_FRAME_BYTES`] before parsing \[1002\];
//! 2. JSON with the envelope's shape: an object with `v`, `header` (an object with a string
//!    `kid`), `body` and a string `sig`, and nothing else \[1001\];
//! 3. the frame is byte-for-byte its own canonical form, so no two byte strings carry the
//!    same signed content \[2001\];
//! 4. `kid` names a known key \[2002\], not one rotated out \[2007\];
//! 5. `sig` is 64 bytes of base64url and verifies strictly over the signing input \[2001\];
//! 6. `v` is 1 \[1003\], `alg` is `EdDSA` \[2003\], `type` is known \[1004\], the header's
//!    fields are well-formed \[1005\], and the frame fits its type's limit \[1002\];
//! 7. `iat` is at most [`MAX_CLOCK_SKEW_MS`] ahead of the receiver's clock \[2005\] and
//!    `iat + ttl` has not passed \[2004\];
//! 8. the body decodes into its type and passes its field checks \[1005\].
//!
//! The sequence check \[2006\] needs the receiver's memory of the sender, so it is a
//! separate step: [`SequenceTracker::accept`].
//!
//! [`Verifier::verify`] runs checks 1–8 in one go. [`Verifier::prepare`] runs 1–4, so that
//! check 5 may run for several envelopes at once ([`check_batch`]) before
//! [`Checked::finish`] runs 6–8 on each.
//!
//! The signature is checked before any header field other than `kid` is believed: a
//! verified header was written by the key holder, and an unverified one is not read
//! here. (A receiver may still peek at a frame's claimed type and message id to refuse
//! it cheaply without believing it: the gateway does so while overloaded, see
//! docs/protocol.md, section 4.3.)

use std::collections::HashMap;
use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{MAX_SAFE_INTEGER, write_nested, write_str};
use crate::clock::{Clock, UnixMillis};
use crate::error::ProtoError;
use crate::ids::{KeyId, MessageId, TraceId};
use crate::messages::{MAX_FRAME_BYTES, Message, MessageType, Payload};
use crate::validate::{b64url_decode, b64url_encode};

/// The envelope version this crate speaks.
pub const VERSION: u64 = 1;

/// The only signature algorithm: Ed25519, named as in JOSE.
pub const ALG: &str = "EdDSA";

/// Domain-separation prefix of the signing input.
pub const SIGNING_CONTEXT: &[u8] = b"TETHER-ENVELOPE-V1\n";

/// How far ahead of the receiver's clock `iat` may be.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

/// The longest TTL a message may ask for: 7 days, in seconds.
pub const MAX_TTL_S: u32 = 7 * 24 * 3600;

/// The envelope header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The body's message type.
    #[serde(rename = "type", with = "type_name")]
    pub msg_type: MessageType,
    /// The id of the key that signed the envelope.
    pub kid: KeyId,
    /// Always `EdDSA`.
    pub alg: String,
    /// When the sender signed it, ms since the Unix epoch.
    pub iat: UnixMillis,
    /// Seconds after `iat` during which the message may be acted on (1..=604800).
    pub ttl: u32,
    /// The sender's sequence number on this stream, strictly increasing (0..=2^53−1).
    pub seq: u64,
    /// The message's idempotency key.
    pub message_id: MessageId,
    /// The W3C trace id that follows the message across processes.
    pub trace_id: TraceId,
}

impl Header {
    /// When the message stops being valid.
    pub fn expires_at(&self) -> UnixMillis {
        UnixMillis(
            self.iat
                .0
                .saturating_add(u64::from(self.ttl).saturating_mul(1000)),
        )
    }
}

mod type_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::messages::MessageType;

    pub(super) fn serialize<S: Serializer>(t: &MessageType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(t.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MessageType, D::Error> {
        let s = String::deserialize(d)?;
        MessageType::from_name(&s).ok_or_else(|| serde::de::Error::custom("unknown message type"))
    }
}

/// What the sender chooses for each envelope, apart from the type and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// Issue time.
    pub iat: UnixMillis,
    /// Time to live, seconds.
    pub ttl: u32,
    /// Sequence number.
    pub seq: u64,
    /// Idempotency key.
    pub message_id: MessageId,
    /// Trace id.
    pub trace_id: TraceId,
}

/// A key that signs envelopes, with its key id.
pub struct EnvelopeSigner {
    key: SigningKey,
    kid: KeyId,
}

impl fmt::Debug for EnvelopeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvelopeSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl EnvelopeSigner {
    /// A signer whose kid is derived from the public key ([`KeyId::for_ed25519`]).
    pub fn new(key: SigningKey) -> Self {
        let kid = KeyId::for_ed25519(key.verifying_key().as_bytes());
        Self { key, kid }
    }

    /// A signer with an explicit kid.
    pub fn with_kid(key: SigningKey, kid: KeyId) -> Self {
        Self { key, kid }
    }

    /// The key id this signer puts in headers.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs a typed body into wire bytes.
    pub fn seal<T: Message>(&self, stamp: Stamp, body: &T) -> Result<Vec<u8>, ProtoError> {
        let body = serde_json::to_value(body).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        self.seal_value(T::TYPE, stamp, body)
    }

    /// Signs an already-serialized body of the given type into wire bytes. The body is
    /// not validated here; receivers validate it.
    pub fn seal_value(
        &self,
        msg_type: MessageType,
        stamp: Stamp,
        body: Value,
    ) -> Result<Vec<u8>, ProtoError> {
        if stamp.ttl == 0 || stamp.ttl > MAX_TTL_S {
            return Err(ProtoError::invalid(
                "header.ttl",
                format!("must be 1..={MAX_TTL_S}"),
            ));
        }
        if stamp.seq > MAX_SAFE_INTEGER || stamp.iat.0 > MAX_SAFE_INTEGER {
            return Err(ProtoError::invalid(
                "header",
                "seq and iat must be at most 2^53-1",
            ));
        }
        let header = Header {
            msg_type,
            kid: self.kid.clone(),
            alg: ALG.to_owned(),
            iat: stamp.iat,
            ttl: stamp.ttl,
            seq: stamp.seq,
            message_id: stamp.message_id,
            trace_id: stamp.trace_id,
        };
        let header =
            serde_json::to_value(&header).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        let (unsigned, sig_member) =
            canonical_envelope(&body, &header, None, &Value::from(VERSION), 512)?;
        let sig = self.key.sign(&signing_input(&unsigned));
        let mut member = String::with_capacity(96);
        member.push_str(",\"sig\":");
        write_str(&mut member, &b64url_encode(&sig.to_bytes()));
        let mut wire = unsigned;
        wire.insert_str(sig_member.start, &member);
        let wire = wire.into_bytes();
        if wire.len() > msg_type.max_frame_bytes() {
            return Err(ProtoError::FrameTooLarge {
                size: wire.len(),
                limit: msg_type.max_frame_bytes(),
            });
        }
        Ok(wire)
    }
}

/// The canonical (RFC 8785) form of an envelope, written member by member without
/// building the object (the members sort as body, header, sig, v; each is nested one
/// level deep), and the byte range of its `sig` member with its leading comma (an
/// empty range where it would go, when `sig` is `None`). Removing that range from the
/// sealed form gives the form without `sig`, which is what is signed.
fn canonical_envelope(
    body: &Value,
    header: &Value,
    sig: Option<&str>,
    v: &Value,
    capacity: usize,
) -> Result<(String, std::ops::Range<usize>), ProtoError> {
    let mut out = String::with_capacity(capacity);
    out.push_str("{\"body\":");
    write_nested(&mut out, body, 1)?;
    out.push_str(",\"header\":");
    write_nested(&mut out, header, 1)?;
    let sig_at = out.len();
    if let Some(sig) = sig {
        out.push_str(",\"sig\":");
        write_str(&mut out, sig);
    }
    let sig_end = out.len();
    out.push_str(",\"v\":");
    write_nested(&mut out, v, 1)?;
    out.push('}');
    Ok((out, sig_at..sig_end))
}

fn signing_input(unsigned_canonical: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(
        SIGNING_CONTEXT
            .len()
            .saturating_add(unsigned_canonical.len()),
    );
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(unsigned_canonical.as_bytes());
    m
}

/// What a key resolver knows about a kid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    /// The key may verify.
    Active(VerifyingKey),
    /// The key was rotated out and its overlap window has passed.
    Retired,
    /// No such key.
    Unknown,
}

/// Finds the public key for a kid. Implementations decide which keys a receiver trusts
/// (the gateway: the device's pinned key; the agent: the gateway's keys).
pub trait KeyResolver {
    /// Looks a kid up.
    fn resolve(&self, kid: &KeyId) -> KeyStatus;
}

/// A fixed set of keys: for tests, tools and small deployments.
#[derive(Debug, Clone, Default)]
pub struct StaticKeys {
    keys: HashMap<KeyId, KeyStatus>,
}

impl StaticKeys {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts a key under a kid.
    pub fn insert(&mut self, kid: KeyId, key: VerifyingKey) -> &mut Self {
        self.keys.insert(kid, KeyStatus::Active(key));
        self
    }

    /// Marks a kid as rotated out.
    pub fn retire(&mut self, kid: KeyId) -> &mut Self {
        self.keys.insert(kid, KeyStatus::Retired);
        self
    }
}

impl KeyResolver for StaticKeys {
    fn resolve(&self, kid: &KeyId) -> KeyStatus {
        self.keys.get(kid).cloned().unwrap_or(KeyStatus::Unknown)
    }
}

/// An envelope whose signature, header and body have been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The verified header.
    pub header: Header,
    /// The decoded, validated body.
    pub payload: Payload,
}

impl Verified {
    /// The body as a specific type, or [`ProtoError::UnexpectedType`].
    pub fn into_body<T: Message>(self) -> Result<T, ProtoError> {
        let got = self.payload.message_type();
        if got != T::TYPE {
            return Err(ProtoError::UnexpectedType {
                expected: T::TYPE.name(),
                got: got.name().to_owned(),
            });
        }
        let v = self.payload.to_value()?;
        serde_json::from_value(v).map_err(|e| ProtoError::Malformed(e.to_string()))
    }
}

/// Checks envelopes against a key resolver and a clock.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a, K: ?Sized, C: ?Sized> {
    keys: &'a K,
    clock: &'a C,
}

impl<'a, K: KeyResolver + ?Sized, C: Clock + ?Sized> Verifier<'a, K, C> {
    /// A verifier over these keys and this clock.
    pub fn new(keys: &'a K, clock: &'a C) -> Self {
        Self { keys, clock }
    }

    /// Runs checks 1–8 of the module docs.
    pub fn verify(&self, frame: &[u8]) -> Result<Verified, ProtoError> {
        self.prepare(frame)?.check_signature()?.finish(self.clock)
    }

    /// Runs checks 1–4 of the module docs and reads `sig`: what is left is the signature
    /// itself ([`Prepared::check_signature`], or several at once with [`check_batch`]),
    /// then [`Checked::finish`].
    pub fn prepare(&self, frame: &[u8]) -> Result<Prepared, ProtoError> {
        let raw = RawEnvelope::parse(frame)?;
        let key = match self.keys.resolve(&raw.kid) {
            KeyStatus::Active(k) => k,
            KeyStatus::Retired => return Err(ProtoError::KeyRetired(raw.kid.to_string())),
            KeyStatus::Unknown => return Err(ProtoError::UnknownKid(raw.kid.to_string())),
        };
        let sig = raw.signature()?;
        Ok(Prepared {
            raw,
            key,
            sig,
            frame_len: frame.len(),
        })
    }
}

/// An envelope that passed checks 1–4 (its shape, its canonical form, its key) and whose
/// signature is still to be checked: nothing in it is believed yet.
#[derive(Debug)]
pub struct Prepared {
    raw: RawEnvelope,
    key: VerifyingKey,
    sig: Signature,
    frame_len: usize,
}

impl Prepared {
    /// The type the header claims, not believed: for choosing how to check the
    /// signature (the gateway batches telemetry's), never for acting on the frame.
    pub fn claimed_type(&self) -> Option<MessageType> {
        self.raw
            .header
            .get("type")
            .and_then(Value::as_str)
            .and_then(MessageType::from_name)
    }

    /// Check 5: the signature, strictly (`verify_strict`: no small-order key or `R`,
    /// `s` reduced).
    pub fn check_signature(self) -> Result<Checked, ProtoError> {
        self.key
            .verify_strict(&self.raw.signing_input, &self.sig)
            .map_err(|_| ProtoError::SignatureInvalid("Ed25519 verification failed"))?;
        Ok(Checked(self))
    }
}

/// An envelope whose signature has been checked; [`Checked::finish`] runs the checks
/// that follow.
#[derive(Debug)]
pub struct Checked(Prepared);

impl Checked {
    /// Checks 6–8 of the module docs, against `clock`.
    pub fn finish<C: Clock + ?Sized>(self, clock: &C) -> Result<Verified, ProtoError> {
        let raw = &self.0.raw;
        let header = raw.checked_header(self.0.frame_len)?;
        check_time(&header, clock.now())?;
        let payload = Payload::decode(header.msg_type, &raw.body)?;
        Ok(Verified { header, payload })
    }
}

fn check_time(h: &Header, now: UnixMillis) -> Result<(), ProtoError> {
    if h.iat.0 > now.0.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(ProtoError::NotYetValid {
            iat_ms: h.iat.0,
            now_ms: now.0,
        });
    }
    let exp = h.expires_at();
    if now.0 > exp.0 {
        return Err(ProtoError::TtlExpired {
            expired_at_ms: exp.0,
            now_ms: now.0,
        });
    }
    Ok(())
}

/// An envelope parsed far enough to find its key, nothing believed yet.
#[derive(Debug)]
struct RawEnvelope {
    v: Value,
    header: Value,
    body: Value,
    kid: KeyId,
    sig: String,
    /// What was signed: [`SIGNING_CONTEXT`] and the canonical form of the envelope
    /// without its `sig` member.
    signing_input: Vec<u8>,
}

impl RawEnvelope {
    fn parse(frame: &[u8]) -> Result<Self, ProtoError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(ProtoError::FrameTooLarge {
                size: frame.len(),
                limit: MAX_FRAME_BYTES,
            });
        }
        let value: Value =
            serde_json::from_slice(frame).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        let Value::Object(mut map) = value else {
            return Err(ProtoError::Malformed("an envelope is a JSON object".into()));
        };
        if map.len() != 4 {
            return Err(ProtoError::Malformed(
                "an envelope has exactly the members v, header, body and sig".into(),
            ));
        }
        let missing = |k: &str| ProtoError::Malformed(format!("envelope member {k:?} is missing"));
        let v = map.remove("v").ok_or_else(|| missing("v"))?;
        let header = map.remove("header").ok_or_else(|| missing("header"))?;
        let body = map.remove("body").ok_or_else(|| missing("body"))?;
        let Some(Value::String(sig)) = map.remove("sig") else {
            return Err(ProtoError::Malformed(
                "envelope member \"sig\" must be a string".into(),
            ));
        };
        let Some(Value::String(kid)) = header.get("kid") else {
            return Err(ProtoError::Malformed("header.kid must be a string".into()));
        };
        let kid = KeyId::parse(kid).map_err(ProtoError::Malformed)?;
        // Check 3: only the canonical spelling of signed content is accepted. The
        // envelope's canonical form, written member by member (RFC 8785 sorts them:
        // body, header, sig, v), without copying them into a new object; the same form
        // without `sig` is what was signed.
        let (mut canonical, sig_member) =
            canonical_envelope(&body, &header, Some(&sig), &v, frame.len())?;
        if canonical.as_bytes() != frame {
            return Err(ProtoError::SignatureInvalid(
                "the frame is not in canonical form",
            ));
        }
        canonical.replace_range(sig_member, "");
        Ok(RawEnvelope {
            v,
            header,
            body,
            kid,
            sig,
            signing_input: signing_input(&canonical),
        })
    }

    /// `sig` as a signature: 64 bytes of unpadded base64url.
    fn signature(&self) -> Result<Signature, ProtoError> {
        let bytes = b64url_decode(&self.sig).ok_or(ProtoError::SignatureInvalid(
            "sig is not unpadded base64url",
        ))?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|_| ProtoError::SignatureInvalid("sig is not 64 bytes"))?;
        Ok(Signature::from_bytes(&bytes))
    }

    fn checked_header(&self, frame_len: usize) -> Result<Header, ProtoError> {
        match self.v.as_u64() {
            Some(VERSION) => {}
            Some(n) => return Err(ProtoError::UnsupportedVersion(n)),
            None => return Err(ProtoError::invalid("v", "must be an integer")),
        }
        match self.header.get("alg") {
            Some(Value::String(a)) if a == ALG => {}
            Some(Value::String(a)) => return Err(ProtoError::UnsupportedAlgorithm(a.clone())),
            _ => {
                return Err(ProtoError::invalid(
                    "header.alg",
                    "must be the string \"EdDSA\"",
                ));
            }
        }
        match self.header.get("type") {
            Some(Value::String(t)) if MessageType::from_name(t).is_none() => {
                return Err(ProtoError::UnknownType(t.clone()));
            }
            Some(Value::String(_)) => {}
            _ => return Err(ProtoError::invalid("header.type", "must be a string")),
        }
        let header = Header::deserialize(&self.header)
            .map_err(|e| ProtoError::invalid("header", e.to_string()))?;
        if header.ttl == 0 || header.ttl > MAX_TTL_S {
            return Err(ProtoError::invalid(
                "header.ttl",
                format!("must be 1..={MAX_TTL_S}"),
            ));
        }
        if header.seq > MAX_SAFE_INTEGER {
            return Err(ProtoError::invalid("header.seq", "must be at most 2^53-1"));
        }
        let limit = header.msg_type.max_frame_bytes();
        if frame_len > limit {
            return Err(ProtoError::FrameTooLarge {
                size: frame_len,
                limit,
            });
        }
        Ok(header)
    }
}

/// Remembers the highest sequence accepted per stream (a sender's key, a device, a
/// session) and refuses anything not above it.
#[derive(Debug, Clone, Default)]
pub struct SequenceTracker<S> {
    last: HashMap<S, u64>,
}

impl<S: std::hash::Hash + Eq + Clone> SequenceTracker<S> {
    /// An empty tracker.
    pub fn new() -> Self {
        Self {
            last: HashMap::new(),
        }
    }

    /// A tracker resuming from known high-water marks (e.g. loaded from storage).
    pub fn resume(marks: impl IntoIterator<Item = (S, u64)>) -> Self {
        Self {
            last: marks.into_iter().collect(),
        }
    }

    /// Accepts `seq` on `stream` if it is above the last accepted one (any value is
    /// accepted on a new stream).
    pub fn accept(&mut self, stream: &S, seq: u64) -> Result<(), ProtoError> {
        match self.last.get(stream) {
            Some(&last) if seq <= last => Err(ProtoError::SequenceReplay { seq, last }),
            _ => {
                self.last.insert(stream.clone(), seq);
                Ok(())
            }
        }
    }

    /// The last accepted sequence on a stream.
    pub fn last(&self, stream: &S) -> Option<u64> {
        self.last.get(stream).copied()
    }
}

mod batch;

pub use batch::check_batch;

#[cfg(test)]
mod tests;
