//! Reconnect delays: exponential (1 s doubling to 60 s) with jitter, so many agents that
//! lost the same server do not all come back in the same second.

use std::time::Duration;

/// Exponential backoff with "equal jitter": each delay is between half and all of the
/// current step.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    /// Starts at `base`, never exceeds `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            step: base,
        }
    }

    /// The next delay. `jitter` is a uniformly random `u32` (passed in so tests need no
    /// randomness): 0 gives half the step, `u32::MAX` the whole step.
    pub fn next_delay(&mut self, jitter: u32) -> Duration {
        let step_ms = u64::try_from(self.step.as_millis()).unwrap_or(u64::MAX);
        let half = step_ms.checked_div(2).unwrap_or(0);
        let extra = u128::from(half)
            .saturating_mul(u128::from(jitter))
            .checked_div(u128::from(u32::MAX))
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(half);
        let delay = Duration::from_millis(half.saturating_add(extra));
        self.step = self.step.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to the first step (after a session that worked).
    pub fn reset(&mut self) {
        self.step = self.base;
    }

    /// Straight to the longest step (after a refusal that will not go away by retrying
    /// quickly, such as a revoked certificate).
    pub fn saturate(&mut self) {
        self.step = self.max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_in_range() {
        let mut b = Backoff::default();
        let full: Vec<u64> = (0..9).map(|_| b.next_delay(u32::MAX).as_secs()).collect();
        assert_eq!(full, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(0), Duration::from_millis(500));
        assert_eq!(b.next_delay(0), Duration::from_secs(1));
        let mid = b.next_delay(u32::MAX / 2);
        assert!(
            mid > Duration::from_secs(2) && mid < Duration::from_secs(4),
            "{mid:?}"
        );
    }

    #[test]
    fn saturate_jumps_to_the_cap() {
        let mut b = Backoff::default();
        b.saturate();
        let d = b.next_delay(0);
        assert_eq!(d, Duration::from_secs(30));
        assert!(b.next_delay(u32::MAX) <= Duration::from_secs(60));
    }
}
