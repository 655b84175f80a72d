//! The Baton server as a library: `baton serve` and the tests build an [`App`] from [`Settings`]
//! and run it.
//!
//! # Layout
//! - [`app`]: build and run the application.
//! - [`config`]: layered settings.
//! - [`store`]: the database (SQLite or PostgreSQL), migrations, the SQL builder.
//! - [`access`]: principals, tenant scope, permissions and roles, users, tokens, sessions.
//! - [`tenants`], [`devices`], [`attributes`], [`groups`], [`enrollment`], [`telemetry`],
//!   [`commands`], [`events`], [`artifacts`], [`rollouts`]: domain modules, each owning its tables
//!   and queries.
//! - [`clock`]: the server's now, injectable so tests move time instead of waiting.
//! - [`agents`]: live agent connections (sessions, registry, connection rate limit).
//! - [`bus`]: publish/subscribe between parts of the server (in-process today).
//! - [`observability`]: the Prometheus recorder behind `/metrics`.
//! - [`pagination`]: keyset cursors shared by every list.
//! - [`http`]: the HTTP edge — router, extractors, problem+json, OpenAPI, TLS.
//! - [`error`]: the crate's one error type.

pub mod access;
pub mod agents;
pub mod app;
pub mod artifacts;
pub mod attributes;
pub mod bus;
pub mod clock;
pub mod commands;
pub mod config;
pub mod console;
pub mod devices;
pub mod enrollment;
pub mod error;
pub mod events;
pub mod groups;
pub mod http;
pub mod jobs;
pub mod mqtt;
pub mod observability;
pub mod pagination;
pub mod rollouts;
pub mod store;
pub mod telemetry;
pub mod tenants;

pub use app::App;
pub use config::Settings;
pub use error::Error;
