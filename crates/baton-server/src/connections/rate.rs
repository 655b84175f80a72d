//! Rate limit on device connections and enrollments per client address: a token bucket, so a
//! fleet coming back after an outage is admitted at a steady pace instead of all at once, and
//! one misbehaving address cannot exhaust the server.

use std::{collections::HashMap, net::IpAddr, sync::Mutex, time::Instant};

pub struct ConnectLimiter {
    per_second: f64,
    burst: f64,
    /// Tokens left and when they were counted, per address; pruned when it grows.
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl ConnectLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second: f64::from(per_second), burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `ip`; `Err(seconds)` until one is available.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            let full = self.burst;
            let rate = self.per_second;
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < full);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else if self.per_second > 0.0 {
            Err(((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64)
        } else {
            Err(60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_then_the_address_waits() {
        let limiter = ConnectLimiter::new(1, 3);
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(limiter.check(ip).is_ok());
        }
        assert_eq!(limiter.check(ip), Err(1));
        assert!(limiter.check([10, 0, 0, 2].into()).is_ok(), "other addresses have their own bucket");
    }
}
