//! The agent's settings: a TOML file (`/etc/baton/agent.toml` by default), `BATON_AGENT_*`
//! environment variables over it, and command-line flags over both. A factory image carries
//! `server` and `enrollment_token` here, so the device enrolls itself on first boot.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::AgentError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// The Baton server, e.g. `https://baton.example.com`.
    pub server: Option<String>,
    /// Used to enroll when the agent has no identity yet.
    pub enrollment_token: Option<String>,
    /// Where the identity, buffered telemetry and command memory live.
    pub state_dir: PathBuf,
    /// A PEM file with a CA to trust for the server, besides the system's roots.
    pub ca_cert: Option<PathBuf>,
    /// Trust only `ca_cert` for the server (pin it), not the system's roots.
    pub pin_ca: bool,
    /// Over HTTPS, make a key and get a client certificate at enrollment, connect with mutual
    /// TLS and renew it before it expires. The secret still works beside it unless removed.
    pub certificate: bool,
    /// The device's serial; defaults to the hardware serial (DMI), else the machine id.
    pub serial: Option<String>,
    /// Program and arguments run for the `reboot` command, e.g. `["systemctl", "reboot"]`.
    /// Without one, `reboot` fails with a message saying so.
    pub reboot_command: Option<Vec<String>>,
    /// Telemetry batches kept while offline; the oldest are dropped beyond this.
    pub buffer_max_batches: usize,
    /// Bytes of stdout and of stderr kept from a command.
    pub max_output_bytes: usize,
    /// Longest wait between reconnection attempts, in seconds.
    pub max_backoff_secs: u64,
    /// Where the service starts the agent from, which an agent update replaces; default this
    /// process's executable. Set it when the agent is started through a wrapper or a link.
    pub agent_binary: Option<PathBuf>,
    /// File updates are written under this directory (where a container sees the host's
    /// root, say); `/` when unset.
    pub install_root: Option<PathBuf>,
    /// Ed25519 public keys (base64) whose signatures updates must carry, fixed. When empty, the
    /// agent pins the tenant's keys at enrollment and follows rotations they endorse.
    pub trusted_keys: Vec<String>,
    /// Installs a package artifact, `{file}` standing for the download, e.g.
    /// `["dpkg", "-i", "{file}"]`. A rollout's own `install.command` takes precedence.
    pub package_command: Option<Vec<String>>,
    /// Hands a firmware image to the device's firmware tool, `{file}` as above.
    pub firmware_command: Option<Vec<String>>,
    /// Run after an update is installed: exit 0 keeps it; anything else reverts it.
    pub health_command: Option<Vec<String>>,
    /// Run before an update is installed (`{file}`, `{name}`, `{version}` replaced): exit 75
    /// means "not now" (the rollout retries later), any other failure fails the install.
    pub pre_install_command: Option<Vec<String>>,
    /// Run after an update is installed, before the health check; a failure reverts it.
    pub post_install_command: Option<Vec<String>>,
    /// Remote support: every capability is off unless enabled here, so a server alone can never
    /// open a shell on a device whose owner did not allow it.
    pub remote: RemoteConfig,
}

