//! Signing a device's certificate from its signing request. Only the request's public key is
//! taken (its signature proves the device holds the key, which never leaves it); the subject
//! (the device id), the usage (client authentication only, not a CA) and the lifetime are the
//! server's, whatever the request asks.

use std::time::Duration;

use baton_proto::api::{certificates::IssuedCertificate, devices::DeviceStatus};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    PublicKey, SanType, SerialNumber,
};
use sqlx::Row;
use time::OffsetDateTime;

use super::{authority, fingerprint};
use crate::{
    Error,
    access::TenantScope,
    bus::SharedBus,
    events,
    store::{Db, from_ms, hex, is_id, now_ms},
};

/// The longest signing request taken, in bytes of PEM.
const MAX_CSR_BYTES: usize = 16 * 1024;

/// How far back a certificate's validity starts, for devices whose clocks run a little behind:
/// a minute, or a tenth of a short lifetime (agents renew by the share of the lifetime left).
const BACKDATE_SECS: i64 = 60;

/// A parsed certificate signing request whose signature checked out.
#[derive(Debug)]
pub struct SigningRequest {
    public_key: PublicKey,
}

impl SigningRequest {
    /// Parses a PEM `CERTIFICATE REQUEST`; a problem names `field`.
    pub fn parse(pem: &str, field: &str) -> Result<Self, Error> {
        if pem.len() > MAX_CSR_BYTES {
            return Err(Error::invalid(field, format!("a signing request is at most {MAX_CSR_BYTES} bytes")));
        }
        let parsed = CertificateSigningRequestParams::from_pem(pem.trim()).map_err(|e| {
            let why = match e {
                rcgen::Error::InvalidCertificationRequestSignature => "its signature does not verify".to_owned(),
                rcgen::Error::UnsupportedExtension => "it asks for an extension this server does not sign".into(),
                other => format!("not a PEM certificate signing request ({other})"),
            };
            Error::invalid(field, why)
        })?;
        Ok(Self { public_key: parsed.public_key })
    }
}

/// Signs a client certificate for `device_id` (in `scope`) valid for `lifetime`, records it and
/// returns it with the authority's chain: at enrollment, at a device's renewal, or for an
/// operator. A decommissioned device is refused.
pub async fn issue(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    device_id: &str,
    request: &SigningRequest,
    lifetime: Duration,
) -> Result<IssuedCertificate, Error> {
    let not_found = || Error::NotFound(format!("device {device_id}"));
    if !is_id(device_id) {
        return Err(not_found());
    }
    let status: String = sqlx::query("SELECT status FROM devices WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(device_id)
        .fetch_optional(db.reader())
        .await?
        .ok_or_else(not_found)?
        .try_get("status")?;
    // A pending device may hold one: it opens nothing until the device is approved, like its
    // secret.
    if status == DeviceStatus::Decommissioned.as_str() {
        return Err(Error::Conflict(format!("device {device_id} is decommissioned and gets no certificate")));
    }
    let signer = authority::signer(db, scope).await?;
    let now = now_ms() / 1000;
    let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 4);
    let (not_before, not_after) = (now - BACKDATE_SECS.min(lifetime / 10), now + lifetime);
    let serial = random_serial();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, device_id);
    params.distinguished_name.push(DnType::OrganizationName, format!("Baton tenant {}", scope.id()));
    let uri = format!("urn:baton:device:{device_id}").try_into().map_err(authority::internal)?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = timestamp(not_before)?;
    params.not_after = timestamp(not_after)?;
    params.serial_number = Some(serial.clone());
    let cert = params.signed_by(&request.public_key, &signer.issuer).map_err(authority::internal)?;
    let fingerprint = fingerprint(cert.der());
    sqlx::query(
        "INSERT INTO device_certificates (fingerprint, tenant_id, device_id, serial, not_before, not_after, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&fingerprint)
    .bind(scope.id())
    .bind(device_id)
    .bind(hex(&serial.to_bytes()))
    .bind(not_before * 1000)
    .bind(not_after * 1000)
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    let issued = IssuedCertificate {
        certificate: cert.pem() + &signer.chain,
        fingerprint,
        not_before: from_ms(not_before * 1000),
        not_after: from_ms(not_after * 1000),
    };
    let data = serde_json::json!({"fingerprint": issued.fingerprint, "not_after": issued.not_after});
    events::record(db, bus, scope, Some(device_id), events::kind::CERTIFICATE_ISSUED, data).await;
    Ok(issued)
}

/// A positive 128-bit serial number (RFC 5280 allows up to 20 octets).
pub(super) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn timestamp(secs: i64) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| Error::Internal(anyhow::anyhow!("certificate time: {e}")))
}
