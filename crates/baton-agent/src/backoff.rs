//! Reconnection delays: exponential from one second up to a cap, with jitter, so a fleet that
//! lost its server does not come back in one synchronized wave.

use std::time::Duration;

use rand::Rng;

pub struct Backoff {
    attempt: u32,
    cap: Duration,
}

impl Backoff {
    pub fn new(cap: Duration) -> Self {
        Self { attempt: 0, cap: cap.max(Duration::from_secs(1)) }
    }

    /// The next delay: half of the exponential step plus a random part of the other half.
    pub fn next_delay(&mut self) -> Duration {
        let step = Duration::from_secs(1u64 << self.attempt.min(16)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis().max(1) as u64))
    }

    /// When a server that is busy said to come back after `secs` seconds (`Retry-After`):
    /// that long, plus up to a second of jitter so the refused do not return in one wave. The
    /// exponential steps are left where they were: the server named its own delay.
    pub fn retry_after(secs: u64) -> Duration {
        Duration::from_secs(secs) + Duration::from_millis(rand::rng().random_range(0..=1_000))
    }

    /// After a connection that worked for a while, start again from short delays.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stop_at_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(8));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_secs(1));
        assert!(delays[3] >= Duration::from_secs(4));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn a_retry_after_is_honoured_with_at_most_a_second_of_jitter() {
        for _ in 0..100 {
            let d = Backoff::retry_after(3);
            assert!(d >= Duration::from_secs(3) && d <= Duration::from_secs(4), "{d:?}");
        }
    }
}
