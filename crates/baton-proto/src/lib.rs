//! Baton's wire types, shared by the server, the CLI, the API client, the agent and the simulator.
//!
//! # Layout
//! - [`api`]: request and response bodies of the REST API under `/api/v1`, one module per noun.
//! - [`agent`]: the agent's WebSocket protocol: frames, close codes, stream framing.
//! - [`deployment`]: updates on that connection — what the server sends, what the agent reports,
//!   and the execution claims the server signs.
//! - [`features`]: what an agent may announce it understands.
//! - [`streams`]: remote-support streams on that connection: opening, flow control, limits.
//! - [`version`]: version ordering and ranges, for dependency and downgrade checks.
//! - [`inventory`]: what a device reports about itself.
//! - [`mqtt`]: MQTT 3.1.1 and 5 packets, topics and matching, for the MQTT front door.
//! - [`import`]: the device import CSV, read the same way by the CLI and the console.
//! - [`labels`]: label keys, values and label selectors, parsed once here so every side agrees.
//! - [`rfb`]: VNC's protocol as a screen session reads it: versions, security types, and the
//!   filter that keeps a view-only viewer's keys and pointer from the device.
//!
//! This crate does no I/O. Storage rows are never these structs: the server converts explicitly,
//! so the wire format can stay stable while storage evolves.

pub mod agent;
pub mod api;
pub mod deployment;
pub mod features;
pub mod import;
pub mod inventory;
pub mod labels;
pub mod mqtt;
pub mod rfb;
pub mod streams;
pub mod version;

/// The version of the REST API this crate describes; it is the `/api/v1` prefix.
pub const API_VERSION: &str = "v1";
