//! The device inventory: what the machine is (host, OS, CPU, memory, disks, network interfaces,
//! hardware identity), collected with `sysinfo` plus a few Linux files sysinfo does not read the
//! way we want (DMI, `/etc/machine-id`).
//!
//! Everything here is best effort: a field the platform does not expose, or that reads as a
//! firmware placeholder, is left `None` rather than failing the whole inventory. Lists are sorted
//! so two collections of an unchanged machine compare equal, which is how the agent decides the
//! inventory changed.
//!
//! Hardware identity (serial, manufacturer, model) comes from DMI and is read on Linux only for
//! now; elsewhere those fields are absent and [`hardware_serial`] returns `None`.

use baton_proto::inventory::{Disk, Inventory, NetworkInterface};
use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, NetworkData, Networks, System};

/// Collects the inventory of this machine. Never fails: what cannot be read is absent.
pub fn collect(agent_version: &str) -> Inventory {
    let (cpu_model, cpu_cores, memory_bytes) = cpu_and_memory();
    Inventory {
        hostname: System::host_name().ok().and_then(|h| clean(&h)),
        os_family: Some(std::env::consts::OS.to_owned()),
        os_name: System::name().ok().and_then(|v| clean(&v)),
        os_version: System::os_version().ok().and_then(|v| clean(&v)),
        kernel_version: System::kernel_version().ok().and_then(|v| clean(&v)),
        architecture: Some(std::env::consts::ARCH.to_owned()),
        cpu_model,
        cpu_cores,
        memory_bytes,
        disks: disks(),
        network_interfaces: network_interfaces(),
        serial: dmi::serial(),
        manufacturer: dmi::manufacturer(),
        model: dmi::model(),
        agent_version: Some(agent_version.to_owned()),
        boot_time: boot_time_ms(),
    }
}

/// A stable identifier of the hardware: the DMI serial when the firmware set a real one, else
/// (on Linux) the systemd machine id as `machine-<id>`, else `None`.
///
/// The machine id survives reboots but not a reinstall; it is the best we have on boards
/// without DMI, and the prefix keeps it from being mistaken for a vendor serial.
pub fn hardware_serial() -> Option<String> {
    dmi::serial().or_else(machine_id)
}

/// Whether an interface is the loopback: named `lo` (Linux) or `lo0` (BSD/macOS), or carrying
/// only loopback addresses (Windows names it "Loopback Pseudo-Interface 1"). Shared with the
/// metrics so both skip the same interfaces.
pub(crate) fn is_loopback(name: &str, data: &NetworkData) -> bool {
    let addresses = data.ip_networks();
    is_loopback_name(name) || (!addresses.is_empty() && addresses.iter().all(|n| n.addr.is_loopback()))
}

fn is_loopback_name(name: &str) -> bool {
    name.strip_prefix("lo").is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

/// CPU model, logical core count and total RAM, from one `System` refreshed only for those.
fn cpu_and_memory() -> (Option<String>, Option<u32>, Option<u64>) {
    let Ok(mut sys) = System::new() else {
        return (None, logical_cores_fallback(), None);
    };
    sys.refresh_cpu_list(CpuRefreshKind::nothing());
    sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    let model = sys.cpus().iter().find_map(|cpu| clean(cpu.brand()));
    let cores = match sys.cpus().len() {
        0 => logical_cores_fallback(),
        n => u32::try_from(n).ok(),
    };
    let memory = Some(sys.total_memory()).filter(|&m| m > 0);
    (model, cores, memory)
}

/// The standard library's count when sysinfo lists no CPU. It honours affinity masks and cgroup
/// quotas, so it can be lower than the hardware count, but it is never wrong about "at least".
fn logical_cores_fallback() -> Option<u32> {
    std::thread::available_parallelism().ok().and_then(|n| u32::try_from(n.get()).ok())
}

/// Real file systems with their size. sysinfo already drops most pseudo file systems; the
/// zero-size check catches the rest. Bind mounts can list a mount point twice: keep one.
fn disks() -> Vec<Disk> {
    let Ok(list) = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage()) else {
        return Vec::new();
    };
    let mut disks: Vec<Disk> = list
        .iter()
        .filter(|d| d.total_space() > 0)
        .map(|d| Disk {
            mount_point: d.mount_point().to_string_lossy().into_owned(),
            file_system: clean(&d.file_system().to_string_lossy()),
            total_bytes: d.total_space(),
        })
        .collect();
    disks.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    disks.dedup_by(|a, b| a.mount_point == b.mount_point);
    disks
}

