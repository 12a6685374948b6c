//! Stream entry ids in the Redis form `ms-seq`: the append time in milliseconds and a
//! sequence number that breaks ties (and carries on when the clock stands still or goes
//! backwards), so ids within a stream are unique and strictly increasing.

use std::fmt;
use std::str::FromStr;

use crate::BusError;

/// A parsed entry id. Ordering is by `ms`, then `seq` — the order entries were appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct EntryId {
    /// Milliseconds since the Unix epoch when the entry was appended (or later, if the
    /// clock went backwards).
    pub(crate) ms: u64,
    /// Tie-breaker within one millisecond.
    pub(crate) seq: u64,
}

impl EntryId {
    /// The id before every real id: a new group has delivered "up to" this.
    pub(crate) const ZERO: EntryId = EntryId { ms: 0, seq: 0 };

    /// The id for an entry appended at `now_ms` after the entry `self`: the current time if
    /// it has moved past `self`, else the next sequence number in `self`'s millisecond.
    /// `None` only when the id space is exhausted.
    pub(crate) fn next(self, now_ms: u64) -> Option<EntryId> {
        if now_ms > self.ms {
            return Some(EntryId { ms: now_ms, seq: 0 });
        }
        match self.seq.checked_add(1) {
            Some(seq) => Some(EntryId { ms: self.ms, seq }),
            None => Some(EntryId {
                ms: self.ms.checked_add(1)?,
                seq: 0,
            }),
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = BusError;

    /// Parses the strict `ms-seq` form (both parts plain decimal digits).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || BusError::Invalid(format!("not a stream entry id: {s:?}"));
        let (ms, seq) = s.split_once('-').ok_or_else(invalid)?;
        let part = |p: &str| -> Result<u64, BusError> {
            // `u64::from_str` accepts a leading `+`; an id never has one.
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            p.parse().map_err(|_| invalid())
        };
        Ok(EntryId {
            ms: part(ms)?,
            seq: part(seq)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::EntryId;

    #[test]
    fn next_follows_the_clock_and_never_goes_back() {
        let id = |ms, seq| EntryId { ms, seq };
        // The very first id at time 0 is 0-1: 0-0 means "nothing delivered yet".
        assert_eq!(EntryId::ZERO.next(0), Some(id(0, 1)));
        assert_eq!(EntryId::ZERO.next(5), Some(id(5, 0)));
        assert_eq!(id(5, 0).next(5), Some(id(5, 1)));
        assert_eq!(id(5, 1).next(9), Some(id(9, 0)));
        // Clock went backwards: stay in the last millisecond, bump the sequence.
        assert_eq!(id(9, 0).next(3), Some(id(9, 1)));
        assert_eq!(id(9, u64::MAX).next(3), Some(id(10, 0)));
        assert_eq!(id(u64::MAX, u64::MAX).next(0), None);
    }

    #[test]
    fn parses_only_the_strict_form() {
        assert_eq!(
            "1700000000000-7".parse::<EntryId>().ok(),
            Some(EntryId {
                ms: 1_700_000_000_000,
                seq: 7
            })
        );
        let id = EntryId { ms: 12, seq: 3 };
        assert_eq!(id.to_string().parse::<EntryId>().ok(), Some(id));
        for bad in [
            "",
            "12",
            "12-",
            "-3",
            "+1-2",
            "1-+2",
            "a-1",
            "1-2-3",
            "1 -2",
            "99999999999999999999-0",
        ] {
            assert!(bad.parse::<EntryId>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn orders_by_ms_then_seq() {
        let a = EntryId { ms: 1, seq: 9 };
        let b = EntryId { ms: 2, seq: 0 };
        assert!(a < b);
        assert!(EntryId::ZERO < a);
    }
}
