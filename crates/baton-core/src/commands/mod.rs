//! Commands — the durable outbox. A request names a command and its target devices; one row per
//! device is stored (QUEUED) before anything is sent, so a command survives a server restart
//! and waits for a device that is offline. Delivery and the device's answers are in
//! [`delivery`]; the life of a command is
//! `QUEUED → SENT → ACKED → SUCCEEDED | FAILED`, or `EXPIRED` after its TTL, or `CANCELED`.

pub mod delivery;
pub mod writer;

use std::collections::BTreeMap;

use baton_proto::{
    agent::CommandEnvelope,
    api::{
        Page,
        access::PageQuery,
        commands::{Command, CommandBatch, CommandCreate, CommandQuery, CommandSpec, CommandState, CommandTarget},
        devices::DeviceStatus,
    },
};
use sqlx::{Any, AssertSqlSafe, Row, Transaction, any::AnyRow};

use crate::{
    Error,
    access::{Principal, TenantScope},
    bus::{Message, SharedBus},
    error::Violations,
    pagination,
    store::{Backend, Db, from_ms, is_id, new_id, now_ms, sql::Sql},
};

/// Default and longest time a command may wait for its device.
pub const DEFAULT_TTL_SECS: u32 = 86_400;
pub const MAX_TTL_SECS: u32 = 30 * 86_400;
/// Most devices one request may target.
pub const MAX_TARGETS: usize = 100_000;
/// Largest stored result (stdout + stderr are capped by the agent well below this).
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

pub(crate) const COLUMNS: &str =
    "id, batch_id, device_id, spec, state, created_by, created_at, sent_at, acked_at, finished_at, expires_at, result";

/// Queues a command for every targeted device. Repeating a request with the same idempotency
/// key returns the batch the first request made.
pub async fn create(
    db: &Db,
    bus: &SharedBus,
    scope: &TenantScope,
    by: &Principal,
    req: CommandCreate,
) -> Result<CommandBatch, Error> {
    validate(&req)?;
    if let Some(key) = &req.idempotency_key
        && let Some(batch) = batch_by_key(db, scope, key).await?
    {
        return Ok(batch);
    }
    let devices = targets(db, scope, &req.target).await?;
    let batch_id = new_id();
    let created_by = by.subject_label();
    let outgoing: Vec<Outgoing> =
        devices.iter().map(|d| Outgoing { id: new_id(), device_id: d.clone(), spec: req.command.clone() }).collect();
    let new_batch = NewBatch {
        id: &batch_id,
        spec: &req.command,
        created_by: &created_by,
        idempotency_key: req.idempotency_key.as_deref(),
        ttl_secs: req.ttl_secs.unwrap_or(DEFAULT_TTL_SECS),
    };
    let new_batch_ttl = new_batch.ttl_secs;
    let mut tx = db.writer().begin().await?;
    let expires_at = enqueue(&mut tx, scope, &new_batch, &outgoing).await?;
    tx.commit().await?;
    let total = outgoing.len() as u64;
    let envelopes = outgoing.into_iter().map(|c| CommandEnvelope { id: c.id, command: c.spec, expires_at }).collect();
    announce(bus, scope, devices, envelopes);
    // The batch as committed, not read back: by now its sessions are sending, and a fleet's
    // worth of them would hold this answer behind their work.
    Ok(CommandBatch {
        id: batch_id,
        command: req.command,
        total,
        states: BTreeMap::from([(CommandState::Queued.as_str().to_owned(), total)]),
        created_by: Some(created_by),
        created_at: from_ms(expires_at - i64::from(new_batch_ttl) * 1000),
    })
}

/// A batch about to be queued: one request's commands.
pub(crate) struct NewBatch<'a> {
    pub id: &'a str,
    /// What the request asked for (each command may carry its own details, see [`Outgoing`]).
    pub spec: &'a CommandSpec,
    pub created_by: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub ttl_secs: u32,
}

/// One device's command of a batch being queued.
#[derive(Clone)]
pub(crate) struct Outgoing {
    pub id: String,
    pub device_id: String,
    pub spec: CommandSpec,
}

