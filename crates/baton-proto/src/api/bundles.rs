//! Support bundles: an archive (`tar.gz`) a device's agent collects on request — its logs of a
//! time window, its inventory, its diagnostics output — and uploads to the server, where it is
//! kept for download. One request (`POST /api/v1/support-bundles`) names one device, a group
//! or a label selector and makes one bundle per device, delivered as a command so a device
//! offline at the time makes its bundle when it returns; the request's progress is
//! `GET /api/v1/support-bundles/requests/{request_id}`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::commands::CommandState;

/// The longest window a bundle's logs may cover: 30 days.
pub const MAX_SINCE_SECS: u64 = 30 * 86_400;
/// The window when a request names none: the last hour.
pub const DEFAULT_SINCE_SECS: u64 = 3600;

/// The header an agent's upload carries the archive's SHA-256 in (hex).
pub const SHA256_HEADER: &str = "x-checksum-sha256";

/// Where a device's agent uploads bundle `id` (`PUT`, with the device's credentials).
pub fn upload_path(id: &str) -> String {
    format!("/api/v1/agent/support-bundles/{id}")
}

/// Where a bundle is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BundleState {
    /// Recorded; the command waits for the device or runs on it.
    Requested,
    /// The device is uploading the archive.
    Uploading,
    /// The archive is in the server's store, ready to download.
    Stored,
    /// The device could not make or upload it, or its command expired; `error` says why.
    Failed,
}

impl BundleState {
    pub const ALL: [BundleState; 4] = [Self::Requested, Self::Uploading, Self::Stored, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Uploading => "uploading",
            Self::Stored => "stored",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// No further change will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Stored | Self::Failed)
    }
}

/// One device's support bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SupportBundle {
    pub id: String,
    /// The request that made it (one per `POST`, shared by every device it named).
    pub request_id: String,
    pub device_id: String,
    /// The command that carries the request to the device.
    pub command_id: String,
    pub state: BundleState,
    /// Who asked (`user:…` or `token:…`) and from which address.
    pub requested_by: String,
    pub source_addr: Option<String>,
    /// The logs cover this many seconds before the device made the bundle.
    pub since_secs: u64,
    pub created_at: DateTime<Utc>,
    pub stored_at: Option<DateTime<Utc>>,
    /// The archive's size and SHA-256, once stored.
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
    /// Why it failed, in words.
    pub error: Option<String>,
}

/// `POST /api/v1/support-bundles`: name exactly one of `device_id`, `group_id` (its subgroups'
/// devices too) or `selector` (labels, e.g. `site=berlin,tier!=test`); the window as `since`
/// (`90s`, `30m`, `1h`, `2d`) or `since_secs` (default one hour).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BundleCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::api::formats::Id>))]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::api::formats::Id>))]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1024))]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 16, example = "1h"))]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2_592_000))]
    pub since_secs: Option<u64>,
}

/// The answer to a request: its id and the bundle made for each device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BundleRequested {
    pub request_id: String,
    pub bundles: Vec<SupportBundle>,
}

/// Filters and page of `GET /api/v1/support-bundles`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct BundleQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Id>, inline))]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Id>, inline))]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::PageLimit>, inline))]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Cursor>, inline))]
    pub cursor: Option<String>,
}

/// A request's progress: how many bundles are in each state, and each device's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BundleProgress {
    pub request_id: String,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub since_secs: u64,
    pub total: u64,
    /// Bundles per state, e.g. `{"requested": 1, "stored": 2}`.
    pub states: BTreeMap<String, u64>,
    pub devices: Vec<DeviceProgress>,
}

impl BundleProgress {
    /// Every bundle is stored or failed.
    pub fn finished(&self) -> bool {
        self.devices.iter().all(|d| d.state.is_final())
    }
}

/// One device's part of a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceProgress {
    pub device_id: String,
    pub device_name: String,
    pub bundle_id: String,
    pub state: BundleState,
    /// Where the command carrying the request is: `QUEUED` (the device is offline), `SENT`,
    /// `ACKED` (the device is making the bundle), or final.
    pub command_state: CommandState,
    pub size_bytes: Option<u64>,
    pub error: Option<String>,
}

/// Seconds in a window written `90s`, `30m`, `1h` or `2d` (a bare number is seconds).
pub fn parse_since(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn windows_are_read_in_seconds_minutes_hours_and_days() {
        assert_eq!(parse_since("90s"), Some(90));
        assert_eq!(parse_since("30m"), Some(1800));
        assert_eq!(parse_since("1h"), Some(3600));
        assert_eq!(parse_since("2d"), Some(172_800));
        assert_eq!(parse_since("45"), Some(45));
        for bad in ["", "h", "1w", "-1h", "1.5h", "1 h"] {
            assert_eq!(parse_since(bad), None, "{bad}");
        }
    }
}
