//! Settings: defaults → file (`--config baton.toml`) → `BATON_*` environment → flags.
//! Settings are built once in `main` and passed down; nothing reads a global.

use std::{fmt, net::SocketAddr, path::PathBuf};

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
    "sqlite_synchronous",
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
    "header_timeout_secs",
    "max_connections",
    "max_connections_per_source",
    "proxy_protocol_from",
    "device_certificate_lifetime_secs",
    "remote_sessions_per_device",
    "remote_sessions_per_tenant",
    "remote_idle_timeout_secs",
    "remote_max_session_secs",
    "remote_recording_retention_days",
    "remote_file_max_bytes",
    "remote_web_domain",
    "support_bundle_max_bytes",
    "support_bundle_retention_days",
    "log_format",
    "artifact_watch_dir",
    "artifact_watch_secs",
    "artifact_watch_s3_prefix",
    "mqtt_enabled",
    "mqtt_addr",
    "mqtt_tls_addr",
    "mqtt_max_packet_bytes",
    "mqtt_messages_per_second",
    "mqtt_message_burst",
    "mqtt_max_keepalive_secs",
    "artifact_store",
    "s3_endpoint",
    "s3_bucket",
    "s3_region",
    "s3_prefix",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_presigned_downloads",
    "s3_presigned_secs",
    "admin_password",
    "bootstrap_token",
    "key_encryption_key",
    "key_encryption_key_file",
];

/// The longest a presigned S3 URL may live (SigV4's limit).
const MAX_PRESIGNED_SECS: u32 = 7 * 24 * 3600;

/// Settings read from the environment only, never from a file.
const ENV_ONLY: &[&str] = &["admin_password", "bootstrap_token", "s3_secret_access_key", "key_encryption_key"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub sqlite_synchronous: SqliteSynchronous,
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
    /// Seconds a client has to send a request's headers, counted from when the connection
    /// opens or its last response was sent (so idle connections close too); MQTT's CONNECT and
    /// TLS handshakes get the same time.
    pub header_timeout_secs: u32,
    /// Open connections (HTTP, WebSocket and MQTT together) at most; `0`: as many as the
    /// open-file limit allows (the server keeps a margin below it either way).
    pub max_connections: u32,
    /// Open connections from one client address at most.
    pub max_connections_per_source: u32,
    /// Load balancers (addresses or CIDR blocks) whose connections start with a PROXY protocol
    /// header (v1 or v2) naming the real client; the limits then count that client.
    pub proxy_protocol_from: Vec<String>,
    /// How long a device certificate is valid; agents renew theirs when a third is left.
    pub device_certificate_lifetime_secs: u32,
    /// Remote sessions (terminals) open at once on one device.
    pub remote_sessions_per_device: u32,
    /// Remote sessions open at once in one tenant.
    pub remote_sessions_per_tenant: u32,
    /// A remote session with no byte either way for this long is closed.
    pub remote_idle_timeout_secs: u32,
    /// A remote session is closed after this long, busy or not.
    pub remote_max_session_secs: u32,
    /// Session recordings are deleted this many days after the session ended.
    pub remote_recording_retention_days: u32,
    /// The largest file copied to or from a device through the server, in bytes.
    pub remote_file_max_bytes: u64,
    /// A domain whose every subdomain reaches this server: a device's web page opened from the
    /// console is served at `<session>.<remote_web_domain>`, apart from the console's origin.
    pub remote_web_domain: String,
    /// The largest support bundle the server accepts from a device, in bytes.
    pub support_bundle_max_bytes: u64,
    /// Support bundles are deleted this many days after they were stored.
    pub support_bundle_retention_days: u32,
    pub mqtt_enabled: bool,
    pub mqtt_addr: SocketAddr,
    pub mqtt_tls_addr: SocketAddr,
    pub mqtt_max_packet_bytes: usize,
    pub mqtt_messages_per_second: u32,
    pub mqtt_message_burst: u32,
    pub mqtt_max_keepalive_secs: u32,
    pub log_format: LogFormat,
    /// Watched for artifacts to import (see `rollouts::watch`); unset: nothing is watched.
    pub artifact_watch_dir: Option<PathBuf>,
    pub artifact_watch_secs: u32,
    /// A prefix in the S3 bucket (`s3_*` settings) watched the same way; unset: none.
    pub artifact_watch_s3_prefix: Option<String>,
    /// Where artifact bytes live: the data directory, or an S3-compatible bucket.
    pub artifact_store: ArtifactStoreKind,
    /// The S3 API's base URL, e.g. `https://s3.eu-west-1.amazonaws.com` or a MinIO/Ceph server;
    /// buckets are addressed path-style (`<endpoint>/<bucket>/<key>`).
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_region: String,
    /// Prepended to every object key (`<prefix>/<tenant>/<artifact>`), to share a bucket.
    pub s3_prefix: Option<String>,
    /// With `s3_secret_access_key`; without both, the standard `AWS_*` variables are used.
    pub s3_access_key_id: Option<String>,
    /// From `BATON_S3_SECRET_ACCESS_KEY` only.
    #[serde(skip_serializing)]
    pub s3_secret_access_key: Option<Secret>,
    /// Devices download artifacts kept in S3 straight from the bucket, redirected to a
    /// presigned URL, so the bytes never pass through the server. Off: the server streams them
    /// (for a bucket the devices cannot reach).
    pub s3_presigned_downloads: bool,
    /// How long a presigned download URL may be used to start a download, in seconds.
    pub s3_presigned_secs: u32,
    /// From `BATON_ADMIN_PASSWORD` only.
    #[serde(skip_serializing)]
    pub admin_password: Option<String>,
    /// From `BATON_BOOTSTRAP_TOKEN` only.
    #[serde(skip_serializing)]
    pub bootstrap_token: Option<String>,
    /// Seals the signing keys the server holds (see `store::sealing`): base64 of 32 bytes, from
    /// `BATON_KEY_ENCRYPTION_KEY` only.
    #[serde(skip_serializing)]
    pub key_encryption_key: Option<Secret>,
    /// A file holding that key instead; with neither, `<data_dir>/key-encryption.key`, made at
    /// first start.
    pub key_encryption_key_file: Option<PathBuf>,
}

