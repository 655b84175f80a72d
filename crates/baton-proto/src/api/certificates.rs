//! Device certificates: each tenant's certificate authority (made by Baton, or an intermediate
//! the tenant uploads) and the client certificates it issues to devices. A device makes its own
//! key and sends a certificate signing request (PEM); the server signs it. Devices then prove
//! who they are with mutual TLS (the agent's WebSocket and downloads, MQTT over TLS) instead of
//! a secret; certificates are renewed before they expire and revoked on decommission.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a tenant's certificate authority came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AuthorityOrigin {
    /// Made by Baton at first need.
    Generated,
    /// An intermediate the tenant uploaded (signed by its own root).
    Uploaded,
}

/// The certificate authority that signs a tenant's device certificates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertificateAuthority {
    /// The signing certificate, then the rest of its chain, PEM.
    pub certificate: String,
    pub subject: String,
    pub origin: AuthorityOrigin,
    /// SHA-256 of the signing certificate (DER), hex.
    pub fingerprint: String,
    pub not_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// `PUT /api/v1/certificate-authority`: an intermediate CA and its private key, both PEM. The
/// certificate must be a CA allowed to sign certificates; its chain may follow it. Certificates
/// issued before stay valid until they expire or are revoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CertificateAuthorityUpload {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 65536))]
    pub certificate: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 16384))]
    pub private_key: String,
}

/// A client certificate issued to a device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceCertificate {
    /// SHA-256 of the certificate (DER), hex: how the server recognises it at a handshake.
    pub fingerprint: String,
    /// The certificate's serial number, hex.
    pub serial: String,
    pub device_id: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Why it was revoked: `decommissioned` or `revoked by <who>`.
    pub revoked_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A certificate signing request (PEM) from a device: at enrollment, at renewal, or brought by
/// an operator for a device that cannot run the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// PEM `CERTIFICATE REQUEST`. Only its public key is used: the server decides the subject
    /// (the device id), the usage (client authentication) and the lifetime.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 16384))]
    pub csr: String,
}

/// A signed device certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedCertificate {
    /// The device's certificate, then the authority's chain, PEM: what a TLS client presents.
    pub certificate: String,
    pub fingerprint: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}
