//! Who is in which wave: pure functions, so the rules are plain to read and test. Members are
//! put in a stable order by a hash of the rollout's id and the device's id — the same rollout
//! always picks the same first devices, different rollouts pick different ones (so the same
//! stores are not always first), and the order does not follow creation time or names.

use baton_proto::api::rollouts::Wave;
use sha2::{Digest, Sha256};

/// The device ids in the rollout's stable order.
pub fn order(rollout_id: &str, mut device_ids: Vec<String>) -> Vec<String> {
    device_ids.sort_by_cached_key(|d| {
        let digest = Sha256::new().chain_update(rollout_id).chain_update([0]).chain_update(d).finalize();
        (<[u8; 32]>::from(digest), d.clone())
    });
    device_ids
}

/// Where each wave ends, counted in devices from the start: cumulative, never decreasing, the
/// last one `total`. A wave that would be empty (a share too small to reach the next device)
/// still ends one further, so every wave has a device while there are devices left.
pub fn wave_ends(waves: &[Wave], total: usize) -> Vec<usize> {
    let mut ends = Vec::with_capacity(waves.len().max(1));
    let mut last = 0;
    for wave in waves {
        let end = match *wave {
            // Rounded up: 1 % of 50 devices is one device, not none.
            // Less a hair, so 7 % of 100 is 7 devices, not 8 (0.07 × 100 = 7.000000000000001).
            Wave::Percent(p) => (p * total as f64 / 100.0 - 1e-9).ceil() as usize,
            Wave::Count(c) => c as usize,
        };
        let end = end.max(last + 1).min(total);
        if end <= last {
            break;
        }
        ends.push(end);
        last = end;
    }
    match ends.last_mut() {
        Some(end) => *end = total,
        None => ends.push(total),
    }
    ends
}

/// The wave (from 1) of the device at `position` (from 0).
pub fn wave_of(ends: &[usize], position: usize) -> u32 {
    let index = ends.iter().position(|&end| position < end).unwrap_or(ends.len().saturating_sub(1));
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// Milliseconds before attempt `attempt` (from 2) of a retry: `base × 2ⁿ⁻²`, capped, with full
/// jitter (`jitter` in 0..1), and at least one second.
pub fn backoff_ms(attempt: u32, base_secs: u64, max_secs: u64, jitter: f64) -> i64 {
    let exp = attempt.saturating_sub(2).min(30);
    let ceiling = base_secs.saturating_mul(1 << exp).min(max_secs).max(1) as f64 * 1000.0;
    ((ceiling * jitter.clamp(0.0, 1.0)) as i64).max(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_become_cumulative_wave_ends_and_the_last_takes_the_rest() {
        let waves = [Wave::Percent(10.0), Wave::Percent(50.0), Wave::Percent(100.0)];
        assert_eq!(wave_ends(&waves, 200), vec![20, 100, 200]);
        assert_eq!(wave_ends(&[Wave::Count(5), Wave::Percent(50.0)], 200), vec![5, 200]);
        assert_eq!(wave_ends(&[Wave::Percent(1.0), Wave::Percent(2.0), Wave::Percent(100.0)], 10), vec![1, 2, 10]);
        assert_eq!(wave_ends(&[Wave::Count(50), Wave::Count(80)], 3), vec![3]);
        assert_eq!(wave_ends(&[Wave::Percent(7.0), Wave::Percent(100.0)], 100), vec![7, 100]);
        assert_eq!(wave_ends(&[], 7), vec![7]);
        assert_eq!(wave_ends(&[Wave::Percent(10.0)], 0), vec![0]);
    }

    #[test]
    fn positions_fall_in_their_wave() {
        let ends = [20, 100, 200];
        assert_eq!((wave_of(&ends, 0), wave_of(&ends, 19), wave_of(&ends, 20), wave_of(&ends, 199)), (1, 1, 2, 3));
    }

    #[test]
    fn the_order_is_stable_per_rollout_and_differs_between_rollouts() {
        let ids: Vec<String> = (0..50).map(|i| format!("device-{i:02}")).collect();
        let a = order("r1", ids.clone());
        let mut shuffled = ids.clone();
        shuffled.reverse();
        assert_eq!(order("r1", shuffled), a);
        assert_ne!(order("r2", ids.clone()), a);
        assert_ne!(a, ids);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff_ms(2, 60, 3600, 1.0), 60_000);
        assert_eq!(backoff_ms(3, 60, 3600, 1.0), 120_000);
        assert_eq!(backoff_ms(20, 60, 3600, 1.0), 3_600_000);
        assert_eq!(backoff_ms(3, 60, 3600, 0.0), 1000);
    }
}
