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
pub mod self_update;
pub mod trust;

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use baton_proto::{
    api::rollouts::{ExecutionState, FailureClass},
    deployment::{Deployment, ExecutionReport, VerificationKey},
    inventory::Inventory,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use self::install::{InstallJob, Installer, SystemInstaller};
use self::trust::Refusal;
use crate::{
    AgentError,
    storage::{Identity, Storage},
};

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
    /// An update of the agent itself on trial (see [`self_update`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<self_update::Trial>,
    /// Reports written just before the process replaced itself; sent on the next connection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<ExecutionReport>,
    /// The update keys this device trusts (see [`trust::follow_keys`]); `None` until it has
    /// seen any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_keys: Option<Vec<VerificationKey>>,
}

/// Pins the keys enrollment returned (on a re-enrollment too: the device was let in again).
/// For the one-shot `baton-agent enroll`, which runs without the update loop.
pub fn pin_keys(storage: &Storage, keys: &[VerificationKey]) -> Result<(), AgentError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut journal: Journal = storage.updates()?;
    journal.pinned_keys = Some(keys.to_vec());
    storage.save_updates(&journal)
}

/// What the agent's config says about updates.
#[derive(Debug, Clone, Default)]
pub struct UpdateSettings {
    /// Keys updates must be signed with; empty: the keys the server lists.
    pub trusted_keys: Vec<String>,
    /// The binary an agent update replaces; default this process's.
    pub agent_binary: Option<std::path::PathBuf>,
    /// Run before installing (`{file}`, `{name}`, `{version}` replaced): exit 75 means "not
    /// now, retry later", any other failure fails the install.
    pub pre_install: Option<Vec<String>>,
    /// Run after installing and before the health check: a failure reverts the install.
    pub post_install: Option<Vec<String>>,
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
    settings: UpdateSettings,
    running: Mutex<HashSet<String>>,
    reports: mpsc::Sender<ExecutionReport>,
}

impl Updates {
    pub fn new(
        storage: Storage,
        installer: Arc<dyn Installer>,
        http: reqwest::Client,
        settings: UpdateSettings,
    ) -> Result<(Self, mpsc::Receiver<ExecutionReport>), crate::AgentError> {
        let journal: Journal = storage.updates()?;
        let (reports, rx) = mpsc::channel(1024);
        let inner = Inner {
            storage,
            journal: Mutex::new(journal),
            installer,
            http,
            settings,
            running: Mutex::default(),
            reports,
        };
        let this = Self { inner: Arc::new(inner) };
        this.begin_trial();
        Ok((this, rx))
    }

    /// At start: a trial found already started means the new agent did not make it (it
    /// stopped or crashed during its trial) — go back. A fresh one starts its clock.
    fn begin_trial(&self) {
        let Some(trial) = self.journal().trial.clone() else { return };
        if !trial.sha256.is_empty() && !self_update::is_binary(&trial.binary, &trial.sha256) {
            // The agent stopped between writing the trial and swapping the binary: nothing
            // changed, and the old agent runs on.
            let d = trial_deployment(&trial);
            let detail = "the agent stopped before the new agent was in place; nothing changed".to_owned();
            let report = self.record(&d, ExecutionState::Failed, Some(FailureClass::Install), Some(detail), None);
            self.journal_mut(|j| {
                j.trial = None;
                j.outbox.push(report);
            });
            return;
        }
        if trial.started {
            self.revert(&trial, "the new agent stopped during its trial");
            return;
        }
        self.journal_mut(|j| {
            if let Some(t) = &mut j.trial {
                t.started = true;
            }
        });
        tracing::info!(version = %trial.version, "running a new agent on trial");
        let this = self.clone();
        tokio::spawn(async move {
            let wait = trial.deadline_ms - chrono::Utc::now().timestamp_millis();
            tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
            if this.journal().trial.as_ref().is_some_and(|t| t.execution_id == trial.execution_id) {
                this.revert(&trial, "the new agent was not healthy within its verify window");
            }
        });
    }

    /// The session is up: reports kept over a restart go out, and a new agent on trial checks
    /// its health and commits or goes back.
    pub fn connected(&self) -> Vec<ExecutionReport> {
        let outbox = std::mem::take(&mut self.journal().outbox);
        if !outbox.is_empty() {
            self.journal_mut(|_| {});
        }
        if let Some(trial) = self.journal().trial.clone().filter(|t| t.started) {
            let this = self.clone();
            tokio::spawn(async move { this.judge(trial).await });
        }
        outbox
    }

