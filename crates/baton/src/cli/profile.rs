//! The saved login: server URL, token and an optional CA certificate, in
//! `$BATON_CONFIG_DIR/cli.toml` (default: the user's config dir, e.g. `~/.config/baton`),
//! readable by the user only.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub server: Option<String>,
    pub token: Option<String>,
    /// A PEM file with the CA that signed the server's certificate, when it is private.
    pub ca_cert: Option<PathBuf>,
}

impl Profile {
    pub fn path() -> anyhow::Result<PathBuf> {
        let dir = match std::env::var_os("BATON_CONFIG_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                dirs::config_dir().context("cannot find your config directory; set BATON_CONFIG_DIR")?.join("baton")
            }
        };
        Ok(dir.join("cli.toml"))
    }

    pub fn load() -> anyhow::Result<Self> {
        let path = Self::path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("{} is not a valid CLI profile", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = Self::path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = toml::to_string(self)?;
        write_private(&path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    pub fn ca_pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.ca_cert
            .as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("cannot read the CA certificate {}", p.display())))
            .transpose()
    }
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // `mode` applies only to new files: tighten an existing one too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