/// When an embedded SQLite commit reaches the disk (`PRAGMA synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// Every commit syncs the write-ahead log before it returns: whatever the server
    /// acknowledged survives a power cut.
    #[default]
    Full,
    /// Syncs only at checkpoints: a commit survives the process crashing, not a power cut.
    Normal,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactStoreKind {
    /// `artifacts/` in the data directory.
    #[default]
    Local,
    /// An S3-compatible bucket (`s3_*` settings).
    S3,
}

/// A setting that must never reach a log: `Debug` shows `[redacted]`, and only
/// [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            data_dir: PathBuf::from("./baton-data"),
            database_url: None,
            sqlite_synchronous: SqliteSynchronous::Full,
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
            header_timeout_secs: 15,
            max_connections: 0,
            max_connections_per_source: 1000,
            proxy_protocol_from: Vec::new(),
            device_certificate_lifetime_secs: 90 * 24 * 3600,
            remote_sessions_per_device: 4,
            remote_sessions_per_tenant: 256,
            remote_idle_timeout_secs: 30 * 60,
            remote_max_session_secs: 8 * 3600,
            remote_recording_retention_days: 90,
            remote_file_max_bytes: 4 << 30,
            remote_web_domain: "localhost".into(),
            support_bundle_max_bytes: 256 << 20,
            support_bundle_retention_days: 30,
            mqtt_enabled: true,
            mqtt_addr: SocketAddr::from(([0, 0, 0, 0], 1883)),
            mqtt_tls_addr: SocketAddr::from(([0, 0, 0, 0], 8883)),
            mqtt_max_packet_bytes: 256 * 1024,
            mqtt_messages_per_second: 50,
            mqtt_message_burst: 200,
            mqtt_max_keepalive_secs: 1200,
            log_format: LogFormat::Text,
            artifact_watch_dir: None,
            artifact_watch_secs: 5,
            artifact_watch_s3_prefix: None,
            artifact_store: ArtifactStoreKind::Local,
            s3_endpoint: None,
            s3_bucket: None,
            s3_region: "us-east-1".into(),
            s3_prefix: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_presigned_downloads: true,
            s3_presigned_secs: 300,
            admin_password: None,
            bootstrap_token: None,
            key_encryption_key: None,
            key_encryption_key_file: None,
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
            if let Some(secret) = ENV_ONLY.iter().find(|key| text.contains(*key)) {
                return Err(Error::Config(format!(
                    "{}: {secret} is a secret, read from BATON_{} only, not from files",
                    file.display(),
                    secret.to_ascii_uppercase()
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
        if !(1..=3600).contains(&self.header_timeout_secs) {
            return Err(Error::Config("header_timeout_secs must be between 1 and 3600".into()));
        }
        if self.device_certificate_lifetime_secs < 10 {
            return Err(Error::Config("device_certificate_lifetime_secs must be at least 10".into()));
        }
        for (name, value) in [
            ("remote_sessions_per_device", self.remote_sessions_per_device),
            ("remote_sessions_per_tenant", self.remote_sessions_per_tenant),
            ("remote_idle_timeout_secs", self.remote_idle_timeout_secs),
            ("remote_max_session_secs", self.remote_max_session_secs),
            ("remote_recording_retention_days", self.remote_recording_retention_days),
            ("support_bundle_retention_days", self.support_bundle_retention_days),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        for (name, value) in [
            ("remote_file_max_bytes", self.remote_file_max_bytes),
            ("support_bundle_max_bytes", self.support_bundle_max_bytes),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        if !valid_domain(&self.remote_web_domain) {
            return Err(Error::Config(format!(
                "remote_web_domain must be a domain name without scheme, port or path (e.g. devices.example.com); got `{}`",
                self.remote_web_domain
            )));
        }
        if self.max_connections_per_source == 0 {
            return Err(Error::Config("max_connections_per_source must be at least 1".into()));
        }
        if self.artifact_store == ArtifactStoreKind::S3 {
            self.validate_s3()?;
        }
        Ok(())
    }

    /// How long a client has for a request's headers, a TLS handshake or MQTT's CONNECT.
    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.header_timeout_secs))
    }

    /// How long a device certificate is valid.
    pub fn device_certificate_lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.device_certificate_lifetime_secs))
    }

    /// What an S3 artifact store needs: a bucket and an endpoint URL, credentials in pairs.
    fn validate_s3(&self) -> Result<(), Error> {
        let fail = |message: &str| Err(Error::Config(format!("artifact_store = \"s3\": {message}")));
        let given = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
        if !given(&self.s3_bucket) {
            return fail("set s3_bucket (BATON_S3_BUCKET) to the bucket that holds the artifacts");
        }
        if self.s3_bucket.as_deref().is_some_and(|b| b.contains('/') || b.trim() != b) {
            return fail("s3_bucket is a bucket name, without `/` or spaces");
        }
        match self.s3_endpoint.as_deref().map(str::trim) {
            None | Some("") => {
                return fail("set s3_endpoint (BATON_S3_ENDPOINT), e.g. https://s3.eu-west-1.amazonaws.com");
            }
            Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
                return fail("s3_endpoint must be an http:// or https:// URL");
            }
            Some(_) => {}
        }
        if !(1..=MAX_PRESIGNED_SECS).contains(&self.s3_presigned_secs) {
            return fail("s3_presigned_secs must be between 1 and 604800 (seven days, S3's limit)");
        }
        if self.s3_region.trim().is_empty() {
            return fail("s3_region must not be empty (us-east-1 when the server does not care)");
        }
        if let Some(prefix) = self.s3_prefix.as_deref().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty())
            && !prefix.split('/').all(|part| {
                !part.is_empty()
                    && part != ".."
                    && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            })
        {
            return fail("s3_prefix is `/`-separated parts of letters, digits, `-`, `_` and `.`");
        }
        let has_secret = self.s3_secret_access_key.as_ref().is_some_and(|s| !s.expose().is_empty());
        if given(&self.s3_access_key_id) != has_secret {
            return fail(
                "s3_access_key_id and BATON_S3_SECRET_ACCESS_KEY go together: set both, or neither to use the \
                 AWS_* environment",
            );
        }
        Ok(())
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some()
    }
}

