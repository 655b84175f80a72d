//! Automatic rollouts: a tenant's rules turn each new artifact whose name matches into a rollout
//! made from the rule's template — started at once, or left as a draft for a person to start.
//! Applied to every artifact however it arrived (the API, the watched directory). A rule whose
//! rollout cannot be made (no device matches any more, say) records why as an event; the
//! artifact is kept either way.

use baton_proto::api::{
    artifacts::Artifact,
    rollouts::{RolloutCreate, RolloutRule, RolloutRuleCreate},
};
use sqlx::{Row, any::AnyRow};

use super::{Engine, Spec};
use crate::{
    Error,
    access::{Principal, TenantScope},
    bus::SharedBus,
    devices, events, groups,
    store::{Db, from_ms, is_id, new_id, now_ms},
};

/// Event kinds: a rule made a rollout; a rule could not.
pub const MADE: &str = "rollout.rule_applied";
pub const FAILED: &str = "rollout.rule_failed";

const COLUMNS: &str = "id, name, artifact_name, kind, template, created_by, created_at";

pub async fn create(
    db: &Db,
    scope: &TenantScope,
    by: &Principal,
    req: RolloutRuleCreate,
) -> Result<RolloutRule, Error> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(Error::invalid("/name", "1 to 128 characters, without control characters"));
    }
    let pattern = req.artifact_name.trim();
    let bare = pattern.strip_suffix('*').unwrap_or(pattern);
    if pattern.is_empty() || pattern.len() > 128 || bare.contains('*') || pattern.chars().any(char::is_control) {
        return Err(Error::invalid("/artifact_name", "an artifact name, or a prefix ending in `*`"));
    }
    // The template must make a valid rollout apart from the artifact.
    let mut probe = req.template.clone();
    probe.name = "probe".into();
    Spec::from_request(&probe).map_err(|e| prefix_fields(e, "/template"))?;
    check_names(db, scope, &req.template).await?;
    let id = new_id();
    sqlx::query(
        "INSERT INTO rollout_rules (id, tenant_id, name, artifact_name, kind, template, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(scope.id())
    .bind(name)
    .bind(pattern)
    .bind(req.kind.map(|k| k.as_str()))
    .bind(serde_json::to_string(&req.template).map_err(anyhow::Error::from)?)
    .bind(by.subject_label())
    .bind(now_ms())
    .execute(db.writer())
    .await
    .map_err(Error::conflict_on_unique(format!("a rule named `{name}` exists already")))?;
    get(db, scope, &id).await
}

/// What the template names must exist in the tenant when the rule is made: a group or device
/// that is not there (or is another tenant's) would only fail later, when an artifact arrives.
async fn check_names(db: &Db, scope: &TenantScope, template: &RolloutCreate) -> Result<(), Error> {
    let missing = |field: String, what: String| Err(Error::invalid(&field, format!("no {what} in this tenant")));
    for (i, id) in template.targets.groups.iter().enumerate() {
        match groups::get(db, scope, id).await {
            Err(Error::NotFound(_)) => return missing(format!("/template/targets/groups/{i}"), format!("group {id}")),
            other => other?,
        };
    }
    for (i, id) in template.targets.device_ids.iter().enumerate() {
        match devices::get(db, scope, id).await {
            Err(Error::NotFound(_)) => {
                return missing(format!("/template/targets/device_ids/{i}"), format!("device {id}"));
            }
            other => other?,
        };
    }
    if let Some(id) = &template.rollback_artifact_id {
        super::artifact_for(db, scope, id, "/template/rollback_artifact_id").await?;
    }
    Ok(())
}

pub async fn get(db: &Db, scope: &TenantScope, id: &str) -> Result<RolloutRule, Error> {
    let not_found = || Error::NotFound(format!("rollout rule {id}"));
    if !is_id(id) {
        return Err(not_found());
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rollout_rules WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(scope.id())
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(not_found)?;
    from_row(&row)
}

/// The tenant's rules, by name.
pub async fn list(db: &Db, scope: &TenantScope) -> Result<Vec<RolloutRule>, Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rollout_rules WHERE tenant_id = $1 ORDER BY name LIMIT 1000"
    )))
    .bind(scope.id())
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn delete(db: &Db, scope: &TenantScope, id: &str) -> Result<(), Error> {
    get(db, scope, id).await?;
    sqlx::query("DELETE FROM rollout_rules WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Makes a rollout for every rule `artifact` matches. Returns the rollouts' ids.
pub async fn apply(db: &Db, bus: &SharedBus, engine: &Engine, scope: &TenantScope, artifact: &Artifact) -> Vec<String> {
    let rules = match list(db, scope).await {
        Ok(rules) => rules,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the rollout rules");
            return Vec::new();
        }
    };
    let mut made = Vec::new();
    for rule in rules.into_iter().filter(|r| matches(r, artifact)) {
        let req = RolloutCreate {
            name: format!("{}: {} {}", rule.name, artifact.name, artifact.version),
            artifact_id: artifact.id.clone(),
            ..rule.template.clone()
        };
        let by = Principal::system(scope.clone(), format!("rule {}", rule.name));
        let data = |extra: serde_json::Value| {
            let mut d = serde_json::json!({"rule_id": rule.id, "rule": rule.name, "artifact_id": artifact.id});
            if let (Some(d), Some(extra)) = (d.as_object_mut(), extra.as_object()) {
                d.extend(extra.clone());
            }
            d
        };
        match super::create(db, bus, engine, scope, &by, req).await {
            Ok(rollout) => {
                tracing::info!(rule = %rule.name, rollout_id = %rollout.id, "rollout made by rule");
                events::record(db, bus, scope, None, MADE, data(serde_json::json!({"rollout_id": rollout.id}))).await;
                made.push(rollout.id);
            }
            Err(e) => {
                tracing::warn!(rule = %rule.name, error = %e, "a rollout rule could not make its rollout");
                events::record(db, bus, scope, None, FAILED, data(serde_json::json!({"reason": e.to_string()}))).await;
            }
        }
    }
    made
}

fn matches(rule: &RolloutRule, artifact: &Artifact) -> bool {
    let name = match rule.artifact_name.strip_suffix('*') {
        Some(prefix) => artifact.name.starts_with(prefix),
        None => artifact.name == rule.artifact_name,
    };
    name && rule.kind.is_none_or(|k| k == artifact.kind)
}

/// Field errors of the template, named where they are in the rule.
fn prefix_fields(e: Error, at: &str) -> Error {
    match e {
        Error::Invalid { detail, mut errors } => {
            for f in &mut errors {
                f.field = format!("{at}{}", f.field);
            }
            Error::Invalid { detail, errors }
        }
        other => other,
    }
}

fn from_row(row: &AnyRow) -> Result<RolloutRule, Error> {
    let kind: Option<String> = row.try_get("kind")?;
    Ok(RolloutRule {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        artifact_name: row.try_get("artifact_name")?,
        kind: kind.as_deref().and_then(baton_proto::api::artifacts::ArtifactKind::parse),
        template: serde_json::from_str(&row.try_get::<String, _>("template")?).map_err(anyhow::Error::from)?,
        created_by: row.try_get("created_by")?,
        created_at: from_ms(row.try_get("created_at")?),
    })
}
