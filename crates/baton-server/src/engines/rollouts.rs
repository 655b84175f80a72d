//! The rollout engine: one task that looks at every running rollout once a second (and at once
//! when woken) and moves it by its rules, in this order:
//! 1. the failure gate — enough finished executions, too many failed → PAUSE, ABORT or ROLLBACK;
//! 2. the success gate of the current wave — its share succeeded and the bake time passed → the
//!    next wave (or a pause for approval), and after the last wave, COMPLETED;
//! 3. notifying — queued executions of the waves open so far, due (retries wait for their
//!    backoff), up to `max_in_flight` at once, become NOTIFIED and their devices are told.
//!
//! Every change is a conditional UPDATE on the state it expects, so a person pausing or
//! canceling at the same moment wins cleanly. Time is the engine's clock, so tests move it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use baton_proto::api::rollouts::{ExecutionState, FailureGate, GateAction, PauseReason, RolloutState};
use sqlx::Row;

use super::Context;
use baton_core::Error;
use baton_core::rollouts::{Engine, Spec, cancel_waiting, pause_reason_str, progress::Tally};
use baton_core::{
    access::TenantScope,
    bus::{Message, SharedBus},
    events,
    store::{Db, new_id, sql::Sql},
};

/// How often running rollouts are looked at without being woken.
const TICK: Duration = Duration::from_secs(1);

/// Event kind for a rollout's state changes; `data` has the rollout, its new state and why.
pub const EVENT: &str = "rollout.state_changed";

pub fn spawn(app: &Context) {
    let app = app.clone();
    tokio::spawn(async move {
        let mut stop = app.shutdown.clone();
        loop {
            if let Err(e) = tick(&app.db, &app.bus, &app.rollouts).await {
                tracing::warn!(error = %e, "the rollout engine's pass failed; trying again");
            }
            tokio::select! {
                () = app.rollouts.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => return,
            }
        }
    });
}

/// One pass over every rollout that is moving.
pub async fn tick(db: &Db, bus: &SharedBus, engine: &Engine) -> Result<(), Error> {
    let rows = sqlx::query("SELECT id, tenant_id, state FROM rollouts WHERE state IN ('RUNNING', 'ROLLING_BACK')")
        .fetch_all(db.reader())
        .await?;
    if let Err(e) = windows_opened(db, bus, engine).await {
        tracing::warn!(error = %e, "could not look for opened maintenance windows");
    }
    for row in rows {
        let (id, tenant, state): (String, String, String) =
            (row.try_get("id")?, row.try_get("tenant_id")?, row.try_get("state")?);
        let scope = TenantScope::internal(tenant);
        if let Err(e) = time_out(db, bus, engine, &scope, &id).await {
            tracing::warn!(error = %e, rollout_id = %id, "could not time out stuck executions");
        }
        let result = if state == "RUNNING" {
            step(db, bus, engine, &scope, &id).await
        } else {
            step_rollback(db, bus, engine, &scope, &id).await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, rollout_id = %id, "could not move a rollout");
        }
    }
    Ok(())
}

/// Devices holding a downloaded update for a window that is open now are told again, so they
/// install (the deployment they get now says `install_now`). Each waiting execution is told once
/// (a device offline then learns it from its next session's deployments), so a long window does
/// not have every waiting device's claims signed again every second.
async fn windows_opened(db: &Db, bus: &SharedBus, engine: &Engine) -> Result<(), Error> {
    let rows = sqlx::query(
        "SELECT e.id, e.tenant_id, e.device_id, e.rollout_id, r.spec FROM rollout_executions e \
         JOIN rollouts r ON r.id = e.rollout_id WHERE e.state = 'AWAITING_WINDOW' AND r.state IN ('RUNNING', 'PAUSED') \
         ORDER BY e.updated_at LIMIT 10000",
    )
    .fetch_all(db.reader())
    .await?;
    let now = engine.now();
    let told = engine.window_told.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut specs: HashMap<String, Spec> = HashMap::new();
    let mut waiting = HashSet::new();
    let mut open: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        let execution: String = row.try_get("id")?;
        waiting.insert(execution.clone());
        if told.contains(&execution) {
            continue;
        }
        let (tenant, device, rollout): (String, String, String) =
            (row.try_get("tenant_id")?, row.try_get("device_id")?, row.try_get("rollout_id")?);
        if !specs.contains_key(&rollout) {
            specs.insert(rollout.clone(), Spec::from_json(&row.try_get::<String, _>("spec")?)?);
        }
        let windows = match &specs[&rollout].windows {
            Some(w) => w.clone(),
            None => baton_core::windows::of_device(db, &TenantScope::internal(tenant.clone()), &device).await?,
        };
        if baton_core::windows::open_at(&windows, now) {
            open.entry(tenant).or_default().push(device);
            engine.window_told.lock().unwrap_or_else(|p| p.into_inner()).insert(execution);
        }
    }
    // Forget executions that stopped waiting.
    engine.window_told.lock().unwrap_or_else(|p| p.into_inner()).retain(|e| waiting.contains(e));
    for (tenant, device_ids) in open {
        bus.publish(Message::DeploymentsReady { tenant, device_ids });
    }
    Ok(())
}

