//! What the batching writers (`commands::writer`, `setups`) share: one task takes whatever is
//! waiting in its queue into a single transaction, so a storm costs a few commits instead of one
//! per device.

use tokio::sync::mpsc;

/// `first` and what is already waiting behind it, at most `max` in all; never waits for more.
pub(crate) fn take_waiting<T>(rx: &mut mpsc::Receiver<T>, first: T, max: usize) -> Vec<T> {
    let mut jobs = vec![first];
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    jobs
}
