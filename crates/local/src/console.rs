//! What tether-local prints: its own lines and its children's, one whole write at a time.
//!
//! The supervisor runs on a single-threaded runtime, so one write is never interleaved
//! with another: the banner and the QR code stay in one piece. A closed or broken stdout
//! never stops tether-local: the text is dropped.

use std::io::Write;

/// Writes `text` to stdout as is, flushed.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

/// Writes `text` to stderr as is.
pub fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A line of tether-local's own about what it does, on stdout.
pub fn note(line: &str) {
    out(&format!("tether-local: {line}\n"));
}

/// A problem, on stderr.
pub fn warn(line: &str) {
    err(&format!("tether-local: {line}\n"));
}
