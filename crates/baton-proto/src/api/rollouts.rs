//! Rollouts: one artifact taken to a set of devices in waves, stopped by a failure gate before a
//! bad update reaches the whole fleet. Each device's part is an execution, with its own state
//! machine (see [`ExecutionState`]); the rollout's state moves by the gates (see [`RolloutState`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    /// Made but not started; nothing reaches a device.
    Draft,
    Running,
    /// Stopped by a person, a failure gate, or a wave waiting for approval; see `paused_reason`.
    Paused,
    /// Every wave finished.
    Completed,
    /// A failure gate with action ABORT fired: executions not finished were canceled.
    Aborted,
    /// Canceled by a person.
    Canceled,
    /// A failure gate with action ROLLBACK fired: devices that had the update get the previous
    /// version back.
    RollingBack,
    RolledBack,
}

impl RolloutState {
    pub const ALL: [Self; 8] = [
        Self::Draft,
        Self::Running,
        Self::Paused,
        Self::Completed,
        Self::Aborted,
        Self::Canceled,
        Self::RollingBack,
        Self::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "DRAFT",
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Completed => "COMPLETED",
            Self::Aborted => "ABORTED",
            Self::Canceled => "CANCELED",
            Self::RollingBack => "ROLLING_BACK",
            Self::RolledBack => "ROLLED_BACK",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Aborted | Self::Canceled | Self::RolledBack)
    }
}

/// Why a rollout is paused.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    Manual,
    FailureGate,
    /// The wave met its success gate; the next starts when someone approves (resume).
    Approval,
}

/// What the failure gate does when it fires.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GateAction {
    #[default]
    Pause,
    Abort,
    Rollback,
}

/// Where one device's execution is. `Queued` → `Notified` → `Downloading` → `Downloaded` →
/// (`AwaitingWindow`) → `Installing` → (`Rebooting`) → `Verifying` → `Succeeded`; or a final
/// failure.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionState {
    Queued,
    Notified,
    Downloading,
    Downloaded,
    AwaitingWindow,
    Installing,
    Rebooting,
    Verifying,
    Succeeded,
    /// Failed with a retryable class after its retries were spent.
    Failed,
    TimedOut,
    /// Refused by the device before installing: incompatible, a dependency missing, a bad
    /// signature or hash, expired metadata, a downgrade. Never retried.
    Rejected,
    /// Installed, then reverted by the device because it was unhealthy. Counts as a failure.
    RolledBack,
    AlreadyInstalled,
    Canceled,
    Superseded,
}

impl ExecutionState {
    pub const ALL: [Self; 16] = [
        Self::Queued,
        Self::Notified,
        Self::Downloading,
        Self::Downloaded,
        Self::AwaitingWindow,
        Self::Installing,
        Self::Rebooting,
        Self::Verifying,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Rejected,
        Self::RolledBack,
        Self::AlreadyInstalled,
        Self::Canceled,
        Self::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Notified => "NOTIFIED",
            Self::Downloading => "DOWNLOADING",
            Self::Downloaded => "DOWNLOADED",
            Self::AwaitingWindow => "AWAITING_WINDOW",
            Self::Installing => "INSTALLING",
            Self::Rebooting => "REBOOTING",
            Self::Verifying => "VERIFYING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Rejected => "REJECTED",
            Self::RolledBack => "ROLLED_BACK",
            Self::AlreadyInstalled => "ALREADY_INSTALLED",
            Self::Canceled => "CANCELED",
            Self::Superseded => "SUPERSEDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the execution is over.
    pub fn is_final(self) -> bool {
        self.is_failure() || self.is_success() || matches!(self, Self::Canceled | Self::Superseded)
    }

    /// A final state the failure gate counts as failed.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::TimedOut | Self::Rejected | Self::RolledBack)
    }

    /// A final state the success gate counts as done.
    pub fn is_success(self) -> bool {
        matches!(self, Self::Succeeded | Self::AlreadyInstalled)
    }

    /// Whether the device is working on it (counts against `max_in_flight`).
    pub fn is_in_flight(self) -> bool {
        !self.is_final() && self != Self::Queued
    }
}

