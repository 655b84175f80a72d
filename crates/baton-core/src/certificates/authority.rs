//! A tenant's certificate authority: made at first need (ECDSA P-256, valid ten years), or an
//! intermediate the tenant uploads with its key (checked: a CA allowed to sign certificates,
//! valid now, the key its own). One at a time per tenant; its private key is sealed at rest
//! with the key-encryption key, like the signing keys, so a copy of the database signs nothing.

use baton_proto::api::certificates::{AuthorityOrigin, CertificateAuthority, CertificateAuthorityUpload};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData};
use rustls_pki_types::CertificateDer;
use sqlx::{AssertSqlSafe, Row};
use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, pem::Pem};

use super::fingerprint;
use crate::{
    Error,
    access::TenantScope,
    store::{Db, from_ms, now_ms},
};

/// What signs a tenant's device certificates.
pub(super) struct Signer {
    pub issuer: Issuer<'static, KeyPair>,
    /// The authority's certificate and its chain, PEM: appended to each device certificate.
    pub chain: String,
}

/// A new or uploaded authority, ready to store.
struct Authority {
    certificate: String,
    key_pem: String,
    origin: AuthorityOrigin,
    subject: String,
    fingerprint: String,
    not_after: i64,
}

/// The tenant's authority, made now if it has none.
pub async fn get(db: &Db, scope: &TenantScope) -> Result<CertificateAuthority, Error> {
    if let Some(found) = stored(db, scope).await? {
        return Ok(found);
    }
    // Two first uses at once: one insert wins, both read it.
    save(db, scope, &generate(scope)?, "DO NOTHING").await
}

/// Replaces the tenant's authority with an uploaded intermediate. Certificates issued before
/// stay valid until they expire or are revoked.
pub async fn upload(
    db: &Db,
    scope: &TenantScope,
    upload: CertificateAuthorityUpload,
) -> Result<CertificateAuthority, Error> {
    let replace = "DO UPDATE SET certificate = excluded.certificate, private_key = excluded.private_key, \
         origin = excluded.origin, subject = excluded.subject, fingerprint = excluded.fingerprint, \
         not_after = excluded.not_after, created_at = excluded.created_at";
    save(db, scope, &check_upload(&upload)?, replace).await
}

/// Stores `authority` for the tenant, its key sealed; `on_conflict` says what happens to one
/// already there. Returns what is stored then.
async fn save(
    db: &Db,
    scope: &TenantScope,
    authority: &Authority,
    on_conflict: &'static str,
) -> Result<CertificateAuthority, Error> {
    let sealed = db.sealer()?.seal(authority.key_pem.as_bytes(), &binding(scope))?;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO certificate_authorities (tenant_id, certificate, private_key, origin, subject, fingerprint, \
         not_after, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant_id) {on_conflict}"
    )))
    .bind(scope.id())
    .bind(&authority.certificate)
    .bind(sealed)
    .bind(origin_str(authority.origin))
    .bind(&authority.subject)
    .bind(&authority.fingerprint)
    .bind(authority.not_after)
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    stored(db, scope).await?.ok_or_else(|| Error::Internal(anyhow::anyhow!("certificate authority not stored")))
}

/// The tenant's signer, its authority made first if needed.
pub(super) async fn signer(db: &Db, scope: &TenantScope) -> Result<Signer, Error> {
    let authority = get(db, scope).await?;
    let row = sqlx::query("SELECT private_key FROM certificate_authorities WHERE tenant_id = $1")
        .bind(scope.id())
        .fetch_one(db.reader())
        .await?;
    let key_pem = db.sealer()?.open(&row.try_get::<String, _>("private_key")?, &binding(scope))?;
    let key_pem = String::from_utf8(key_pem).map_err(|e| Error::Internal(e.into()))?;
    let key = KeyPair::from_pem(&key_pem).map_err(internal)?;
    let first = certificates(&authority.certificate)
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored certificate authority: {e}")))?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("stored certificate authority is empty")))?;
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(first), key).map_err(internal)?;
    Ok(Signer { issuer, chain: authority.certificate })
}