/// Commands per insert: a JSON value of ≈ 1 MB.
const ROWS_PER_STATEMENT: usize = 10_000;
const INSERT_SQLITE: &str = "INSERT INTO commands \
    (id, tenant_id, batch_id, device_id, kind, spec, state, created_by, created_at, expires_at) \
    SELECT c.value ->> 0, $1, $2, c.value ->> 1, c.value ->> 2, COALESCE(c.value ->> 3, $3), 'QUEUED', $4, $5, $6 \
    FROM json_each($7) AS c";
const INSERT_POSTGRES: &str = "INSERT INTO commands \
    (id, tenant_id, batch_id, device_id, kind, spec, state, created_by, created_at, expires_at) \
    SELECT c ->> 0, $1, $2, c ->> 1, c ->> 2, COALESCE(c ->> 3, $3), 'QUEUED', $4, $5, $6 \
    FROM json_array_elements($7::JSON) AS c";

/// Stores a batch and its commands (QUEUED) in `tx`, so a caller can record what the commands
/// are for in the same transaction. After the commit, [`announce`] them. Returns when they
/// expire (milliseconds since the epoch).
pub(crate) async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    scope: &TenantScope,
    batch: &NewBatch<'_>,
    commands: &[Outgoing],
) -> Result<i64, Error> {
    let now = now_ms();
    let expires_at = now + i64::from(batch.ttl_secs) * 1000;
    let spec = serde_json::to_string(batch.spec).map_err(anyhow::Error::from)?;
    sqlx::query(
        "INSERT INTO command_batches (id, tenant_id, spec, total, idempotency_key, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(batch.id)
    .bind(scope.id())
    .bind(&spec)
    .bind(commands.len() as i64)
    .bind(batch.idempotency_key)
    .bind(batch.created_by)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(Error::conflict_on_unique("a request with this idempotency key is being processed; retry"))?;
    // The commands travel as one JSON value ([id, device, kind, own spec or null] each): a
    // fleet's 10,000 cost a couple of statements, not 50 of 2,000 bound values.
    let insert = match Backend::of(tx) {
        Backend::Sqlite => INSERT_SQLITE,
        Backend::Postgres => INSERT_POSTGRES,
    };
    for chunk in commands.chunks(ROWS_PER_STATEMENT) {
        let mut rows = Vec::with_capacity(chunk.len());
        for c in chunk {
            let own = if c.spec == *batch.spec {
                None
            } else {
                Some(serde_json::to_string(&c.spec).map_err(anyhow::Error::from)?)
            };
            rows.push((c.id.as_str(), c.device_id.as_str(), c.spec.kind(), own));
        }
        let rows = serde_json::to_string(&rows).map_err(anyhow::Error::from)?;
        sqlx::query(insert)
            .bind(scope.id())
            .bind(batch.id)
            .bind(&spec)
            .bind(batch.created_by)
            .bind(now)
            .bind(expires_at)
            .bind(rows)
            .execute(&mut **tx)
            .await?;
    }
    Ok(expires_at)
}

/// Tells the sessions of `devices` that commands wait for them (after the commit), with the
/// commands themselves when the caller has them (`envelopes`, one per device, or none).
pub(crate) fn announce(bus: &SharedBus, scope: &TenantScope, devices: Vec<String>, envelopes: Vec<CommandEnvelope>) {
    metrics::counter!("baton_commands_queued_total").increment(devices.len() as u64);
    bus.publish(Message::CommandsQueued { tenant: scope.id().to_owned(), device_ids: devices, envelopes });
}

fn validate(req: &CommandCreate) -> Result<(), Error> {
    let mut v = Violations::default();
    match &req.command {
        CommandSpec::Exec { program, args, shell, timeout_secs } => {
            match (program, shell) {
                (Some(p), None) if !p.is_empty() && !p.contains('\0') => {}
                (None, Some(s)) if !s.is_empty() && !s.contains('\0') => {}
                _ => v.add("/command", "exec takes either `program` (with `args`) or a `shell` line"),
            }
            if args.len() > 256 || args.iter().any(|a| a.contains('\0') || a.len() > 4096) {
                v.add("/command/args", "at most 256 arguments of at most 4096 bytes, without NUL");
            }
            if timeout_secs.is_some_and(|t| t == 0 || t > 86_400) {
                v.add("/command/timeout_secs", "must be between 1 and 86400");
            }
        }
        CommandSpec::SetTelemetryInterval { seconds } if !(1..=86_400).contains(seconds) => {
            v.add("/command/seconds", "must be between 1 and 86400");
        }
        CommandSpec::Custom { name, params } => {
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                v.add("/command/name", "1 to 64 letters, digits, `.`, `_` or `-`");
            }
            if params.to_string().len() > 64 * 1024 {
                v.add("/command/params", "at most 64 KiB of JSON");
            }
        }
        CommandSpec::SupportBundle { .. } => {
            v.add("/command", "request support bundles with POST /api/v1/support-bundles");
        }
        _ => {}
    }
    if req.ttl_secs.is_some_and(|t| t == 0 || t > MAX_TTL_SECS) {
        v.add("/ttl_secs", format!("must be between 1 and {MAX_TTL_SECS}"));
    }
    if let Some(key) = &req.idempotency_key
        && (key.is_empty() || key.len() > 128 || key.chars().any(char::is_control))
    {
        v.add("/idempotency_key", "1 to 128 characters without control characters");
    }
    let t = &req.target;
    if t.device_ids.is_empty() && t.group.is_none() && t.labels.is_none() {
        v.add("/target", "name devices by `device_ids`, `group` or `labels`");
    }
    if t.device_ids.len() > MAX_TARGETS {
        v.add("/target/device_ids", format!("at most {MAX_TARGETS} devices"));
    }
    for (i, d) in t.device_ids.iter().enumerate() {
        if !is_id(d) {
            v.add(format!("/target/device_ids/{i}"), "is not a device id");
        }
    }
    v.finish()
}

