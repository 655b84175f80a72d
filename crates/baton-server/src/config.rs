//! Settings: defaults → file (`--config baton.toml`) → `BATON_*` environment → flags.
//! Settings are built once in `main` and passed down; nothing reads a global.

use std::{net::SocketAddr, path::PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The annotated template `baton config print-default` prints; every value in it is the default.
pub const DEFAULT_TEMPLATE: &str = include_str!("../baton.example.toml");

/// Keys that may come from the environment (`BATON_<KEY>`); others are ignored, so unrelated
/// `BATON_*` variables of the CLI or the tests do not break the server.
const ENV_KEYS: &[&str] = &[
    "http_addr",
    "data_dir",
    "database_url",
    "public_url",
    "tls_cert",
    "tls_key",
    "session_ttl_hours",
    "login_attempts_per_minute",
    "max_body_bytes",
    "heartbeat_secs",
    "telemetry_interval_secs",
    "telemetry_retention_days",
    "command_expiry_check_secs",
    "device_connects_per_second",
    "device_connect_burst",
    "log_format",
    "mqtt_enabled",
    "mqtt_addr",
    "mqtt_tls_addr",
    "mqtt_max_packet_bytes",
    "mqtt_messages_per_second",
    "mqtt_message_burst",
    "mqtt_max_keepalive_secs",
    "admin_password",
    "bootstrap_token",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub session_ttl_hours: u32,
    pub login_attempts_per_minute: u32,
    pub max_body_bytes: usize,
    pub heartbeat_secs: u32,
    pub telemetry_interval_secs: u32,
    pub telemetry_retention_days: u32,
    pub command_expiry_check_secs: u32,
    pub device_connects_per_second: u32,
    pub device_connect_burst: u32,
    pub mqtt_enabled: bool,
    pub mqtt_addr: SocketAddr,
    pub mqtt_tls_addr: SocketAddr,
    pub mqtt_max_packet_bytes: usize,
    pub mqtt_messages_per_second: u32,
    pub mqtt_message_burst: u32,
    pub mqtt_max_keepalive_secs: u32,
    pub log_format: LogFormat,
    /// From `BATON_ADMIN_PASSWORD` only.
    #[serde(skip_serializing)]
    pub admin_password: Option<String>,
    /// From `BATON_BOOTSTRAP_TOKEN` only.
    #[serde(skip_serializing)]
    pub bootstrap_token: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            data_dir: PathBuf::from("./baton-data"),
            database_url: None,
            public_url: None,
            tls_cert: None,
            tls_key: None,
            session_ttl_hours: 12,
            login_attempts_per_minute: 10,
            max_body_bytes: 1024 * 1024,
            heartbeat_secs: 20,
            telemetry_interval_secs: 30,
            telemetry_retention_days: 30,
            command_expiry_check_secs: 15,
            device_connects_per_second: 100,
            device_connect_burst: 1000,
            mqtt_enabled: true,
            mqtt_addr: SocketAddr::from(([0, 0, 0, 0], 1883)),
            mqtt_tls_addr: SocketAddr::from(([0, 0, 0, 0], 8883)),
            mqtt_max_packet_bytes: 256 * 1024,
            mqtt_messages_per_second: 50,
            mqtt_message_burst: 200,
            mqtt_max_keepalive_secs: 1200,
            log_format: LogFormat::Text,
            admin_password: None,
            bootstrap_token: None,
        }
    }
}

impl Settings {
    /// Loads settings from the layers. `overrides` holds the flags that were given (as a
    /// serializable struct whose `None` fields are skipped).
    pub fn load(file: Option<&std::path::Path>, overrides: impl Serialize) -> Result<Self, Error> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Error::Config(format!("config file {} does not exist", file.display())));
            }
            let text = std::fs::read_to_string(file)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", file.display())))?;
            if text.contains("admin_password") || text.contains("bootstrap_token") {
                return Err(Error::Config(format!(
                    "{}: secrets are read from BATON_ADMIN_PASSWORD / BATON_BOOTSTRAP_TOKEN only, not from files",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::string(&text));
        }
        let env = Env::prefixed("BATON_").filter(|k| ENV_KEYS.iter().any(|e| k.as_str().eq_ignore_ascii_case(e)));
        let settings: Settings = figment
            .merge(env)
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| Error::Config(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses combinations that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), Error> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(Error::Config("tls_cert and tls_key go together: set both or neither".into()));
        }
        if self.session_ttl_hours == 0 || self.session_ttl_hours > 24 * 30 {
            return Err(Error::Config("session_ttl_hours must be between 1 and 720".into()));
        }
        if self.login_attempts_per_minute == 0 {
            return Err(Error::Config("login_attempts_per_minute must be at least 1".into()));
        }
        if !(1..=3600).contains(&self.heartbeat_secs) {
            return Err(Error::Config("heartbeat_secs must be between 1 and 3600".into()));
        }
        if !(1..=86_400).contains(&self.telemetry_interval_secs) {
            return Err(Error::Config("telemetry_interval_secs must be between 1 and 86400".into()));
        }
        if !(1..=3600).contains(&self.command_expiry_check_secs) {
            return Err(Error::Config("command_expiry_check_secs must be between 1 and 3600".into()));
        }
        if self.telemetry_retention_days == 0 {
            return Err(Error::Config("telemetry_retention_days must be at least 1".into()));
        }
        if self.max_body_bytes < 1024 {
            return Err(Error::Config("max_body_bytes must be at least 1024".into()));
        }
        if !(1024..=256 * 1024 * 1024).contains(&self.mqtt_max_packet_bytes) {
            return Err(Error::Config("mqtt_max_packet_bytes must be between 1024 and 268435456".into()));
        }
        if self.mqtt_messages_per_second == 0 || self.mqtt_message_burst == 0 {
            return Err(Error::Config("mqtt_messages_per_second and mqtt_message_burst must be at least 1".into()));
        }
        if !(1..=65_535).contains(&self.mqtt_max_keepalive_secs) {
            return Err(Error::Config("mqtt_max_keepalive_secs must be between 1 and 65535".into()));
        }
        Ok(())
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_template_holds_exactly_the_defaults() {
        let parsed: Settings = toml::from_str(DEFAULT_TEMPLATE).expect("template parses");
        assert_eq!(parsed, Settings::default());
    }

    #[test]
    fn a_typo_in_the_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("baton.toml");
        std::fs::write(&file, "htp_addr = \"127.0.0.1:1\"\n").expect("write");
        let err = Settings::load(Some(&file), Settings::default()).expect_err("refused");
        assert!(err.to_string().contains("htp_addr"), "{err}");
    }

    #[test]
    fn a_certificate_without_a_key_is_refused() {
        let s = Settings { tls_cert: Some("c.pem".into()), ..Settings::default() };
        assert!(s.validate().is_err());
    }
}