/// Why an execution failed; decides whether it is retried.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The download failed (network, server): retried.
    Download,
    /// The installer failed: retried.
    Install,
    /// A hook asked to try again later: retried.
    RetryLater,
    /// The device's health check failed after installing, and it reverted.
    Health,
    /// Not for this device (OS, architecture, model, labels).
    Incompatible,
    /// A dependency is not installed at a version in range.
    Dependency,
    /// Hash, size or signature do not match; or metadata not bound to this device.
    Integrity,
    /// The execution metadata expired.
    Expired,
    /// The version is lower than the installed one and the rollout does not allow it.
    Downgrade,
}

impl FailureClass {
    /// Whether trying again may help.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Download | Self::Install | Self::RetryLater)
    }

    /// Classes the device refuses before installing.
    pub fn is_rejection(self) -> bool {
        matches!(self, Self::Incompatible | Self::Dependency | Self::Integrity | Self::Expired | Self::Downgrade)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Install => "install",
            Self::RetryLater => "retry_later",
            Self::Health => "health",
            Self::Incompatible => "incompatible",
            Self::Dependency => "dependency",
            Self::Integrity => "integrity",
            Self::Expired => "expired",
            Self::Downgrade => "downgrade",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Download,
            Self::Install,
            Self::RetryLater,
            Self::Health,
            Self::Incompatible,
            Self::Dependency,
            Self::Integrity,
            Self::Expired,
            Self::Downgrade,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A wave ends at this share or this number of the rollout's devices, counted from the first
/// wave: `[{"percent": 10}, {"percent": 50}, {"percent": 100}]` is 10 %, then 40 % more, then the
/// rest. The last wave always takes every device left.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Wave {
    Percent(f64),
    Count(u32),
}

impl Wave {
    /// Parses `10%` or `25`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let wave = match s.strip_suffix('%') {
            Some(p) => p.trim().parse().ok().filter(|p: &f64| *p > 0.0 && *p <= 100.0).map(Self::Percent),
            None => s.parse().ok().filter(|c: &u32| *c > 0).map(Self::Count),
        };
        wave.ok_or_else(|| format!("`{s}` is not a wave: give a share like `10%` (up to 100%) or a count like `25`"))
    }
}

/// When the next wave starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SuccessGate {
    /// Share of the wave's devices that must have succeeded; default 100.
    #[serde(default = "hundred")]
    pub percent: f64,
    /// Seconds to wait after the share is reached before the next wave; default 0.
    #[serde(default)]
    pub bake_secs: u64,
    /// Whether a person approves each next wave (the rollout pauses with reason `approval`).
    #[serde(default)]
    pub approval: bool,
}

impl Default for SuccessGate {
    fn default() -> Self {
        Self { percent: 100.0, bake_secs: 0, approval: false }
    }
}

fn hundred() -> f64 {
    100.0
}

/// When the rollout stops by itself. It fires when `failed_percent` of the finished executions
/// failed, or `failed_count` failed — but only once `min_executed` executions finished, so one
/// early failure does not stop a large rollout, and offline devices never count.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FailureGate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_count: Option<u32>,
    /// Default 1.
    #[serde(default = "one")]
    pub min_executed: u32,
    #[serde(default)]
    pub action: GateAction,
}

impl Default for FailureGate {
    fn default() -> Self {
        Self { failed_percent: Some(20.0), failed_count: None, min_executed: 5, action: GateAction::Pause }
    }
}

fn one() -> u32 {
    1
}

/// Retries for retryable failures: attempt `n` (from 2) waits `backoff_secs × 2ⁿ⁻²`, at most
/// `max_backoff_secs`, with full jitter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; default 3.
    #[serde(default = "three")]
    pub max_attempts: u32,
    #[serde(default = "sixty")]
    pub backoff_secs: u64,
    #[serde(default = "hour")]
    pub max_backoff_secs: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, backoff_secs: 60, max_backoff_secs: 3600 }
    }
}

fn three() -> u32 {
    3
}
fn sixty() -> u64 {
    60
}
fn hour() -> u64 {
    3600
}

/// How the artifact is installed on the device. Defaults depend on the kind: a file needs
/// `path`; a package uses the agent's configured installer unless `command` is given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InstallSpec {
    /// For a file: where it goes (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For a file: permission bits in octal, e.g. `0644`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// For a file: owner as `user` or `user:group` (the agent must be allowed to set it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The installer command; `{file}` is replaced by the downloaded file's path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Seconds the device watches its health after installing before it reports success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_secs: Option<u32>,
}