/// Active devices matching every part of the target. Named devices that are missing or not
/// active are an error (the caller meant them); a selection simply skips inactive devices.
pub(crate) async fn targets(db: &Db, scope: &TenantScope, t: &CommandTarget) -> Result<Vec<String>, Error> {
    for (i, id) in t.device_ids.iter().enumerate() {
        let device = crate::devices::get(db, scope, id)
            .await
            .map_err(|_| Error::invalid(&format!("/target/device_ids/{i}"), format!("device {id} not found")))?;
        if device.status != DeviceStatus::Active {
            return Err(Error::Conflict(format!(
                "device {id} is {}; commands go to active devices",
                device.status.as_str()
            )));
        }
    }
    let selected = if t.group.is_some() || t.labels.is_some() {
        let ids =
            crate::devices::list::active_ids(db, scope, t.group.as_deref(), t.labels.as_deref(), MAX_TARGETS).await?;
        if t.device_ids.is_empty() { ids } else { ids.into_iter().filter(|id| t.device_ids.contains(id)).collect() }
    } else {
        // Each device once, in the order named: a repeated id must not run the command twice.
        let mut seen = std::collections::HashSet::new();
        t.device_ids.iter().filter(|id| seen.insert(id.as_str())).cloned().collect()
    };
    if selected.is_empty() {
        return Err(Error::invalid("/target", "no active device matches the target"));
    }
    Ok(selected)
}

pub async fn get(db: &Db, scope: &TenantScope, id: &str) -> Result<Command, Error> {
    let not_found = || Error::NotFound(format!("command {id}"));
    if !is_id(id) {
        return Err(not_found());
    }
    sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM commands WHERE tenant_id = $1 AND id = $2")))
        .bind(scope.id())
        .bind(id)
        .fetch_optional(db.reader())
        .await?
        .map(|r| from_row(&r))
        .transpose()?
        .ok_or_else(not_found)
}

