//! Artifacts (what an update installs) and the keys that sign them. An artifact is stored once
//! and described by its name, version, kind, size and SHA-256; an ed25519 signature by one of the
//! tenant's signing keys covers exactly those (see [`statement`]), so a device can check what it
//! got against a key it trusts, whoever served the bytes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What installing an artifact means on a device.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// A file put at a path, replaced atomically.
    #[default]
    File,
    /// An application package, installed by the device's installer command (e.g. `dpkg -i`).
    Package,
    /// A new build of the agent itself: swapped in, restarted, reverted if unhealthy.
    Agent,
    /// A firmware image, handed to the device's firmware hook.
    Firmware,
}

impl ArtifactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Package => "package",
            Self::Agent => "agent",
            Self::Firmware => "firmware",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::File, Self::Package, Self::Agent, Self::Firmware].into_iter().find(|k| k.as_str() == s)
    }
}

/// Which devices an artifact is for; an empty list means any.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Compatibility {
    /// OS families, e.g. `linux`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os: Vec<String>,
    /// Architectures as the device reports them, e.g. `x86_64`, `aarch64`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch: Vec<String>,
    /// Device models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// A label selector the device must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
}

/// The artifact needs another one installed at a version in a range, e.g. `runtime >=2.1, <3`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub name: String,
    /// Comparisons joined by commas: `>=2.1, <3`.
    pub versions: String,
}

/// A signature over an artifact's [`statement`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactSignature {
    /// The signing key's id (see [`key_id`]).
    pub key_id: String,
    /// The ed25519 signature, base64.
    pub signature: String,
}

/// Where the bytes live.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// The server's artifact store (its data directory, or object storage).
    Stored,
    /// The customer's own URL (a CDN), pinned by size and hash.
    External,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Artifact {
    pub id: String,
    pub name: String,
    pub version: String,
    pub kind: ArtifactKind,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub signature: Option<ArtifactSignature>,
    pub compatibility: Compatibility,
    pub depends: Option<Dependency>,
    pub storage: Storage,
    /// For [`Storage::External`]: where devices download it.
    pub url: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The text an artifact's signature covers: every fact a device acts on, one per line.
pub fn statement(name: &str, version: &str, kind: ArtifactKind, size: u64, sha256: &str) -> Vec<u8> {
    format!("baton-artifact-v1\nname={name}\nversion={version}\nkind={}\nsize={size}\nsha256={sha256}\n", kind.as_str())
        .into_bytes()
}

/// The id of a signing key: the first 8 bytes of the SHA-256 of its public key, in hex. The
/// caller hashes (this crate does no crypto); see the server's `artifacts::signing`.
pub const KEY_ID_BYTES: usize = 8;

/// A key whose signatures the tenant's devices accept. The server may hold its private half (it
/// then signs what is uploaded unsigned), or the key is kept offline and artifacts arrive signed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SigningKey {
    pub id: String,
    pub name: String,
    /// The ed25519 public key, base64 (32 bytes).
    pub public_key: String,
    /// Whether the server holds the private key and signs with it.
    pub held_by_server: bool,
    pub created_at: DateTime<Utc>,
    /// A revoked key signs nothing more, and its signatures are no longer accepted.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/signing-keys`: with `public_key`, registers a key kept offline; without, the
/// server makes a key and holds it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SigningKeyCreate {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::api::formats::Name))]
    pub name: String,
    #[serde(default)]
    pub public_key: Option<String>,
}

/// `POST /api/v1/artifacts`: the facts of an upload, as query parameters (the body is the bytes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ArtifactUpload {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub kind: ArtifactKind,
    /// The expected SHA-256 (hex); the upload is refused if the bytes differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A signature made offline over the artifact's [`statement`], base64, with `key_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Compatibility, comma-separated: OS families, architectures, models; a label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// A dependency: `name>=1.2,<2` style — the name, then the version range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends: Option<String>,
    /// Registers an artifact served from this `http(s)` URL (the customer's CDN) instead of
    /// uploading it: the body is empty, and `sha256` and `size` are required, since devices
    /// check what they download against them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The size in bytes: required with `url`; for an upload, checked against what arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// `GET /api/v1/artifacts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ArtifactQuery {
    /// Only artifacts of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::PageLimit>, inline))]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Cursor>, inline))]
    pub cursor: Option<String>,
}

/// A public key: its id and the 32 bytes, base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerificationKey {
    pub key_id: String,
    pub public_key: String,
}
