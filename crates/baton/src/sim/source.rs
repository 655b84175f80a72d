//! A synthetic device: an inventory drawn from a few plausible models, and metrics that move
//! like a real machine's (a CPU that wanders and spikes, a temperature that follows it, a disk
//! that slowly fills, a battery that drains and recharges). Everything comes from one RNG
//! seeded by the device's index, so device 42 behaves the same in every run; only the time
//! between samples (real time, through [`DeviceSource::sample`]) varies.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use baton_agent::DeviceSource;
use baton_proto::inventory::{Disk, Inventory, NetworkInterface};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// An operating system a model ships with.
struct Os {
    family: &'static str,
    name: &'static str,
    version: &'static str,
    kernel: &'static str,
}

const UBUNTU: Os = Os { family: "linux", name: "Ubuntu", version: "22.04", kernel: "5.15.0-105-generic" };
const DEBIAN: Os = Os { family: "linux", name: "Debian GNU/Linux", version: "12", kernel: "6.1.0-18-arm64" };
const YOCTO: Os = Os { family: "linux", name: "Poky (Yocto Project)", version: "4.0.17", kernel: "5.15.71-yocto" };
const WINDOWS: Os =
    Os { family: "windows", name: "Windows 10 IoT Enterprise LTSC", version: "10.0.19044", kernel: "19044" };
const ANDROID_11: Os = Os { family: "android", name: "Android", version: "11", kernel: "4.19.157-perf" };
const ANDROID_13: Os = Os { family: "android", name: "Android", version: "13", kernel: "5.10.157-android13" };

/// A hardware model and how devices of it behave.
struct Model {
    name: &'static str,
    manufacturer: &'static str,
    systems: &'static [Os],
    architecture: &'static str,
    cpu_model: &'static str,
    cpu_cores: u32,
    memory_gib: u64,
    disk_gb: u64,
    interface: &'static str,
    battery: bool,
    /// Typical received and sent bytes per second.
    rx: f64,
    tx: f64,
}

const MODELS: &[Model] = &[
    Model {
        name: "Kiosk K2",
        manufacturer: "Meridian Kiosk Systems",
        systems: &[WINDOWS, UBUNTU],
        architecture: "x86_64",
        cpu_model: "Intel(R) Celeron(R) J4125 CPU @ 2.00GHz",
        cpu_cores: 4,
        memory_gib: 8,
        disk_gb: 128,
        interface: "enp1s0",
        battery: false,
        rx: 12_000.0,
        tx: 3_000.0,
    },
    Model {
        name: "POS T650",
        manufacturer: "Tillwright",
        systems: &[ANDROID_11, ANDROID_13],
        architecture: "aarch64",
        cpu_model: "Qualcomm Snapdragon 665",
        cpu_cores: 8,
        memory_gib: 4,
        disk_gb: 64,
        interface: "wlan0",
        battery: true,
        rx: 4_000.0,
        tx: 2_000.0,
    },
    Model {
        name: "Signage S1",
        manufacturer: "Lumen Displays",
        systems: &[DEBIAN, ANDROID_11],
        architecture: "aarch64",
        cpu_model: "ARM Cortex-A72",
        cpu_cores: 4,
        memory_gib: 2,
        disk_gb: 32,
        interface: "eth0",
        battery: false,
        rx: 60_000.0,
        tx: 1_500.0,
    },
    Model {
        name: "Gateway G3",
        manufacturer: "Fieldbridge",
        systems: &[YOCTO, DEBIAN],
        architecture: "aarch64",
        cpu_model: "NXP i.MX 8M Mini (Cortex-A53)",
        cpu_cores: 2,
        memory_gib: 1,
        disk_gb: 8,
        interface: "eth0",
        battery: false,
        rx: 20_000.0,
        tx: 25_000.0,
    },
    Model {
        name: "Handheld H5",
        manufacturer: "Tillwright",
        systems: &[ANDROID_13],
        architecture: "aarch64",
        cpu_model: "Qualcomm Snapdragon 680",
        cpu_cores: 8,
        memory_gib: 6,
        disk_gb: 128,
        interface: "wlan0",
        battery: true,
        rx: 3_000.0,
        tx: 1_000.0,
    },
];

