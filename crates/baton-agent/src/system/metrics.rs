//! Periodic system metrics: one [`SystemMetrics`] lives as long as the agent and turns each
//! [`SystemMetrics::sample`] call into a flat map of metric name to `f64`, the shape the
//! telemetry wire type (`Sample::metrics`) carries.
//!
//! Metric names (every value an `f64`; a metric the machine cannot provide is absent, never 0):
//!
//! | name | meaning |
//! |---|---|
//! | `cpu.usage_pct` | all CPUs busy, 0–100, since the previous sample (since `new()` at first) |
//! | `load.1m`, `load.5m`, `load.15m` | load averages; not on Windows, which has none |
//! | `mem.total_bytes`, `mem.used_bytes`, `mem.used_pct` | RAM; "used" excludes reclaimable cache |
//! | `swap.total_bytes`, `swap.used_bytes` | swap (0 when there is none) |
//! | `disk[<mount>].total_bytes`, `disk[<mount>].used_bytes`, `disk[<mount>].used_pct` | per file system (see below) |
//! | `temp[<sensor label>].celsius` | per sensor that reports a value; repeated labels get ` #2`, ` #3`… |
//! | `battery.level_pct`, `battery.charging` (1/0), `battery.health_pct` | Linux system batteries |
//! | `net.rx_bytes_per_s`, `net.tx_bytes_per_s` | non-loopback interfaces summed; not in the first sample |
//! | `uptime.secs` | seconds since boot |
//! | `processes.count` | processes (not threads) |
//!
//! Disk "used" is total minus what is available to users, so blocks reserved for root count as
//! used: that is what fills up and breaks applications. Network rates cover the time since the
//! previous sample.
//!
//! Names are at most [`MAX_NAME_CHARS`] characters without control characters (the server's
//! rule for names): labels taken from the machine are cleaned and shortened to fit. Values that
//! are not finite are dropped rather than sent, so a division by a zero total cannot leak NaN.

use std::collections::BTreeMap;
use std::time::Instant;

use sysinfo::{
    Components, CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, ProcessRefreshKind,
    ProcessesToUpdate, RefreshKind, System,
};

/// Longest metric name the server accepts, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// The sysinfo state a sampler keeps between samples. Each part is optional because sysinfo
/// refuses to build some of them on platforms it does not support; the rest still works.
pub struct SystemMetrics {
    system: Option<System>,
    disks: Option<Disks>,
    networks: Option<Networks>,
    components: Option<Components>,
    /// When the network counters were last read; `None` until the first sample, so the first
    /// sample has no rates instead of rates over an unknown interval.
    last_network_refresh: Option<Instant>,
}

