//! Signing the helper's responses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::SigningKey;
use serde_json::json;
use tether_proto::helper::{HelperResponse, HelperStatus};
use tether_proto::{Clock, EnvelopeSigner, ErrorCode, MessageId, Stamp, TraceId};

use crate::random;

/// Seconds a response envelope stays valid: it is read at once by the agent beside us.
const RESPONSE_TTL_S: u32 = 60;

/// Signs `helper_response` envelopes with the helper key.
#[derive(Debug)]
pub(crate) struct Responder {
    signer: EnvelopeSigner,
    clock: Arc<dyn Clock>,
    last_seq: AtomicU64,
}

impl Responder {
    pub(crate) fn new(key: SigningKey, clock: Arc<dyn Clock>) -> Self {
        Self {
            signer: EnvelopeSigner::new(key),
            clock,
            last_seq: AtomicU64::new(0),
        }
    }

    /// The next `seq` on the helper → agent stream: above the previous one and at least
    /// the current time in ms, so it keeps increasing across restarts without being stored
    /// (unless the clock goes back more than the helper answered in between).
    fn next_seq(&self) -> u64 {
        let now = self.clock.now().0;
        let step = |prev: u64| prev.saturating_add(1).max(now);
        match self
            .last_seq
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| Some(step(p)))
        {
            Ok(prev) | Err(prev) => step(prev),
        }
    }

    /// Signs a response. A body too large for its frame limit is replaced by a `failed`
    /// 6001 that says so (the request was carried out, but its result cannot travel).
    pub(crate) fn seal(
        &self,
        resp: &HelperResponse,
        trace_id: Option<&TraceId>,
    ) -> Option<Vec<u8>> {
        let stamp = |seq| Stamp {
            iat: self.clock.now(),
            ttl: RESPONSE_TTL_S,
            seq,
            message_id: random::message_id(),
            trace_id: trace_id.cloned().unwrap_or_else(random::trace_id),
        };
        match self.signer.seal(stamp(self.next_seq()), resp) {
            Ok(frame) => Some(frame),
            Err(e) => {
                tracing::error!(request_id = %resp.request_id, error = %e, "cannot sign a response");
                let fallback = HelperResponse {
                    request_id: resp.request_id.clone(),
                    status: HelperStatus::Failed,
                    kernel_exec_id: resp.kernel_exec_id.clone(),
                    error: Some(ErrorCode::KernelFailure),
                    result: json!({ "message": "the result does not fit in a helper_response" }),
                };
                self.signer.seal(stamp(self.next_seq()), &fallback).ok()
            }
        }
    }
}

/// The request id to answer a frame that could not be verified with: the body's
/// `request_id` when it is well-formed (only for the caller to match the answer; it is not
/// believed), else the nil UUID.
pub(crate) fn unverified_request_id(frame: &[u8]) -> MessageId {
    serde_json::from_slice::<serde_json::Value>(frame)
        .ok()
        .and_then(|v| {
            v.get("body")
                .and_then(|b| b.get("request_id"))
                .and_then(|r| r.as_str())
                .and_then(|s| MessageId::parse(s).ok())
        })
        .unwrap_or_else(nil_request_id)
}

/// `00000000-0000-0000-0000-000000000000`: the request id of answers to frames with none.
pub(crate) fn nil_request_id() -> MessageId {
    // The parse cannot fail; the fallback only keeps this free of unwrap.
    MessageId::parse(NIL_REQUEST_ID).unwrap_or_else(|_| MessageId::from_random_bytes([0; 16]))
}

/// The `request_id` of a `denied` answer to a frame that named no readable request id
/// (a line too long to read, garbage, or a caller refused before it sent anything).
pub const NIL_REQUEST_ID: &str = "00000000-0000-0000-0000-000000000000";