const GIB: u64 = 1 << 30;

/// A battery that drains to `low` and recharges to `high`, in percent.
struct Battery {
    level: f64,
    charging: bool,
    drain_per_hour: f64,
    charge_per_hour: f64,
    low: f64,
    high: f64,
}

/// One simulated device.
pub struct SimSource {
    serial: String,
    inventory: Inventory,
    rng: StdRng,
    cores: f64,
    disk_label: String,
    cpu: f64,
    cpu_base: f64,
    load: f64,
    mem: f64,
    mem_base: f64,
    disk: f64,
    disk_per_day: f64,
    temp: f64,
    ambient: f64,
    battery: Option<Battery>,
    rx: f64,
    tx: f64,
    uptime: f64,
    last: Option<Instant>,
}

impl SimSource {
    /// Device `index` of a fleet whose serials start with `prefix`: serial `{prefix}-{index:05}`.
    pub fn new(prefix: &str, index: u64) -> Self {
        let serial = serial(prefix, index);
        let mut rng = StdRng::seed_from_u64(index);
        let model = &MODELS[rng.random_range(0..MODELS.len())];
        let os = &model.systems[rng.random_range(0..model.systems.len())];
        let windows = os.family == "windows";
        let mount = if windows { "C:\\" } else { "/" };
        let uptime = rng.random_range(600.0..30.0 * 86_400.0);
        let inventory = Inventory {
            hostname: Some(serial.clone()),
            os_family: Some(os.family.into()),
            os_name: Some(os.name.into()),
            os_version: Some(os.version.into()),
            kernel_version: Some(os.kernel.into()),
            architecture: Some(model.architecture.into()),
            cpu_model: Some(model.cpu_model.into()),
            cpu_cores: Some(model.cpu_cores),
            memory_bytes: Some(model.memory_gib * GIB),
            disks: vec![Disk {
                mount_point: mount.into(),
                file_system: Some(if windows { "NTFS" } else { "ext4" }.into()),
                total_bytes: model.disk_gb * 1_000_000_000,
            }],
            network_interfaces: vec![NetworkInterface {
                name: if windows { "Ethernet".into() } else { model.interface.into() },
                mac: Some(mac(index)),
                addresses: vec![format!("10.{}.{}.{}", (index >> 16) & 0xff, (index >> 8) & 0xff, index & 0xff)],
            }],
            serial: Some(serial.clone()),
            manufacturer: Some(model.manufacturer.into()),
            model: Some(model.name.into()),
            agent_version: Some(baton_agent::AGENT_VERSION.into()),
            boot_time: Some(now_ms() - (uptime * 1000.0) as i64),
        };
        let battery = model.battery.then(|| Battery {
            level: rng.random_range(30.0..100.0),
            charging: false,
            drain_per_hour: rng.random_range(4.0..9.0),
            charge_per_hour: rng.random_range(25.0..45.0),
            low: rng.random_range(12.0..25.0),
            high: rng.random_range(95.0..100.0),
        });
        let cpu_base = rng.random_range(8.0..35.0);
        let mem_base = rng.random_range(30.0..70.0);
        let ambient = rng.random_range(28.0..40.0);
        Self {
            serial,
            inventory,
            cores: f64::from(model.cpu_cores),
            disk_label: format!("disk[{mount}].used_pct"),
            cpu: cpu_base,
            cpu_base,
            load: f64::from(model.cpu_cores) * cpu_base / 100.0,
            mem: mem_base,
            mem_base,
            disk: rng.random_range(20.0..70.0),
            disk_per_day: rng.random_range(0.2..2.0),
            temp: ambient + cpu_base * 0.45,
            ambient,
            battery,
            rx: model.rx,
            tx: model.tx,
            uptime,
            last: None,
            rng,
        }
    }

