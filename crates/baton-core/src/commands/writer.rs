//! The command state writer: one task that applies the state changes of many devices' commands
//! (SENT, ACKED, SUCCEEDED/FAILED) and records their `command.finished` events together, a few
//! statements per transaction, instead of one statement (and one sync) each. A fleet-wide
//! command's 10,000 answers then cost a handful of commits.
//!
//! It also writes connected devices' `last_seen_at` (a session's other periodic write): ten
//! thousand sessions started together reach their once-a-minute mark together, and one commit
//! each would queue on the single writer for seconds.
//!
//! What a caller waits for: a final report is answered once committed (the session then frees
//! the command's place and may settle a support bundle). SENT and ACKED are not waited for:
//! losing them to a crash loses nothing, because the server sends SENT and ACKED commands
//! again after a reconnect and the agent answers a repeat with the result it kept.

use std::collections::{HashMap, HashSet};

use baton_proto::{
    agent::{CommandProgress, CommandUpdate},
    api::{
        commands::{CommandSpec, CommandState},
        events::Event,
    },
};
use sqlx::{Any, AssertSqlSafe, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::MAX_RESULT_BYTES;
use crate::{
    Error,
    access::TenantScope,
    bus::{Message, SharedBus},
    events,
    store::{Backend, Db, from_ms, new_id, now_ms},
};

/// Changes waiting for the writer before sessions are slowed down (back-pressure).
const QUEUE: usize = 16_384;
/// Changes applied in one transaction at most.
const PER_TRANSACTION: usize = 20_000;
/// Ids (or rows) per statement, which takes them as one JSON value.
const PER_STATEMENT: usize = 5_000;

/// What became of a device's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The command was a support bundle's (whose bundle may need settling).
    pub support_bundle: bool,
}

enum Job {
    /// Commands handed to their devices; they leave QUEUED.
    Sent(Vec<String>),
    /// A connected device was heard from.
    Seen(String),
    /// A device's report about one of its commands; `done` hears whether it finished it.
    Report { scope: TenantScope, device_id: String, update: CommandUpdate, done: Option<Answer> },
}

type Answer = oneshot::Sender<Result<Option<Finished>, String>>;

/// The handle sessions use to change command state.
#[derive(Clone)]
pub struct CommandWriter {
    tx: mpsc::Sender<Job>,
}

impl CommandWriter {
    /// Starts the writer task.
    pub fn spawn(db: Db, bus: SharedBus) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, bus, rx));
        Self { tx }
    }

    /// Marks commands as handed to their devices (not waited for).
    pub async fn sent(&self, ids: Vec<String>) {
        if !ids.is_empty() {
            let _ = self.tx.send(Job::Sent(ids)).await;
        }
    }

    /// Records that a connected device was heard from (not waited for).
    pub async fn seen(&self, device_id: &str) {
        let _ = self.tx.send(Job::Seen(device_id.to_owned())).await;
    }

    /// Applies a device's report. An acknowledgement is not waited for; a result is, until it
    /// is committed: the answer says whether it finished the command. Reports for commands that
    /// were canceled, expired, finished already or belong to another device change nothing.
    pub async fn report(
        &self,
        scope: &TenantScope,
        device_id: &str,
        update: CommandUpdate,
    ) -> Result<Option<Finished>, Error> {
        let stopped = || Error::Internal(anyhow::anyhow!("the command writer stopped"));
        let wait = update.state != CommandProgress::Acked;
        let (done, answer) = oneshot::channel();
        let job =
            Job::Report { scope: scope.clone(), device_id: device_id.to_owned(), update, done: wait.then_some(done) };
        self.tx.send(job).await.map_err(|_| stopped())?;
        if !wait {
            return Ok(None);
        }
        answer.await.map_err(|_| stopped())?.map_err(|e| Error::Internal(anyhow::anyhow!(e)))
    }
}

async fn run(db: Db, bus: SharedBus, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let jobs = crate::batches::take_waiting(&mut rx, first, PER_TRANSACTION);
        let outcome = match apply(&db, &jobs).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %e, changes = jobs.len(), "storing command states failed");
                for job in jobs {
                    if let Job::Report { done: Some(done), .. } = job {
                        let _ = done.send(Err(e.to_string()));
                    }
                }
                continue;
            }
        };
        metrics::counter!("baton_command_state_commits_total").increment(1);
        for (tenant, event) in outcome.events {
            bus.publish(Message::Event { tenant, event });
        }
        for (job, finished) in jobs.into_iter().zip(outcome.finished) {
            if let Job::Report { done: Some(done), .. } = job {
                let _ = done.send(Ok(finished));
            }
        }
    }
}

/// What a committed drain did: per job, whether it finished its command; the events recorded.
struct Outcome {
    finished: Vec<Option<Finished>>,
    events: Vec<(String, Event)>,
}