impl InstallSpec {
    /// The longest install path, in bytes.
    pub const MAX_PATH: usize = 1024;

    /// Why `path` cannot be where a file is installed, if it cannot: it must be absolute (`/…`,
    /// or `C:\…` on Windows), name a file (not end in a separator, `.` or `..`), climb no
    /// directory (`..`), and hold no control character. Checked by the server when a rollout is
    /// made and again by the agent before it writes.
    pub fn path_problem(path: &str) -> Option<&'static str> {
        let drive = matches!(path.as_bytes(), [letter, b':', b'\\' | b'/', ..] if letter.is_ascii_alphabetic());
        let parts: Vec<&str> = path.split(['/', '\\']).collect();
        if !(path.starts_with('/') || drive) {
            Some("an absolute path")
        } else if path.len() > Self::MAX_PATH || path.chars().any(char::is_control) {
            Some("at most 1024 bytes, without control characters")
        } else if parts.contains(&"..") {
            Some("a path without `..`")
        } else if parts.last().is_none_or(|name| name.is_empty() || *name == ".") {
            Some("a path that ends in a file name")
        } else {
            None
        }
    }

    /// The permission bits `mode` (octal, e.g. `0644`) stands for; setuid, setgid and the sticky
    /// bit are refused for a file (a package's installer can still set what it must).
    pub fn parse_mode(mode: &str) -> Result<u32, &'static str> {
        const OCTAL: &str = "permission bits in octal, e.g. 0644";
        if mode.is_empty() || mode.len() > 5 || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(OCTAL);
        }
        match u32::from_str_radix(mode, 8) {
            Ok(bits) if bits <= 0o777 => Ok(bits),
            Ok(bits) if bits <= 0o7777 => Err("permission bits without setuid, setgid or sticky (at most 0777)"),
            _ => Err(OCTAL),
        }
    }
}

/// When installs may happen: from `start` (`HH:MM`, local time in `time_zone`) for
/// `duration_mins`, on `days` (`mon` … `sun`; every day when empty) — the day the window opens.
/// Devices download any time and install only inside a window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    pub start: String,
    pub duration_mins: u32,
    /// An IANA zone, e.g. `Europe/Berlin`; default `UTC`.
    #[serde(default = "utc")]
    pub time_zone: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
}

fn utc() -> String {
    "UTC".into()
}

/// Which devices a rollout is for: members of any of `groups` (with their subgroups), devices
/// matching `labels`, and `device_ids` — together. Decommissioned devices are left out.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// A label selector (see the devices list's `labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
}

/// `POST /api/v1/rollouts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RolloutCreate {
    /// Required, except in a rule's template (the rule names its rollouts).
    #[serde(default)]
    pub name: String,
    /// Required, except in a rule's template (the new artifact is the one).
    #[serde(default)]
    pub artifact_id: String,
    pub targets: Targets,
    /// Default: one wave of everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<Wave>,
    #[serde(default)]
    pub success_gate: SuccessGate,
    #[serde(default)]
    pub failure_gate: FailureGate,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Devices downloading or installing at once, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Devices told per minute, at most (spreads load on shared uplinks and the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_per_minute: Option<u32>,
    /// Seconds a device may stay in one step (downloading, installing, verifying) without a word
    /// before its execution is TIMED_OUT; default a day (plus the verify window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_secs: Option<u64>,
    #[serde(default)]
    pub install: InstallSpec,
    /// Whether devices may go to a lower version than they have.
    #[serde(default)]
    pub allow_downgrade: bool,
    /// Install only inside these windows. Absent: each device's groups' windows (a device in no
    /// group with windows installs any time); `[]`: any time, whatever the groups say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<Vec<MaintenanceWindow>>,
    /// What ROLLBACK installs; default the newest earlier version of the same artifact name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_artifact_id: Option<String>,
    /// Start at once (default), or keep as a draft.
    #[serde(default = "yes")]
    pub start: bool,
}

fn yes() -> bool {
    true
}

