//! Enrollment: tokens that let devices enroll themselves, and the enrollment itself.
//!
//! Zero-touch rules: a serial pre-registered by an administrator is approved on arrival and
//! keeps its name, groups and labels; an unknown serial under a token that requires approval
//! waits in `pending`; the same serial enrolling again gets a new secret on the same device
//! (never a duplicate); a decommissioned serial is refused. A device that sends a signing
//! request gets a client certificate too (`certificates`).

use std::{collections::BTreeMap, time::Duration};

use baton_proto::{
    api::{
        Page,
        devices::DeviceStatus,
        enrollment::{EnrollRequest, EnrollResponse, EnrollmentToken, EnrollmentTokenCreate, EnrollmentTokenCreated},
    },
    labels,
};
use sqlx::{Any, AssertSqlSafe, Row, Transaction, any::AnyRow};

use crate::{
    Error,
    access::{Principal, TenantScope, secrets},
    bus::SharedBus,
    certificates::{self, SigningRequest},
    devices,
    error::Violations,
    events, pagination,
    store::{Db, from_ms, is_id, new_id, now_ms},
};

/// Enrollment token secrets start with this, so they are recognisable.
pub const TOKEN_PREFIX: &str = "be_";

const COLUMNS: &str =
    "id, name, groups, labels, requires_approval, max_uses, uses, expires_at, revoked_at, created_by, created_at";

pub async fn create_token(
    db: &Db,
    scope: &TenantScope,
    by: &Principal,
    req: EnrollmentTokenCreate,
) -> Result<EnrollmentTokenCreated, Error> {
    let mut v = Violations::default();
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        v.add("/name", "must be 1 to 100 characters, without control characters");
    }
    for (key, value) in &req.labels {
        v.check(&format!("/labels/{key}"), labels::validate_key(key));
        v.check(&format!("/labels/{key}"), labels::validate_value(value));
    }
    for (i, g) in req.groups.iter().enumerate() {
        if !is_id(g) || crate::groups::get(db, scope, g).await.is_err() {
            v.add(format!("/groups/{i}"), format!("group {g} not found"));
        }
    }
    if req.max_uses == Some(0) {
        v.add("/max_uses", "must be at least 1 (or absent for no limit)");
    }
    if matches!(req.expires_in_hours, Some(0) | Some(87_601..)) {
        v.add("/expires_in_hours", "must be between 1 and 87600");
    }
    v.finish()?;
    let id = new_id();
    let secret = secrets::generate(TOKEN_PREFIX);
    let now = now_ms();
    sqlx::query(
        "INSERT INTO enrollment_tokens (id, tenant_id, name, secret_hash, groups, labels, requires_approval, max_uses, \
         uses, expires_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11)",
    )
    .bind(&id)
    .bind(scope.id())
    .bind(name)
    .bind(secrets::hash_token(&secret))
    .bind(serde_json::to_string(&req.groups).map_err(anyhow::Error::from)?)
    .bind(serde_json::to_string(&req.labels).map_err(anyhow::Error::from)?)
    .bind(i64::from(req.requires_approval))
    .bind(req.max_uses.map(i64::from))
    .bind(req.expires_in_hours.map(|h| now + i64::from(h) * 3_600_000))
    .bind(by.subject_label())
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(EnrollmentTokenCreated { token: get_token(db, scope, &id).await?, secret })
}

pub async fn get_token(db: &Db, scope: &TenantScope, id: &str) -> Result<EnrollmentToken, Error> {
    let not_found = || Error::NotFound(format!("enrollment token {id}"));
    if !is_id(id) {
        return Err(not_found());
    }
    sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM enrollment_tokens WHERE tenant_id = $1 AND id = $2")))
        .bind(scope.id())
        .bind(id)
        .fetch_optional(db.reader())
        .await?
        .map(|r| token_from_row(&r))
        .transpose()?
        .ok_or_else(not_found)
}

