//! Carrying out deployments: each execution runs as its own task through the steps of the
//! execution state machine — check the claims and the artifact ([`trust`]), download with resume
//! ([`download`]), install ([`install`]), watch health for the verify window, revert if unhealthy
//! — and reports every step with the version actually installed.
//!
//! The [`Journal`] (in the agent's state) records each step before it is taken, so an execution
//! is never carried out twice: a deployment sent again after a reconnect or a restart gets its
//! last report repeated, or, if the agent stopped while installing, a failure — never a second
//! install.

pub mod download;
pub mod install;
pub mod trust;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use baton_proto::{
    api::rollouts::{ExecutionState, FailureClass},
    deployment::{Deployment, ExecutionReport},
    inventory::Inventory,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use self::install::{InstallJob, Installer, SystemInstaller};
use self::trust::Refusal;
use crate::storage::{Identity, Storage};

/// Executions remembered; older ones are forgotten (their rollouts are long over).
const KEPT: usize = 500;

/// What the agent knows about updates, kept in its state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Journal {
    /// Installed versions by artifact name.
    #[serde(default)]
    pub installed: BTreeMap<String, String>,
    /// The last report of each execution carried out, by execution id.
    #[serde(default)]
    pub executions: BTreeMap<String, ExecutionReport>,
    /// Execution ids, oldest first, to forget the oldest.
    #[serde(default)]
    pub order: Vec<String>,
}

/// Runs deployments; reports come out of the receiver the session sends from.
#[derive(Clone)]
pub struct Updates {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    journal: Mutex<Journal>,
    installer: Arc<dyn Installer>,
    http: reqwest::Client,
    trusted_keys: Vec<String>,
    running: Mutex<HashSet<String>>,
    reports: mpsc::Sender<ExecutionReport>,
}

impl Updates {
    pub fn new(
        storage: Storage,
        installer: Arc<dyn Installer>,
        http: reqwest::Client,
        trusted_keys: Vec<String>,
    ) -> Result<(Self, mpsc::Receiver<ExecutionReport>), crate::AgentError> {
        let journal = storage.updates()?;
        let (reports, rx) = mpsc::channel(1024);
        let inner = Inner {
            storage,
            journal: Mutex::new(journal),
            installer,
            http,
            trusted_keys,
            running: Mutex::default(),
            reports,
        };
        Ok((Self { inner: Arc::new(inner) }, rx))
    }

    /// The version of `name` installed, as far as updates know.
    pub fn installed(&self, name: &str) -> Option<String> {
        self.journal().installed.get(name).cloned()
    }

    /// Takes a deployment: starts it, or answers at once when it was seen before.
    pub fn take(&self, d: Deployment, identity: &Identity, inventory: Inventory) -> Option<ExecutionReport> {
        let id = d.execution_id.clone();
        let seen = self.journal().executions.get(&id).cloned();
        let running = self.lock_running().contains(&id);
        if let Some(last) = &seen {
            if last.attempt > d.attempt {
                return None;
            }
            if last.attempt == d.attempt {
                let resume_install = last.state == ExecutionState::AwaitingWindow && d.install_now && !running;
                if last.state.is_final() {
                    return Some(last.clone());
                }
                if running {
                    return None;
                }
                if last.state >= ExecutionState::Installing && !resume_install {
                    let report = self.final_report(
                        &d,
                        Refusal {
                            class: FailureClass::Install,
                            detail: "the agent stopped while this was installing; it is not run again".into(),
                        },
                    );
                    return Some(report);
                }
            }
        }
        self.lock_running().insert(id.clone());
        let this = self.clone();
        let identity = identity.clone();
        tokio::spawn(async move {
            let report = match this.carry_out(&d, &identity, &inventory).await {
                Ok(report) => report,
                Err(refusal) => this.final_report(&d, refusal),
            };
            this.send(report).await;
            this.lock_running().remove(&d.execution_id);
        });
        None
    }