/// Commands, newest first.
pub async fn list(db: &Db, scope: &TenantScope, q: &CommandQuery) -> Result<Page<Command>, Error> {
    let limit = pagination::limit(q.limit)?;
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM commands WHERE tenant_id = "));
    sql.bind(scope.id());
    if let Some(device) = &q.device {
        if !is_id(device) {
            return Err(Error::invalid("device", "is not a device id"));
        }
        sql.push(" AND device_id = ").bind(device.as_str());
    }
    if let Some(batch) = &q.batch {
        if !is_id(batch) {
            return Err(Error::invalid("batch", "is not a batch id"));
        }
        sql.push(" AND batch_id = ").bind(batch.as_str());
    }
    if let Some(state) = &q.state {
        let state = CommandState::parse(state)
            .ok_or_else(|| Error::invalid("state", format!("`{state}` is not a command state")))?;
        sql.push(" AND state = ").bind(state.as_str());
    }
    pagination::newest_first(&mut sql, q.cursor.as_deref(), limit)?;
    let rows = sql.query(db.backend()).fetch_all(db.reader()).await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |c| pagination::newest_cursor(c.created_at, &c.id)))
}

/// How many of the tenant's commands are waiting or running (queued, sent or acknowledged).
pub async fn in_flight(db: &Db, scope: &TenantScope) -> Result<u64, Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM commands WHERE tenant_id = $1 AND state IN ('QUEUED', 'SENT', 'ACKED') AND expires_at > $2",
    )
    .bind(scope.id())
    .bind(crate::store::now_ms())
    .fetch_one(db.reader())
    .await?;
    Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
}

/// Cancels a command that has not finished. A command already sent may still run on a device
/// that got it before the cancel; its late result is then ignored.
pub async fn cancel(db: &Db, scope: &TenantScope, id: &str) -> Result<Command, Error> {
    let command = get(db, scope, id).await?;
    if command.state.is_final() {
        return Err(Error::Conflict(format!("command {id} already finished as {}", command.state.as_str())));
    }
    cancel_open(db, scope, Unfinished::Command(id)).await?;
    get(db, scope, id).await
}

/// Cancels every command of a batch that has not finished, and answers with the batch.
pub async fn cancel_batch(db: &Db, scope: &TenantScope, id: &str) -> Result<CommandBatch, Error> {
    batch(db, scope, id).await?;
    let canceled = cancel_open(db, scope, Unfinished::Batch(id)).await?;
    metrics::counter!("baton_commands_canceled_total").increment(canceled);
    batch(db, scope, id).await
}