/// Everything at its default, started at once; name, artifact and targets still to fill in.
impl Default for RolloutCreate {
    fn default() -> Self {
        Self {
            name: String::new(),
            artifact_id: String::new(),
            targets: Targets::default(),
            waves: Vec::new(),
            success_gate: SuccessGate::default(),
            failure_gate: FailureGate::default(),
            retry: RetryPolicy::default(),
            max_in_flight: None,
            notify_per_minute: None,
            step_timeout_secs: None,
            install: InstallSpec::default(),
            allow_downgrade: false,
            windows: None,
            rollback_artifact_id: None,
            start: true,
        }
    }
}

/// An automatic rollout: every new artifact whose name matches becomes a rollout made from
/// `template` (started, or a draft when the template says `"start": false`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutRule {
    pub id: String,
    pub name: String,
    /// An artifact name, or a prefix ending in `*` (`pos-app*`).
    pub artifact_name: String,
    /// Only artifacts of this kind, when set.
    pub kind: Option<crate::api::artifacts::ArtifactKind>,
    /// The rollout to make; its `name` and `artifact_id` are filled in per artifact.
    pub template: RolloutCreate,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// `POST /api/v1/rollout-rules`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RolloutRuleCreate {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::api::formats::Name))]
    pub name: String,
    pub artifact_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::api::artifacts::ArtifactKind>,
    pub template: RolloutCreate,
}

/// Counts of executions by state.
pub type StateCounts = BTreeMap<ExecutionState, u64>;

/// One wave's devices by state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaveProgress {
    /// From 1.
    pub wave: u32,
    pub devices: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, u64>))]
    pub states: StateCounts,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutProgress {
    pub devices: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, u64>))]
    pub states: StateCounts,
    pub waves: Vec<WaveProgress>,
    /// Rollback executions by state (after a failure gate's ROLLBACK).
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, u64>))]
    pub rollback: StateCounts,
    /// Executions that finished and failed / that finished, as the failure gate sees them.
    pub failed: u64,
    pub executed: u64,
    /// The median download speed devices reported, bytes per second.
    pub bandwidth_bytes_per_sec: Option<u64>,
    /// Seconds until the last wave is done. Each batch of downloads (every open device of a
    /// wave at once, or `max_in_flight` at a time) takes the longer of one device's download
    /// at its link speed (that median) and the batch's bytes at the server's serving rate; then
    /// the install (10 s assumed) and the verify window; and the bake time before every wave
    /// still to start. Until a device reports its speed, no speed is assumed: a batch takes the
    /// server's time, and `eta_device_speed_needed` says what that needs of each device.
    /// Devices that are offline are not waited for. `None` when nothing is left to do.
    pub eta_secs: Option<u64>,
    /// The part of `eta_secs` spent downloading; `None` when it cannot be known yet (no device
    /// has reported its speed and the server does not serve the bytes, so `eta_secs` counts
    /// installs, verify windows and bake times only).
    #[serde(default)]
    pub eta_download_secs: Option<u64>,
    /// Set while no device has reported its download speed: the speed each device needs,
    /// bytes per second, for the estimate to hold (the server's rate shared by the largest
    /// batch of downloads at once). Devices on slower links make the downloads longer.
    #[serde(default)]
    pub eta_device_speed_needed: Option<u64>,
    /// What most of `eta_secs` waits for.
    #[serde(default)]
    pub eta_bound: Option<EtaBound>,
    /// The server's aggregate serving rate the estimate used, bytes per second: the best this
    /// server measured with many downloads at once, or a calibrated default until it has. `None`
    /// when the server does not serve the bytes (an external artifact).
    #[serde(default)]
    pub serving_bytes_per_sec: Option<u64>,
}

/// What a rollout's estimate is mostly made of.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EtaBound {
    /// The server's aggregate rate: too many devices download at once for it.
    ServerRate,
    /// Each device's own download speed.
    DeviceLinks,
    /// Installs and verify windows.
    Installs,
    /// Bake times between waves.
    BakeTimes,
}

impl EtaBound {
    /// In words, for the console and the CLI.
    pub fn describe(self) -> &'static str {
        match self {
            EtaBound::ServerRate => "the server's serving rate",
            EtaBound::DeviceLinks => "the devices' download speed",
            EtaBound::Installs => "installs and verify windows",
            EtaBound::BakeTimes => "bake times between waves",
        }
    }
}

