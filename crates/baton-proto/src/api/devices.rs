//! Devices: the registry of everything Baton manages, whatever its OS or how it connects.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a device is in its lifecycle.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Waiting for an administrator to approve it.
    Pending,
    /// Managed: pre-registered, or enrolled and approved.
    Active,
    /// Retired: its credentials are revoked; it is kept with its history.
    Decommissioned,
}

impl DeviceStatus {
    pub const ALL: [DeviceStatus; 3] = [Self::Pending, Self::Active, Self::Decommissioned];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Decommissioned => "decommissioned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Whether a device is connected now, and when it was last heard from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Connectivity {
    pub online: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The address the device last connected from.
    pub remote_addr: Option<String>,
}

/// A managed device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    pub id: String,
    pub name: String,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    /// `linux`, `windows`, `macos`, `android`, `rtos`, … as the device reports it.
    pub os_family: Option<String>,
    pub os_version: Option<String>,
    pub architecture: Option<String>,
    pub agent_version: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Ids of the groups the device is directly in.
    pub groups: Vec<String>,
    pub status: DeviceStatus,
    pub connectivity: Connectivity,
    /// How the device connects, `agent` or `mqtt`; `null` until it first connected.
    pub transport: Option<String>,
    /// For a sub-device, the gateway that relays it.
    pub gateway_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Pre-registers a device by serial before it ever connects.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceCreate {
    /// The hardware serial, unique within the tenant.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::api::formats::Serial))]
    pub serial: String,
    /// Defaults to the serial.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::api::formats::Name>))]
    pub name: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::api::formats::Text>))]
    pub manufacturer: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::api::formats::Text>))]
    pub model: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::api::formats::Labels))]
    pub labels: BTreeMap<String, String>,
    /// Ids of groups to put the device in.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::api::formats::Id>))]
    pub groups: Vec<String>,
}

/// Renames and relabels a device. Absent fields stay as they are. In `labels`, a string sets
/// the label and `null` removes it (JSON merge patch).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::api::formats::Name>))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::api::formats::LabelChanges))]
    pub labels: BTreeMap<String, Option<String>>,
}

/// The order of a device list.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeviceSort {
    #[default]
    Name,
    Serial,
    CreatedAt,
    LastSeenAt,
}

impl DeviceSort {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Serial => "serial",
            Self::CreatedAt => "created_at",
            Self::LastSeenAt => "last_seen_at",
        }
    }
}

/// Filters, order and page of `GET /api/v1/devices`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    /// `pending`, `active` or `decommissioned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// OS family, e.g. `linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// A group id: its members, including those of its subgroups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Id>, inline))]
    pub group: Option<String>,
    /// With `group`: only direct members when false. Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    /// A label selector, e.g. `store=berlin-12,tier!=test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// A gateway's device id: the sub-devices it relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Id>, inline))]
    pub gateway_id: Option<String>,
    /// Case-insensitive text found in the name or serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// `name` (default), `serial`, `created_at` or `last_seen_at`; prefix `-` for descending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// 1 to 500; defaults to 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::PageLimit>, inline))]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Cursor>, inline))]
    pub cursor: Option<String>,
}

/// A device secret issued through the API, for devices that never enroll themselves (MQTT
/// devices). The secret is returned once; only its hash is stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceCredential {
    pub device_id: String,
    /// `bd_…`. Over MQTT: the device id as username and this as password, or this alone as
    /// username.
    pub secret: String,
}
