//! What a device is: hardware, OS, disks and network interfaces, as the agent reports it on
//! connect and whenever it changes. Every field is optional where platforms differ.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Inventory {
    pub hostname: Option<String>,
    /// `linux`, `windows`, `macos`, …
    pub os_family: Option<String>,
    /// e.g. `Debian GNU/Linux`.
    pub os_name: Option<String>,
    pub os_version: Option<String>,
    pub kernel_version: Option<String>,
    /// e.g. `x86_64`, `aarch64`.
    pub architecture: Option<String>,
    pub cpu_model: Option<String>,
    pub cpu_cores: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub disks: Vec<Disk>,
    pub network_interfaces: Vec<NetworkInterface>,
    /// From DMI on Linux where readable.
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub agent_version: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub boot_time: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Disk {
    pub mount_point: String,
    pub file_system: Option<String>,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct NetworkInterface {
    pub name: String,
    pub mac: Option<String>,
    pub addresses: Vec<String>,
}
