//! Rate limit on logins: a fixed window of attempts per client address and per account, so a
//! password cannot be guessed at network speed. In memory: per server node, reset on restart.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Keys kept before old ones are dropped; bounds memory under a spray of usernames.
const MAX_KEYS: usize = 100_000;

/// Attempts allowed per key and window.
#[derive(Debug)]
pub struct LoginLimiter {
    max_attempts: u32,
    window: Duration,
    /// Keyed by `ip:<addr>` and `user:<tenant>/<name>`; pruned when it grows.
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    pub fn new(max_attempts: u32, window: Duration) -> Self {
        Self { max_attempts, window, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts an attempt for every key; `Err(seconds)` to wait when any key is over its limit.
    pub fn attempt(&self, keys: &[String]) -> Result<(), u64> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > MAX_KEYS {
            windows.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if windows.len() > MAX_KEYS {
                // Under a spray of usernames, keep counting by address only.
                windows.retain(|key, _| key.starts_with("ip:"));
            }
        }
        let mut wait = None;
        for key in keys {
            let entry = windows.entry(key.clone()).or_insert((now, 0));
            if now.duration_since(entry.0) >= self.window {
                *entry = (now, 0);
            }
            entry.1 += 1;
            if entry.1 > self.max_attempts {
                let left = self.window.saturating_sub(now.duration_since(entry.0));
                wait = Some(left.as_secs().max(1));
            }
        }
        wait.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_after_the_limit_is_refused_with_a_wait() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let keys = ["ip:1.2.3.4".to_owned()];
        for _ in 0..3 {
            assert!(limiter.attempt(&keys).is_ok());
        }
        let wait = limiter.attempt(&keys).expect_err("fourth is refused");
        assert!((1..=60).contains(&wait));
        assert!(limiter.attempt(&["ip:5.6.7.8".to_owned()]).is_ok(), "other clients are unaffected");
    }
}
