//! The devices' last-seen times as this store last read or wrote them, so that a batch
//! of telemetry reads from the database only the devices it has not met yet.
//!
//! A fleet's batch names a few hundred devices, each of which sent a sample a second or
//! two before; reading all of their rows at every batch was a fifth of the time the
//! store spent on a fleet's telemetry. What is kept here is sound to act on because:
//! - devices are never deleted (a revoked one keeps its row), so a device met once
//!   exists for good, and
//! - a last-seen time never moves backwards (every write is `WHERE last_seen_at < new`),
//!   so a time kept here is a lower bound of the stored one, even where another store
//!   (another server process, or another store of this one: the server opens several)
//!   moved it since. Acting on a lower bound at worst sends an update that the
//!   database's own `WHERE` then declines.
//!
//! The map holds one entry per device this store stored telemetry or a last-seen time
//! for: bounded by the `devices` table, some 100 bytes each.

use std::collections::HashMap;
use std::sync::Mutex;

/// Device id → its last-seen time (unix ms), as last read or written here; `None`: the
/// device had none then.
#[derive(Debug, Default)]
pub(crate) struct SeenTimes {
    times: Mutex<HashMap<Box<str>, Option<i64>>>,
}

impl SeenTimes {
    /// What is known of each of `ids`: `None` for a device not met yet, else its time.
    pub(crate) fn known(&self, ids: &[&str]) -> Vec<Option<Option<i64>>> {
        let times = self.lock();
        ids.iter().map(|&id| times.get(id).copied()).collect()
    }

    /// Notes `at` as a lower bound of `id`'s time: a time known already that is later
    /// stays.
    pub(crate) fn note(&self, id: &str, at: Option<i64>) {
        self.note_all([(id, at)]);
    }

    /// Notes each of `seen` (see [`Self::note`]) under one lock.
    pub(crate) fn note_all<'a>(&self, seen: impl IntoIterator<Item = (&'a str, Option<i64>)>) {
        let mut times = self.lock();
        for (id, at) in seen {
            match times.get_mut(id) {
                Some(known) => *known = (*known).max(at),
                None => {
                    times.insert(id.into(), at);
                }
            }
        }
    }

    /// Forgets `ids`: their next batch reads their times from the database again.
    pub(crate) fn forget<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut times = self.lock();
        for id in ids {
            times.remove(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Option<i64>>> {
        // A panic while holding the lock leaves only whole entries behind: recover them.
        self.times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::SeenTimes;

    #[test]
    fn a_time_noted_never_moves_backwards() {
        let seen = SeenTimes::default();
        assert_eq!(seen.known(&["a"]), vec![None]);
        seen.note("a", None);
        assert_eq!(seen.known(&["a"]), vec![Some(None)]);
        seen.note("a", Some(20));
        seen.note("a", Some(10));
        seen.note("a", None);
        seen.note_all([("a", Some(15)), ("b", Some(5))]);
        assert_eq!(
            seen.known(&["a", "b", "c"]),
            vec![Some(Some(20)), Some(Some(5)), None]
        );
        seen.forget(["a"]);
        assert_eq!(seen.known(&["a", "b"]), vec![None, Some(Some(5))]);
    }
}