impl SystemMetrics {
    /// Builds the sampler and takes the CPU baseline, so the first [`sample`](Self::sample)
    /// already reports usage since this call.
    pub fn new() -> Self {
        let refresh = RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::everything());
        Self {
            system: log_err("system", System::new_with_specifics(refresh)),
            disks: log_err("disks", Disks::new_with_refreshed_list_specifics(disk_refresh())),
            // Listed on the first sample, which is what starts the rate interval.
            networks: log_err("networks", Networks::new()),
            components: log_err("components", Components::new_with_refreshed_list()),
            last_network_refresh: None,
        }
    }

    /// Refreshes everything and returns the current values (see the module doc for names).
    pub fn sample(&mut self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        self.sample_system(&mut out);
        self.sample_disks(&mut out);
        self.sample_temperatures(&mut out);
        self.sample_network(&mut out);
        sample_load(&mut out);
        if let Ok(uptime) = System::uptime() {
            put(&mut out, "uptime.secs".into(), uptime as f64);
        }
        #[cfg(target_os = "linux")]
        battery::sample(&mut out);
        out
    }

    fn sample_system(&mut self, out: &mut BTreeMap<String, f64>) {
        let Some(sys) = self.system.as_mut() else { return };
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        // Threads would inflate the count tenfold on Linux, and nothing more is needed per
        // process than its existence.
        let processes = ProcessRefreshKind::nothing().without_tasks();
        sys.refresh_processes_specifics(ProcessesToUpdate::All, true, processes);

        // The usage covers the time since the previous CPU refresh (`new()` took the first one).
        // sysinfo ignores refreshes closer than `MINIMUM_CPU_UPDATE_INTERVAL` (200 ms) and keeps
        // the previous value, so a quick second call repeats rather than divides by ~0. Clamped
        // because the counters are read non-atomically and the name promises a percentage.
        put(out, "cpu.usage_pct".into(), f64::from(sys.global_cpu_usage()).clamp(0.0, 100.0));
        put_memory(out, sys);
        put(out, "processes.count".into(), sys.processes().len() as f64);
    }

    fn sample_disks(&mut self, out: &mut BTreeMap<String, f64>) {
        let Some(disks) = self.disks.as_mut() else { return };
        // `true` drops unmounted file systems; new mounts are picked up by the same refresh.
        disks.refresh_specifics(true, disk_refresh());
        for disk in disks.iter().filter(|d| d.total_space() > 0) {
            let mount = disk.mount_point().to_string_lossy();
            let total = disk.total_space();
            let used = total.saturating_sub(disk.available_space());
            put(out, labelled("disk", &mount, ".total_bytes"), total as f64);
            put(out, labelled("disk", &mount, ".used_bytes"), used as f64);
            put(out, labelled("disk", &mount, ".used_pct"), percent(used, total));
        }
    }

    fn sample_temperatures(&mut self, out: &mut BTreeMap<String, f64>) {
        let Some(components) = self.components.as_mut() else { return };
        components.refresh(true);
        // Labels are not unique (two identical NVMe drives, several ACPI zones): number the
        // repeats instead of letting one overwrite the other.
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for component in components.iter() {
            let Some(celsius) = component.temperature() else { continue };
            let label = match component.label().trim() {
                "" => "unknown",
                label => label,
            };
            let count = seen.entry(label.to_owned()).and_modify(|n| *n += 1).or_insert(1);
            let label = if *count == 1 { label.to_owned() } else { format!("{label} #{count}") };
            put(out, labelled("temp", &label, ".celsius"), f64::from(celsius));
        }
    }

    fn sample_network(&mut self, out: &mut BTreeMap<String, f64>) {
        let Some(networks) = self.networks.as_mut() else { return };
        networks.refresh(true);
        let now = Instant::now();
        let previous = self.last_network_refresh.replace(now);
        let Some(previous) = previous else { return };
        let secs = now.duration_since(previous).as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        // `received()`/`transmitted()` are the bytes since the previous refresh, per interface;
        // sysinfo starts a new interface at 0 and never goes negative on counter resets.
        let (rx, tx) = networks
            .iter()
            .filter(|(name, data)| !super::inventory::is_loopback(&name.to_string_lossy(), data))
            .fold((0u64, 0u64), |(rx, tx), (_, d)| {
                (rx.saturating_add(d.received()), tx.saturating_add(d.transmitted()))
            });
        put(out, "net.rx_bytes_per_s".into(), rx as f64 / secs);
        put(out, "net.tx_bytes_per_s".into(), tx as f64 / secs);
    }
}

impl Default for SystemMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Only what the disk metrics need: sizes. I/O counters would cost a read of /proc/diskstats.
fn disk_refresh() -> DiskRefreshKind {
    DiskRefreshKind::nothing().with_storage()
}

fn put_memory(out: &mut BTreeMap<String, f64>, sys: &System) {
    let (total, used) = (sys.total_memory(), sys.used_memory());
    if total > 0 {
        put(out, "mem.total_bytes".into(), total as f64);
        put(out, "mem.used_bytes".into(), used as f64);
        put(out, "mem.used_pct".into(), percent(used, total));
    }
    put(out, "swap.total_bytes".into(), sys.total_swap() as f64);
    put(out, "swap.used_bytes".into(), sys.used_swap() as f64);
}