async fn stored(db: &Db, scope: &TenantScope) -> Result<Option<CertificateAuthority>, Error> {
    let row = sqlx::query(
        "SELECT certificate, origin, subject, fingerprint, not_after, created_at FROM certificate_authorities \
         WHERE tenant_id = $1",
    )
    .bind(scope.id())
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let origin: String = row.try_get("origin")?;
    Ok(Some(CertificateAuthority {
        certificate: row.try_get("certificate")?,
        subject: row.try_get("subject")?,
        origin: if origin == "uploaded" { AuthorityOrigin::Uploaded } else { AuthorityOrigin::Generated },
        fingerprint: row.try_get("fingerprint")?,
        not_after: from_ms(row.try_get("not_after")?),
        created_at: from_ms(row.try_get("created_at")?),
    }))
}

fn generate(scope: &TenantScope) -> Result<Authority, Error> {
    let key = KeyPair::generate().map_err(internal)?;
    let subject = format!("Baton device CA {}", scope.id());
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, subject.clone());
    params.distinguished_name.push(DnType::OrganizationName, "Baton");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(super::issue::random_serial());
    let cert = params.self_signed(&key).map_err(internal)?;
    Ok(Authority {
        certificate: cert.pem(),
        key_pem: key.serialize_pem(),
        origin: AuthorityOrigin::Generated,
        subject: format!("CN={subject}, O=Baton"),
        fingerprint: fingerprint(cert.der()),
        not_after: params.not_after.unix_timestamp() * 1000,
    })
}

fn check_upload(upload: &CertificateAuthorityUpload) -> Result<Authority, Error> {
    let ders = certificates(&upload.certificate).map_err(|e| Error::invalid("/certificate", e))?;
    let first = ders.first().ok_or_else(|| Error::invalid("/certificate", "no PEM CERTIFICATE block found"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(first)
        .map_err(|e| Error::invalid("/certificate", format!("not an X.509 certificate: {e}")))?;
    check_is_signing_ca(&cert).map_err(|m| Error::invalid("/certificate", m))?;
    let key = KeyPair::from_pem(upload.private_key.trim()).map_err(|_| {
        Error::invalid(
            "/private_key",
            "not a PKCS#8 private key in PEM (`BEGIN PRIVATE KEY`); convert one with `openssl pkcs8 -topk8 -nocrypt`",
        )
    })?;
    if key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(Error::invalid("/private_key", "this key does not belong to the certificate"));
    }
    Ok(Authority {
        certificate: upload.certificate.trim().to_owned() + "\n",
        key_pem: key.serialize_pem(),
        origin: AuthorityOrigin::Uploaded,
        subject: cert.subject().to_string(),
        fingerprint: fingerprint(first),
        not_after: cert.validity().not_after.timestamp() * 1000,
    })
}

fn check_is_signing_ca(cert: &X509Certificate<'_>) -> Result<(), String> {
    if !cert.is_ca() {
        return Err("the certificate is not a certificate authority (basic constraints CA:FALSE or absent)".into());
    }
    match cert.key_usage() {
        Ok(Some(usage)) if !usage.value.key_cert_sign() => {
            return Err("the certificate's key usage does not allow signing certificates (keyCertSign)".into());
        }
        Err(e) => return Err(format!("unreadable key usage: {e}")),
        _ => {}
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let validity = cert.validity();
    if now < validity.not_before.timestamp() || validity.not_after.timestamp() <= now {
        return Err(format!(
            "the certificate is not valid now (valid {} to {})",
            validity.not_before, validity.not_after
        ));
    }
    Ok(())
}

/// The DER of each `CERTIFICATE` block in a PEM text.
fn certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut found = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("invalid PEM: {e}"))?;
        if block.label == "CERTIFICATE" {
            found.push(block.contents);
        }
    }
    Ok(found)
}

/// What a sealed authority key is bound to: its tenant.
fn binding(scope: &TenantScope) -> String {
    format!("certificate-authority:{}", scope.id())
}

fn origin_str(origin: AuthorityOrigin) -> &'static str {
    match origin {
        AuthorityOrigin::Generated => "generated",
        AuthorityOrigin::Uploaded => "uploaded",
    }
}

pub(super) fn internal(e: rcgen::Error) -> Error {
    Error::Internal(anyhow::anyhow!("certificate: {e}"))
}