/// Every interface except loopback, sorted by name (sysinfo hands them over in hash order).
fn network_interfaces() -> Vec<NetworkInterface> {
    let Ok(networks) = Networks::new_with_refreshed_list() else {
        return Vec::new();
    };
    let mut interfaces: Vec<NetworkInterface> = networks
        .iter()
        .map(|(name, data)| (name.to_string_lossy(), data))
        .filter(|(name, data)| !is_loopback(name, data))
        .map(|(name, data)| interface(&name, data))
        .collect();
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    interfaces
}

fn interface(name: &str, data: &NetworkData) -> NetworkInterface {
    let mac = data.mac_address();
    // An all-zero MAC means "none" (tunnels, bridges without ports), not a real address.
    // sysinfo formats MACs as lowercase `aa:bb:cc:dd:ee:ff`, which is the wire format.
    let mac = (!mac.is_unspecified()).then(|| mac.to_string());
    let mut addresses: Vec<String> = data.ip_networks().iter().map(|n| n.addr.to_string()).collect();
    addresses.sort();
    addresses.dedup();
    NetworkInterface { name: name.to_owned(), mac, addresses }
}

/// Boot time in milliseconds since the epoch; `None` when unknown (sysinfo reports 0).
fn boot_time_ms() -> Option<i64> {
    let secs = System::boot_time().ok().filter(|&s| s > 0)?;
    i64::try_from(secs).ok()?.checked_mul(1000)
}

/// A string worth reporting: trimmed (files end in a newline, firmware strings sometimes in
/// NULs), non-empty and free of control characters, which the server refuses in text.
fn clean(raw: &str) -> Option<String> {
    let value = raw.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let usable = !value.is_empty() && !value.chars().any(char::is_control);
    usable.then(|| value.to_owned())
}

/// The systemd machine id as `machine-<id>`. A freshly imaged system may hold the literal
/// `uninitialized` until first boot completes, so only a hex id is accepted.
#[cfg(target_os = "linux")]
fn machine_id() -> Option<String> {
    let raw = std::fs::read_to_string("/etc/machine-id").ok()?;
    let id = raw.trim();
    let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit());
    valid.then(|| format!("machine-{id}"))
}

#[cfg(not(target_os = "linux"))]
fn machine_id() -> Option<String> {
    None
}

/// Hardware identity from DMI (SMBIOS) as the Linux kernel exposes it. Files may be missing
/// (ARM boards, containers) or readable by root only (`product_serial`): both mean `None`.
#[cfg(target_os = "linux")]
mod dmi {
    const DIR: &str = "/sys/class/dmi/id";

    pub(super) fn serial() -> Option<String> {
        read("product_serial")
    }

    pub(super) fn manufacturer() -> Option<String> {
        read("sys_vendor")
    }

    pub(super) fn model() -> Option<String> {
        read("product_name")
    }

    fn read(file: &str) -> Option<String> {
        let raw = std::fs::read_to_string(std::path::Path::new(DIR).join(file)).ok()?;
        real_value(&raw)
    }

    /// A DMI string that identifies something: [`clean`](super::clean) and not a firmware
    /// placeholder. Runs of zeros count too (`0`, `00000000` are common "no serial" fill-ins).
    pub(super) fn real_value(raw: &str) -> Option<String> {
        let value = super::clean(raw)?;
        let placeholder = value.chars().all(|c| c == '0') || PLACEHOLDERS.iter().any(|p| value.eq_ignore_ascii_case(p));
        (!placeholder).then_some(value)
    }

    /// Firmware fill-ins that identify nothing; compared case-insensitively after trimming.
    const PLACEHOLDERS: &[&str] = &[
        "to be filled by o.e.m.",
        "default string",
        "system serial number",
        "system product name",
        "system manufacturer",
        "not specified",
        "not applicable",
        "n/a",
        "none",
        "oem",
        "o.e.m.",
        "0123456789",
    ];
}