    async fn judge(&self, trial: self_update::Trial) {
        let d = trial_deployment(&trial);
        let job = InstallJob {
            artifact: d.artifact.clone(),
            install: Default::default(),
            file: trial.binary.clone(),
            keep_dir: trial.kept.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        if let Err(why) = self.inner.installer.healthy(&job).await {
            self.revert(&trial, &why);
            return;
        }
        let mut still_on_trial = false;
        self.journal_mut(|j| {
            if j.trial.as_ref().is_some_and(|t| t.execution_id == trial.execution_id) {
                j.trial = None;
                j.installed.insert(trial.name.clone(), trial.version.clone());
                still_on_trial = true;
            }
        });
        if still_on_trial {
            tracing::info!(version = %trial.version, "the new agent is healthy; keeping it");
            let report = self.record(&d, ExecutionState::Succeeded, None, None, None);
            self.send(report).await;
        }
    }

    /// Puts the previous agent back and becomes it; the report goes out from there.
    fn revert(&self, trial: &self_update::Trial, why: &str) {
        tracing::error!(%why, "the new agent failed its trial; going back to the previous one");
        let d = trial_deployment(trial);
        let restored = self_update::restore(trial);
        let detail = match &restored {
            Ok(()) => format!("{why}; reverted to the previous agent"),
            Err(e) => format!("{why}; reverting failed too: {e}"),
        };
        let report = self.record(&d, ExecutionState::RolledBack, Some(FailureClass::Health), Some(detail), None);
        self.journal_mut(|j| {
            j.trial = None;
            j.outbox.push(report);
        });
        if restored.is_ok() {
            let e = self_update::restart_as(&trial.binary);
            tracing::error!(error = %e, "cannot restart as the previous agent; this one keeps running");
        }
    }

    /// The version of `name` installed, as far as updates know.
    pub fn installed(&self, name: &str) -> Option<String> {
        self.journal().installed.get(name).cloned()
    }

    /// Takes a deployment: starts it, or answers at once when it was seen before.
    pub fn take(&self, d: Deployment, identity: &Identity, inventory: Inventory) -> Option<ExecutionReport> {
        let id = d.execution_id.clone();
        if self.journal().trial.as_ref().is_some_and(|t| t.execution_id == id) {
            // The agent on trial reports when it has judged itself.
            return None;
        }
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
            if report.state.is_final() {
                // The bytes are installed or refused: nothing needs them any more.
                let dir = this.inner.storage.downloads_dir();
                for end in ["bin", "part"] {
                    let _ = tokio::fs::remove_file(dir.join(format!("{}.{end}", d.artifact.sha256))).await;
                }
            }
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
        let keys = trust::keys(&self.inner.settings.trusted_keys, &self.follow_keys(d));
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
        if a.kind == baton_proto::api::artifacts::ArtifactKind::Agent && self.inner.installer.updates_agent() {
            return Err(self.hand_over(d, &job).await);
        }
        if let Some(argv) = &self.inner.settings.pre_install {
            install::hook(argv, &job).await.map_err(|(retry, why)| Refusal {
                class: if retry { FailureClass::RetryLater } else { FailureClass::Install },
                detail: format!("the pre-install hook {why}"),
            })?;
        }
        self.inner.installer.install(&job).await?;
        self.step(d, ExecutionState::Verifying, None).await;
        let verify = Duration::from_secs(u64::from(d.install.verify_secs.unwrap_or(0)));
        if !verify.is_zero() {
            tokio::time::sleep(verify).await;
        }
        let post = match &self.inner.settings.post_install {
            Some(argv) => install::hook(argv, &job).await.map_err(|(_, why)| format!("the post-install hook {why}")),
            None => Ok(()),
        };
        if let Err(why) = match post {
            Ok(()) => self.inner.installer.healthy(&job).await,
            Err(why) => Err(why),
        } {
            return match self.inner.installer.revert(&job).await {
                Ok(()) => Err(Refusal {
                    class: FailureClass::Health,
                    detail: format!("{why}; reverted to the previous version"),
                }),
                Err(e) => {
                    // Still on the new version: say so, so a rollback includes this device.
                    self.journal_mut(|j| {
                        j.installed.insert(a.name.clone(), a.version.clone());
                    });
                    Err(Refusal {
                        class: FailureClass::Install,
                        detail: format!("{why}; it could not be reverted: {e}"),
                    })
                }
            };
        }
        self.journal_mut(|j| {
            j.installed.insert(a.name.clone(), a.version.clone());
        });
        let _ = tokio::fs::remove_file(&fetched.path).await;
        Ok(self.record(d, ExecutionState::Succeeded, None, None, None))
    }

    /// Swaps in the new agent and becomes it. Returns only when that could not happen.
    async fn hand_over(&self, d: &Deployment, job: &InstallJob) -> Refusal {
        let fail = |detail: String| Refusal { class: FailureClass::Install, detail };
        if let Err(e) = self_update::preflight(&job.file).await {
            return fail(e);
        }
        let binary = match self_update::current_binary(self.inner.settings.agent_binary.as_deref()) {
            Ok(b) => b,
            Err(e) => return fail(e),
        };
        if self.journal().trial.is_some() {
            return fail("another agent update is on trial; try again when it is settled".into());
        }
        let kept = job.keep_dir.join("agent").join("baton-agent.previous");
        let verify = i64::from(d.install.verify_secs.unwrap_or(120).max(1)) * 1000;
        let trial = self_update::Trial {
            execution_id: d.execution_id.clone(),
            attempt: d.attempt,
            name: d.artifact.name.clone(),
            version: d.artifact.version.clone(),
            binary: binary.clone(),
            kept,
            deadline_ms: chrono::Utc::now().timestamp_millis() + verify,
            started: false,
            sha256: d.artifact.sha256.clone(),
        };
        // The trial is written before the binary changes: a power loss in between leaves a
        // trial the next start judges (and reverts), never a new agent nobody watches.
        self.record(d, ExecutionState::Rebooting, None, None, None);
        self.journal_mut(|j| j.trial = Some(trial.clone()));
        if let Err(e) = self_update::swap(&binary, &trial.kept, &job.file) {
            self.journal_mut(|j| j.trial = None);
            return fail(e);
        }
        let e = self_update::restart_as(&binary);
        // Still here: the new agent could not be started. Put the old one back.
        self.journal_mut(|j| j.trial = None);
        match self_update::restore(&trial) {
            Ok(()) => fail(e),
            Err(r) => fail(format!("{e}; and putting the previous agent back failed: {r}")),
        }
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

    /// Pins the keys enrollment returned, like [`pin_keys`], in the running journal.
    pub fn pin(&self, keys: &[VerificationKey]) {
        if !keys.is_empty() {
            self.journal_mut(|j| j.pinned_keys = Some(keys.to_vec()));
        }
    }

    /// The keys this deployment may be checked with: the pinned ones and those they endorse,
    /// kept for next time.
    fn follow_keys(&self, d: &Deployment) -> Vec<VerificationKey> {
        if !self.inner.settings.trusted_keys.is_empty() {
            return Vec::new();
        }
        let pinned = self.journal().pinned_keys.clone();
        let now = trust::follow_keys(pinned.as_deref(), &d.keys, &d.key_endorsements);
        if pinned.as_ref() != Some(&now) {
            tracing::info!(keys = ?now.iter().map(|k| &k.key_id).collect::<Vec<_>>(), "update keys pinned");
            self.journal_mut(|j| j.pinned_keys = Some(now.clone()));
        }
        now
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.inner.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn journal_mut(&self, change: impl FnOnce(&mut Journal)) {
        let mut journal = self.journal();
        change(&mut journal);
        if let Err(e) = self.inner.storage.save_updates(&*journal) {
            tracing::error!(error = %e, "cannot keep the update journal");
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The deployment a trial stands for, enough to record its reports.
fn trial_deployment(trial: &self_update::Trial) -> Deployment {
    Deployment {
        execution_id: trial.execution_id.clone(),
        attempt: trial.attempt,
        artifact: baton_proto::deployment::DeployedArtifact {
            name: trial.name.clone(),
            version: trial.version.clone(),
            kind: baton_proto::api::artifacts::ArtifactKind::Agent,
            size: 0,
            sha256: String::new(),
            signature: None,
            url: String::new(),
            compatibility: Default::default(),
            depends: None,
        },
        install: Default::default(),
        install_now: true,
        claims: String::new(),
        claims_signature: baton_proto::api::artifacts::ArtifactSignature {
            key_id: String::new(),
            signature: String::new(),
        },
        keys: Vec::new(),
        key_endorsements: Vec::new(),
    }
}
