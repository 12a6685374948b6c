//! Reading a Server-Sent Events stream (`text/event-stream`, the live view): a small
//! incremental parser for the format (WHATWG HTML, "server-sent events") and a stream
//! of parsed events over an HTTP response body.
//!
//! What the parser keeps: `event`, `data` (several `data:` lines joined with `\n`) and
//! `id`; comment lines (`:` first) and `retry:` are skipped. Lines end in `\n`, `\r\n`
//! or `\r`. A line longer than [`MAX_LINE`] is an error, so a broken or hostile server
//! cannot make the client buffer without bound.

use std::collections::VecDeque;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};

use crate::ClientError;

/// The longest line the parser buffers, in bytes.
pub const MAX_LINE: usize = 1024 * 1024;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event name (`message` when the server gave none).
    pub event: String,
    /// The data lines, joined with `\n`.
    pub data: String,
    /// The last event id the server set, if any.
    pub id: Option<String>,
}

/// An incremental `text/event-stream` parser: feed it bytes as they arrive.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `chunk` and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, ClientError> {
        let mut out = Vec::new();
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    out.extend(self.line_done(&line));
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= MAX_LINE {
                        return Err(ClientError::Decode(format!(
                            "an event-stream line is longer than {MAX_LINE} bytes"
                        )));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            let data = self.data.take()?;
            return Some(SseEvent {
                event: event.unwrap_or_else(|| "message".to_owned()),
                data,
                id: self.id.clone(),
            });
        }
        if line.first() == Some(&b':') {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

type Body = Pin<Box<dyn Stream<Item = Result<Vec<u8>, String>> + Send>>;

/// The events of one open event-stream response.
pub struct EventStream {
    body: Body,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// Events parsed from a stream of body chunks.
    pub fn new(body: impl Stream<Item = Result<Vec<u8>, String>> + Send + 'static) -> Self {
        Self {
            body: Box::pin(body),
            parser: SseParser::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next event; `None` when the server ended the stream.
    pub async fn next_event(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            match self.body.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(ClientError::Transport(e)),
                Some(Ok(chunk)) => self.ready.extend(self.parser.feed(&chunk)?),
            }
        }
    }
}

#[cfg(test)]
mod tests;
