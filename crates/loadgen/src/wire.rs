//! Frames on the agent WebSocket: stamping, sending and reading signed envelopes.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand_core::{OsRng, RngCore};
use tether_client::WsStream;
use tether_proto::envelope::{EnvelopeSigner, Stamp};
use tether_proto::{Message, MessageId, TraceId, UnixMillis};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::LoadError;

/// `n` random bytes from the OS.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// The agent side of one session: its signer and the sequence numbers it has used.
#[derive(Debug)]
pub struct Outbox {
    signer: EnvelopeSigner,
    seq: u64,
}

impl Outbox {
    /// An outbox that signs with `signer`, starting at sequence 1.
    pub fn new(signer: EnvelopeSigner) -> Self {
        Self { signer, seq: 0 }
    }

    /// Seals `body` as the next envelope, issued at `now`.
    pub fn seal<T: Message>(&mut self, now: UnixMillis, body: &T) -> Result<String, LoadError> {
        self.seq = self.seq.saturating_add(1);
        let stamp = Stamp {
            iat: now,
            ttl: 60,
            seq: self.seq,
            message_id: MessageId::time_ordered(now, random::<16>()),
            trace_id: TraceId::from_random_bytes(random::<16>()),
        };
        let frame = self.signer.seal(stamp, body)?;
        String::from_utf8(frame).map_err(|_| LoadError::Protocol("envelope is not UTF-8".into()))
    }
}

/// Sends one text frame.
pub async fn send(ws: &mut WsStream, text: String) -> Result<(), LoadError> {
    ws.send(WsMessage::Text(text.into()))
        .await
        .map_err(|e| LoadError::Socket(e.to_string()))
}

/// The next data frame, skipping control frames; an error when the socket closes first
/// or nothing arrives within `timeout`.
pub async fn next_frame(ws: &mut WsStream, timeout: Duration) -> Result<Vec<u8>, LoadError> {
    let read = async {
        loop {
            match ws.next().await {
                None => return Err(LoadError::Socket("closed before a frame arrived".into())),
                Some(Err(e)) => return Err(LoadError::Socket(e.to_string())),
                Some(Ok(WsMessage::Text(t))) => return Ok(t.as_bytes().to_vec()),
                Some(Ok(WsMessage::Binary(b))) => return Ok(b.to_vec()),
                Some(Ok(WsMessage::Close(c))) => {
                    return Err(LoadError::Socket(format!(
                        "closed by the server before a frame arrived ({})",
                        c.map(|c| c.reason.to_string()).unwrap_or_default()
                    )));
                }
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| LoadError::Socket(format!("no frame within {}s", timeout.as_secs())))?
}