/// Executions a device has been in one step of (downloading, installing, verifying) for longer
/// than the rollout allows, without a word: TIMED_OUT, so a device that died half-way does not
/// hold the rollout forever. Devices that were never reached (NOTIFIED) or wait for a window are
/// not timed out: they are offline or waiting by rule, not stuck.
async fn time_out(db: &Db, bus: &SharedBus, engine: &Engine, scope: &TenantScope, id: &str) -> Result<(), Error> {
    let r = load(db, scope, id).await?;
    let now = engine.now();
    let limit = r.spec.step_timeout_ms();
    let detail = format!("no word from the device for {} s", limit / 1000);
    let done = sqlx::query(
        "UPDATE rollout_executions SET state = 'TIMED_OUT', retry_at = NULL, detail = $3, updated_at = $4 \
         WHERE rollout_id = $1 AND updated_at < $2 \
         AND state IN ('DOWNLOADING', 'DOWNLOADED', 'INSTALLING', 'REBOOTING', 'VERIFYING')",
    )
    .bind(id)
    .bind(now.saturating_sub(limit))
    .bind(detail)
    .bind(now)
    .execute(db.writer())
    .await?;
    if done.rows_affected() > 0 {
        tracing::warn!(rollout_id = %id, executions = done.rows_affected(), "executions timed out");
        bus.publish(Message::RolloutChanged { tenant: scope.id().to_owned(), rollout_id: id.to_owned() });
    }
    Ok(())
}

struct Loaded {
    spec: Spec,
    current_wave: u32,
    wave_met_at: Option<i64>,
    rollback_artifact_id: Option<String>,
}

async fn load(db: &Db, scope: &TenantScope, id: &str) -> Result<Loaded, Error> {
    let row = sqlx::query(
        "SELECT spec, current_wave, wave_met_at, rollback_artifact_id FROM rollouts WHERE tenant_id = $1 AND id = $2",
    )
    .bind(scope.id())
    .bind(id)
    .fetch_one(db.reader())
    .await?;
    Ok(Loaded {
        spec: Spec::from_json(&row.try_get::<String, _>("spec")?)?,
        current_wave: u32::try_from(row.try_get::<i64, _>("current_wave")?).unwrap_or(1),
        wave_met_at: row.try_get("wave_met_at")?,
        rollback_artifact_id: row.try_get("rollback_artifact_id")?,
    })
}