/// `[remote]`: what remote support may do on this device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteConfig {
    /// Allow remote terminals (a PTY running `shell`, or the command the operator asked for).
    pub terminal: bool,
    /// The shell; default `$SHELL`, else `/bin/sh` (`%COMSPEC%`, else `cmd.exe`, on Windows).
    pub shell: Option<String>,
    /// Run terminals as this user (through `runuser`; the agent must run as root). Default: the
    /// agent's own user.
    pub user: Option<String>,
    /// Asks the person at an attended device to approve each session: a program and its
    /// arguments, `{user}` (who asks) and `{session}` replaced. Exit 0 approves; anything else,
    /// or no answer within 60 s, refuses.
    pub consent_command: Option<Vec<String>>,
    /// Allow live logs: the journal, and files under `log_paths`.
    pub logs: bool,
    /// Files and directories (everything under them; a trailing `/**` reads the same) whose logs
    /// may be read. Symbolic links are followed only to places still inside.
    pub log_paths: Vec<PathBuf>,
    /// Read this journal directory (`journalctl --directory`) instead of the system's journal.
    pub journal_directory: Option<PathBuf>,
    /// Allow file transfer both ways under `file_paths`.
    pub files: bool,
    /// Files and directories (everything under them) that may be read and written. Nothing when
    /// empty, even with `files = true`.
    pub file_paths: Vec<PathBuf>,
    /// The largest file accepted or sent, in bytes.
    pub file_max_bytes: u64,
    /// Allow support bundles: the logs of `log_paths` and the journal, the inventory, and
    /// `diagnostics_command`'s output, compressed and uploaded to the server.
    pub bundles: bool,
    /// A program and its arguments whose output goes into each support bundle.
    pub diagnostics_command: Option<Vec<String>>,
    /// The largest support bundle uploaded, in bytes (compressed); bigger ones are cut, saying so.
    pub bundle_max_bytes: u64,
    /// TCP ports tunnels may reach (`baton port-forward`, a device's web UI in the console).
    /// None when empty: no tunnel opens.
    pub tunnel_ports: Vec<u16>,
    /// Hosts tunnels may reach, as the device resolves them: by default only the device itself;
    /// add a printer's or a PLC's address to reach it through this device.
    pub tunnel_hosts: Vec<String>,
    /// Allow screen sessions: the agent relays the VNC server at `screen_vnc` (or the `x11vnc`
    /// it starts with `screen_x11vnc`); without control, keyboard and mouse are dropped here.
    pub screen: bool,
    /// The VNC server: `host:port`, or the path of its Unix socket.
    pub screen_vnc: String,
    /// Start `x11vnc` on `screen_display` for each screen session (listening only for this
    /// agent), and stop it when the session ends.
    pub screen_x11vnc: bool,
    /// The X display `x11vnc` shows; default `$DISPLAY`, else `:0`.
    pub screen_display: Option<String>,
    /// A file holding the VNC password, for a server that asks for one (VNC authentication).
    pub screen_password_file: Option<PathBuf>,
    /// Runs while someone sees the screen (an on-device notice: a program and its arguments,
    /// `{user}` and `{mode}` — `view` or `control` — replaced); stopped when the session ends.
    pub screen_notice_command: Option<Vec<String>>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            terminal: false,
            shell: None,
            user: None,
            consent_command: None,
            logs: false,
            log_paths: vec![PathBuf::from("/var/log")],
            journal_directory: None,
            files: false,
            file_paths: Vec::new(),
            file_max_bytes: 4 << 30,
            bundles: false,
            diagnostics_command: None,
            bundle_max_bytes: 64 << 20,
            tunnel_ports: Vec::new(),
            tunnel_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            screen: false,
            screen_vnc: "127.0.0.1:5900".into(),
            screen_x11vnc: false,
            screen_display: None,
            screen_password_file: None,
            screen_notice_command: None,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            server: None,
            enrollment_token: None,
            state_dir: default_state_dir(),
            ca_cert: None,
            pin_ca: false,
            certificate: true,
            serial: None,
            reboot_command: None,
            buffer_max_batches: 10_000,
            max_output_bytes: 64 * 1024,
            max_backoff_secs: 60,
            agent_binary: None,
            install_root: None,
            trusted_keys: Vec::new(),
            package_command: None,
            firmware_command: None,
            health_command: None,
            pre_install_command: None,
            post_install_command: None,
            remote: RemoteConfig::default(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    if cfg!(windows) { PathBuf::from(r"C:\ProgramData\Baton\agent") } else { PathBuf::from("/var/lib/baton-agent") }
}

/// The default config file.
pub fn default_config_path() -> PathBuf {
    if cfg!(windows) {
        PathBuf::from(r"C:\ProgramData\Baton\agent.toml")
    } else {
        PathBuf::from("/etc/baton/agent.toml")
    }
}

