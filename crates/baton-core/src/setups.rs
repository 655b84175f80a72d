//! The setup writer: devices' enrollments and their connections' presence (online with the
//! hello's inventory and the `device.online` event; offline) written together, many per
//! transaction, by a few writer tasks — instead of one transaction (and one sync) each. A fleet
//! of ten thousand that starts at once then costs the database a few dozen commits, not twenty
//! thousand, and leaves the pools to the readers.
//!
//! A batch is written straight through; when one of its setups fails (a serial decommissioned,
//! a token used up), the batch is written again with each setup in a savepoint of the shared
//! transaction, so that one is undone alone and answered with its error; the others commit. A caller is answered once its setup is committed (an enrollment's `201` still means
//! stored). A token without a use limit has its uses counted once per transaction; a token with
//! one is counted with each use, so the limit holds.
//!
//! On PostgreSQL several writers run side by side (the server commits them in parallel); on
//! SQLite one (it has one writer). A device's setups always go to the same writer, in order.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    time::Duration,
};

use baton_proto::api::enrollment::EnrollRequest;
use baton_proto::{
    api::{enrollment::EnrollResponse, events::Event},
    inventory::Inventory,
};
use sqlx::{Any, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Error,
    access::TenantScope,
    bus::SharedBus,
    devices::presence,
    enrollment::{self, Prepared, Written},
    events,
    store::{Backend, Db},
};

/// Setups waiting for one writer before callers are slowed down (back-pressure).
const QUEUE: usize = 4_096;
/// Setups applied in one transaction at most: enough to share a sync among many, few enough
/// that the first of them is not kept waiting long for the last.
const PER_TRANSACTION: usize = 256;
/// Writers side by side on PostgreSQL (each holds one pooled connection while it writes).
const POSTGRES_WRITERS: usize = 4;

enum Job {
    Enroll { prepared: Box<Prepared>, done: oneshot::Sender<(Box<Prepared>, Result<Written, Error>)> },
    Online { scope: TenantScope, id: String, remote: String, inventory: Box<Inventory>, epoch: Option<u64>, done: Done },
    Offline { scope: TenantScope, id: String, done: Done },
}

type Done = oneshot::Sender<Result<(), Error>>;

/// What a setup wrote: for an enrollment, what its caller answers with; for presence, the event
/// to publish once committed.
enum Wrote {
    Enrolled(Written),
    Event(Event),
}

/// The handle the doors use to enroll devices and record their presence.
#[derive(Clone)]
pub struct SetupWriter {
    lanes: Vec<mpsc::Sender<Job>>,
    db: Db,
    bus: SharedBus,
}

