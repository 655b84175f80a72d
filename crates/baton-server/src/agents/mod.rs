//! The agents' door: devices running `baton-agent` (or the device SDK) enroll over HTTP, keep one
//! WebSocket open to the server ([`session`]), and download their updates' artifacts with their
//! own credentials ([`routes`]). Live sessions are kept in the shared connection registry
//! (`connections`), which the MQTT door uses too.

pub mod routes;
pub mod session;
pub mod streams;
