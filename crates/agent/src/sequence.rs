//! The agent's envelope sequence numbers. The protocol asks for one strictly increasing
//! counter per sender across reconnects and restarts (docs/protocol.md 3.9), so numbers
//! are reserved in blocks and the end of the reserved block is persisted before any number
//! in it is used: after a crash the agent starts above everything it may have sent,
//! while writing to disk only once per block.

use crate::error::AgentError;
use crate::state::{StateDir, files};

/// How many numbers one write to disk reserves.
const BLOCK: u64 = 1024;

/// The highest sequence number the envelope format allows (2^53 − 1).
const MAX_SEQ: u64 = (1 << 53) - 1;

/// Hands out strictly increasing sequence numbers.
#[derive(Debug)]
pub struct SeqCounter {
    state: StateDir,
    next: u64,
    reserved_through: u64,
}

impl SeqCounter {
    /// Resumes above whatever was reserved before.
    pub fn load(state: &StateDir) -> Result<Self, AgentError> {
        let reserved = match state.read_optional(files::SEQ)? {
            None => 0,
            Some(b) => String::from_utf8_lossy(&b)
                .trim()
                .parse::<u64>()
                .map_err(|_| AgentError::CorruptState {
                    path: state.path(files::SEQ),
                    reason: "not a number".into(),
                })?,
        };
        Ok(Self {
            state: state.clone(),
            next: reserved.saturating_add(1),
            reserved_through: reserved,
        })
    }

    /// The next number, reserving (and persisting) a new block when needed.
    pub fn take(&mut self) -> Result<u64, AgentError> {
        if self.next > MAX_SEQ {
            return Err(AgentError::Protocol(
                "the sequence counter is exhausted; pair this PC again".into(),
            ));
        }
        if self.next > self.reserved_through {
            let through = self.next.saturating_add(BLOCK).min(MAX_SEQ);
            self.state
                .write_atomic(files::SEQ, through.to_string().as_bytes(), false)?;
            self.reserved_through = through;
        }
        let n = self.next;
        self.next = n.saturating_add(1);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn numbers_increase_across_restarts() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        let mut c = SeqCounter::load(&s).unwrap();
        let a: Vec<u64> = (0..3).map(|_| c.take().unwrap()).collect();
        assert_eq!(a, [1, 2, 3]);
        drop(c);
        let mut c = SeqCounter::load(&s).unwrap();
        let b = c.take().unwrap();
        assert!(b > 3, "{b}");
        for _ in 0..(BLOCK * 2) {
            let n = c.take().unwrap();
            assert!(n > b);
        }
        let mut again = SeqCounter::load(&s).unwrap();
        assert!(again.take().unwrap() > b + BLOCK * 2);
    }

    #[test]
    fn a_damaged_counter_file_is_reported() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        s.write_atomic(files::SEQ, b"x", false).unwrap();
        assert!(SeqCounter::load(&s).is_err());
    }
}