impl SetupWriter {
    /// Starts the writer tasks.
    pub fn spawn(db: Db, bus: SharedBus) -> Self {
        let writers = if db.backend() == Backend::Postgres { POSTGRES_WRITERS } else { 1 };
        let lanes = (0..writers)
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(db.clone(), bus.clone(), rx));
                tx
            })
            .collect();
        Self { lanes, db, bus }
    }

    fn lane(&self, key: &str) -> &mpsc::Sender<Job> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        &self.lanes[(hasher.finish() % self.lanes.len() as u64) as usize]
    }

    /// Enrolls a device as [`enrollment::enroll_keyed`] does, its writes shared with others'.
    pub async fn enroll(
        &self,
        req: EnrollRequest,
        key: Option<&str>,
        certificate_lifetime: Duration,
    ) -> Result<EnrollResponse, Error> {
        let prepared = Box::new(enrollment::prepare(&self.db, req, key).await?);
        let (done, answer) = oneshot::channel();
        let lane = self.lane(prepared.serial());
        lane.send(Job::Enroll { prepared, done }).await.map_err(|_| stopped())?;
        let (prepared, written) = answer.await.map_err(|_| stopped())?;
        enrollment::finish(&self.db, &self.bus, *prepared, written?, certificate_lifetime).await
    }

    /// Records a connected device as [`presence::connected`] does, once committed.
    pub async fn online(
        &self,
        scope: &TenantScope,
        id: &str,
        remote: &str,
        inventory: Inventory,
        epoch: Option<u64>,
    ) -> Result<(), Error> {
        let (done, answer) = oneshot::channel();
        let job = Job::Online {
            scope: scope.clone(),
            id: id.to_owned(),
            remote: remote.to_owned(),
            inventory: Box::new(inventory),
            epoch,
            done,
        };
        self.lane(id).send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Records a device's disconnection and its `device.offline` event, once committed.
    pub async fn offline(&self, scope: &TenantScope, id: &str) -> Result<(), Error> {
        let (done, answer) = oneshot::channel();
        let job = Job::Offline { scope: scope.clone(), id: id.to_owned(), done };
        self.lane(id).send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Internal(anyhow::anyhow!("the setup writer stopped"))
}

async fn run(db: Db, bus: SharedBus, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let jobs = crate::batches::take_waiting(&mut rx, first, PER_TRANSACTION);
        metrics::histogram!("baton_setup_batch_size").record(jobs.len() as f64);
        match apply(&db, &jobs).await {
            Ok(results) => {
                metrics::counter!("baton_setup_commits_total").increment(1);
                for (job, result) in jobs.into_iter().zip(results) {
                    answer(&bus, job, result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, setups = jobs.len(), "storing device setups failed");
                for job in jobs {
                    answer(&bus, job, Err(Error::Internal(anyhow::anyhow!("storing the setup failed: {e}"))));
                }
            }
        }
    }
}

/// Answers a job once its transaction is over (committed, when `result` is a success).
fn answer(bus: &SharedBus, job: Job, result: Result<Wrote, Error>) {
    match job {
        Job::Enroll { prepared, done } => {
            let written = result.and_then(|w| match w {
                Wrote::Enrolled(written) => Ok(written),
                Wrote::Event(_) => Err(Error::Internal(anyhow::anyhow!("an enrollment wrote no device"))),
            });
            let _ = done.send((prepared, written));
        }
        Job::Online { scope, done, .. } | Job::Offline { scope, done, .. } => {
            let result = result.map(|wrote| {
                if let Wrote::Event(event) = wrote {
                    events::publish(bus, &scope, event);
                }
            });
            let _ = done.send(result);
        }
    }
}

/// Writes `jobs` in one transaction; the outer error is the transaction's (nothing of it was
/// committed). Almost every batch writes cleanly, so it is first written straight through; only
/// when one of its setups is refused is the batch written again with a savepoint around each, so
/// that one is undone alone (two round trips per setup saved on the common path).
async fn apply(db: &Db, jobs: &[Job]) -> Result<Vec<Result<Wrote, Error>>, Error> {
    if let Some(results) = apply_straight(db, jobs).await? {
        return Ok(results);
    }
    metrics::counter!("baton_setup_batches_retried_total").increment(1);
    apply_isolated(db, jobs).await
}

/// Writes `jobs` in one transaction without savepoints; `None` (rolled back) if any is refused.
async fn apply_straight(db: &Db, jobs: &[Job]) -> Result<Option<Vec<Result<Wrote, Error>>>, Error> {
    let mut tx = db.writer().begin().await?;
    let mut results = Vec::with_capacity(jobs.len());
    let mut uses: HashMap<&str, i64> = HashMap::new();
    for job in jobs {
        match write(&mut tx, job).await {
            Ok(wrote) => {
                count_use(&mut uses, job);
                results.push(Ok(wrote));
            }
            Err(_) => {
                tx.rollback().await?;
                return Ok(None);
            }
        }
    }
    for (token, n) in uses {
        enrollment::count_uses(&mut tx, token, n).await?;
    }
    tx.commit().await?;
    Ok(Some(results))
}

/// Counts an enrollment's use of its token, unless its write counted it already.
fn count_use<'a>(uses: &mut HashMap<&'a str, i64>, job: &'a Job) {
    if let Job::Enroll { prepared, .. } = job
        && !prepared.counted_inline()
    {
        *uses.entry(prepared.token()).or_default() += 1;
    }
}

/// Writes `jobs` in one transaction, each in a savepoint, so a refused one is undone alone.
async fn apply_isolated(db: &Db, jobs: &[Job]) -> Result<Vec<Result<Wrote, Error>>, Error> {
    let mut tx = db.writer().begin().await?;
    let mut results = Vec::with_capacity(jobs.len());
    // Enrollments per token whose uses are counted here, once each.
    let mut uses: HashMap<&str, i64> = HashMap::new();
    for job in jobs {
        sqlx::query("SAVEPOINT setup").execute(&mut *tx).await?;
        let result = write(&mut tx, job).await;
        if result.is_ok() {
            sqlx::query("RELEASE SAVEPOINT setup").execute(&mut *tx).await?;
            count_use(&mut uses, job);
        } else {
            sqlx::query("ROLLBACK TO SAVEPOINT setup").execute(&mut *tx).await?;
            sqlx::query("RELEASE SAVEPOINT setup").execute(&mut *tx).await?;
        }
        results.push(result);
    }
    for (token, n) in uses {
        enrollment::count_uses(&mut tx, token, n).await?;
    }
    tx.commit().await?;
    Ok(results)
}

async fn write(tx: &mut Transaction<'static, Any>, job: &Job) -> Result<Wrote, Error> {
    Ok(match job {
        Job::Enroll { prepared, .. } => Wrote::Enrolled(enrollment::write(tx, prepared).await?),
        Job::Online { scope, id, remote, inventory, epoch, .. } => {
            Wrote::Event(presence::connected_within(tx, scope, id, remote, inventory, *epoch).await?)
        }
        Job::Offline { scope, id, .. } => {
            presence::disconnected_within(tx, scope, id).await?;
            let event = events::within(tx, scope, Some(id), events::kind::OFFLINE, serde_json::json!({})).await?;
            Wrote::Event(event)
        }
    })
}
