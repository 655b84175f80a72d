//! Commands: the durable outbox. A command for a device is stored first and delivered when the
//! device is connected — at once, or when it comes back — until its TTL expires.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What to run on the device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CommandSpec {
    /// Runs `program` with `args`, or a `shell` line through the platform's shell.
    Exec {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        program: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shell: Option<String>,
        /// Seconds before the process is killed; default 60.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u32>,
    },
    /// Runs the agent's configured reboot hook.
    Reboot,
    /// Answers at once; proves the round trip.
    Ping,
    SetTelemetryInterval {
        seconds: u32,
    },
    RefreshInventory,
    /// Handled by an application through the device SDK.
    Custom {
        name: String,
        #[serde(default)]
        params: serde_json::Value,
    },
    /// Collects the device's logs of the last `since_secs`, its inventory and its diagnostics
    /// into a compressed archive and uploads it as support bundle `bundle_id`. Made only by
    /// `POST /api/v1/support-bundles` (which records the bundle first), never by
    /// `POST /api/v1/commands`. In a batch's spec `bundle_id` is empty: each device's command
    /// names its own bundle.
    SupportBundle {
        bundle_id: String,
        since_secs: u64,
    },
}

impl CommandSpec {
    /// The command's kind, as stored and filtered on.
    pub fn kind(&self) -> &str {
        match self {
            Self::Exec { .. } => "exec",
            Self::Reboot => "reboot",
            Self::Ping => "ping",
            Self::SetTelemetryInterval { .. } => "set-telemetry-interval",
            Self::RefreshInventory => "refresh-inventory",
            Self::Custom { .. } => "custom",
            Self::SupportBundle { .. } => "support-bundle",
        }
    }
}

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandState {
    Queued,
    Sent,
    Acked,
    Succeeded,
    Failed,
    Expired,
    Canceled,
}

impl CommandState {
    pub const ALL: [CommandState; 7] =
        [Self::Queued, Self::Sent, Self::Acked, Self::Succeeded, Self::Failed, Self::Expired, Self::Canceled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Sent => "SENT",
            Self::Acked => "ACKED",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Expired => "EXPIRED",
            Self::Canceled => "CANCELED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    /// No further change will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Expired | Self::Canceled)
    }
}

/// What the command produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct CommandResult {
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Output beyond the size cap was cut.
    pub truncated: bool,
    /// Why it failed, in words.
    pub error: Option<String>,
    /// A custom handler's answer.
    pub output: Option<serde_json::Value>,
}

/// Which devices a command goes to: ids, a group (with subgroups), a label selector — combined,
/// a device must match every part given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandTarget {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
}

/// `POST /api/v1/commands`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandCreate {
    pub target: CommandTarget,
    pub command: CommandSpec,
    /// Seconds the command may wait for its device; default one day, at most 30 days.
    #[serde(default)]
    pub ttl_secs: Option<u32>,
    /// Repeating a request with the same key returns the first batch instead of a new one.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// One command for one device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Command {
    pub id: String,
    pub batch_id: String,
    pub device_id: String,
    pub command: CommandSpec,
    pub state: CommandState,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub acked_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub result: Option<CommandResult>,
}

/// The commands one request created, with their progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandBatch {
    pub id: String,
    pub command: CommandSpec,
    pub total: u64,
    /// Count of commands per state, e.g. `{"QUEUED": 3, "SUCCEEDED": 7}`.
    pub states: BTreeMap<String, u64>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl CommandBatch {
    /// Commands that reached a final state.
    pub fn finished(&self) -> u64 {
        self.states
            .iter()
            .filter(|(s, _)| CommandState::parse(s).is_some_and(CommandState::is_final))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Filters and page of `GET /api/v1/commands`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct CommandQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Id>, inline))]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Id>, inline))]
    pub batch: Option<String>,
    /// e.g. `QUEUED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::PageLimit>, inline))]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<crate::api::formats::Cursor>, inline))]
    pub cursor: Option<String>,
}
