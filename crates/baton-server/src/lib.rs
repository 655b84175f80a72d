//! The Baton server as a library: the doors and engines around `baton-core`. `baton serve` and
//! the tests build an [`App`] from [`Settings`] and run it.
//!
//! # Layout
//! - [`app`]: build and run the application; [`app::router`] mounts the HTTP doors side by side.
//! - Doors, each turning outside input into calls on the core, none importing another:
//!   [`api`] (the REST API), [`console`] (the web console), [`agents`] (the agent's enrollment,
//!   WebSocket and downloads), [`mqtt`] (devices and gateways over MQTT).
//! - Shared by the doors: [`state`] (what handlers and sessions reach), [`connections`] (the
//!   registry of live device sessions, whatever their door), [`web`] (extractors, problem+json,
//!   SSE, ranged downloads), [`tls`] (the TLS configuration), [`artifact_stores`] (the local
//!   directory or S3 bucket artifact bytes live in), [`remote`] (remote sessions relayed between
//!   a person's WebSocket and the device's stream, recorded).
//! - [`engines`]: work no request starts — the rollout engine, the artifact watcher, upkeep jobs.
//! - [`observability`]: the Prometheus recorder behind `/metrics`.
//! - [`error`]: the crate's one error type, the core's errors as the doors answer them.

pub mod agents;
pub mod api;
pub mod app;
pub mod artifact_stores;
pub mod connections;
pub mod console;
pub mod engines;
pub mod error;
pub mod mqtt;
pub mod observability;
pub mod remote;
pub mod state;
pub mod tls;
pub mod web;

pub use app::App;
pub use baton_core::Settings;
pub use error::Error;
