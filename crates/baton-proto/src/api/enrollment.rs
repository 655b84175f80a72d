//! Enrollment: how a device gets its identity. An enrollment token (made by an admin, put in a
//! factory image) lets devices enroll themselves; pre-registered serials are approved on
//! arrival, unknown ones wait for approval when the token asks for it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::inventory::Inventory;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentToken {
    pub id: String,
    pub name: String,
    /// Groups enrolled devices are put in.
    pub groups: Vec<String>,
    /// Labels enrolled devices get.
    pub labels: BTreeMap<String, String>,
    /// Unknown serials wait in `pending` until approved.
    pub requires_approval: bool,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollmentTokenCreate {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::api::formats::TokenName))]
    pub name: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::api::formats::Id>))]
    pub groups: Vec<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::api::formats::Labels))]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub requires_approval: bool,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_uses: Option<u32>,
    /// Hours until the token expires; absent for no expiry.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 87600))]
    pub expires_in_hours: Option<u32>,
}

/// The new token with its secret, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentTokenCreated {
    pub token: EnrollmentToken,
    pub secret: String,
}

/// `POST /api/v1/enroll`, sent by the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The enrollment token's secret.
    pub token: String,
    /// The hardware serial: the device's identity across re-enrollments.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::api::formats::Serial))]
    pub serial: String,
    #[serde(default)]
    pub inventory: Option<Inventory>,
    /// A certificate signing request (PEM) for the device's own key: the answer then carries a
    /// client certificate for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

/// The device's credentials: keep `secret`, it is not shown again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollResponse {
    pub device_id: String,
    pub secret: String,
    /// `active`, or `pending` until an administrator approves the device.
    pub status: crate::api::devices::DeviceStatus,
    /// The keys the tenant signs updates with now: the agent pins them (trust on first use).
    #[serde(default)]
    pub update_keys: Vec<crate::api::artifacts::VerificationKey>,
    /// The client certificate signed for the request's `csr`, when one was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<crate::api::certificates::IssuedCertificate>,
}

/// Devices to pre-register in one go (from a CSV file), all or nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceImport {
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10000))]
    pub devices: Vec<crate::api::devices::DeviceCreate>,
}
