//! Reconnect delays: exponential with jitter, 1 s doubling to a 30 s cap, reset after a good
//! connection.

use std::time::Duration;

use rand::Rng;

/// The delay before the next reconnect attempt.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap, attempt: 0 }
    }

    /// The nominal delay of the next attempt (without jitter): base, 2 base, 4 base, ... cap.
    pub fn nominal(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay to wait now, with "equal jitter": half the nominal delay plus a random part of
    /// the other half, so many agents cut off together do not all come back at the same instant.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal();
        self.attempt = self.attempt.saturating_add(1);
        let half = nominal / 2;
        let jitter = if half.is_zero() { Duration::ZERO } else { rand::rng().random_range(Duration::ZERO..=half) };
        half + jitter
    }

    /// After a connection that was good (welcomed and stable), start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_bounded_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let expected = [1, 2, 4, 8, 16, 30, 30, 30];
        for secs in expected {
            let nominal = Duration::from_secs(secs);
            assert_eq!(backoff.nominal(), nominal);
            let delay = backoff.next_delay();
            assert!(delay >= nominal / 2 && delay <= nominal, "{delay:?} outside [{:?}, {nominal:?}]", nominal / 2);
        }
        backoff.reset();
        assert_eq!(backoff.nominal(), Duration::from_secs(1));
    }
}