/// A DNS name of letters, digits and hyphens in dot-separated labels: what `remote_web_domain`
/// must be for `<session>.<domain>` to be a host name.
fn valid_domain(domain: &str) -> bool {
    (1..=200).contains(&domain.len())
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
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
    fn an_s3_store_without_a_bucket_or_endpoint_is_refused_by_name() {
        let s3 = Settings { artifact_store: ArtifactStoreKind::S3, ..Settings::default() };
        let err = s3.validate().expect_err("no bucket");
        assert!(err.to_string().contains("s3_bucket"), "{err}");
        let s3 = Settings { s3_bucket: Some("fw".into()), ..s3 };
        let err = s3.validate().expect_err("no endpoint");
        assert!(err.to_string().contains("s3_endpoint"), "{err}");
        let s3 = Settings { s3_endpoint: Some("ftp://x".into()), ..s3 };
        assert!(s3.validate().is_err());
        let s3 = Settings { s3_endpoint: Some("http://127.0.0.1:9000".into()), ..s3 };
        s3.validate().expect("bucket and endpoint are enough");
        let half = Settings { s3_access_key_id: Some("AKIA".into()), ..s3.clone() };
        assert!(half.validate().is_err(), "a key id without its secret");
        let bad_prefix = Settings { s3_prefix: Some("a/../b".into()), ..s3 };
        assert!(bad_prefix.validate().is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug_output_or_come_from_files() {
        let s = Settings { s3_secret_access_key: Some(Secret::new("hunter2-s3")), ..Settings::default() };
        assert!(!format!("{s:?}").contains("hunter2-s3"));
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("baton.toml");
        std::fs::write(&file, "s3_secret_access_key = \"x\"\n").expect("write");
        let err = Settings::load(Some(&file), Settings::default()).expect_err("refused");
        assert!(err.to_string().contains("BATON_S3_SECRET_ACCESS_KEY"), "{err}");
    }

    #[test]
    fn connection_limits_out_of_range_are_refused_by_name() {
        for (bad, name) in [
            (Settings { header_timeout_secs: 0, ..Settings::default() }, "header_timeout_secs"),
            (Settings { max_connections_per_source: 0, ..Settings::default() }, "max_connections_per_source"),
            (
                Settings { device_certificate_lifetime_secs: 9, ..Settings::default() },
                "device_certificate_lifetime_secs",
            ),
        ] {
            let err = bad.validate().expect_err("refused");
            assert!(err.to_string().contains(name), "{err}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("baton.toml");
        std::fs::write(&file, "key_encryption_key = \"x\"\n").expect("write");
        let err = Settings::load(Some(&file), Settings::default()).expect_err("refused");
        assert!(err.to_string().contains("BATON_KEY_ENCRYPTION_KEY"), "{err}");
    }

    #[test]
    fn a_remote_web_domain_with_a_scheme_port_or_capitals_is_refused_by_name() {
        for bad in [
            "",
            "https://devices.example.com",
            "devices.example.com:8443",
            "Devices.example.com",
            ".example.com",
            "a..b",
        ] {
            let settings = Settings { remote_web_domain: bad.into(), ..Settings::default() };
            let err = settings.validate().expect_err(bad);
            assert!(err.to_string().contains("remote_web_domain"), "{bad}: {err}");
        }
        for good in ["localhost", "devices.example.com", "web-1.baton.internal"] {
            Settings { remote_web_domain: good.into(), ..Settings::default() }.validate().expect(good);
        }
    }

    #[test]
    fn a_certificate_without_a_key_is_refused() {
        let s = Settings { tls_cert: Some("c.pem".into()), ..Settings::default() };
        assert!(s.validate().is_err());
    }
}
