//! Black-box tests of the REST API: the real server on a random port, driven over HTTP through
//! `baton-client` (and raw requests for malformed input). Runs on SQLite by default and on
//! PostgreSQL when `BATON_TEST_DATABASE_URL` is set.

mod access;
mod agent;
mod agent_protocol;
mod artifact_stores;
mod artifacts;
mod attributes;
mod bad_input;
mod bundles;
mod certificates;
mod commands;
mod connections;
mod console;
mod console_browser;
mod console_bundles;
mod console_files;
mod console_pages;
mod console_remote;
mod console_rollouts;
mod console_walk;
mod console_web;
mod contract;
mod deployments;
mod devices;
mod docs;
mod enrollment;
mod fleet;
mod groups;
mod mqtt;
mod mqtt_clients;
mod mqtt_gateway;
mod mqtt_robustness;
mod mqtt_sessions;
mod mqtt_thingsboard;
mod mqtt_updates;
mod openapi_walk;
mod remote;
mod rollouts;
mod support;
mod telemetry;
mod tenancy;
mod tls;
