//! Device attributes: what a device reports about itself (`reported`) and what operators want it
//! to have (`desired`), both free-form JSON objects. Operators change `desired` with a JSON merge
//! patch; the device's session pushes the change to it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A device's attributes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceAttributes {
    /// What the device says about itself (firmware settings, sensor configuration, …).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub reported: Map<String, Value>,
    /// What operators want the device to have; sent to it while it is connected.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub desired: Map<String, Value>,
}

/// A JSON merge patch of the desired attributes: a key with a value sets it, a key with `null`
/// removes it, absent keys stay as they are. Changes are shallow: an object value replaces the
/// stored one whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = crate::api::formats::AttributeChanges))]
#[serde(transparent)]
pub struct DesiredPatch(pub Map<String, Value>);