impl AgentConfig {
    /// Whether to hold a client certificate for `server` (only over HTTPS: plain HTTP has no
    /// handshake to present it in).
    pub fn wants_certificate(&self, server: &str) -> bool {
        self.certificate && server.starts_with("https://")
    }

    /// Reads `path` (a missing default file is fine; a missing named file is not), then applies
    /// `BATON_AGENT_SERVER`, `BATON_AGENT_ENROLLMENT_TOKEN`, `BATON_AGENT_STATE_DIR`,
    /// `BATON_AGENT_CA_CERT`, `BATON_AGENT_SERIAL` and `BATON_AGENT_REMOTE_TERMINAL`.
    pub fn load(path: Option<&Path>) -> Result<Self, AgentError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (default_config_path(), false),
        };
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).map_err(|e| AgentError::Config(format!("{}: {}", path.display(), e.message())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Self::default(),
            Err(e) => return Err(AgentError::Config(format!("cannot read {}: {e}", path.display()))),
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("BATON_AGENT_SERVER") {
            config.server = Some(v);
        }
        if let Some(v) = env("BATON_AGENT_ENROLLMENT_TOKEN") {
            config.enrollment_token = Some(v);
        }
        if let Some(v) = env("BATON_AGENT_STATE_DIR") {
            config.state_dir = PathBuf::from(v);
        }
        if let Some(v) = env("BATON_AGENT_CA_CERT") {
            config.ca_cert = Some(PathBuf::from(v));
        }
        if let Some(v) = env("BATON_AGENT_SERIAL") {
            config.serial = Some(v);
        }
        if let Some(v) = env("BATON_AGENT_REMOTE_TERMINAL") {
            config.remote.terminal = switch(&v);
        }
        if let Some(v) = env("BATON_AGENT_REMOTE_LOGS") {
            config.remote.logs = switch(&v);
        }
        if let Some(v) = env("BATON_AGENT_REMOTE_FILES") {
            config.remote.files = switch(&v);
        }
        if let Some(v) = env("BATON_AGENT_REMOTE_SCREEN") {
            config.remote.screen = switch(&v);
        }
        if let Some(v) = env("BATON_AGENT_REMOTE_BUNDLES") {
            config.remote.bundles = switch(&v);
        }
        Ok(config)
    }

    /// The server URL without a trailing slash, or an error saying how to set it.
    pub fn server_url(&self) -> Result<String, AgentError> {
        let server = self.server.as_deref().ok_or_else(|| {
            AgentError::Config(
                "no server configured: set `server` in the config file, BATON_AGENT_SERVER or --server".into(),
            )
        })?;
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(AgentError::Config(format!("server `{server}` must start with http:// or https://")));
        }
        Ok(server.trim_end_matches('/').to_owned())
    }

    /// The CA certificate's PEM bytes, if one is configured.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, AgentError> {
        if self.pin_ca && self.ca_cert.is_none() {
            return Err(AgentError::Config("pin_ca needs ca_cert: the CA to pin".into()));
        }
        self.ca_cert
            .as_ref()
            .map(|p| {
                std::fs::read(p)
                    .map_err(|e| AgentError::Config(format!("cannot read CA certificate {}: {e}", p.display())))
            })
            .transpose()
    }
}

/// A serial the server accepts: up to 64 of `[A-Za-z0-9._:/-]`, other characters become `-`.
/// Reads an on/off environment variable.
fn switch(v: &str) -> bool {
    matches!(v, "1" | "true" | "yes" | "on")
}

pub fn clean_serial(raw: &str) -> String {
    raw.trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._:/-".contains(c) { c } else { '-' })
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_with_spaces_becomes_one_the_server_accepts() {
        assert_eq!(clean_serial(" VMware-56 4d a1 "), "VMware-56-4d-a1");
        assert_eq!(clean_serial(&"x".repeat(80)).len(), 64);
    }

    #[test]
    fn a_typo_in_the_file_names_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("agent.toml");
        std::fs::write(&file, "srever = \"http://x\"\n").expect("write");
        let err = AgentConfig::load(Some(&file)).expect_err("refused");
        assert!(err.to_string().contains("srever"), "{err}");
    }
}