/// A reported command as stored.
struct Stored {
    tenant: String,
    device_id: String,
    state: CommandState,
    spec: String,
}

async fn apply(db: &Db, jobs: &[Job]) -> Result<Outcome, Error> {
    let now = now_ms();
    let mut tx = db.writer().begin().await?;
    let reported: Vec<&str> = jobs
        .iter()
        .filter_map(|j| match j {
            Job::Report { update, .. } => Some(update.command_id.as_str()),
            _ => None,
        })
        .collect();
    let mut stored = current(&mut tx, &reported).await?;
    let mut plan = Plan::default();
    for job in jobs {
        let finished = match job {
            Job::Report { scope, device_id, update, .. } => plan.report(&mut stored, scope, device_id, update, now)?,
            _ => None,
        };
        plan.finished.push(finished);
    }
    // A command answered in this drain is marked sent by its answer's update: under load the
    // agents' answers come in while the previous drain commits, and each state change of a
    // command rewrites its row and every index on `state`.
    let finals: HashSet<&str> = plan.finals.iter().map(|f| f.0.as_str()).collect();
    let acked: Vec<&str> = plan.acked.iter().map(String::as_str).filter(|id| !finals.contains(id)).collect();
    let answered: HashSet<&str> = finals.iter().copied().chain(acked.iter().copied()).collect();
    let sent: Vec<&str> = jobs
        .iter()
        .flat_map(|j| if let Job::Sent(ids) = j { ids.as_slice() } else { &[] })
        .map(String::as_str)
        .filter(|id| !answered.contains(id))
        .collect();
    update_ids(&mut tx, "commands SET state = 'SENT', sent_at = ", now, "state = 'QUEUED'", &sent).await?;
    let seen: Vec<&str> =
        jobs.iter().filter_map(|j| if let Job::Seen(id) = j { Some(id.as_str()) } else { None }).collect();
    update_ids(&mut tx, "devices SET last_seen_at = ", now, "online = 1", &seen).await?;
    let set_acked = "commands SET state = 'ACKED', sent_at = COALESCE(sent_at, $1), acked_at = ";
    update_ids(&mut tx, set_acked, now, "state IN ('QUEUED', 'SENT')", &acked).await?;
    finish(&mut tx, &plan.finals, now).await?;
    for (device_id, seconds) in &plan.intervals {
        sqlx::query("UPDATE devices SET telemetry_interval_secs = $1 WHERE id = $2")
            .bind(i64::from(*seconds))
            .bind(device_id.as_str())
            .execute(&mut *tx)
            .await?;
    }
    events::insert_all(&mut tx, &plan.events).await?;
    tx.commit().await?;
    for (_, state, _) in &plan.finals {
        metrics::counter!("baton_commands_finished_total", "state" => *state).increment(1);
    }
    Ok(Outcome { finished: plan.finished, events: plan.events })
}