async fn step(db: &Db, bus: &SharedBus, engine: &Engine, scope: &TenantScope, id: &str) -> Result<(), Error> {
    let now = engine.now();
    let r = load(db, scope, id).await?;
    let tally = Tally::of(db, id).await?;

    let (failed, executed) = tally.failed_executed();
    let (seen_failed, seen_executed) = r.spec.accepted.unwrap_or((0, 0));
    if gate_fires(&r.spec.failure_gate, failed.saturating_sub(seen_failed), executed.saturating_sub(seen_executed)) {
        let why = format!("{failed} of {executed} finished executions failed");
        return fire(db, bus, engine, scope, id, &r, &why).await;
    }

    let wave = r.current_wave;
    let last = tally.last_wave();
    let size = tally.wave_size(wave);
    let succeeded = tally.wave_count(wave, ExecutionState::is_success);
    let finished = tally.wave_count(wave, ExecutionState::is_final);
    let share_met = size == 0 || succeeded as f64 * 100.0 >= r.spec.success_gate.percent * size as f64 - 1e-9;
    // Someone resumed past a failure gate: a wave that finished counts as met.
    let accepted = r.spec.accepted.is_some() && finished == size;
    if share_met || accepted {
        let met_at = match r.wave_met_at {
            Some(at) => at,
            None => {
                set_met(db, scope, id, Some(now)).await?;
                now
            }
        };
        let baked =
            now >= met_at.saturating_add(i64::try_from(r.spec.success_gate.bake_secs * 1000).unwrap_or(i64::MAX));
        if baked && wave < last {
            if r.spec.success_gate.approval {
                let why = format!("wave {wave} met its success gate; approve (resume) to start wave {}", wave + 1);
                pause(db, bus, scope, id, PauseReason::Approval, now, &why).await?;
                return Ok(());
            }
            let moved = sqlx::query(
                "UPDATE rollouts SET current_wave = current_wave + 1, wave_met_at = NULL, updated_at = $4 \
                 WHERE tenant_id = $1 AND id = $2 AND state = 'RUNNING' AND current_wave = $3",
            )
            .bind(scope.id())
            .bind(id)
            .bind(i64::from(wave))
            .bind(now)
            .execute(db.writer())
            .await?;
            if moved.rows_affected() > 0 {
                tracing::info!(rollout_id = %id, wave = wave + 1, "next wave");
                bus.publish(Message::RolloutChanged { tenant: scope.id().to_owned(), rollout_id: id.to_owned() });
                engine.wake();
            }
            return Ok(());
        }
    } else if finished == size && size > 0 {
        let why = format!("wave {wave} finished with {succeeded} of {size} succeeded, below its success gate");
        pause(db, bus, scope, id, PauseReason::FailureGate, now, &why).await?;
        return Ok(());
    }

    let all = tally.states();
    let total: u64 = all.values().sum();
    if wave >= last && baton_core::rollouts::progress::sum(&all, ExecutionState::is_final) == total {
        let why = format!("{succeeded} of {size} devices of the last wave succeeded");
        transition(db, bus, scope, id, RolloutState::Running, RolloutState::Completed, None, now, &why).await?;
        return Ok(());
    }

    let in_flight = baton_core::rollouts::progress::sum(&all, ExecutionState::is_in_flight);
    notify(db, bus, engine, scope, id, "install", Some(wave), &r.spec, in_flight).await
}

/// Rolling back: every device whose install succeeded gets a rollback execution (also those
/// that finished installing after the gate fired); they are notified like a wave; the rollout
/// is rolled back when no install is still running and every rollback is final.
async fn step_rollback(db: &Db, bus: &SharedBus, engine: &Engine, scope: &TenantScope, id: &str) -> Result<(), Error> {
    let now = engine.now();
    let r = load(db, scope, id).await?;
    let Some(previous) = r.rollback_artifact_id.as_deref() else { return Ok(()) };
    if add_rollbacks(db, scope, id, previous, now).await? > 0 {
        bus.publish(Message::RolloutChanged { tenant: scope.id().to_owned(), rollout_id: id.to_owned() });
    }
    let tally = Tally::of(db, id).await?;
    let installing = baton_core::rollouts::progress::sum(&tally.states(), ExecutionState::is_in_flight);
    let total: u64 = tally.rollback.values().sum();
    if installing == 0 && baton_core::rollouts::progress::sum(&tally.rollback, ExecutionState::is_final) == total {
        let ok = baton_core::rollouts::progress::sum(&tally.rollback, ExecutionState::is_success);
        let why = format!("{ok} of {total} devices got the previous version back");
        transition(db, bus, scope, id, RolloutState::RollingBack, RolloutState::RolledBack, None, now, &why).await?;
        return Ok(());
    }
    let in_flight = baton_core::rollouts::progress::sum(&tally.rollback, ExecutionState::is_in_flight);
    notify(db, bus, engine, scope, id, "rollback", None, &r.spec, in_flight).await
}

