//! The helper's randomness: the OS generator, called only at the edges (new keys, message
//! and trace ids of responses).

use rand_core::{OsRng, RngCore};
use tether_proto::{MessageId, TraceId};

/// `N` random bytes from the OS.
pub(crate) fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// A fresh version-4 message id.
pub(crate) fn message_id() -> MessageId {
    MessageId::from_random_bytes(bytes())
}

/// A fresh trace id.
pub(crate) fn trace_id() -> TraceId {
    TraceId::from_random_bytes(bytes())
}
