//! Route handlers, one module per noun. Handlers stay thin: extract, call the domain module,
//! wrap the answer. Each carries its OpenAPI description, which `api::router` collects.

pub mod artifacts;
pub mod attributes;
pub mod auth;
pub mod bundles;
pub mod certificates;
pub mod commands;
pub mod devices;
pub mod enrollment;
pub mod events;
pub mod files;
pub mod groups;
pub mod logs;
pub mod rollouts;
pub mod sessions;
pub mod telemetry;
pub mod tenants;
pub mod tokens;
pub mod users;