    async fn carry_out(
        &self,
        d: &Deployment,
        identity: &Identity,
        inventory: &Inventory,
    ) -> Result<ExecutionReport, Refusal> {
        let a = &d.artifact;
        let keys = trust::keys(&self.inner.trusted_keys, &d.keys);
        let claims = trust::claims(d, &keys, &identity.device_id, chrono::Utc::now().timestamp_millis())?;
        let installed = self.installed(&a.name);
        if trust::version_allowed(a, installed.as_deref(), claims.allow_downgrade)? {
            return Ok(self.record(d, ExecutionState::AlreadyInstalled, None, None, None));
        }
        trust::fits(a, inventory, |name| self.installed(name))?;
        trust::artifact_signature(a, &keys)?;
        self.step(d, ExecutionState::Downloading, None).await;
        let dir = self.inner.storage.downloads_dir();
        let fetched = download::fetch(&self.inner.http, &a.url, identity, &dir, &a.sha256, a.size).await?;
        self.step(d, ExecutionState::Downloaded, fetched.bytes_per_sec).await;
        if !d.install_now {
            return Ok(self.record(d, ExecutionState::AwaitingWindow, None, None, None));
        }
        let job = InstallJob {
            artifact: a.clone(),
            install: d.install.clone(),
            file: fetched.path.clone(),
            keep_dir: dir.join("kept"),
        };
        // Recorded before anything changes on the device: a restart from here never installs again.
        self.step(d, ExecutionState::Installing, None).await;
        self.inner.installer.install(&job).await?;
        self.step(d, ExecutionState::Verifying, None).await;
        let verify = Duration::from_secs(u64::from(d.install.verify_secs.unwrap_or(0)));
        if !verify.is_zero() {
            tokio::time::sleep(verify).await;
        }
        if let Err(why) = self.inner.installer.healthy(&job).await {
            let detail = match self.inner.installer.revert(&job).await {
                Ok(()) => format!("{why}; reverted to the previous version"),
                Err(e) => format!("{why}; reverting failed too: {e}"),
            };
            return Err(Refusal { class: FailureClass::Health, detail });
        }
        self.journal_mut(|j| {
            j.installed.insert(a.name.clone(), a.version.clone());
        });
        let _ = tokio::fs::remove_file(&fetched.path).await;
        Ok(self.record(d, ExecutionState::Succeeded, None, None, None))
    }

    /// Records and sends a step that is not final.
    async fn step(&self, d: &Deployment, state: ExecutionState, bytes_per_sec: Option<u64>) {
        let report = self.record(d, state, None, None, bytes_per_sec);
        self.send(report).await;
    }

    fn final_report(&self, d: &Deployment, refusal: Refusal) -> ExecutionReport {
        let state = match refusal.class {
            c if c.is_rejection() => ExecutionState::Rejected,
            FailureClass::Health => ExecutionState::RolledBack,
            _ => ExecutionState::Failed,
        };
        tracing::warn!(execution_id = %d.execution_id, state = state.as_str(), detail = %refusal.detail, "update did not go through");
        self.record(d, state, Some(refusal.class), Some(refusal.detail), None)
    }

    /// Writes a report to the journal (kept in the agent's state) and returns it.
    fn record(
        &self,
        d: &Deployment,
        state: ExecutionState,
        failure_class: Option<FailureClass>,
        detail: Option<String>,
        bytes_per_sec: Option<u64>,
    ) -> ExecutionReport {
        let name = d.artifact.name.clone();
        let mut report = None;
        self.journal_mut(|j| {
            let r = ExecutionReport {
                execution_id: d.execution_id.clone(),
                attempt: d.attempt,
                state,
                failure_class,
                detail,
                installed_version: j.installed.get(&name).cloned(),
                bytes_per_sec,
            };
            if j.executions.insert(d.execution_id.clone(), r.clone()).is_none() {
                j.order.push(d.execution_id.clone());
            }
            while j.order.len() > KEPT {
                let old = j.order.remove(0);
                j.executions.remove(&old);
            }
            report = Some(r);
        });
        report.expect("set in the closure")
    }

    async fn send(&self, report: ExecutionReport) {
        let _ = self.inner.reports.send(report).await;
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.inner.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn journal_mut(&self, change: impl FnOnce(&mut Journal)) {
        let mut journal = self.journal();
        change(&mut journal);
        if let Err(e) = self.inner.storage.save_updates(&journal) {
            tracing::error!(error = %e, "cannot keep the update journal");
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}
