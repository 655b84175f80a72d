//! Waiting for something to become true without sleeping for a guessed time: poll a check
//! until it gives a value, and fail with what it saw last when the patience runs out.

use std::{fmt::Display, future::Future, time::Duration};

/// How long a test waits for something that should happen; generous, since a 2-core machine
/// running the whole suite is slow, and a test that passes never waits this long.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often a check is run again.
const EVERY: Duration = Duration::from_millis(50);

/// What a check gives: a value when done, or not yet (`None`, or `Err` with what it saw).
pub trait Check<T> {
    /// The value, or what was seen instead (if anything).
    fn outcome(self) -> Result<T, Option<String>>;
}

impl<T> Check<T> for Option<T> {
    fn outcome(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Check<T> for Result<T, E> {
    fn outcome(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

/// Runs `check` until it gives a value, within [`PATIENCE`]; then fails naming `what` and what
/// the check saw last.
pub async fn eventually<T, C, F>(what: &str, check: impl FnMut() -> F) -> T
where
    C: Check<T>,
    F: Future<Output = C>,
{
    eventually_within(PATIENCE, what, check).await
}

/// [`eventually`] with a patience of the caller's.
pub async fn eventually_within<T, C, F>(patience: Duration, what: &str, mut check: impl FnMut() -> F) -> T
where
    C: Check<T>,
    F: Future<Output = C>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match check().await.outcome() {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => match last {
                Some(last) => panic!("timed out after {patience:?} waiting until {what}; last seen: {last}"),
                None => panic!("timed out after {patience:?} waiting until {what}"),
            },
            Err(_) => tokio::time::sleep(EVERY).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_check_that_comes_true_gives_its_value() {
        let tries = AtomicU32::new(0);
        let n = eventually("the third try", || async {
            let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= 3 { Ok(n) } else { Err(format!("try {n}")) }
        })
        .await;
        assert_eq!(n, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting until never; last seen: still no")]
    async fn a_check_that_never_comes_true_fails_with_what_it_saw() {
        eventually_within(Duration::from_millis(120), "never", || async { Err::<(), _>("still no") }).await;
    }
}
