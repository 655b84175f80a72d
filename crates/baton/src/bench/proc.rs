//! What the benchmark reads about processes from Linux's /proc: resident and proportional
//! memory, CPU time, names and children.

use std::time::Duration;

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Proportional set size of a process, in bytes: its private pages plus its share of the pages
/// it shares (a forking server's children share most of theirs).
pub fn pss_bytes(pid: u32) -> anyhow::Result<u64> {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// A `Name:   1234 kB` line of a /proc file, in bytes.
fn kib_field(path: &str, name: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no {name} in {path}"))?;
    Ok(kib * 1024)
}

/// A process's command name (`comm`), if it still runs.
pub fn command_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|c| c.trim().to_owned())
}

/// Every process below `pid` (children, their children, …).
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, parent(p)?)))
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let of = found[i];
        found.extend(parents.iter().filter(|(_, parent)| *parent == of).map(|(p, _)| *p));
        i += 1;
    }
    found.remove(0);
    found
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow::anyhow!("odd /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat; here offset by the two before `)`.
    let total = ticks(11) + ticks(12);
    Ok(Duration::from_millis(total * 1000 / clock_ticks()))
}

fn clock_ticks() -> u64 {
    // USER_HZ is 100 on every Linux the project targets.
    100
}

/// A value at a percentile (0–100) of sorted samples.
pub fn percentile(sorted: &[Duration], pct: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((pct / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let me = std::process::id();
        assert!(rss_bytes(me).expect("rss") > 1024 * 1024);
        assert!(cpu_time(me).is_ok());
    }

    #[test]
    fn a_child_process_is_found_below_this_one_with_its_name() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let found = descendants(std::process::id()).contains(&child.id());
        let name = command_name(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found, "the child is below this process");
        assert_eq!(name.as_deref(), Some("sleep"));
        assert!(pss_bytes(std::process::id()).expect("pss") > 0);
    }

    #[test]
    fn percentiles_pick_the_right_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(51));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