/// What a drain's reports change, decided against the stored states before any is written.
#[derive(Default)]
struct Plan {
    finished: Vec<Option<Finished>>,
    acked: Vec<String>,
    /// Command id, final state, result.
    finals: Vec<(String, &'static str, String)>,
    /// Telemetry intervals devices accepted, kept for their next connection.
    intervals: Vec<(String, u32)>,
    events: Vec<(String, Event)>,
}

impl Plan {
    fn report(
        &mut self,
        stored: &mut HashMap<String, Stored>,
        scope: &TenantScope,
        device_id: &str,
        update: &CommandUpdate,
        now: i64,
    ) -> Result<Option<Finished>, Error> {
        let Some(command) = stored.get_mut(&update.command_id) else { return Ok(None) };
        if command.tenant != scope.id() || command.device_id != device_id {
            tracing::debug!(device_id, command = %update.command_id, "report for a command of another device");
            return Ok(None);
        }
        if command.state.is_final() {
            return Ok(None);
        }
        let final_state = match update.state {
            CommandProgress::Acked => {
                command.state = CommandState::Acked;
                self.acked.push(update.command_id.clone());
                return Ok(None);
            }
            CommandProgress::Succeeded => CommandState::Succeeded,
            CommandProgress::Failed => CommandState::Failed,
        };
        command.state = final_state;
        let mut result =
            serde_json::to_string(&update.result.clone().unwrap_or_default()).map_err(anyhow::Error::from)?;
        if result.len() > MAX_RESULT_BYTES {
            result = serde_json::json!({"error": "the result was larger than the server keeps", "truncated": true})
                .to_string();
        }
        let spec: Option<CommandSpec> = serde_json::from_str(&command.spec).ok();
        if final_state == CommandState::Succeeded
            && let Some(CommandSpec::SetTelemetryInterval { seconds }) = spec
        {
            self.intervals.push((device_id.to_owned(), seconds));
        }
        self.finals.push((update.command_id.clone(), final_state.as_str(), result));
        let event = Event {
            id: new_id(),
            device_id: Some(device_id.to_owned()),
            kind: events::kind::COMMAND_FINISHED.to_owned(),
            data: serde_json::json!({"command_id": update.command_id, "state": final_state.as_str()}),
            at: from_ms(now),
        };
        self.events.push((command.tenant.clone(), event));
        Ok(Some(Finished { support_bundle: matches!(spec, Some(CommandSpec::SupportBundle { .. })) }))
    }
}

/// The stored state of the reported commands, locked for this transaction on PostgreSQL (on
/// SQLite the single writer connection already excludes other writers).
async fn current(tx: &mut Transaction<'_, Any>, ids: &[&str]) -> Result<HashMap<String, Stored>, Error> {
    let mut stored = HashMap::with_capacity(ids.len());
    let select = match Backend::of(tx) {
        Backend::Sqlite => {
            "SELECT id, tenant_id, device_id, state, spec FROM commands WHERE id IN (SELECT value FROM json_each($1))"
        }
        Backend::Postgres => {
            "SELECT id, tenant_id, device_id, state, spec FROM commands \
             WHERE id IN (SELECT json_array_elements_text($1::JSON)) ORDER BY id FOR UPDATE"
        }
    };
    for chunk in ids.chunks(PER_STATEMENT) {
        let ids = serde_json::to_string(chunk).map_err(anyhow::Error::from)?;
        for row in sqlx::query(select).bind(ids).fetch_all(&mut **tx).await? {
            let state = CommandState::parse(&row.try_get::<String, _>("state")?).unwrap_or(CommandState::Canceled);
            let command = Stored {
                tenant: row.try_get("tenant_id")?,
                device_id: row.try_get("device_id")?,
                state,
                spec: row.try_get("spec")?,
            };
            stored.insert(row.try_get("id")?, command);
        }
    }
    Ok(stored)
}

/// `UPDATE {set}{now} WHERE {only} AND id IN (…)`, the ids as one JSON value per statement.
async fn update_ids(tx: &mut Transaction<'_, Any>, set: &str, now: i64, only: &str, ids: &[&str]) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    // On SQLite `+(…)` keeps the planner from walking an index on `state` (every command in
    // flight) and testing each against the list: it looks the listed ids up instead.
    let text = match Backend::of(tx) {
        Backend::Sqlite => format!("UPDATE {set}$1 WHERE id IN (SELECT value FROM json_each($2)) AND +({only})"),
        Backend::Postgres => {
            format!("UPDATE {set}$1 WHERE id IN (SELECT json_array_elements_text($2::JSON)) AND {only}")
        }
    };
    for chunk in ids.chunks(PER_STATEMENT) {
        let ids = serde_json::to_string(chunk).map_err(anyhow::Error::from)?;
        // Safe: the text is made of this module's literals; the values are bound.
        sqlx::query(AssertSqlSafe(text.clone())).bind(now).bind(ids).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Final states and results, many commands per statement: `UPDATE … FROM` the rows of one JSON
/// value (`[id, state, result]` each), which each engine expands itself. On SQLite, `+(…)`
/// makes the planner walk the rows and look each command up by id, instead of walking the
/// commands in flight by `state` and scanning all the rows for each.
async fn finish(
    tx: &mut Transaction<'_, Any>,
    finals: &[(String, &'static str, String)],
    now: i64,
) -> Result<(), Error> {
    let update = match Backend::of(tx) {
        Backend::Sqlite => FINISH_SQLITE,
        Backend::Postgres => FINISH_POSTGRES,
    };
    for chunk in finals.chunks(PER_STATEMENT) {
        let rows = serde_json::to_string(chunk).map_err(anyhow::Error::from)?;
        sqlx::query(update).bind(now).bind(rows).execute(&mut **tx).await?;
    }
    Ok(())
}

const FINISH_SQLITE: &str = "UPDATE commands SET state = v.value ->> 1, result = v.value ->> 2, finished_at = $1, \
    sent_at = COALESCE(sent_at, $1), acked_at = COALESCE(acked_at, $1) FROM json_each($2) AS v \
    WHERE commands.id = v.value ->> 0 AND +(commands.state IN ('QUEUED', 'SENT', 'ACKED'))";
const FINISH_POSTGRES: &str = "UPDATE commands SET state = v.e ->> 1, result = v.e ->> 2, finished_at = $1, \
    sent_at = COALESCE(sent_at, $1), acked_at = COALESCE(acked_at, $1) FROM json_array_elements($2::JSON) AS v(e) \
    WHERE commands.id = v.e ->> 0 AND commands.state IN ('QUEUED', 'SENT', 'ACKED')";
