//! Rollouts: an artifact taken to a fixed set of devices in waves. Making a rollout resolves its
//! targets once, puts the devices in a stable order and stores one execution per device with its
//! wave ([`plan`]). The rollout engine (in the server's `engines`) moves rollouts along by their gates, woken through [`Engine`]; [`delivery`] hands the
//! executions to the devices' sessions and takes their reports. Everything is a row, so a
//! restart loses nothing and continues where the rows say.

pub mod delivery;
pub mod fit;
pub mod plan;
pub mod progress;
pub mod rules;
mod spec;

use std::{collections::BTreeSet, sync::Arc};

use baton_proto::api::{
    Page,
    artifacts::Artifact,
    rollouts::{
        ArtifactRef, Execution, ExecutionAction, ExecutionQuery, ExecutionState, FailureClass, PauseReason, Rollout,
        RolloutCreate, RolloutQuery, RolloutState,
    },
};
use sqlx::{Row, any::AnyRow};
use tokio::sync::Notify;

pub use self::spec::Spec;
use crate::{
    Error,
    access::{Principal, TenantScope},
    artifacts::{self, signing},
    bus::{Message, SharedBus},
    clock::SharedClock,
    devices::list::active_ids,
    pagination,
    store::{Db, from_ms, is_id, new_id, sql::Sql},
};

/// Most devices one rollout takes.
pub const MAX_DEVICES: usize = 100_000;

