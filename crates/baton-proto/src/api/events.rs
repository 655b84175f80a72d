//! The device event log: what happened to devices, queryable and streamed live.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: String,
    pub device_id: Option<String>,
    /// `device.enrolled`, `device.approved`, `device.online`, `device.offline`,
    /// `device.decommissioned`, `device.inventory`, `device.attributes`, `device.credentials`,
    /// `device.certificate_issued`, `device.certificate_revoked`,
    /// `command.finished`, …
    pub kind: String,
    pub data: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// Filters and page of `GET /api/v1/events` (newest first).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Id>, inline))]
    pub device: Option<String>,
    /// Exact kind, or a prefix ending in `.` such as `device.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::PageLimit>, inline))]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Cursor>, inline))]
    pub cursor: Option<String>,
}

/// Filters of the live event stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct EventStreamQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Id>, inline))]
    pub device: Option<String>,
    /// Exact kind, or a prefix ending in `.` such as `device.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}
