//! REST API bodies. Every request body refuses unknown fields, so a typo is an error, not a no-op.

pub mod access;
pub mod artifacts;
pub mod attributes;
pub mod bundles;
pub mod certificates;
pub mod commands;
pub mod devices;
pub mod enrollment;
pub mod events;
pub mod files;
#[cfg(feature = "openapi")]
pub mod formats;
pub mod groups;
pub mod problem;
pub mod remote;
pub mod rollouts;
pub mod telemetry;
pub mod tenants;

use serde::{Deserialize, Serialize};

/// One page of a list. `next_cursor` is opaque; pass it back as `cursor` for the next page.
/// It is `null` on the last page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The count of rows a bulk operation changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Changed {
    pub changed: u64,
}