    /// Moves the device `secs` seconds forward and returns one sample.
    pub fn advance(&mut self, secs: f64) -> BTreeMap<String, f64> {
        let secs = secs.max(0.0);
        let rng = &mut self.rng;
        // CPU: pulled back to the device's usual level, with noise and now and then a spike.
        self.cpu += 0.2 * (self.cpu_base - self.cpu) + 6.0 * gauss(rng);
        if rng.random_bool(0.05) {
            self.cpu += rng.random_range(25.0..55.0);
        }
        self.cpu = self.cpu.clamp(2.0, 95.0);
        let runnable = self.cores * self.cpu / 100.0 * rng.random_range(0.8..1.3);
        self.load = (self.load + 0.5 * (runnable - self.load)).max(0.0);
        self.mem = (self.mem + 0.1 * (self.mem_base - self.mem) + 1.5 * gauss(rng)).clamp(10.0, 97.0);
        // The disk fills slowly; past 92 % a cleanup (log rotation, cache purge) frees space.
        self.disk += self.disk_per_day * secs / 86_400.0 + 0.002 * gauss(rng).abs();
        if self.disk > 92.0 {
            self.disk = rng.random_range(45.0..60.0);
        }
        self.disk = self.disk.clamp(1.0, 99.0);
        let heat = self.ambient + self.cpu * 0.45;
        self.temp = (self.temp + 0.3 * (heat - self.temp) + 0.3 * gauss(rng)).clamp(20.0, 95.0);
        self.uptime += secs;
        let burst = |rng: &mut StdRng| if rng.random_bool(0.03) { rng.random_range(10.0..50.0) } else { 1.0 };
        let busy = 1.0 + self.cpu / 100.0;
        let rx = self.rx * rng.random_range(0.3..1.7) * busy * burst(rng);
        let tx = self.tx * rng.random_range(0.3..1.7) * busy * burst(rng);

        let mut out = BTreeMap::new();
        out.insert("cpu.usage_pct".to_owned(), round(self.cpu, 1));
        out.insert("load.1m".to_owned(), round(self.load, 2));
        out.insert("mem.used_pct".to_owned(), round(self.mem, 1));
        out.insert(self.disk_label.clone(), round(self.disk, 2));
        out.insert("temp[cpu].celsius".to_owned(), round(self.temp, 1));
        out.insert("net.rx_bytes_per_s".to_owned(), rx.round());
        out.insert("net.tx_bytes_per_s".to_owned(), tx.round());
        out.insert("uptime.secs".to_owned(), self.uptime.floor());
        if let Some(b) = &mut self.battery {
            let hours = secs / 3_600.0;
            if b.charging {
                b.level += b.charge_per_hour * hours;
                b.charging = b.level < b.high;
            } else {
                b.level -= b.drain_per_hour * busy * hours;
                b.charging = b.level <= b.low;
            }
            b.level = b.level.clamp(0.0, 100.0);
            out.insert("battery.level_pct".to_owned(), round(b.level, 1));
            out.insert("battery.charging".to_owned(), if b.charging { 1.0 } else { 0.0 });
        }
        out
    }

    /// A simulated reboot: uptime starts again and the boot time moves to now.
    pub fn reboot(&mut self) {
        self.uptime = 0.0;
        self.inventory.boot_time = Some(now_ms());
        self.cpu = (self.cpu_base + 30.0).min(95.0);
    }
}

impl DeviceSource for SimSource {
    fn inventory(&mut self) -> Inventory {
        self.inventory.clone()
    }

    fn sample(&mut self) -> BTreeMap<String, f64> {
        let now = Instant::now();
        let secs = self.last.map_or(0.0, |last| now.duration_since(last).as_secs_f64());
        self.last = Some(now);
        self.advance(secs)
    }

    fn serial(&self) -> Option<String> {
        Some(self.serial.clone())
    }
}

/// A [`SimSource`] shared by the agent and the command runner, and kept across restarts of a
/// flapping device's agent so its metrics carry on where they were.
#[derive(Clone)]
pub struct SharedSource(Arc<Mutex<SimSource>>);

