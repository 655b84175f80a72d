//! Baton's core: what the server knows and decides, without any door or engine. Storage,
//! access, the bus and the clock underneath; the domain modules on top, each owning its tables
//! and queries. The server crate (`baton-server`) puts doors (HTTP API, console, agent
//! WebSocket, MQTT) and engines (rollouts, jobs, watchers) around it; nothing here imports them,
//! and Cargo keeps it so: this crate depends on no web framework.
//!
//! # Layout
//! - [`config`]: the layered settings of a server.
//! - [`store`]: the database (SQLite or PostgreSQL), migrations, the SQL builder, search helpers.
//! - [`access`]: principals, tenant scope, permissions and roles, users, tokens, sessions.
//! - [`bus`]: publish/subscribe between parts of the server (in-process today).
//! - [`clock`]: the server's now, injectable so tests move time instead of waiting.
//! - [`pagination`]: keyset cursors shared by every list.
//! - [`tenants`], [`devices`], [`attributes`], [`groups`], [`enrollment`], [`telemetry`],
//!   [`commands`], [`events`], [`artifacts`], [`rollouts`], [`windows`]: domain modules, each
//!   owning its tables and queries.
//! - [`certificates`]: device identity with certificates (tenant authorities, issuing,
//!   recognising a certificate at a handshake).
//! - [`remote`]: remote-support sessions (a terminal today), their tokens, recordings and the
//!   tenant's remote-access policy.
//! - [`bundles`]: support bundles (a device's logs, inventory and diagnostics as an archive),
//!   requested through the commands outbox and kept in the artifact store.
//! - [`lifecycle`]: use cases above several domain modules (decommission, reject).
//! - [`setups`]: enrollments and connections' presence, written many per transaction.
//! - [`error`]: the crate's one error type.

pub mod access;
pub mod artifacts;
pub mod attributes;
mod batches;
pub mod bundles;
pub mod bus;
pub mod certificates;
pub mod clock;
pub mod commands;
pub mod config;
pub mod devices;
pub mod enrollment;
pub mod error;
pub mod events;
pub mod groups;
pub mod lifecycle;
pub mod pagination;
pub mod remote;
pub mod rollouts;
pub mod setups;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod windows;

pub use config::Settings;
pub use error::Error;
