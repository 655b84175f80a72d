//! Telemetry queries: the latest values, time series in buckets, and the live stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How values in one bucket are combined.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    #[default]
    Avg,
    Min,
    Max,
    Last,
}

/// `GET /api/v1/devices/{id}/telemetry`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct TelemetryQuery {
    /// The metric, e.g. `cpu.usage_pct`.
    pub metric: String,
    /// Start (RFC 3339); default one hour before `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// End (RFC 3339); default now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// Bucket width in seconds; default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1))]
    pub bucket_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agg: Option<Aggregate>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Series {
    pub metric: String,
    pub agg: Aggregate,
    pub bucket_secs: u32,
    pub points: Vec<Point>,
}

/// One bucket: its start and the combined value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Point {
    pub ts: DateTime<Utc>,
    pub value: f64,
    /// Samples in the bucket.
    pub count: u64,
}

/// The newest value of each metric of a device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Latest {
    pub device_id: String,
    pub at: Option<DateTime<Utc>>,
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// One event of the live telemetry stream (Server-Sent Events, event name `telemetry`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TelemetryEvent {
    pub device_id: String,
    pub ts: DateTime<Utc>,
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// Filters of the live telemetry stream; with none, every device of the tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct TelemetryStreamQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// A group id (subgroups included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
}
