//! `baton serve` and `baton config`: run the server with layered settings.

use std::{net::SocketAddr, path::PathBuf};

use baton_server::{App, Settings};
use serde::Serialize;

use crate::process::{init_tracing, shutdown_signal};

#[derive(clap::Args, Serialize, Default)]
pub struct ServeArgs {
    /// Settings file (TOML); see `baton config print-default`.
    #[arg(long, env = "BATON_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address for the HTTP API, console and agent endpoint.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_addr: Option<SocketAddr>,
    /// Directory of the embedded database (when --database-url is not set).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL, e.g. postgres://baton@db/baton, instead of the embedded database.
    #[arg(long, hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    /// Address of the MQTT listener for devices without the agent (docs/mqtt.md).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    mqtt_addr: Option<SocketAddr>,
    /// Address of MQTT over TLS (used with --tls-cert).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    mqtt_tls_addr: Option<SocketAddr>,
    /// Do not listen for MQTT.
    #[arg(long)]
    #[serde(skip)]
    no_mqtt: bool,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the annotated settings file with every default.
    PrintDefault,
}

pub fn config(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::PrintDefault => print!("{}", baton_core::config::DEFAULT_TEMPLATE),
    }
    Ok(())
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut settings = Settings::load(args.config.as_deref(), &args)?;
    if args.no_mqtt {
        settings.mqtt_enabled = false;
    }
    init_tracing(settings.log_format, "info,sqlx=warn,tower_http=warn");
    let app = App::build(settings).await?;
    let shutdown = shutdown_signal()?;
    let url = app.url();
    if let Some(password) = &app.bootstrap().generated_password {
        say!("First start: created user `admin` in tenant `default` with the password below (shown once):");
        say!("  {password}");
    }
    say!("Baton is listening on {url}");
    say!("  API docs:  {url}/api/docs");
    if let Some(addr) = app.mqtt_addr() {
        say!("  MQTT:      {addr} (devices without the agent; see docs/mqtt.md)");
    }
    if let Some(addr) = app.mqtt_tls_addr() {
        say!("  MQTT/TLS:  {addr}");
    }
    say!("  Sign in:   baton login --server {url} --username admin");
    tracing::info!(%url, "serving");
    app.run_until_stopped(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