/// Other platforms: not collected yet, so absent.
#[cfg(not(target_os = "linux"))]
mod dmi {
    pub(super) fn serial() -> Option<String> {
        None
    }

    pub(super) fn manufacturer() -> Option<String> {
        None
    }

    pub(super) fn model() -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the system itself says the hostname is: the `hostname` command, else /etc/hostname.
    fn system_hostname() -> Option<String> {
        let from_command = std::process::Command::new("hostname")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        from_command
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_owned()))
            .filter(|h| !h.is_empty())
    }

    #[test]
    fn hostname_matches_the_system() {
        let expected = system_hostname().expect("this machine has a hostname");
        assert_eq!(collect("test").hostname.as_deref(), Some(expected.as_str()));
    }

    #[test]
    fn basic_fields_are_filled() {
        let inv = collect("1.2.3");
        assert_eq!(inv.os_family.as_deref(), Some(std::env::consts::OS));
        assert_eq!(inv.architecture.as_deref(), Some(std::env::consts::ARCH));
        assert_eq!(inv.agent_version.as_deref(), Some("1.2.3"));
        assert!(inv.cpu_cores.is_some_and(|n| n >= 1), "cpu_cores = {:?}", inv.cpu_cores);
        assert!(inv.memory_bytes.is_some_and(|m| m > 0), "memory_bytes = {:?}", inv.memory_bytes);
        let now_ms = chrono::Utc::now().timestamp_millis();
        assert!(inv.boot_time.is_some_and(|b| b > 0 && b <= now_ms), "boot_time = {:?}", inv.boot_time);
    }

    #[test]
    fn disks_have_mount_points_and_sizes() {
        let inv = collect("test");
        assert!(!inv.disks.is_empty(), "no disk found");
        for disk in &inv.disks {
            assert!(!disk.mount_point.is_empty());
            assert!(disk.total_bytes > 0);
        }
    }

    #[test]
    fn interfaces_skip_loopback_and_use_lowercase_macs() {
        for iface in collect("test").network_interfaces {
            assert!(!is_loopback_name(&iface.name), "loopback {} listed", iface.name);
            if let Some(mac) = iface.mac {
                assert_eq!(mac.len(), 17, "{mac}");
                assert_eq!(mac, mac.to_lowercase());
                assert_ne!(mac, "00:00:00:00:00:00");
            }
            for addr in &iface.addresses {
                assert!(addr.parse::<std::net::IpAddr>().is_ok(), "{addr} is not an IP address");
            }
        }
    }

    #[test]
    fn loopback_names() {
        assert!(is_loopback_name("lo"));
        assert!(is_loopback_name("lo0"));
        assert!(!is_loopback_name("eth0"));
        assert!(!is_loopback_name("lowpan0"));
        assert!(!is_loopback_name("wlo1"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn placeholders_are_not_values() {
        use dmi::real_value as real_dmi_value;
        for raw in ["", "  \n", "To Be Filled By O.E.M.", "Default string", "System Serial Number", "None", "0", "0000"]
        {
            assert_eq!(real_dmi_value(raw), None, "{raw:?}");
        }
        assert_eq!(real_dmi_value("bad\u{1}value"), None);
        assert_eq!(real_dmi_value(" PF2ABCDE\n").as_deref(), Some("PF2ABCDE"));
        assert_eq!(real_dmi_value("LENOVO\0\0").as_deref(), Some("LENOVO"));
        // Only DMI strings are checked against placeholders: a host may well be called "none".
        assert_eq!(clean("none\n").as_deref(), Some("none"));
    }

    #[test]
    fn hardware_serial_is_dmi_or_machine_id() {
        let serial = hardware_serial();
        let dmi_serial = dmi::serial();
        if dmi_serial.is_some() {
            assert_eq!(serial, dmi_serial);
        } else if cfg!(target_os = "linux") && std::path::Path::new("/etc/machine-id").exists() {
            let serial = serial.expect("machine-id fallback");
            assert!(serial.starts_with("machine-") && serial.len() > "machine-".len(), "{serial}");
        }
    }
}
