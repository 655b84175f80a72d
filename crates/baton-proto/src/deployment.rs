//! Updates on the agent connection: the server sends a [`Deployment`] (one execution of a
//! rollout), the agent answers with [`ExecutionReport`]s as it downloads, checks and installs.
//!
//! # Trust
//! The agent acts only on what it can check itself, whoever served the bytes:
//! - the artifact's signature, over [`crate::api::artifacts::statement`], by a key it trusts;
//! - the execution's claims ([`ExecutionClaims`]), signed by the server for this device and this
//!   artifact only, and short-lived — a replayed or stale deployment is refused;
//! - the downloaded bytes' length and SHA-256 against both.
//!
//! The keys it trusts are pinned: those the tenant had when the device enrolled (or, for a
//! device enrolled before pinning, those first seen). A new key is trusted only when a pinned
//! key endorses it ([`KeyEndorsement`], the TUF root-rotation pattern); a key the server merely
//! lists is not.

use serde::{Deserialize, Serialize};

pub use crate::api::artifacts::VerificationKey;
use crate::api::{
    artifacts::{ArtifactKind, ArtifactSignature, Compatibility, Dependency},
    rollouts::{ExecutionState, FailureClass, InstallSpec},
};

/// One execution for the agent to carry out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub execution_id: String,
    /// From 1; a retry comes as the next attempt of the same execution.
    pub attempt: u32,
    pub artifact: DeployedArtifact,
    #[serde(default)]
    pub install: InstallSpec,
    /// Install as soon as the artifact is checked. When false (outside a maintenance window) the
    /// agent downloads and checks, reports `AWAITING_WINDOW`, and installs when the deployment
    /// comes again with this set.
    pub install_now: bool,
    /// [`ExecutionClaims::statement`], as signed.
    pub claims: String,
    pub claims_signature: ArtifactSignature,
    /// Keys the tenant accepts now (several during a rotation). An agent trusts those it
    /// pinned, and those a pinned key endorses; one configured with its own trusted keys uses
    /// those instead.
    pub keys: Vec<VerificationKey>,
    /// Endorsements of the listed keys by other keys of the tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_endorsements: Vec<KeyEndorsement>,
}

/// The artifact, as the device needs it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployedArtifact {
    pub name: String,
    pub version: String,
    pub kind: ArtifactKind,
    pub size: u64,
    pub sha256: String,
    pub signature: Option<ArtifactSignature>,
    /// Where to download from: a path on the server (sent with the device's credentials) or
    /// the customer's own URL.
    pub url: String,
    #[serde(default)]
    pub compatibility: Compatibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends: Option<Dependency>,
}

/// A key vouching for another: made by the server, when a key is added, with each key it
/// holds. An agent that pinned the signer trusts the endorsed key from then on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyEndorsement {
    pub key: VerificationKey,
    pub signer_key_id: String,
    /// ed25519 over [`endorsement_statement`] of `key`, base64.
    pub signature: String,
}

/// What an endorsement of `key` signs.
pub fn endorsement_statement(key: &VerificationKey) -> Vec<u8> {
    format!("baton-key-endorsement-v1\nkey_id={}\npublic_key={}\n", key.key_id, key.public_key).into_bytes()
}

/// How the agent's execution goes. Reports only move forward within an attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecutionReport {
    pub execution_id: String,
    pub attempt: u32,
    pub state: ExecutionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_class: Option<FailureClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The version of the artifact's name the device has now, whatever happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_version: Option<String>,
    /// Download speed seen, bytes per second (for the rollout's estimate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<u64>,
}

/// What the server vouches for in one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionClaims {
    pub execution_id: String,
    pub device_id: String,
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub allow_downgrade: bool,
    /// The deployment's `install` settings as one line of JSON ([`install_line`]): what the
    /// device may do with the bytes (path, mode, owner, command) is signed as well.
    pub install: String,
    /// Whether the deployment says to install now (outside a window it says to wait).
    pub install_now: bool,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

/// The `install` settings as the claims carry them: compact JSON, on one line.
pub fn install_line(install: &InstallSpec) -> String {
    serde_json::to_string(install).unwrap_or_default()
}

const CLAIMS_HEADER: &str = "baton-execution-v1";

impl ExecutionClaims {
    /// The signed text: a header line, then one `key=value` per line, in this order.
    pub fn statement(&self) -> String {
        format!(
            "{CLAIMS_HEADER}\nexecution={}\ndevice={}\nname={}\nversion={}\nsha256={}\nsize={}\ndowngrade={}\n\
             install={}\ninstall_now={}\nexpires={}\n",
            self.execution_id,
            self.device_id,
            self.name,
            self.version,
            self.sha256,
            self.size,
            if self.allow_downgrade { "allowed" } else { "refused" },
            self.install,
            if self.install_now { "yes" } else { "no" },
            self.expires_at,
        )
    }

    /// Reads a statement back; anything but the exact layout is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.strip_suffix('\n').ok_or("the claims do not end with a newline")?.split('\n');
        if lines.next() != Some(CLAIMS_HEADER) {
            return Err(format!("the claims do not start with `{CLAIMS_HEADER}`"));
        }
        let mut field = |key: &str| -> Result<String, String> {
            let line = lines.next().ok_or_else(|| format!("the claims end before `{key}`"))?;
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| format!("expected `{key}=` in the claims, got `{line}`"))
        };
        let claims = Self {
            execution_id: field("execution")?,
            device_id: field("device")?,
            name: field("name")?,
            version: field("version")?,
            sha256: field("sha256")?,
            size: field("size")?.parse().map_err(|_| "the claims' size is not a number")?,
            allow_downgrade: match field("downgrade")?.as_str() {
                "allowed" => true,
                "refused" => false,
                other => return Err(format!("the claims' downgrade is `{other}`")),
            },
            install: field("install")?,
            install_now: match field("install_now")?.as_str() {
                "yes" => true,
                "no" => false,
                other => return Err(format!("the claims' install_now is `{other}`")),
            },
            expires_at: field("expires")?.parse().map_err(|_| "the claims' expiry is not a number")?,
        };
        if lines.next().is_some() {
            return Err("the claims have lines after `expires`".into());
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> ExecutionClaims {
        ExecutionClaims {
            execution_id: "e1".into(),
            device_id: "d1".into(),
            name: "app".into(),
            version: "1.2".into(),
            sha256: "ab".repeat(32),
            size: 42,
            allow_downgrade: false,
            install: install_line(&InstallSpec { path: Some("/opt/a".into()), ..InstallSpec::default() }),
            install_now: true,
            expires_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn claims_round_trip_through_their_statement() {
        let c = claims();
        assert_eq!(ExecutionClaims::parse(&c.statement()), Ok(c));
    }

    #[test]
    fn altered_claims_are_refused() {
        let text = claims().statement();
        for bad in [
            text.replace("baton-execution-v1", "baton-execution-v2"),
            text.replace("downgrade=refused", "downgrade=yes"),
            text.replace("size=42", "size=forty-two"),
            format!("{text}extra=1\n"),
            text.trim_end().to_owned(),
            text.replace("device=d1\n", ""),
        ] {
            assert!(ExecutionClaims::parse(&bad).is_err(), "{bad}");
        }
    }
}
