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
        self.take_run(1)
    }

    /// `n` consecutive numbers (n ≥ 1); returns the first. Nothing else is ever given a
    /// number in the run, so a caller may use the lower ones later for frames that must
    /// come before the highest one (the offline queue does, see `queue`).
    pub fn take_run(&mut self, n: u64) -> Result<u64, AgentError> {
        let last = self
            .next
            .checked_add(n.max(1).saturating_sub(1))
            .filter(|last| *last <= MAX_SEQ)
            .ok_or_else(|| {
                AgentError::Protocol("the sequence counter is exhausted; pair this PC again".into())
            })?;
        if last > self.reserved_through {
            let through = last.saturating_add(BLOCK).min(MAX_SEQ);
            self.state
                .write_atomic(files::SEQ, through.to_string().as_bytes(), false)?;
            self.reserved_through = through;
        }
        let first = self.next;
        self.next = last.saturating_add(1);
        Ok(first)
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
    fn runs_are_consecutive_and_persisted() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        let mut c = SeqCounter::load(&s).unwrap();
        assert_eq!(c.take().unwrap(), 1);
        assert_eq!(c.take_run(9).unwrap(), 2);
        assert_eq!(c.take().unwrap(), 11);
        let first = c.take_run(BLOCK * 3).unwrap();
        assert_eq!(first, 12);
        drop(c);
        let mut c = SeqCounter::load(&s).unwrap();
        assert!(c.take().unwrap() > first + BLOCK * 3 - 1);
    }

    #[test]
    fn a_damaged_counter_file_is_reported() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        s.write_atomic(files::SEQ, b"x", false).unwrap();
        assert!(SeqCounter::load(&s).is_err());
    }
}
