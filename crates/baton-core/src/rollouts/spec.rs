//! A rollout's settings as stored (one JSON column): what the request asked for, checked, plus
//! what the rollout learned on the way (failures accepted when someone resumed past the gate).

use baton_proto::api::{
    artifacts::ArtifactKind,
    rollouts::{FailureGate, InstallSpec, MaintenanceWindow, RetryPolicy, RolloutCreate, SuccessGate, Targets, Wave},
};
use serde::{Deserialize, Serialize};

use crate::{Error, error::Violations};

/// Longest bake time or retry backoff: 30 days.
const MAX_WAIT_SECS: u64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub targets: Targets,
    pub waves: Vec<Wave>,
    pub success_gate: SuccessGate,
    pub failure_gate: FailureGate,
    pub retry: RetryPolicy,
    pub max_in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_secs: Option<u64>,
    pub install: InstallSpec,
    pub allow_downgrade: bool,
    /// Overrides the devices' groups' windows when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<Vec<MaintenanceWindow>>,
    /// Targeted devices left out because the artifact is not for them.
    #[serde(default)]
    pub left_out: u64,
    /// `(failed, executed)` when someone resumed a rollout its failure gate had paused: the gate
    /// then judges only what happens after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<(u64, u64)>,
}

impl Spec {
    pub fn from_request(req: &RolloutCreate) -> Result<Self, Error> {
        let mut v = Violations::default();
        if req.waves.len() > 20 {
            v.add("/waves", "at most 20 waves");
        }
        for (i, wave) in req.waves.iter().enumerate() {
            match *wave {
                Wave::Percent(p) if !(p > 0.0 && p <= 100.0) => {
                    v.add(format!("/waves/{i}"), "a share above 0 and up to 100")
                }
                Wave::Count(0) => v.add(format!("/waves/{i}"), "a count of at least 1"),
                _ => {}
            }
        }
        let share = |p: f64| p > 0.0 && p <= 100.0;
        if !share(req.success_gate.percent) {
            v.add("/success_gate/percent", "a share above 0 and up to 100");
        }
        let gate = &req.failure_gate;
        if gate.failed_percent.is_some_and(|p| !share(p)) {
            v.add("/failure_gate/failed_percent", "a share above 0 and up to 100");
        }
        if gate.failed_count == Some(0) {
            v.add("/failure_gate/failed_count", "at least 1");
        }
        if gate.min_executed == 0 {
            v.add("/failure_gate/min_executed", "at least 1");
        }
        if !(1..=20).contains(&req.retry.max_attempts) {
            v.add("/retry/max_attempts", "between 1 and 20");
        }
        if req.retry.backoff_secs == 0 || req.retry.max_backoff_secs < req.retry.backoff_secs {
            v.add("/retry", "backoff_secs at least 1, and max_backoff_secs at least backoff_secs");
        }
        if req.retry.max_backoff_secs > MAX_WAIT_SECS {
            v.add("/retry/max_backoff_secs", "at most 30 days (2592000)");
        }
        if req.success_gate.bake_secs > MAX_WAIT_SECS {
            v.add("/success_gate/bake_secs", "at most 30 days (2592000)");
        }
        if req.max_in_flight == Some(0) {
            v.add("/max_in_flight", "at least 1");
        }
        if req.step_timeout_secs.is_some_and(|t| t == 0 || t > MAX_WAIT_SECS) {
            v.add("/step_timeout_secs", "between 1 second and 30 days");
        }
        if req.notify_per_minute == Some(0) {
            v.add("/notify_per_minute", "at least 1");
        }
        if req.targets.groups.len() + req.targets.device_ids.len() > crate::rollouts::MAX_DEVICES {
            v.add("/targets", "too many groups and devices named");
        }
        if let Some(labels) = &req.targets.labels {
            v.check("/targets/labels", baton_proto::labels::Selector::parse(labels).map(|_| ()));
        }
        check_install(&mut v, &req.install);
        if let Some(windows) = &req.windows {
            crate::windows::check(&mut v, "/windows", windows);
        }
        v.finish()?;
        Ok(Self {
            targets: req.targets.clone(),
            waves: req.waves.clone(),
            success_gate: req.success_gate.clone(),
            failure_gate: req.failure_gate.clone(),
            retry: req.retry.clone(),
            max_in_flight: req.max_in_flight,
            notify_per_minute: req.notify_per_minute,
            step_timeout_secs: req.step_timeout_secs,
            install: req.install.clone(),
            allow_downgrade: req.allow_downgrade,
            windows: req.windows.clone(),
            left_out: 0,
            accepted: None,
        })
    }

    /// What the artifact's kind needs from the install settings.
    pub fn check_install(&self, kind: ArtifactKind) -> Result<(), Error> {
        if kind == ArtifactKind::File && self.install.path.is_none() {
            return Err(Error::invalid("/install/path", "a file artifact needs the path it is installed at"));
        }
        Ok(())
    }

    /// Milliseconds a device may stay in one step before its execution times out.
    pub fn step_timeout_ms(&self) -> i64 {
        let secs = self.step_timeout_secs.unwrap_or(24 * 3600) + u64::from(self.install.verify_secs.unwrap_or(0));
        i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| Error::Internal(anyhow::anyhow!("stored rollout spec: {e}")))
    }
}

fn check_install(v: &mut Violations, install: &InstallSpec) {
    if let Some(problem) = install.path.as_deref().and_then(InstallSpec::path_problem) {
        v.add("/install/path", problem);
    }
    if let Some(Err(problem)) = install.mode.as_deref().map(InstallSpec::parse_mode) {
        v.add("/install/mode", problem);
    }
    if let Some(owner) = &install.owner
        && (owner.is_empty()
            || owner.len() > 64
            || !owner.chars().all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c)))
    {
        v.add("/install/owner", "`user` or `user:group`");
    }
    if install.command.len() > 64 || install.command.iter().any(|a| a.len() > 4096 || a.contains('\0')) {
        v.add("/install/command", "at most 64 arguments of up to 4096 bytes, without NUL");
    }
    if install.verify_secs.is_some_and(|s| s > 86_400) {
        v.add("/install/verify_secs", "at most a day (86400)");
    }
}