/// The engine's handle: its clock, and a way to wake it when something changed.
#[derive(Clone)]
pub struct Engine {
    pub clock: SharedClock,
    pub wake: Arc<Notify>,
    /// Devices told per rollout in the current minute: `(minute, count)`. In memory: after a
    /// restart a rollout may tell one minute's worth early, which the rate tolerates.
    told: Arc<std::sync::Mutex<std::collections::HashMap<String, (i64, u64)>>>,
    /// Executions waiting for a window whose device was told the window is open.
    pub window_told: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Engine {
    pub fn new(clock: SharedClock) -> Self {
        Self { clock, wake: Arc::new(Notify::new()), told: Arc::default(), window_told: Arc::default() }
    }

    /// How many more devices a rollout may tell this minute.
    pub fn notify_room(&self, rollout_id: &str, per_minute: Option<u32>) -> u64 {
        let Some(limit) = per_minute else { return u64::MAX };
        let minute = self.now().div_euclid(60_000);
        let told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        match told.get(rollout_id) {
            Some((m, n)) if *m == minute => u64::from(limit).saturating_sub(*n),
            _ => u64::from(limit),
        }
    }

    pub fn count_told(&self, rollout_id: &str, n: u64) {
        let minute = self.now().div_euclid(60_000);
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        let entry = told.entry(rollout_id.to_owned()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += n;
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Asks the engine to look at the rollouts now rather than at its next tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

const COLUMNS: &str = "SELECT * FROM (SELECT r.id, r.tenant_id, r.name, r.state, r.paused_reason, r.current_wave, \
    r.spec, r.created_by, r.created_at, r.updated_at, a.id AS a_id, a.name AS a_name, a.version AS a_version, a.size AS a_size, \
    a.storage AS a_storage, b.id AS b_id, b.name AS b_name, b.version AS b_version FROM rollouts r JOIN artifacts a ON a.id = r.artifact_id \
    LEFT JOIN artifacts b ON b.id = r.rollback_artifact_id) AS t WHERE tenant_id = ";

/// Makes a rollout: checks it, resolves its devices, and stores it with its executions. Started
/// at once unless `start` is false (a draft).
pub async fn create(
    db: &Db,
    bus: &SharedBus,
    engine: &Engine,
    scope: &TenantScope,
    by: &Principal,
    req: RolloutCreate,
) -> Result<Rollout, Error> {
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(Error::invalid("/name", "1 to 128 characters, without control characters"));
    }
    let spec = Spec::from_request(&req)?;
    let artifact = artifact_for(db, scope, &req.artifact_id, "/artifact_id").await?;
    spec.check_install(artifact.kind)?;
    let rollback = match &req.rollback_artifact_id {
        Some(id) => {
            let previous = artifact_for(db, scope, id, "/rollback_artifact_id").await?;
            if previous.name != artifact.name || previous.id == artifact.id {
                return Err(Error::invalid(
                    "/rollback_artifact_id",
                    format!("must be another version of `{}`", artifact.name),
                ));
            }
            Some(previous)
        }
        None => previous_version(db, scope, &artifact).await?,
    };
    let targeted = targets(db, scope, &spec).await?;
    let count = targeted.len();
    let (devices, left_out) = fit::keep_fitting(db, scope, targeted, &artifact.compatibility).await?;
    if devices.is_empty() {
        return Err(Error::invalid(
            "/targets",
            format!(
                "none of the {count} devices targeted fit {} {} (its OS, architecture, models or labels)",
                artifact.name, artifact.version
            ),
        ));
    }
    let mut spec = spec;
    spec.left_out = left_out;
    // The engine signs each execution's claims with a key the server holds; make one if the
    // tenant only has offline keys so far. Artifacts uploaded before there was a key get signed.
    signing::ensure_held(db, scope).await?;
    let artifact = artifacts::sign_if_unsigned(db, scope, artifact).await?;
    let rollback = match rollback {
        Some(a) => Some(artifacts::sign_if_unsigned(db, scope, a).await?),
        None => None,
    };

    let id = new_id();
    let ordered = plan::order(&id, devices);
    let ends = plan::wave_ends(&spec.waves, ordered.len());
    let now = engine.now();
    let state = if req.start { RolloutState::Running } else { RolloutState::Draft };
    let mut tx = db.writer().begin().await?;
    sqlx::query(
        "INSERT INTO rollouts (id, tenant_id, name, artifact_id, rollback_artifact_id, state, current_wave, spec, \
         created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $9)",
    )
    .bind(&id)
    .bind(scope.id())
    .bind(&name)
    .bind(&artifact.id)
    .bind(rollback.as_ref().map(|a| a.id.clone()))
    .bind(state.as_str())
    .bind(spec.to_json())
    .bind(by.subject_label())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for (chunk_index, chunk) in ordered.chunks(400).enumerate() {
        let mut sql = Sql::new(
            "INSERT INTO rollout_executions (id, tenant_id, rollout_id, device_id, wave, position, action, \
             artifact_id, state, attempt, updated_at) VALUES ",
        );
        for (i, device) in chunk.iter().enumerate() {
            let position = chunk_index * 400 + i;
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(").bind(new_id()).push(", ").bind(scope.id()).push(", ").bind(id.as_str());
            sql.push(", ").bind(device.as_str()).push(", ").bind(i64::from(plan::wave_of(&ends, position)));
            sql.push(", ").bind(position as i64).push(", 'install', ").bind(artifact.id.as_str());
            sql.push(", 'QUEUED', 1, ").bind(now).push(")");
        }
        sql.query_on(&tx).execute(&mut *tx).await?;
    }
    if req.start {
        supersede(&mut tx, scope, &id, &artifact.name, now).await?;
    }
    tx.commit().await?;
    changed(bus, engine, scope, &id);
    get(db, scope, &id).await
}

pub async fn get(db: &Db, scope: &TenantScope, id: &str) -> Result<Rollout, Error> {
    let not_found = || Error::NotFound(format!("rollout {id}"));
    if !is_id(id) {
        return Err(not_found());
    }
    let mut sql = Sql::new(COLUMNS);
    sql.bind(scope.id()).push(" AND id = ").bind(id);
    let row = sql.query(db.backend()).fetch_optional(db.reader()).await?.ok_or_else(not_found)?;
    from_row(db, &row).await
}

/// The tenant's rollouts, newest first.
pub async fn list(db: &Db, scope: &TenantScope, q: &RolloutQuery) -> Result<Page<Rollout>, Error> {
    let limit = pagination::limit(q.limit)?;
    let mut sql = Sql::new(COLUMNS);
    sql.bind(scope.id());
    if let Some(state) = q.state {
        sql.push(" AND state = ").bind(state.as_str());
    }
    pagination::newest_first(&mut sql, q.cursor.as_deref(), limit)?;
    let rows = sql.query(db.backend()).fetch_all(db.reader()).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(from_row(db, row).await?);
    }
    Ok(pagination::finish(items, limit, |r| pagination::newest_cursor(r.created_at, &r.id)))
}

/// A rollout's executions in its order (rollbacks after the installs), optionally by state or
/// wave; paged by position.
pub async fn executions(db: &Db, scope: &TenantScope, id: &str, q: &ExecutionQuery) -> Result<Page<Execution>, Error> {
    get(db, scope, id).await?;
    let limit = pagination::limit(q.limit)?;
    let after: i64 = match &q.cursor {
        Some(c) => pagination::Cursor::decode(c, "position")?.int.unwrap_or(-1),
        None => -1,
    };
    let mut sql = Sql::new(
        "SELECT * FROM (SELECT e.id, e.tenant_id, e.rollout_id, e.device_id, d.name AS device_name, e.wave, \
         e.position + CASE WHEN e.action = 'rollback' THEN 1000000 ELSE 0 END AS seq, e.action, e.state, \
         e.attempt, e.failure_class, e.detail, e.installed_version, e.retry_at, e.updated_at \
         FROM rollout_executions e JOIN devices d ON d.id = e.device_id) AS t WHERE tenant_id = ",
    );
    sql.bind(scope.id()).push(" AND rollout_id = ").bind(id);
    if let Some(state) = q.state {
        sql.push(" AND state = ").bind(state.as_str());
    }
    if let Some(wave) = q.wave {
        sql.push(" AND wave = ").bind(i64::from(wave));
    }
    sql.push(" AND seq > ").bind(after).push(" ORDER BY seq LIMIT ").bind(limit + 1);
    let rows = sql.query(db.backend()).fetch_all(db.reader()).await?;
    let mut items = rows
        .iter()
        .map(|row| Ok((row.try_get::<i64, _>("seq")?, execution_from_row(row)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = items.last().filter(|_| more).map(|(seq, e)| {
        pagination::Cursor { order: "position".into(), text: None, int: Some(*seq), id: e.id.clone() }.encode()
    });
    Ok(Page { items: items.into_iter().map(|(_, e)| e).collect(), next_cursor })
}

/// Starts a draft.
pub async fn start(db: &Db, bus: &SharedBus, engine: &Engine, scope: &TenantScope, id: &str) -> Result<Rollout, Error> {
    let rollout = get(db, scope, id).await?;
    if rollout.state != RolloutState::Draft {
        return Err(Error::Conflict(format!("rollout {id} is {}; only a draft starts", rollout.state.as_str())));
    }
    let mut tx = db.writer().begin().await?;
    set_state(&mut tx, scope, id, RolloutState::Draft, RolloutState::Running, None, engine.now()).await?;
    supersede(&mut tx, scope, id, &rollout.artifact.name, engine.now()).await?;
    tx.commit().await?;
    changed(bus, engine, scope, id);
    get(db, scope, id).await
}

/// Stops notifying devices; those already working finish.
pub async fn pause(db: &Db, bus: &SharedBus, engine: &Engine, scope: &TenantScope, id: &str) -> Result<Rollout, Error> {
    let rollout = get(db, scope, id).await?;
    if rollout.state != RolloutState::Running {
        return Err(Error::Conflict(format!("rollout {id} is {}; only a running one pauses", rollout.state.as_str())));
    }
    let mut tx = db.writer().begin().await?;
    set_state(&mut tx, scope, id, RolloutState::Running, RolloutState::Paused, Some(PauseReason::Manual), engine.now())
        .await?;
    tx.commit().await?;
    changed(bus, engine, scope, id);
    get(db, scope, id).await
}

/// Resumes a paused rollout. Paused for approval, this approves the next wave; paused by the
/// failure gate, it goes on (the gate fires again only on new failures past its threshold).
pub async fn resume(
    db: &Db,
    bus: &SharedBus,
    engine: &Engine,
    scope: &TenantScope,
    id: &str,
) -> Result<Rollout, Error> {
    let rollout = get(db, scope, id).await?;
    if rollout.state != RolloutState::Paused {
        return Err(Error::Conflict(format!("rollout {id} is {}; only a paused one resumes", rollout.state.as_str())));
    }
    let now = engine.now();
    let mut tx = db.writer().begin().await?;
    set_state(&mut tx, scope, id, RolloutState::Paused, RolloutState::Running, None, now).await?;
    match rollout.paused_reason {
        Some(PauseReason::Approval) => {
            sqlx::query(
                "UPDATE rollouts SET current_wave = current_wave + 1, wave_met_at = NULL WHERE tenant_id = $1 AND id = $2",
            )
            .bind(scope.id())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        Some(PauseReason::FailureGate) => {
            // The failures seen so far are accepted; the gate counts from here.
            let p = &rollout.progress;
            let spec_row = sqlx::query("SELECT spec FROM rollouts WHERE tenant_id = $1 AND id = $2")
                .bind(scope.id())
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let mut spec = Spec::from_json(&spec_row.try_get::<String, _>("spec")?)?;
            spec.accepted = Some((p.failed, p.executed));
            sqlx::query("UPDATE rollouts SET spec = $3 WHERE tenant_id = $1 AND id = $2")
                .bind(scope.id())
                .bind(id)
                .bind(spec.to_json())
                .execute(&mut *tx)
                .await?;
        }
        _ => {}
    }

    tx.commit().await?;
    changed(bus, engine, scope, id);
    get(db, scope, id).await
}

/// Cancels a rollout: executions no device has started are canceled; a device that is
/// downloading or installing finishes and reports.
pub async fn cancel(
    db: &Db,
    bus: &SharedBus,
    engine: &Engine,
    scope: &TenantScope,
    id: &str,
) -> Result<Rollout, Error> {
    let rollout = get(db, scope, id).await?;
    if rollout.state.is_final() {
        return Err(Error::Conflict(format!("rollout {id} is {} already", rollout.state.as_str())));
    }
    let now = engine.now();
    let mut tx = db.writer().begin().await?;
    set_state(&mut tx, scope, id, rollout.state, RolloutState::Canceled, None, now).await?;
    cancel_waiting(&mut tx, id, now).await?;
    tx.commit().await?;
    changed(bus, engine, scope, id);
    get(db, scope, id).await
}

/// Deletes a rollout that is over (or a draft), with its executions.
pub async fn delete(db: &Db, scope: &TenantScope, id: &str) -> Result<(), Error> {
    let rollout = get(db, scope, id).await?;
    if !rollout.state.is_final() && rollout.state != RolloutState::Draft {
        return Err(Error::Conflict(format!("rollout {id} is {}; cancel it first", rollout.state.as_str())));
    }
    let mut tx = db.writer().begin().await?;
    sqlx::query("DELETE FROM rollout_executions WHERE tenant_id = $1 AND rollout_id = $2")
        .bind(scope.id())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM rollouts WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Tells whoever watches that a rollout changed, and wakes the engine.
fn changed(bus: &SharedBus, engine: &Engine, scope: &TenantScope, id: &str) {
    bus.publish(Message::RolloutChanged { tenant: scope.id().to_owned(), rollout_id: id.to_owned() });
    engine.wake();
}

/// Moves the rollout from `from` (as it was read) to `state`; if it moved meanwhile (the engine
/// or another request), nothing changes and the caller is told to look again.
#[allow(clippy::too_many_arguments)]
async fn set_state(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    scope: &TenantScope,
    id: &str,
    from: RolloutState,
    state: RolloutState,
    reason: Option<PauseReason>,
    now: i64,
) -> Result<(), Error> {
    let done = sqlx::query(
        "UPDATE rollouts SET state = $3, paused_reason = $4, updated_at = $5 \
         WHERE tenant_id = $1 AND id = $2 AND state = $6",
    )
    .bind(scope.id())
    .bind(id)
    .bind(state.as_str())
    .bind(reason.map(pause_reason_str))
    .bind(now)
    .bind(from.as_str())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::Conflict(format!("rollout {id} changed meanwhile; look at it again")));
    }
    Ok(())
}

/// Cancels a rollout's executions that no device is working on yet (queued, notified and not
/// started, or downloaded and waiting for a window). Those a device is downloading or installing go on and report how they end:
/// pulling an install out from under a device is worse than letting it finish.
pub async fn cancel_waiting(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rollout_id: &str,
    now: i64,
) -> Result<u64, Error> {
    let done = sqlx::query(
        "UPDATE rollout_executions SET state = 'CANCELED', retry_at = NULL, updated_at = $2 \
         WHERE rollout_id = $1 AND state IN ('QUEUED', 'NOTIFIED', 'AWAITING_WINDOW')",
    )
    .bind(rollout_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Executions of older rollouts of the same artifact name, for devices this rollout takes and
/// not final yet, are superseded: the newest rollout wins.
async fn supersede(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    scope: &TenantScope,
    rollout_id: &str,
    artifact_name: &str,
    now: i64,
) -> Result<(), Error> {
    let mut sql = Sql::new("UPDATE rollout_executions SET state = 'SUPERSEDED', retry_at = NULL, updated_at = ");
    sql.bind(now).push(" WHERE tenant_id = ").bind(scope.id()).push(" AND rollout_id <> ").bind(rollout_id);
    sql.push(" AND state IN ");
    open_states(&mut sql);
    sql.push(" AND artifact_id IN (SELECT id FROM artifacts WHERE tenant_id = ").bind(scope.id());
    sql.push(" AND name = ").bind(artifact_name);
    sql.push(") AND device_id IN (SELECT device_id FROM rollout_executions WHERE rollout_id = ").bind(rollout_id);
    sql.push(")");
    sql.query_on(tx).execute(&mut **tx).await?;
    Ok(())
}

/// Binds the states an execution can still leave, as a parenthesised list.
fn open_states(sql: &mut Sql) {
    let open: Vec<&str> = ExecutionState::ALL.iter().filter(|s| !s.is_final()).map(|s| s.as_str()).collect();
    sql.bind_list(open);
}

async fn artifact_for(db: &Db, scope: &TenantScope, id: &str, field: &str) -> Result<Artifact, Error> {
    match artifacts::get(db, scope, id).await {
        Err(Error::NotFound(_)) => Err(Error::invalid(field, format!("no artifact {id} in this tenant"))),
        other => other,
    }
}

/// The newest artifact of the same name with a lower version: what ROLLBACK reinstalls.
async fn previous_version(db: &Db, scope: &TenantScope, artifact: &Artifact) -> Result<Option<Artifact>, Error> {
    let rows = sqlx::query("SELECT id, version FROM artifacts WHERE tenant_id = $1 AND name = $2")
        .bind(scope.id())
        .bind(&artifact.name)
        .fetch_all(db.reader())
        .await?;
    let mut best: Option<(String, String)> = None;
    for row in rows {
        let (id, version): (String, String) = (row.try_get("id")?, row.try_get("version")?);
        let lower = baton_proto::version::compare(&version, &artifact.version).is_lt();
        let newer = best.as_ref().is_none_or(|(_, v)| baton_proto::version::compare(&version, v).is_gt());
        if lower && newer {
            best = Some((id, version));
        }
    }
    match best {
        Some((id, _)) => Ok(Some(artifacts::get(db, scope, &id).await?)),
        None => Ok(None),
    }
}

/// The active devices the targets name, deduplicated.
async fn targets(db: &Db, scope: &TenantScope, spec: &Spec) -> Result<Vec<String>, Error> {
    let t = &spec.targets;
    if t.groups.is_empty() && t.labels.is_none() && t.device_ids.is_empty() {
        return Err(Error::invalid("/targets", "name groups, a label selector or device ids"));
    }
    let mut ids = BTreeSet::new();
    for (i, group) in t.groups.iter().enumerate() {
        let found = match active_ids(db, scope, Some(group), None, MAX_DEVICES + 1).await {
            Err(Error::NotFound(_)) => Err(Error::invalid(&format!("/targets/groups/{i}"), "no such group")),
            other => other,
        }?;
        ids.extend(found);
    }
    if let Some(labels) = &t.labels {
        ids.extend(active_ids(db, scope, None, Some(labels), MAX_DEVICES + 1).await?);
    }
    if !t.device_ids.is_empty() {
        let mut sql = Sql::new("SELECT id FROM devices WHERE status = 'active' AND tenant_id = ");
        sql.bind(scope.id()).push(" AND id IN ");
        sql.bind_list(t.device_ids.iter().map(String::as_str));
        let found: BTreeSet<String> =
            sql.query(db.backend()).fetch_all(db.reader()).await?.iter().filter_map(|r| r.try_get("id").ok()).collect();
        if let Some((i, missing)) = t.device_ids.iter().enumerate().find(|(_, d)| !found.contains(*d)) {
            return Err(Error::invalid(&format!("/targets/device_ids/{i}"), format!("no active device {missing}")));
        }
        ids.extend(found);
    }
    if ids.is_empty() {
        return Err(Error::invalid("/targets", "no active device matches these targets"));
    }
    if ids.len() > MAX_DEVICES {
        return Err(Error::invalid("/targets", format!("a rollout takes at most {MAX_DEVICES} devices")));
    }
    Ok(ids.into_iter().collect())
}

pub fn pause_reason_str(reason: PauseReason) -> &'static str {
    match reason {
        PauseReason::Manual => "manual",
        PauseReason::FailureGate => "failure_gate",
        PauseReason::Approval => "approval",
    }
}

fn parse_pause_reason(s: &str) -> Option<PauseReason> {
    [PauseReason::Manual, PauseReason::FailureGate, PauseReason::Approval]
        .into_iter()
        .find(|r| pause_reason_str(*r) == s)
}

/// A rollout with its progress and estimate.
async fn from_row(db: &Db, row: &AnyRow) -> Result<Rollout, Error> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let spec = Spec::from_json(&row.try_get::<String, _>("spec")?)?;
    let current_wave = u32::try_from(row.try_get::<i64, _>("current_wave")?).unwrap_or(1);
    let tally = progress::Tally::of(db, &id).await?;
    let estimate = progress::Estimate {
        spec: &spec,
        size: u64::try_from(row.try_get::<i64, _>("a_size")?).unwrap_or(0),
        current_wave,
        bandwidth: progress::bandwidth(db, &id).await?,
        serving: match row.try_get::<String, _>("a_storage")?.as_str() {
            "external" => None,
            _ => Some(
                crate::artifacts::serving::measured(db)
                    .await?
                    .unwrap_or(crate::artifacts::serving::DEFAULT_BYTES_PER_SEC),
            ),
        },
    };
    let progress = tally.progress(Some(&estimate));
    let reason: Option<String> = row.try_get("paused_reason")?;
    let rollback = match row.try_get::<Option<String>, _>("b_id")? {
        Some(id) => Some(ArtifactRef { id, name: row.try_get("b_name")?, version: row.try_get("b_version")? }),
        None => None,
    };
    Ok(Rollout {
        id,
        name: row.try_get("name")?,
        artifact: ArtifactRef {
            id: row.try_get("a_id")?,
            name: row.try_get("a_name")?,
            version: row.try_get("a_version")?,
        },
        rollback_artifact: rollback,
        state: RolloutState::parse(&state).ok_or_else(|| anyhow::anyhow!("stored rollout state `{state}`"))?,
        paused_reason: reason.as_deref().and_then(parse_pause_reason),
        current_wave,
        targets: spec.targets,
        waves: spec.waves,
        success_gate: spec.success_gate,
        failure_gate: spec.failure_gate,
        retry: spec.retry,
        max_in_flight: spec.max_in_flight,
        notify_per_minute: spec.notify_per_minute,
        step_timeout_secs: spec.step_timeout_secs,
        install: spec.install,
        allow_downgrade: spec.allow_downgrade,
        windows: spec.windows,
        left_out: spec.left_out,
        progress,
        created_by: row.try_get("created_by")?,
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
    })
}

fn execution_from_row(row: &AnyRow) -> Result<Execution, Error> {
    let state: String = row.try_get("state")?;
    let action: String = row.try_get("action")?;
    let class: Option<String> = row.try_get("failure_class")?;
    Ok(Execution {
        id: row.try_get("id")?,
        rollout_id: row.try_get("rollout_id")?,
        device_id: row.try_get("device_id")?,
        device_name: row.try_get("device_name")?,
        wave: u32::try_from(row.try_get::<i64, _>("wave")?).unwrap_or(0),
        action: if action == "rollback" { ExecutionAction::Rollback } else { ExecutionAction::Install },
        state: ExecutionState::parse(&state).ok_or_else(|| anyhow::anyhow!("stored execution state `{state}`"))?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(1),
        failure_class: class.as_deref().and_then(FailureClass::parse),
        detail: row.try_get("detail")?,
        installed_version: row.try_get("installed_version")?,
        retry_at: row.try_get::<Option<i64>, _>("retry_at")?.map(from_ms),
        updated_at: from_ms(row.try_get("updated_at")?),
    })
}

/// A count column as unsigned.
fn count(row: &AnyRow, column: &str) -> Result<u64, Error> {
    Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
}
