//! The keys that sign artifacts, per tenant. Several may be valid at once, so a key can be
//! rotated without re-signing what is out there. A key is either held by the server (made here;
//! it signs every artifact uploaded unsigned) or kept offline by the customer (only its public
//! half is registered; artifacts arrive signed). A revoked key signs nothing more and its
//! signatures are no longer accepted. Signatures are ed25519 over the artifact's
//! [`statement`](baton_proto::api::artifacts::statement). The private halves are stored sealed
//! ([`crate::store::sealing`]): a copy of the database alone signs nothing.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use baton_proto::{
    api::artifacts::{ArtifactSignature, KEY_ID_BYTES, SigningKey, SigningKeyCreate},
    deployment::{KeyEndorsement, VerificationKey, endorsement_statement},
};
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};
use sqlx::{Row, any::AnyRow};

use crate::{
    Error,
    access::TenantScope,
    store::{Db, from_ms, new_id, now_ms, sealing::Sealer},
};

const COLUMNS: &str = "key_id, name, public_key, private_key IS NOT NULL AS held, created_at, revoked_at";

/// The id of a public key: the first bytes of its SHA-256, hex.
pub fn key_id(public_key: &[u8; 32]) -> String {
    Sha256::digest(public_key)[..KEY_ID_BYTES].iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a key the server holds, or registers the public half of one kept offline.
pub async fn create(db: &Db, scope: &TenantScope, req: SigningKeyCreate) -> Result<SigningKey, Error> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(Error::invalid("/name", "1 to 128 characters, without control characters"));
    }
    let (public, private) = match &req.public_key {
        Some(text) => {
            let bytes: [u8; 32] = B64
                .decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| Error::invalid("/public_key", "an ed25519 public key: 32 bytes, base64"))?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| Error::invalid("/public_key", "not a valid ed25519 public key"))?;
            (bytes, None)
        }
        None => {
            let seed: [u8; 32] = rand::random();
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let public = key.verifying_key().to_bytes();
            (public, Some(db.sealer()?.seal(&seed, &binding(scope.id(), &key_id(&public)))?))
        }
    };
    let id = key_id(&public);
    let endorsed =
        endorsements_of(db, scope, &VerificationKey { key_id: id.clone(), public_key: B64.encode(public) }).await?;
    // The key and its endorsements land together: a device never sees one without the other.
    let mut tx = db.writer().begin().await?;
    sqlx::query(
        "INSERT INTO signing_keys (id, tenant_id, key_id, name, public_key, private_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(scope.id())
    .bind(&id)
    .bind(name)
    .bind(B64.encode(public))
    .bind(private)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(Error::conflict_on_unique(format!("the key {id} is registered already")))?;
    for (signer, signature) in endorsed {
        sqlx::query(
            "INSERT INTO key_endorsements (tenant_id, key_id, signer_key_id, signature, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(scope.id())
        .bind(&id)
        .bind(signer)
        .bind(signature)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    get(db, scope, &id).await
}

/// Endorsements of `key` by every other key the server holds (not revoked), so devices that
/// pinned one of them trust it: (signer key id, signature).
async fn endorsements_of(db: &Db, scope: &TenantScope, key: &VerificationKey) -> Result<Vec<(String, String)>, Error> {
    let signers = sqlx::query(
        "SELECT key_id, private_key FROM signing_keys WHERE tenant_id = $1 AND private_key IS NOT NULL \
         AND revoked_at IS NULL AND key_id <> $2",
    )
    .bind(scope.id())
    .bind(&key.key_id)
    .fetch_all(db.reader())
    .await?;
    let statement = endorsement_statement(key);
    let mut out = Vec::with_capacity(signers.len());
    for row in signers {
        let signer: String = row.try_get("key_id")?;
        let seed = open_seed(db, scope, &signer, &row.try_get::<String, _>("private_key")?)?;
        let signature = ed25519_dalek::SigningKey::from_bytes(&seed).sign(&statement);
        out.push((signer, B64.encode(signature.to_bytes())));
    }
    Ok(out)
}

/// The endorsements of `keys`, for devices to follow a rotation.
pub async fn endorsements(
    db: &Db,
    scope: &TenantScope,
    keys: &[VerificationKey],
) -> Result<Vec<KeyEndorsement>, Error> {
    let rows = sqlx::query(
        "SELECT key_id, signer_key_id, signature FROM key_endorsements WHERE tenant_id = $1 ORDER BY created_at",
    )
    .bind(scope.id())
    .fetch_all(db.reader())
    .await?;
    let mut out = Vec::new();
    for row in rows {
        let key_id: String = row.try_get("key_id")?;
        if let Some(key) = keys.iter().find(|k| k.key_id == key_id) {
            out.push(KeyEndorsement {
                key: key.clone(),
                signer_key_id: row.try_get("signer_key_id")?,
                signature: row.try_get("signature")?,
            });
        }
    }
    Ok(out)
}

/// The tenant's keys that are not revoked, as devices are given them.
pub async fn current(db: &Db, scope: &TenantScope) -> Result<Vec<VerificationKey>, Error> {
    Ok(list(db, scope)
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| VerificationKey { key_id: k.id, public_key: k.public_key })
        .collect())
}

pub async fn get(db: &Db, scope: &TenantScope, key_id: &str) -> Result<SigningKey, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM signing_keys WHERE tenant_id = $1 AND key_id = $2"
    )))
    .bind(scope.id())
    .bind(key_id)
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(|| Error::NotFound(format!("signing key {key_id}")))?;
    from_row(&row)
}