/// Which unfinished commands [`cancel_open`] cancels.
pub(crate) enum Unfinished<'a> {
    Command(&'a str),
    Batch(&'a str),
    Device(&'a str),
}

/// Cancels the chosen commands that are still queued, sent or acknowledged; returns how many.
pub(crate) async fn cancel_open(db: &Db, scope: &TenantScope, which: Unfinished<'_>) -> Result<u64, Error> {
    let (column, value) = match which {
        Unfinished::Command(id) => ("id", id),
        Unfinished::Batch(id) => ("batch_id", id),
        Unfinished::Device(id) => ("device_id", id),
    };
    let mut sql = Sql::new("UPDATE commands SET state = 'CANCELED', finished_at = ");
    sql.bind(now_ms()).push(" WHERE tenant_id = ").bind(scope.id());
    sql.push(&format!(" AND {column} = ")).bind(value).push(" AND state IN ('QUEUED', 'SENT', 'ACKED')");
    Ok(sql.query(db.backend()).execute(db.writer()).await?.rows_affected())
}

/// The tenant's command batches (every command request is one), newest first, each with its
/// progress by state: two queries for the page, whatever its size.
pub async fn batches(db: &Db, scope: &TenantScope, q: &PageQuery) -> Result<Page<CommandBatch>, Error> {
    let limit = pagination::limit(q.limit)?;
    let mut sql = Sql::new(&format!("SELECT {BATCH_COLUMNS} FROM command_batches WHERE tenant_id = "));
    sql.bind(scope.id());
    pagination::newest_first(&mut sql, q.cursor.as_deref(), limit)?;
    let rows = sql.query(db.backend()).fetch_all(db.reader()).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
    let mut states = batch_states(db, &ids).await?;
    let items = rows
        .iter()
        .map(|row| batch_from_row(row, states.remove(&row.try_get::<String, _>("id")?).unwrap_or_default()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(pagination::finish(items, limit, |b| pagination::newest_cursor(b.created_at, &b.id)))
}

const BATCH_COLUMNS: &str = "id, spec, total, created_by, created_at";

/// A batch with its progress by state.
pub async fn batch(db: &Db, scope: &TenantScope, id: &str) -> Result<CommandBatch, Error> {
    let not_found = || Error::NotFound(format!("command batch {id}"));
    if !is_id(id) {
        return Err(not_found());
    }
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {BATCH_COLUMNS} FROM command_batches WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(scope.id())
    .bind(id)
    .fetch_optional(db.reader())
    .await?
    .ok_or_else(not_found)?;
    let states = batch_states(db, &[id.to_owned()]).await?.remove(id).unwrap_or_default();
    batch_from_row(&row, states)
}

/// How many commands of each batch are in each state (batches come from a tenant-scoped query).
async fn batch_states(db: &Db, ids: &[String]) -> Result<BTreeMap<String, BTreeMap<String, u64>>, Error> {
    let mut states: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(states);
    }
    let mut sql = Sql::new("SELECT batch_id, state, COUNT(*) AS n FROM commands WHERE batch_id IN ");
    sql.bind_list(ids.iter().map(String::as_str)).push(" GROUP BY batch_id, state");
    for row in sql.query(db.backend()).fetch_all(db.reader()).await? {
        let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
        states.entry(row.try_get("batch_id")?).or_default().insert(row.try_get("state")?, n);
    }
    Ok(states)
}

fn batch_from_row(row: &AnyRow, states: BTreeMap<String, u64>) -> Result<CommandBatch, Error> {
    Ok(CommandBatch {
        id: row.try_get("id")?,
        command: serde_json::from_str(&row.try_get::<String, _>("spec")?).map_err(anyhow::Error::from)?,
        total: u64::try_from(row.try_get::<i64, _>("total")?).unwrap_or(0),
        states,
        created_by: row.try_get("created_by")?,
        created_at: from_ms(row.try_get("created_at")?),
    })
}

async fn batch_by_key(db: &Db, scope: &TenantScope, key: &str) -> Result<Option<CommandBatch>, Error> {
    let row = sqlx::query("SELECT id FROM command_batches WHERE tenant_id = $1 AND idempotency_key = $2")
        .bind(scope.id())
        .bind(key)
        .fetch_optional(db.reader())
        .await?;
    match row {
        Some(r) => Ok(Some(batch(db, scope, &r.try_get::<String, _>("id")?).await?)),
        None => Ok(None),
    }
}

pub(crate) fn from_row(row: &AnyRow) -> Result<Command, Error> {
    let ts = |c: &str| -> Result<_, Error> { Ok(row.try_get::<Option<i64>, _>(c)?.map(from_ms)) };
    let state: String = row.try_get("state")?;
    Ok(Command {
        id: row.try_get("id")?,
        batch_id: row.try_get("batch_id")?,
        device_id: row.try_get("device_id")?,
        command: serde_json::from_str(&row.try_get::<String, _>("spec")?).map_err(anyhow::Error::from)?,
        state: CommandState::parse(&state).ok_or_else(|| anyhow::anyhow!("stored command state `{state}`"))?,
        created_by: row.try_get("created_by")?,
        created_at: from_ms(row.try_get("created_at")?),
        sent_at: ts("sent_at")?,
        acked_at: ts("acked_at")?,
        finished_at: ts("finished_at")?,
        expires_at: from_ms(row.try_get("expires_at")?),
        result: row.try_get::<Option<String>, _>("result")?.and_then(|r| serde_json::from_str(&r).ok()),
    })
}