impl SharedSource {
    pub fn new(source: SimSource) -> Self {
        Self(Arc::new(Mutex::new(source)))
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, SimSource> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DeviceSource for SharedSource {
    fn inventory(&mut self) -> Inventory {
        self.lock().inventory()
    }

    fn sample(&mut self) -> BTreeMap<String, f64> {
        self.lock().sample()
    }

    fn serial(&self) -> Option<String> {
        self.lock().serial()
    }
}

/// The serial of device `index`.
pub fn serial(prefix: &str, index: u64) -> String {
    format!("{prefix}-{index:05}")
}

/// A locally administered MAC address derived from the index.
fn mac(index: u64) -> String {
    let [.., a, b, c] = index.to_be_bytes();
    format!("02:ba:70:{a:02x}:{b:02x}:{c:02x}")
}

/// Roughly standard normal noise (a sum of three uniforms, scaled).
fn gauss(rng: &mut StdRng) -> f64 {
    (rng.random::<f64>() + rng.random::<f64>() + rng.random::<f64>() - 1.5) * 2.0
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_range(metrics: &BTreeMap<String, f64>, name: &str, low: f64, high: f64) {
        let value = metrics.get(name).copied().unwrap_or_else(|| panic!("{name} missing from {metrics:?}"));
        assert!((low..=high).contains(&value), "{name} = {value} is outside {low}..={high}");
    }

    #[test]
    fn values_stay_in_range_over_a_thousand_samples() {
        let mut batteries = 0;
        for index in 0..40 {
            let mut device = SimSource::new("sim", index);
            let windows = device.inventory().os_family.as_deref() == Some("windows");
            let disk = if windows { "disk[C:\\].used_pct" } else { "disk[/].used_pct" };
            let mut charged = false;
            for step in 0..1_000 {
                // Mostly the usual interval, with a long gap now and then (a device offline).
                let secs = if step % 250 == 249 { 6.0 * 3_600.0 } else { 30.0 };
                let m = device.advance(secs);
                in_range(&m, "cpu.usage_pct", 2.0, 95.0);
                in_range(&m, "load.1m", 0.0, 16.0);
                in_range(&m, "mem.used_pct", 10.0, 97.0);
                in_range(&m, disk, 1.0, 99.0);
                in_range(&m, "temp[cpu].celsius", 20.0, 95.0);
                in_range(&m, "net.rx_bytes_per_s", 0.0, 10_000_000.0);
                in_range(&m, "net.tx_bytes_per_s", 0.0, 10_000_000.0);
                in_range(&m, "uptime.secs", 0.0, 1e9);
                if m.contains_key("battery.level_pct") {
                    in_range(&m, "battery.level_pct", 0.0, 100.0);
                    let charging = m["battery.charging"];
                    assert!(charging == 0.0 || charging == 1.0, "charging = {charging}");
                    charged |= charging == 1.0;
                }
            }
            if device.battery.is_some() {
                batteries += 1;
                assert!(charged, "device {index}'s battery never recharged");
            }
        }
        assert!((1..40).contains(&batteries), "only some models have a battery: {batteries} of 40");
    }

    #[test]
    fn the_same_index_gives_the_same_device_and_the_same_sequence() {
        let (mut a, mut b, mut other) =
            (SimSource::new("sim", 42), SimSource::new("sim", 42), SimSource::new("sim", 43));
        let strip = |mut i: Inventory| {
            i.boot_time = None;
            i
        };
        assert_eq!(strip(a.inventory()), strip(b.inventory()));
        let run = |s: &mut SimSource| (0..200).map(|_| s.advance(30.0)).collect::<Vec<_>>();
        let first = run(&mut a);
        assert_eq!(first, run(&mut b));
        assert_ne!(first, run(&mut other));
    }

    #[test]
    fn the_inventory_names_the_device_by_its_index() {
        let mut device = SimSource::new("sim", 42);
        let inventory = device.inventory();
        assert_eq!(inventory.hostname.as_deref(), Some("sim-00042"));
        assert_eq!(device.serial().as_deref(), Some("sim-00042"));
        assert_eq!(inventory.network_interfaces[0].mac.as_deref(), Some("02:ba:70:00:00:2a"));
        assert_eq!(inventory.disks.len(), 1);
        let families: std::collections::BTreeSet<String> =
            (0..100).filter_map(|i| SimSource::new("sim", i).inventory().os_family).collect();
        assert_eq!(families.into_iter().collect::<Vec<_>>(), ["android", "linux", "windows"]);
    }

    #[test]
    fn a_reboot_starts_the_uptime_again() {
        let mut device = SimSource::new("sim", 7);
        assert!(device.advance(30.0)["uptime.secs"] >= 600.0);
        device.reboot();
        assert_eq!(device.advance(30.0)["uptime.secs"], 30.0);
    }
}