/// Whether the failure gate fires on these counts.
pub fn gate_fires(gate: &FailureGate, failed: u64, executed: u64) -> bool {
    if executed < u64::from(gate.min_executed) || failed == 0 {
        return false;
    }
    let by_count = gate.failed_count.is_some_and(|c| failed >= u64::from(c));
    let by_share = gate.failed_percent.is_some_and(|p| failed as f64 * 100.0 >= p * executed as f64 - 1e-9);
    by_count || by_share
}

/// The failure gate fired: its action.
async fn fire(
    db: &Db,
    bus: &SharedBus,
    engine: &Engine,
    scope: &TenantScope,
    id: &str,
    r: &Loaded,
    why: &str,
) -> Result<(), Error> {
    let now = engine.now();
    let action = r.spec.failure_gate.action;
    let stop = match action {
        GateAction::Abort => Some(RolloutState::Aborted),
        GateAction::Rollback if r.rollback_artifact_id.is_some() => Some(RolloutState::RollingBack),
        _ => None,
    };
    if let Some(to) = stop {
        let mut tx = db.writer().begin().await?;
        if moved(&mut tx, scope, id, RolloutState::Running, to, None, now).await? {
            cancel_waiting(&mut tx, id, now).await?;
        }
        tx.commit().await?;
        announce(db, bus, scope, id, to, &format!("failure gate: {why}")).await;
        engine.wake();
        return Ok(());
    }
    let why = if action == GateAction::Rollback {
        format!("failure gate: {why}; no earlier version to roll back to, so paused")
    } else {
        format!("failure gate: {why}")
    };
    pause(db, bus, scope, id, PauseReason::FailureGate, now, &why).await
}

