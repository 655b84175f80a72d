//! Which targeted devices an artifact is for, judged from what the registry knows (OS family,
//! architecture, model, labels) when the rollout is made: a device that is clearly not meant
//! for the artifact is left out rather than counted as a failure against the gate. What the
//! registry does not know is left to the device, which checks again before installing.

use std::collections::HashMap;

use baton_proto::{api::artifacts::Compatibility, labels::Selector};
use sqlx::Row;

use crate::{
    Error,
    access::TenantScope,
    store::{Db, sql::Sql},
};

/// The devices of `ids` that fit, and how many did not.
pub async fn keep_fitting(
    db: &Db,
    scope: &TenantScope,
    ids: Vec<String>,
    c: &Compatibility,
) -> Result<(Vec<String>, u64), Error> {
    let selector = match &c.labels {
        Some(text) => Some(Selector::parse(text).map_err(|e| anyhow::anyhow!("stored compatibility selector: {e}"))?),
        None => None,
    };
    if c.os.is_empty() && c.arch.is_empty() && c.models.is_empty() && selector.is_none() {
        return Ok((ids, 0));
    }
    let mut kept = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let mut sql = Sql::new("SELECT id, os_family, architecture, model FROM devices WHERE tenant_id = ");
        sql.bind(scope.id()).push(" AND id IN ").bind_list(chunk.iter().map(String::as_str));
        let facts = sql.query(db.backend()).fetch_all(db.reader()).await?;
        let mut labels: HashMap<String, HashMap<String, String>> = HashMap::new();
        if selector.is_some() {
            let mut sql = Sql::new("SELECT device_id, key, value FROM device_labels WHERE device_id IN ");
            sql.bind_list(chunk.iter().map(String::as_str));
            for row in sql.query(db.backend()).fetch_all(db.reader()).await? {
                labels.entry(row.try_get("device_id")?).or_default().insert(row.try_get("key")?, row.try_get("value")?);
            }
        }
        for row in facts {
            let id: String = row.try_get("id")?;
            let fits = |wanted: &[String], have: Option<String>| {
                wanted.is_empty() || have.is_none_or(|h| wanted.iter().any(|w| w.eq_ignore_ascii_case(&h)))
            };
            let mut ok = fits(&c.os, row.try_get("os_family")?)
                && fits(&c.arch, row.try_get("architecture")?)
                && fits(&c.models, row.try_get("model")?);
            if let Some(selector) = &selector {
                let none = HashMap::new();
                let own = labels.get(&id).unwrap_or(&none);
                ok &= selector.matches(|k| own.get(k).map(String::as_str));
            }
            if ok {
                kept.push(id);
            }
        }
    }
    let left_out = (ids.len() - kept.len()) as u64;
    Ok((kept, left_out))
}