/// Load averages where the OS keeps them. On Windows sysinfo emulates them with a background
/// thread that reads 0 for its first minutes, which would be reported as a calm machine.
fn sample_load(out: &mut BTreeMap<String, f64>) {
    if cfg!(windows) {
        return;
    }
    if let Ok(load) = System::load_average() {
        put(out, "load.1m".into(), load.one);
        put(out, "load.5m".into(), load.five);
        put(out, "load.15m".into(), load.fifteen);
    }
}

/// `part` as a percentage of `whole`; NaN for a zero whole, which [`put`] then drops.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { f64::NAN } else { part as f64 * 100.0 / whole as f64 }
}

/// Adds a metric unless its value is not finite (or, defensively, its name is invalid).
fn put(out: &mut BTreeMap<String, f64>, name: String, value: f64) {
    if value.is_finite() && is_valid_name(&name) {
        out.insert(name, value);
    } else {
        tracing::debug!(%name, value, "dropping metric");
    }
}

/// `prefix[label]suffix`, with control characters in the label replaced by `_` and the label
/// shortened so the whole name fits in [`MAX_NAME_CHARS`]. Truncating can make two very long
/// labels collide; that beats dropping both.
fn labelled(prefix: &str, label: &str, suffix: &str) -> String {
    let fixed = prefix.chars().count() + suffix.chars().count() + 2;
    let room = MAX_NAME_CHARS.saturating_sub(fixed);
    let label: String = label.chars().map(|c| if c.is_control() { '_' } else { c }).take(room).collect();
    format!("{prefix}[{label}]{suffix}")
}

/// The server's rule for metric names.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= MAX_NAME_CHARS && !name.chars().any(char::is_control)
}

fn log_err<T>(what: &str, result: Result<T, sysinfo::Error>) -> Option<T> {
    result.map_err(|e| tracing::debug!(what, error = %e, "system metrics source unavailable")).ok()
}

/// Battery state from the Linux power-supply class. Other platforms report none for now:
/// sysinfo does not read batteries.
#[cfg(target_os = "linux")]
mod battery {
    use std::collections::BTreeMap;
    use std::path::Path;

    /// What one battery reports; every field is optional because drivers differ.
    #[derive(Debug, Default, Clone, PartialEq)]
    pub(super) struct Battery {
        /// 0–100.
        pub(super) capacity: Option<f64>,
        pub(super) charging: Option<bool>,
        /// Full capacity now and as designed, in the driver's unit (µWh or µAh).
        pub(super) full: Option<f64>,
        pub(super) full_design: Option<f64>,
    }

    pub(super) fn sample(out: &mut BTreeMap<String, f64>) {
        for (name, value) in combine(&read_all(Path::new("/sys/class/power_supply"))) {
            super::put(out, name.to_owned(), value);
        }
    }

    /// Several batteries (some laptops have two) become one reading: the level weighted by each
    /// battery's full capacity when all report it, charging if any charges, health as total
    /// full over total design.
    pub(super) fn combine(batteries: &[Battery]) -> Vec<(&'static str, f64)> {
        let mut out = Vec::new();
        if let Some(level) = level(batteries) {
            out.push(("battery.level_pct", level));
        }
        let charging: Vec<bool> = batteries.iter().filter_map(|b| b.charging).collect();
        if !charging.is_empty() {
            out.push(("battery.charging", if charging.contains(&true) { 1.0 } else { 0.0 }));
        }
        if let Some(health) = health(batteries) {
            out.push(("battery.health_pct", health));
        }
        out
    }

    fn level(batteries: &[Battery]) -> Option<f64> {
        let levels: Vec<(f64, Option<f64>)> =
            batteries.iter().filter_map(|b| Some((b.capacity?.clamp(0.0, 100.0), b.full))).collect();
        if levels.is_empty() {
            return None;
        }
        let weights: Option<Vec<f64>> = levels.iter().map(|(_, full)| *full).collect();
        match weights {
            Some(w) if w.iter().sum::<f64>() > 0.0 => {
                Some(levels.iter().zip(&w).map(|((l, _), w)| l * w).sum::<f64>() / w.iter().sum::<f64>())
            }
            _ => Some(levels.iter().map(|(l, _)| l).sum::<f64>() / levels.len() as f64),
        }
    }

