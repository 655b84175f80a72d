//! Device identity with certificates: each tenant's certificate authority ([`authority`]), the
//! client certificates it signs for devices from their own signing requests ([`issue`]), and
//! who a certificate presented at a TLS handshake belongs to ([`authenticate`]).
//!
//! A certificate is recognised by the SHA-256 of its DER, as AWS IoT does: only certificates
//! this server issued open anything, each is checked against its row on every handshake
//! (revoked, expired, the device decommissioned), and one issued under an earlier authority
//! stays valid until it expires. The TLS layer only proves the client holds the key.

mod authority;
mod issue;

use baton_proto::api::{Page, certificates::DeviceCertificate, devices::DeviceStatus};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Row, any::AnyRow};

pub use authority::{get as authority, upload};
pub use issue::{SigningRequest, issue};

use crate::{
    Error,
    access::{Principal, TenantScope},
    bus::{Message, SharedBus},
    devices::{self, credentials::DeviceIdentity},
    events, pagination,
    store::{Db, from_ms, hex, now_ms},
};

/// How a certificate is named everywhere: lowercase hex SHA-256 of its DER.
pub fn fingerprint(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

const COLUMNS: &str = "fingerprint, device_id, serial, not_before, not_after, revoked_at, revoked_reason, created_at";

/// The device a certificate presented at a handshake belongs to, whatever the device's status
/// (the caller decides what a pending or decommissioned device may do: a decommissioned one
/// only learns that it is). `None` for a certificate this server did not issue, or one revoked
/// or outside its validity.
pub async fn authenticate(db: &Db, der: &[u8]) -> Result<Option<DeviceIdentity>, Error> {
    let now = now_ms();
    let row = sqlx::query(
        "SELECT c.device_id, c.revoked_at, c.not_before, c.not_after, d.tenant_id, d.status, d.wipe_requested, \
         d.telemetry_interval_secs, n.disabled FROM device_certificates c JOIN devices d ON d.id = c.device_id \
         JOIN tenants n ON n.id = d.tenant_id WHERE c.fingerprint = $1 AND c.tenant_id = d.tenant_id",
    )
    .bind(fingerprint(der))
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    // A decommissioned device's certificates are revoked, yet still name it: it is told it is
    // decommissioned (and stops) rather than refused as a stranger that keeps retrying.
    let decommissioned = row.try_get::<String, _>("status")? == DeviceStatus::Decommissioned.as_str();
    let valid = (row.try_get::<Option<i64>, _>("revoked_at")?.is_none() || decommissioned)
        && row.try_get::<i64, _>("not_before")? <= now
        && now < row.try_get::<i64, _>("not_after")?
        && row.try_get::<i64, _>("disabled")? == 0;
    if !valid {
        return Ok(None);
    }
    let device_id: String = row.try_get("device_id")?;
    devices::credentials::identity_from_row(&row, &device_id).map(Some)
}

/// A device's certificates, newest last.
pub async fn list(
    db: &Db,
    scope: &TenantScope,
    device_id: &str,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<Page<DeviceCertificate>, Error> {
    devices::get(db, scope, device_id).await?;
    let limit = pagination::limit(limit)?;
    let (after_ts, after_id) = pagination::after_created(cursor)?;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM device_certificates WHERE tenant_id = $1 AND device_id = $2 \
         AND (created_at > $3 OR (created_at = $3 AND fingerprint > $4)) ORDER BY created_at, fingerprint LIMIT $5"
    )))
    .bind(scope.id())
    .bind(device_id)
    .bind(after_ts)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |c| pagination::created_cursor(c.created_at, &c.fingerprint)))
}

/// One of a device's certificates.
pub async fn get(db: &Db, scope: &TenantScope, device_id: &str, fingerprint: &str) -> Result<DeviceCertificate, Error> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM device_certificates WHERE tenant_id = $1 AND device_id = $2 AND fingerprint = $3"
    )))
    .bind(scope.id())
    .bind(device_id)
    .bind(fingerprint.to_ascii_lowercase())
    .fetch_optional(db.reader())
    .await?
    .map(|r| from_row(&r))
    .transpose()?
    .ok_or_else(|| Error::NotFound(format!("certificate {fingerprint} of device {device_id}")))
}

/// Revokes one certificate: connections with it close, and the next handshake with it is
/// refused. Revoking twice keeps the first time and reason.
pub async fn revoke(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    device_id: &str,
    fingerprint: &str,
    by: &Principal,
) -> Result<DeviceCertificate, Error> {
    get(db, scope, device_id, fingerprint).await?;
    let reason = format!("revoked by {}", by.subject_label());
    let revoked = sqlx::query(
        "UPDATE device_certificates SET revoked_at = $1, revoked_reason = $2 \
         WHERE tenant_id = $3 AND device_id = $4 AND fingerprint = $5 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(reason)
    .bind(scope.id())
    .bind(device_id)
    .bind(fingerprint.to_ascii_lowercase())
    .execute(db.writer())
    .await?
    .rows_affected();
    let certificate = get(db, scope, device_id, fingerprint).await?;
    if revoked > 0 {
        bus.publish(Message::CredentialsChanged { tenant: scope.id().to_owned(), device_id: device_id.to_owned() });
        let data = serde_json::json!({"fingerprint": certificate.fingerprint});
        events::record(db, bus, scope, Some(device_id), events::kind::CERTIFICATE_REVOKED, data).await;
    }
    Ok(certificate)
}

/// Revokes every certificate of a device (decommissioning); returns how many.
pub async fn revoke_all(db: &Db, scope: &TenantScope, device_id: &str, reason: &str) -> Result<u64, Error> {
    Ok(sqlx::query(
        "UPDATE device_certificates SET revoked_at = $1, revoked_reason = $2 \
         WHERE tenant_id = $3 AND device_id = $4 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(reason)
    .bind(scope.id())
    .bind(device_id)
    .execute(db.writer())
    .await?
    .rows_affected())
}

fn from_row(row: &AnyRow) -> Result<DeviceCertificate, Error> {
    Ok(DeviceCertificate {
        fingerprint: row.try_get("fingerprint")?,
        serial: row.try_get("serial")?,
        device_id: row.try_get("device_id")?,
        not_before: from_ms(row.try_get("not_before")?),
        not_after: from_ms(row.try_get("not_after")?),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(from_ms),
        revoked_reason: row.try_get("revoked_reason")?,
        created_at: from_ms(row.try_get("created_at")?),
    })
}
