//! The agent WebSocket: data frames in and out, pings and pongs left to tungstenite.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tether_client::WsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::error::AgentError;

/// What the socket delivered.
#[derive(Debug)]
pub enum Incoming {
    /// A text or binary data frame.
    Frame(Vec<u8>),
    /// The peer closed the socket (or it ended).
    Closed(Option<String>),
}

/// The next data frame, skipping pings and pongs.
pub async fn next(ws: &mut WsStream) -> Result<Incoming, AgentError> {
    loop {
        match ws.next().await {
            None => return Ok(Incoming::Closed(None)),
            Some(Err(e)) => return Err(AgentError::Connection(e.to_string())),
            Some(Ok(WsMessage::Text(t))) => return Ok(Incoming::Frame(t.as_bytes().to_vec())),
            Some(Ok(WsMessage::Binary(b))) => return Ok(Incoming::Frame(b.to_vec())),
            Some(Ok(WsMessage::Close(frame))) => {
                return Ok(Incoming::Closed(frame.map(|f| f.reason.to_string())));
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
        }
    }
}

/// [`next`] with a deadline.
pub async fn next_within(ws: &mut WsStream, limit: Duration) -> Result<Incoming, AgentError> {
    tokio::time::timeout(limit, next(ws))
        .await
        .map_err(|_| AgentError::Connection(format!("no answer within {}s", limit.as_secs())))?
}

/// Sends a text frame.
pub async fn send(ws: &mut WsStream, frame: String) -> Result<(), AgentError> {
    ws.send(WsMessage::Text(frame.into()))
        .await
        .map_err(|e| AgentError::Connection(e.to_string()))
}

/// Closes the socket politely, not waiting long for the peer.
pub async fn close(ws: &mut WsStream) {
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
}
