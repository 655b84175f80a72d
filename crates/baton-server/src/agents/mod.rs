//! The agents' door: devices running `baton-agent` (or the device SDK) enroll over HTTP, keep one
//! WebSocket open to the server ([`session`]), download their updates' artifacts with their own
//! credentials ([`routes`]) and upload the support bundles they were asked for ([`bundles`]).
//! Live sessions are kept in the shared connection registry (`connections`), which the MQTT
//! door uses too.

pub mod bundles;
pub mod routes;
pub mod session;
pub mod streams;