    /// Not clamped to 100: a new battery often holds more than its design capacity.
    fn health(batteries: &[Battery]) -> Option<f64> {
        let pairs: Vec<(f64, f64)> = batteries.iter().filter_map(|b| Some((b.full?, b.full_design?))).collect();
        let design: f64 = pairs.iter().map(|(_, d)| d).sum();
        (design > 0.0).then(|| pairs.iter().map(|(f, _)| f).sum::<f64>() * 100.0 / design)
    }

    /// Every system battery under `dir` (normally /sys/class/power_supply), in name order.
    pub(super) fn read_all(dir: &Path) -> Vec<Battery> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        paths.iter().filter_map(|p| read_one(p)).collect()
    }

    /// One supply if it is a battery powering this machine. Wireless mice and keyboards show up
    /// as batteries too, with `scope` = `Device`; they are not what we report.
    fn read_one(dir: &Path) -> Option<Battery> {
        if text(dir, "type")? != "Battery" || text(dir, "scope").is_some_and(|s| s == "Device") {
            return None;
        }
        // Energy (µWh) and charge (µAh) are alternatives: a driver exposes one pair.
        let (full, full_design) = match number(dir, "energy_full") {
            Some(full) => (Some(full), number(dir, "energy_full_design")),
            None => (number(dir, "charge_full"), number(dir, "charge_full_design")),
        };
        Some(Battery {
            capacity: number(dir, "capacity"),
            charging: text(dir, "status").map(|s| s == "Charging"),
            full,
            full_design,
        })
    }

    fn text(dir: &Path, file: &str) -> Option<String> {
        let raw = std::fs::read_to_string(dir.join(file)).ok()?;
        Some(raw.trim().to_owned()).filter(|s| !s.is_empty())
    }

    fn number(dir: &Path, file: &str) -> Option<f64> {
        text(dir, file)?.parse::<f64>().ok().filter(|n| n.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_samples() -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
        let mut metrics = SystemMetrics::new();
        let first = metrics.sample();
        // sysinfo ignores CPU refreshes closer together than this.
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL + std::time::Duration::from_millis(50));
        let second = metrics.sample();
        (first, second)
    }

    #[test]
    fn samples_have_sane_core_metrics() {
        let (first, second) = two_samples();
        for sample in [&first, &second] {
            let cpu = sample.get("cpu.usage_pct").copied().expect("cpu.usage_pct");
            assert!((0.0..=100.0).contains(&cpu), "cpu.usage_pct = {cpu}");
            assert!(sample.get("mem.total_bytes").is_some_and(|&m| m > 0.0));
            let used_pct = sample.get("mem.used_pct").copied().expect("mem.used_pct");
            assert!((0.0..=100.0).contains(&used_pct), "mem.used_pct = {used_pct}");
            assert!(sample.get("processes.count").is_some_and(|&n| n >= 1.0));
            assert!(sample.get("uptime.secs").is_some_and(|&s| s > 0.0));
            assert!(sample.keys().any(|k| k.starts_with("disk[") && k.ends_with("].total_bytes")));
        }
        if cfg!(target_os = "linux") {
            assert!(second.contains_key("load.1m"));
        }
    }

    #[test]
    fn network_rates_start_on_the_second_sample() {
        let (first, second) = two_samples();
        assert!(!first.contains_key("net.rx_bytes_per_s"));
        assert!(!first.contains_key("net.tx_bytes_per_s"));
        assert!(second.get("net.rx_bytes_per_s").is_some_and(|&r| r >= 0.0), "{second:?}");
        assert!(second.get("net.tx_bytes_per_s").is_some_and(|&r| r >= 0.0), "{second:?}");
    }

    #[test]
    fn every_name_is_valid_and_every_value_finite() {
        let (first, second) = two_samples();
        for (name, value) in first.iter().chain(&second) {
            assert!(is_valid_name(name), "invalid name {name:?}");
            assert!(value.is_finite(), "{name} = {value}");
        }
    }

    #[test]
    fn disk_percentages_are_bounded() {
        let (_, second) = two_samples();
        for (name, value) in second.iter().filter(|(n, _)| n.starts_with("disk[") && n.ends_with(".used_pct")) {
            assert!((0.0..=100.0).contains(value), "{name} = {value}");
        }
    }

    #[test]
    fn labels_are_cleaned_and_truncated() {
        let name = labelled("temp", "bad\nlabel\u{7f}", ".celsius");
        assert_eq!(name, "temp[bad_label_].celsius");
        let long = "x".repeat(500);
        let name = labelled("disk", &long, ".used_pct");
        assert_eq!(name.chars().count(), MAX_NAME_CHARS);
        assert!(name.ends_with("].used_pct") && is_valid_name(&name));
        // Multi-byte labels are cut on characters, not bytes.
        let name = labelled("disk", &"é".repeat(500), ".used_bytes");
        assert_eq!(name.chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn non_finite_values_and_bad_names_are_dropped() {
        let mut out = BTreeMap::new();
        put(&mut out, "a".into(), f64::NAN);
        put(&mut out, "b".into(), f64::INFINITY);
        put(&mut out, "c".into(), percent(1, 0));
        put(&mut out, "bad\tname".into(), 1.0);
        put(&mut out, "y".repeat(MAX_NAME_CHARS + 1), 1.0);
        put(&mut out, "ok".into(), 1.5);
        assert_eq!(out.into_iter().collect::<Vec<_>>(), vec![("ok".to_owned(), 1.5)]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn no_battery_means_no_battery_metrics() {
        assert!(battery::combine(&[]).is_empty());
        let (_, second) = two_samples();
        if battery::read_all(std::path::Path::new("/sys/class/power_supply")).is_empty() {
            assert!(!second.keys().any(|k| k.starts_with("battery.")), "{second:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn batteries_combine() {
        use battery::{Battery, combine};
        let one = Battery { capacity: Some(80.0), charging: Some(true), full: Some(45.0), full_design: Some(50.0) };
        assert_eq!(
            combine(std::slice::from_ref(&one)),
            vec![("battery.level_pct", 80.0), ("battery.charging", 1.0), ("battery.health_pct", 90.0)]
        );
        let other = Battery { capacity: Some(20.0), charging: Some(false), full: Some(15.0), full_design: Some(50.0) };
        // Level weighted by full capacity: (80·45 + 20·15) / 60 = 65; health 60/100.
        assert_eq!(
            combine(&[one, other]),
            vec![("battery.level_pct", 65.0), ("battery.charging", 1.0), ("battery.health_pct", 60.0)]
        );
        let bare = Battery { capacity: Some(50.0), full_design: Some(0.0), ..Battery::default() };
        assert_eq!(combine(&[bare]), vec![("battery.level_pct", 50.0)]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_battery_files_are_read() {
        use battery::{Battery, combine};
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |sub: &str, file: &str, text: &str| {
            let path = dir.path().join(sub);
            std::fs::create_dir_all(&path).expect("mkdir");
            std::fs::write(path.join(file), text).expect("write");
        };
        write("BAT0", "type", "Battery\n");
        write("BAT0", "capacity", "57\n");
        write("BAT0", "status", "Discharging\n");
        write("BAT0", "charge_full", "4000000\n");
        write("BAT0", "charge_full_design", "5000000\n");
        write("AC", "type", "Mains\n");
        write("hid-mouse", "type", "Battery\n");
        write("hid-mouse", "scope", "Device\n");
        write("hid-mouse", "capacity", "5\n");

        let batteries = battery::read_all(dir.path());
        assert_eq!(
            batteries,
            vec![Battery {
                capacity: Some(57.0),
                charging: Some(false),
                full: Some(4_000_000.0),
                full_design: Some(5_000_000.0)
            }]
        );
        assert_eq!(
            combine(&batteries),
            vec![("battery.level_pct", 57.0), ("battery.charging", 0.0), ("battery.health_pct", 80.0)]
        );
    }
}