/// Adds a rollback execution for every device whose install succeeded and has none yet —
/// including devices that were still installing when the gate fired and finished after.
async fn add_rollbacks(db: &Db, scope: &TenantScope, id: &str, previous: &str, now: i64) -> Result<u64, Error> {
    let succeeded = sqlx::query(
        "SELECT i.device_id, i.wave, i.position FROM rollout_executions i WHERE i.rollout_id = $1 \
         AND i.action = 'install' AND i.state = 'SUCCEEDED' AND NOT EXISTS (SELECT 1 FROM rollout_executions r \
         WHERE r.rollout_id = i.rollout_id AND r.device_id = i.device_id AND r.action = 'rollback')",
    )
    .bind(id)
    .fetch_all(db.reader())
    .await?;
    let mut tx = db.writer().begin().await?;
    for chunk in succeeded.chunks(400) {
        let mut sql = Sql::new(
            "INSERT INTO rollout_executions (id, tenant_id, rollout_id, device_id, wave, position, action, \
             artifact_id, state, attempt, updated_at) VALUES ",
        );
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(").bind(new_id()).push(", ").bind(scope.id()).push(", ").bind(id);
            sql.push(", ").bind(row.try_get::<String, _>("device_id")?);
            sql.push(", ").bind(row.try_get::<i64, _>("wave")?);
            sql.push(", ").bind(row.try_get::<i64, _>("position")?);
            sql.push(", 'rollback', ").bind(previous).push(", 'QUEUED', 1, ").bind(now).push(")");
        }
        sql.query_on(&tx).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(succeeded.len() as u64)
}

/// Moves queued executions of `action` to NOTIFIED — of waves up to `wave` when given, due, in
/// the rollout's order, up to the room `max_in_flight` and `notify_per_minute` leave — and tells
/// their devices.
#[allow(clippy::too_many_arguments)]
async fn notify(
    db: &Db,
    bus: &SharedBus,
    engine: &Engine,
    scope: &TenantScope,
    id: &str,
    action: &str,
    wave: Option<u32>,
    spec: &Spec,
    in_flight: u64,
) -> Result<(), Error> {
    let now = engine.now();
    let room = match spec.max_in_flight {
        Some(max) => u64::from(max).saturating_sub(in_flight),
        None => 10_000,
    }
    .min(10_000)
    .min(engine.notify_room(id, spec.notify_per_minute));
    if room == 0 {
        return Ok(());
    }
    let mut sql = Sql::new("SELECT id, device_id FROM rollout_executions WHERE rollout_id = ");
    sql.bind(id).push(" AND action = ").bind(action).push(" AND state = 'QUEUED'");
    if let Some(wave) = wave {
        sql.push(" AND wave <= ").bind(i64::from(wave));
    }
    sql.push(" AND (retry_at IS NULL OR retry_at <= ").bind(now).push(") ORDER BY position LIMIT ");
    sql.bind(i64::try_from(room).unwrap_or(10_000));
    let due = sql.query(db.backend()).fetch_all(db.reader()).await?;
    if due.is_empty() {
        return Ok(());
    }
    engine.count_told(id, due.len() as u64);
    let ids: Vec<String> = due.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
    let devices: Vec<String> = due.iter().map(|r| r.try_get("device_id")).collect::<Result<_, _>>()?;
    let mut tx = db.writer().begin().await?;
    for chunk in ids.chunks(500) {
        let mut sql = Sql::new("UPDATE rollout_executions SET state = 'NOTIFIED', retry_at = NULL, updated_at = ");
        sql.bind(now).push(" WHERE state = 'QUEUED' AND id IN ");
        sql.bind_list(chunk.iter().map(String::as_str));
        // Paused or canceled meanwhile: nobody more is told.
        sql.push(" AND EXISTS (SELECT 1 FROM rollouts r WHERE r.id = rollout_executions.rollout_id")
            .push(" AND r.state IN ('RUNNING', 'ROLLING_BACK'))");
        sql.query_on(&tx).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    bus.publish(Message::DeploymentsReady { tenant: scope.id().to_owned(), device_ids: devices });
    bus.publish(Message::RolloutChanged { tenant: scope.id().to_owned(), rollout_id: id.to_owned() });
    Ok(())
}

async fn set_met(db: &Db, scope: &TenantScope, id: &str, at: Option<i64>) -> Result<(), Error> {
    sqlx::query("UPDATE rollouts SET wave_met_at = $3 WHERE tenant_id = $1 AND id = $2 AND state = 'RUNNING'")
        .bind(scope.id())
        .bind(id)
        .bind(at)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Pauses a running rollout, saying why.
async fn pause(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    id: &str,
    reason: PauseReason,
    now: i64,
    why: &str,
) -> Result<(), Error> {
    transition(db, bus, scope, id, RolloutState::Running, RolloutState::Paused, Some(reason), now, why).await
}

/// Moves the rollout from `from` to `to` if it is still in `from`, and says so.
#[allow(clippy::too_many_arguments)]
async fn transition(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    id: &str,
    from: RolloutState,
    to: RolloutState,
    reason: Option<PauseReason>,
    now: i64,
    why: &str,
) -> Result<(), Error> {
    let mut tx = db.writer().begin().await?;
    let done = moved(&mut tx, scope, id, from, to, reason, now).await?;
    tx.commit().await?;
    if done {
        announce(db, bus, scope, id, to, why).await;
    }
    Ok(())
}

async fn moved(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    scope: &TenantScope,
    id: &str,
    from: RolloutState,
    to: RolloutState,
    reason: Option<PauseReason>,
    now: i64,
) -> Result<bool, Error> {
    let done = sqlx::query(
        "UPDATE rollouts SET state = $4, paused_reason = $5, updated_at = $6 \
         WHERE tenant_id = $1 AND id = $2 AND state = $3",
    )
    .bind(scope.id())
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(reason.map(pause_reason_str))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

async fn announce(db: &Db, bus: &SharedBus, scope: &TenantScope, id: &str, state: RolloutState, why: &str) {
    tracing::info!(rollout_id = %id, state = state.as_str(), why, "rollout state changed");
    let data = serde_json::json!({"rollout_id": id, "state": state.as_str(), "reason": why});
    events::record(db, bus, scope, None, EVENT, data).await;
    bus.publish(Message::RolloutChanged { tenant: scope.id().to_owned(), rollout_id: id.to_owned() });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_gate_waits_for_its_minimum_then_fires_on_share_or_count() {
        let gate =
            FailureGate { failed_percent: Some(20.0), failed_count: None, min_executed: 10, action: GateAction::Pause };
        assert!(!gate_fires(&gate, 5, 9), "not before min_executed");
        assert!(gate_fires(&gate, 2, 10));
        assert!(!gate_fires(&gate, 1, 10));
        let count =
            FailureGate { failed_percent: None, failed_count: Some(3), min_executed: 1, action: GateAction::Abort };
        assert!(gate_fires(&count, 3, 500));
        assert!(!gate_fires(&count, 2, 2));
    }
}