/// Every key of the tenant, revoked ones too, oldest first.
pub async fn list(db: &Db, scope: &TenantScope) -> Result<Vec<SigningKey>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM signing_keys WHERE tenant_id = $1 ORDER BY created_at, key_id"
    )))
    .bind(scope.id())
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Revokes a key; a server-held key's private half is erased with it.
pub async fn revoke(db: &Db, scope: &TenantScope, key_id: &str) -> Result<SigningKey, Error> {
    get(db, scope, key_id).await?;
    sqlx::query(
        "UPDATE signing_keys SET revoked_at = COALESCE(revoked_at, $1), private_key = NULL \
         WHERE tenant_id = $2 AND key_id = $3",
    )
    .bind(now_ms())
    .bind(scope.id())
    .bind(key_id)
    .execute(db.writer())
    .await?;
    get(db, scope, key_id).await
}

/// Makes sure the tenant has a key the server holds (rollouts sign each execution's claims with
/// it), making one named `server` if not.
pub async fn ensure_held(db: &Db, scope: &TenantScope) -> Result<(), Error> {
    let held = sqlx::query(
        "SELECT key_id FROM signing_keys WHERE tenant_id = $1 AND private_key IS NOT NULL AND revoked_at IS NULL LIMIT 1",
    )
    .bind(scope.id())
    .fetch_optional(db.reader())
    .await?;
    if held.is_none() {
        create(db, scope, SigningKeyCreate { name: "server".into(), public_key: None }).await?;
    }
    Ok(())
}

/// Signs `statement` with the tenant's newest key the server holds, if it has one.
pub async fn sign(db: &Db, scope: &TenantScope, statement: &[u8]) -> Result<Option<ArtifactSignature>, Error> {
    let row = sqlx::query(
        "SELECT key_id, private_key FROM signing_keys WHERE tenant_id = $1 AND private_key IS NOT NULL \
         AND revoked_at IS NULL ORDER BY created_at DESC, key_id LIMIT 1",
    )
    .bind(scope.id())
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let key_id: String = row.try_get("key_id")?;
    let seed = open_seed(db, scope, &key_id, &row.try_get::<String, _>("private_key")?)?;
    let signature = ed25519_dalek::SigningKey::from_bytes(&seed).sign(statement);
    Ok(Some(ArtifactSignature { key_id, signature: B64.encode(signature.to_bytes()) }))
}

/// A held key's private half, unsealed.
fn open_seed(db: &Db, scope: &TenantScope, key_id: &str, stored: &str) -> Result<[u8; 32], Error> {
    let seed = db.sealer()?.open(stored, &binding(scope.id(), key_id))?;
    Ok(seed.try_into().map_err(|_| anyhow::anyhow!("a stored signing key is not a 32-byte seed"))?)
}

/// What a sealed private key is bound to: its tenant and key id.
fn binding(tenant_id: &str, key_id: &str) -> String {
    format!("signing_keys/{tenant_id}/{key_id}")
}

/// At start: seals the private keys stored in plain form (before sealing existed), and checks
/// that the key-encryption key opens those already sealed — a wrong key stops the server with
/// the reason rather than failing every signature later. Returns how many it sealed.
pub async fn seal_at_rest(db: &Db) -> Result<u64, Error> {
    let rows = sqlx::query("SELECT tenant_id, key_id, private_key FROM signing_keys WHERE private_key IS NOT NULL")
        .fetch_all(db.reader())
        .await?;
    let sealer = db.sealer()?;
    let mut sealed = 0;
    for row in rows {
        let (tenant, key_id): (String, String) = (row.try_get("tenant_id")?, row.try_get("key_id")?);
        let stored: String = row.try_get("private_key")?;
        let bound = binding(&tenant, &key_id);
        if Sealer::is_sealed(&stored) {
            sealer.open(&stored, &bound)?;
            continue;
        }
        let seed = B64.decode(stored.trim()).map_err(|_| anyhow::anyhow!("signing key {key_id}: not base64"))?;
        sqlx::query(
            "UPDATE signing_keys SET private_key = $1 WHERE tenant_id = $2 AND key_id = $3 AND private_key = $4",
        )
        .bind(sealer.seal(&seed, &bound)?)
        .bind(&tenant)
        .bind(&key_id)
        .bind(&stored)
        .execute(db.writer())
        .await?;
        sealed += 1;
    }
    Ok(sealed)
}

/// Checks a signature made with one of the tenant's keys that is not revoked.
pub async fn verify(db: &Db, scope: &TenantScope, statement: &[u8], sig: &ArtifactSignature) -> Result<(), Error> {
    let bad = |why: &str| Error::invalid("/signature", why.to_owned());
    let row = sqlx::query("SELECT public_key, revoked_at FROM signing_keys WHERE tenant_id = $1 AND key_id = $2")
        .bind(scope.id())
        .bind(&sig.key_id)
        .fetch_optional(db.reader())
        .await?
        .ok_or_else(|| bad("made with a key this tenant has not registered"))?;
    if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
        return Err(bad("made with a revoked key"));
    }
    let public: [u8; 32] = B64
        .decode(row.try_get::<String, _>("public_key")?)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("a stored public key is not 32 bytes"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|e| anyhow::anyhow!("stored key: {e}"))?;
    let signature: [u8; 64] = B64
        .decode(sig.signature.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("an ed25519 signature: 64 bytes, base64"))?;
    key.verify_strict(statement, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| bad("does not match the artifact (its name, version, kind, size and SHA-256) and the key"))
}

fn from_row(row: &AnyRow) -> Result<SigningKey, Error> {
    Ok(SigningKey {
        id: row.try_get("key_id")?,
        name: row.try_get("name")?,
        public_key: row.try_get("public_key")?,
        held_by_server: row.try_get::<bool, _>("held").or_else(|_| row.try_get::<i64, _>("held").map(|n| n != 0))?,
        created_at: from_ms(row.try_get("created_at")?),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(from_ms),
    })
}