pub async fn list_tokens(
    db: &Db,
    scope: &TenantScope,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<Page<EnrollmentToken>, Error> {
    let limit = pagination::limit(limit)?;
    let (after_ts, after_id) = pagination::after_created(cursor)?;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM enrollment_tokens WHERE tenant_id = $1 AND (created_at > $2 OR (created_at = $2 AND id > $3)) \
         ORDER BY created_at, id LIMIT $4"
    )))
    .bind(scope.id())
    .bind(after_ts)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let items = rows.iter().map(token_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |t| pagination::created_cursor(t.created_at, &t.id)))
}

pub async fn revoke_token(db: &Db, scope: &TenantScope, id: &str) -> Result<EnrollmentToken, Error> {
    get_token(db, scope, id).await?;
    sqlx::query("UPDATE enrollment_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(scope.id())
        .bind(id)
        .execute(db.writer())
        .await?;
    get_token(db, scope, id).await
}

/// A token as the enrollment sees it.
struct Grant {
    id: String,
    scope: TenantScope,
    groups: Vec<String>,
    labels: BTreeMap<String, String>,
    requires_approval: bool,
    max_uses: Option<i64>,
}

/// Enrolls a device with an enrollment token. Returns its id, a new secret, and — when the
/// request carries a signing request — a client certificate valid for `certificate_lifetime`.
pub async fn enroll(
    db: &Db,
    bus: &SharedBus,
    req: EnrollRequest,
    certificate_lifetime: Duration,
) -> Result<EnrollResponse, Error> {
    enroll_keyed(db, bus, req, None, certificate_lifetime).await
}

/// Enrolls as [`enroll`] does; with `key`, the token must also have that id or name (MQTT
/// provisioning sends a key and a secret, as ThingsBoard's does).
pub async fn enroll_keyed(
    db: &Db,
    bus: &SharedBus,
    req: EnrollRequest,
    key: Option<&str>,
    certificate_lifetime: Duration,
) -> Result<EnrollResponse, Error> {
    let prepared = prepare(db, req, key).await?;
    // One transaction (one commit, one sync) for the whole enrollment: the token's use, the
    // device, its credentials and the event.
    let mut tx = db.writer().begin().await?;
    let written = write(&mut tx, &prepared).await?;
    if !prepared.counted_inline() {
        count_uses(&mut tx, &prepared.grant.id, 1).await?;
    }
    tx.commit().await?;
    finish(db, bus, prepared, written, certificate_lifetime).await
}

/// An enrollment checked and ready to be written: what the reader pool could tell before the
/// writer is needed.
pub struct Prepared {
    req: EnrollRequest,
    signing_request: Option<SigningRequest>,
    grant: Grant,
    secret: String,
}

impl Prepared {
    /// The token the enrollment uses.
    pub fn token(&self) -> &str {
        &self.grant.id
    }

    /// Whether [`write`] counts the token's use (a token with a limit: the count is checked
    /// with the use) rather than its caller, possibly for several enrollments in one statement
    /// ([`count_uses`]): a token without a limit is then not locked for a whole enrollment.
    pub fn counted_inline(&self) -> bool {
        self.grant.max_uses.is_some()
    }

    /// The device's serial (the writer keeps one serial's enrollments in order).
    pub fn serial(&self) -> &str {
        &self.req.serial
    }
}

/// What [`write`] stored, to be answered once committed.
pub struct Written {
    device_id: String,
    status: DeviceStatus,
    created: bool,
    event: baton_proto::api::events::Event,
}

/// Checks the request and the token (reads only; the token's use is counted when written).
pub async fn prepare(db: &Db, req: EnrollRequest, key: Option<&str>) -> Result<Prepared, Error> {
    devices::validate_serial(&req.serial).map_err(|m| Error::invalid("/serial", m))?;
    // Checked before the token is used: a bad request costs the token nothing.
    let signing_request = req.csr.as_deref().map(|pem| SigningRequest::parse(pem, "/csr")).transpose()?;
    let grant = redeem(db, &req.token, key).await?;
    let secret = secrets::generate(devices::credentials::SECRET_PREFIX);
    Ok(Prepared { req, signing_request, grant, secret })
}

/// Writes an enrollment in `tx`: the token's use when it has a limit (else the caller counts
/// it, see [`Prepared::counted_inline`]), the device, its credentials, the event.
pub async fn write(tx: &mut Transaction<'_, Any>, prepared: &Prepared) -> Result<Written, Error> {
    let Prepared { req, grant, secret, .. } = prepared;
    let scope = &grant.scope;
    let now = now_ms();
    if prepared.counted_inline() {
        count_uses(tx, &grant.id, 1).await?;
    }
    let existing = sqlx::query("SELECT id, status, enrolled_at FROM devices WHERE tenant_id = $1 AND serial = $2")
        .bind(scope.id())
        .bind(&req.serial)
        .fetch_optional(&mut **tx)
        .await?;
    let (device_id, status, created) = match existing {
        Some(row) => {
            let id: String = row.try_get("id")?;
            let status = DeviceStatus::parse(&row.try_get::<String, _>("status")?).unwrap_or(DeviceStatus::Pending);
            if status == DeviceStatus::Decommissioned {
                return Err(Error::Forbidden(format!(
                    "the device with serial `{}` was decommissioned; an administrator must delete it before it can enroll again",
                    req.serial
                )));
            }
            // A device that enrolled before and enrolls again under an approval token waits for
            // approval again: knowing a serial must not be enough to take a device over. A
            // pre-registered device (never enrolled) is approved on arrival.
            let enrolled_before = row.try_get::<Option<i64>, _>("enrolled_at")?.is_some();
            let status = if grant.requires_approval && enrolled_before { DeviceStatus::Pending } else { status };
            sqlx::query("UPDATE devices SET status = $1 WHERE id = $2")
                .bind(status.as_str())
                .bind(&id)
                .execute(&mut **tx)
                .await?;
            (id, status, false)
        }
        None => {
            let status = if grant.requires_approval { DeviceStatus::Pending } else { DeviceStatus::Active };
            let name = req
                .inventory
                .as_ref()
                .and_then(|i| i.hostname.clone())
                .filter(|h| devices::validate_text(h, true).is_ok());
            let id = devices::insert_enrolled(tx, scope, &req.serial, name.as_deref().unwrap_or(&req.serial), status)
                .await?;
            (id, status, true)
        }
    };
    apply_grant(tx, scope, &device_id, grant, now).await?;
    let credential = secrets::hash_token(secret);
    devices::presence::enrolled_within(tx, &device_id, credential, now, req.inventory.as_ref()).await?;
    let data = serde_json::json!({"serial": req.serial, "status": status.as_str(), "new_device": created, "enrollment_token": grant.id});
    let event = events::within(tx, scope, Some(&device_id), events::kind::ENROLLED, data).await?;
    Ok(Written { device_id, status, created, event })
}

/// After the commit: publishes the event, closes the old secret's connections, issues the
/// certificate asked for, and makes the answer.
pub async fn finish(
    db: &Db,
    bus: &SharedBus,
    prepared: Prepared,
    written: Written,
    certificate_lifetime: Duration,
) -> Result<EnrollResponse, Error> {
    let Prepared { signing_request, grant, secret, .. } = prepared;
    let Written { device_id, status, created, event } = written;
    let scope = grant.scope;
    events::publish(bus, &scope, event);
    if !created {
        // Connections with the old secret close now.
        bus.publish(crate::bus::Message::CredentialsChanged {
            tenant: scope.id().to_owned(),
            device_id: device_id.clone(),
        });
    }
    let update_keys = crate::artifacts::signing::current(db, &scope).await?;
    let certificate = match signing_request {
        Some(request) => Some(certificates::issue(db, bus, &scope, &device_id, &request, certificate_lifetime).await?),
        None => None,
    };
    Ok(EnrollResponse { device_id, secret, status, update_keys, certificate })
}

/// Checks a token secret (its use is counted by [`count_uses`], in the enrollment's transaction).
async fn redeem(db: &Db, secret: &str, key: Option<&str>) -> Result<Grant, Error> {
    let refused = |why: &str| Error::Unauthorized(format!("enrollment token refused: {why}"));
    let row = sqlx::query(
        "SELECT t.id, t.name, t.tenant_id, t.groups, t.labels, t.requires_approval, t.max_uses, t.expires_at, t.revoked_at, \
         n.disabled \
         FROM enrollment_tokens t JOIN tenants n ON n.id = t.tenant_id WHERE t.secret_hash = $1",
    )
    .bind(secrets::hash_token(secret))
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(|| refused("unknown token"))?;
    if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() || row.try_get::<i64, _>("disabled")? != 0 {
        return Err(refused("revoked"));
    }
    if row.try_get::<Option<i64>, _>("expires_at")?.is_some_and(|e| e <= now_ms()) {
        return Err(refused("expired"));
    }
    let id: String = row.try_get("id")?;
    if key.is_some_and(|k| k != id && k != row.try_get::<String, _>("name").unwrap_or_default()) {
        return Err(refused("the provisioning key does not belong to this secret"));
    }
    Ok(Grant {
        id,
        scope: TenantScope::internal(row.try_get::<String, _>("tenant_id")?),
        groups: serde_json::from_str(&row.try_get::<String, _>("groups")?).unwrap_or_default(),
        labels: serde_json::from_str(&row.try_get::<String, _>("labels")?).unwrap_or_default(),
        requires_approval: row.try_get::<i64, _>("requires_approval")? != 0,
        max_uses: row.try_get("max_uses")?,
    })
}

/// Counts `uses` uses of a token, atomically (so `max_uses` holds under races); refuses a token
/// used up.
pub async fn count_uses(tx: &mut Transaction<'_, Any>, token_id: &str, uses: i64) -> Result<(), Error> {
    let counted = sqlx::query(
        "UPDATE enrollment_tokens SET uses = uses + $2 WHERE id = $1 AND (max_uses IS NULL OR uses + $2 <= max_uses)",
    )
    .bind(token_id)
    .bind(uses)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if counted == 0 {
        return Err(Error::Unauthorized("enrollment token refused: it has been used as often as it allows".into()));
    }
    Ok(())
}

/// Adds the token's groups, and its labels where the device has no value of its own (a
/// pre-registered device's labels win).
async fn apply_grant(
    tx: &mut Transaction<'_, Any>,
    scope: &TenantScope,
    device: &str,
    grant: &Grant,
    now: i64,
) -> Result<(), Error> {
    for group in &grant.groups {
        if crate::groups::exists_in(tx, scope, group).await? {
            crate::groups::add_member(tx, scope, group, device, now).await?;
        }
    }
    for (key, value) in &grant.labels {
        sqlx::query(
            "INSERT INTO device_labels (tenant_id, device_id, key, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (device_id, key) DO NOTHING",
        )
        .bind(scope.id())
        .bind(device)
        .bind(key)
        .bind(value)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn token_from_row(row: &AnyRow) -> Result<EnrollmentToken, Error> {
    let ts = |c: &str| -> Result<_, Error> { Ok(row.try_get::<Option<i64>, _>(c)?.map(from_ms)) };
    Ok(EnrollmentToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        groups: serde_json::from_str(&row.try_get::<String, _>("groups")?).unwrap_or_default(),
        labels: serde_json::from_str(&row.try_get::<String, _>("labels")?).unwrap_or_default(),
        requires_approval: row.try_get::<i64, _>("requires_approval")? != 0,
        max_uses: row.try_get::<Option<i64>, _>("max_uses")?.and_then(|n| u32::try_from(n).ok()),
        uses: u32::try_from(row.try_get::<i64, _>("uses")?).unwrap_or(u32::MAX),
        expires_at: ts("expires_at")?,
        revoked_at: ts("revoked_at")?,
        created_by: row.try_get("created_by")?,
        created_at: from_ms(row.try_get("created_at")?),
    })
}
