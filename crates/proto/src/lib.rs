//! The Tether wire protocol.
//!
//! Every process in Tether (server, agent, helper, CLI, web app) speaks the types in this
//! crate. A message is a typed body ([`messages`]) carried in a signed [`envelope`]: the
//! envelope's header names the signing key, the algorithm (always Ed25519), when it was
//! issued, how long it lives, its sequence number, its idempotency key and its trace id.
//! Signed content is serialized with RFC 8785 JSON canonicalization ([`canonical`]), so any
//! implementation that follows `docs/protocol.md` signs and verifies the same bytes.
//!
//! Every error that crosses a boundary carries one stable [`ErrorCode`] from [`error`].
//!
//! Decoders in this crate never panic on hostile input: sizes are checked before parsing,
//! nesting depth is bounded, and every field is range-checked after decoding.

pub mod canonical;
pub mod clock;
pub mod envelope;
pub mod error;
pub mod examples;
pub mod helper;
pub mod ids;
pub mod messages;
pub mod owner_sig;
pub mod validate;

pub use clock::{Clock, ManualClock, SystemClock, UnixMillis};
pub use envelope::{
    EnvelopeSigner, Header, KeyResolver, KeyStatus, SequenceTracker, Stamp, StaticKeys, Verified,
    Verifier,
};
pub use error::{ErrorBody, ErrorCategory, ErrorCode, ProtoError};
pub use ids::{KeyId, MessageId, TraceId};
pub use messages::{MAX_FRAME_BYTES, Message, MessageType, Payload};

#[cfg(test)]
mod tests;
