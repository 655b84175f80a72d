//! Tenants: isolated customers of one Baton installation, managed by platform administrators.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    pub id: String,
    /// Short unique name used at login, e.g. `acme`.
    pub name: String,
    pub display_name: Option<String>,
    /// A disabled tenant's users and tokens are refused.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantCreate {
    /// 1–63 lowercase letters, digits and `-`.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::api::formats::TenantName))]
    pub name: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::api::formats::Text>))]
    pub display_name: Option<String>,
    /// The tenant's first administrator; its `role`, if given, must be `admin`.
    #[serde(default)]
    pub admin: Option<super::access::UserCreate>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::api::formats::Text>))]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}