/// The artifact a rollout installs, in short.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactRef {
    pub id: String,
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rollout {
    pub id: String,
    pub name: String,
    pub artifact: ArtifactRef,
    pub rollback_artifact: Option<ArtifactRef>,
    pub state: RolloutState,
    pub paused_reason: Option<PauseReason>,
    /// The wave devices are being taken from now, from 1.
    pub current_wave: u32,
    pub targets: Targets,
    pub waves: Vec<Wave>,
    pub success_gate: SuccessGate,
    pub failure_gate: FailureGate,
    pub retry: RetryPolicy,
    pub max_in_flight: Option<u32>,
    pub notify_per_minute: Option<u32>,
    pub step_timeout_secs: Option<u64>,
    pub install: InstallSpec,
    pub allow_downgrade: bool,
    pub windows: Option<Vec<MaintenanceWindow>>,
    /// Targeted devices left out when the rollout was made because the artifact's compatibility
    /// (OS, architecture, models, labels) rules them out.
    pub left_out: u64,
    pub progress: RolloutProgress,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an execution installs: the rollout's artifact, or (rolling back) the previous one.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExecutionAction {
    Install,
    Rollback,
}

/// One device's part in a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Execution {
    pub id: String,
    pub rollout_id: String,
    pub device_id: String,
    pub device_name: String,
    pub wave: u32,
    pub action: ExecutionAction,
    pub state: ExecutionState,
    /// From 1; a retry is a new attempt.
    pub attempt: u32,
    pub failure_class: Option<FailureClass>,
    /// The device's words about the last state, e.g. why it failed.
    pub detail: Option<String>,
    /// The version the device reports it has now, whatever happened.
    pub installed_version: Option<String>,
    /// When a retry will be notified.
    pub retry_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/v1/rollouts/{id}/executions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ExecutionQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ExecutionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::PageLimit>, inline))]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Cursor>, inline))]
    pub cursor: Option<String>,
}

/// `GET /api/v1/rollouts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct RolloutQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RolloutState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::PageLimit>, inline))]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Cursor>, inline))]
    pub cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_parse_from_shares_and_counts() {
        assert_eq!(Wave::parse("10%"), Ok(Wave::Percent(10.0)));
        assert_eq!(Wave::parse(" 25 "), Ok(Wave::Count(25)));
        for bad in ["0%", "101%", "0", "-3", "ten", ""] {
            assert!(Wave::parse(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&[Wave::Percent(10.0), Wave::Count(5)]).expect("json");
        assert_eq!(json, r#"[{"percent":10.0},{"count":5}]"#);
    }

    #[test]
    fn install_paths_must_be_absolute_name_a_file_and_climb_nothing() {
        for good in ["/etc/app.conf", "/opt/pos/bin/app", "C:\\ProgramData\\Pos\\app.exe", "d:/pos/app.cfg"] {
            assert_eq!(InstallSpec::path_problem(good), None, "{good}");
        }
        for bad in ["etc/app.conf", "", "/", "/etc/", "/etc/.", "/etc/../shadow", "/etc/..", "C:\\", "C:\\x\\..\\y"] {
            assert!(InstallSpec::path_problem(bad).is_some(), "{bad}");
        }
        assert!(InstallSpec::path_problem(&format!("/{}", "a".repeat(1024))).is_some());
        assert!(InstallSpec::path_problem("/etc/a\nb").is_some());
    }

    #[test]
    fn modes_are_octal_without_setuid_setgid_or_sticky() {
        assert_eq!(InstallSpec::parse_mode("0644"), Ok(0o644));
        assert_eq!(InstallSpec::parse_mode("755"), Ok(0o755));
        assert_eq!(InstallSpec::parse_mode("00600"), Ok(0o600));
        for special in ["7777", "4755", "2755", "1777", "04755"] {
            assert!(InstallSpec::parse_mode(special).expect_err(special).contains("setuid"), "{special}");
        }
        for bad in ["", "+644", "0x1a4", "rw-r--r--", "0888", "77777", "000644"] {
            assert!(InstallSpec::parse_mode(bad).expect_err(bad).contains("octal"), "{bad}");
        }
    }

    #[test]
    fn every_state_round_trips_and_is_classified_once() {
        for s in ExecutionState::ALL {
            assert_eq!(ExecutionState::parse(s.as_str()), Some(s));
            assert!(!(s.is_failure() && s.is_success()));
        }
        for s in RolloutState::ALL {
            assert_eq!(RolloutState::parse(s.as_str()), Some(s));
        }
    }
}
