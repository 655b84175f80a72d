//! The agent protocol: one WebSocket per device, JSON text frames for control messages and
//! binary frames for numbered streams (remote terminals; see [`crate::streams`]).
//!
//! # Connection
//! The agent opens [`CONNECT_PATH`] with `Authorization: Bearer <device secret>` and
//! [`DEVICE_ID_HEADER`], or over mutual TLS with its client certificate (then the secret may be
//! left out; [`CERTIFICATE_PATH`] renews the certificate). A refusal before the upgrade is an HTTP status with a problem body whose
//! `type` ends in one of [`refusal`]'s names. After the upgrade the agent's first frame must be
//! [`AgentMessage::Hello`]; the server answers [`ServerMessage::Welcome`]. Anything else first, a
//! frame that does not parse, or one over [`MAX_FRAME_BYTES`] closes the connection with a code
//! from [`close`] and a reason.
//!
//! # Delivery
//! Telemetry batches carry a per-agent sequence number and are acknowledged once stored; the
//! agent keeps unacknowledged batches (on disk) and sends them again after a reconnect.
//! Commands carry their id; the agent reports `acked`, then `succeeded` or `failed`, and runs a
//! command id at most once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    deployment::{Deployment, ExecutionReport},
    inventory::Inventory,
};

/// Version of this protocol; the server refuses versions it does not speak.
pub const PROTOCOL_VERSION: u32 = 1;
/// The WebSocket endpoint.
pub const CONNECT_PATH: &str = "/api/v1/agent/connect";
/// The enrollment endpoint (authenticated by an enrollment token in the body).
pub const ENROLL_PATH: &str = "/api/v1/enroll";
/// Where the agent renews its client certificate (a signing request for a new key).
pub const CERTIFICATE_PATH: &str = "/api/v1/agent/certificate";
/// Header naming the device on [`CONNECT_PATH`].
pub const DEVICE_ID_HEADER: &str = "x-baton-device-id";
/// Largest frame either side sends.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Why a connection was refused before the upgrade: the last segment of the problem `type`.
pub mod refusal {
    /// Unknown device or wrong secret: enroll again.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// The device was decommissioned: stop, and wipe if told.
    pub const DECOMMISSIONED: &str = "decommissioned";
    /// Waiting for an administrator's approval: retry slowly.
    pub const PENDING_APPROVAL: &str = "pending-approval";
    /// Too many connection attempts: retry after the `Retry-After` seconds.
    pub const RATE_LIMITED: &str = "rate-limited";
}

/// WebSocket close codes the server uses after the upgrade.
pub mod close {
    /// The server is shutting down or restarting: reconnect.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame that breaks the WebSocket protocol itself (unmasked, RSV bits, a control frame
    /// over 125 bytes).
    pub const WS_PROTOCOL_ERROR: u16 = 1002;
    /// A frame that does not parse (or text that is not UTF-8).
    pub const INVALID_FRAME: u16 = 1007;
    /// A frame over the size limit.
    pub const TOO_LARGE: u16 = 1009;
    /// A frame out of order (anything before `hello`, a second `hello`), or an unsupported version.
    pub const PROTOCOL_VIOLATION: u16 = 4000;
    /// No frame within the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: u16 = 4001;
    /// The device was decommissioned while connected: stop.
    pub const DECOMMISSIONED: u16 = 4003;
    /// Another connection of the same device replaced this one.
    pub const REPLACED: u16 = 4005;
}

/// Agent → server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMessage {
    /// First frame of every connection. `backlog_epoch` names the agent's telemetry numbering;
    /// when it changes (the agent lost its backlog) the server starts counting afresh.
    Hello {
        protocol: u32,
        agent_version: String,
        inventory: Box<Inventory>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backlog_epoch: Option<u64>,
        /// What this agent can do beyond protocol 1's base, e.g. [`feature::DEPLOYMENTS`]; the
        /// server sends nothing an agent did not say it understands.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
    },
    /// The inventory changed (or was asked for).
    Inventory {
        inventory: Box<Inventory>,
    },
    Telemetry(TelemetryBatch),
    CommandUpdate(CommandUpdate),
    /// How an update execution goes (see [`crate::deployment`]).
    ExecutionReport(ExecutionReport),
    Heartbeat,
    /// The agent opened the stream; the server may send `window` bytes before a credit.
    StreamOpened {
        stream: u32,
        window: u32,
        /// For file streams: the path as the agent found it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<crate::streams::FileInfo>,
    },
    /// The agent will not open the stream (the capability is off, the consent hook said no…).
    StreamRefused {
        stream: u32,
        reason: String,
    },
    /// The stream ended on the device (the shell exited, …); the agent sends nothing more on it.
    StreamClosed {
        stream: u32,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    /// The agent passed on `bytes` of the server's data: the server may send that much more.
    StreamCredit {
        stream: u32,
        bytes: u32,
    },
}

/// Server → agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    Welcome {
        device_id: String,
        telemetry_interval_secs: u32,
        heartbeat_secs: u32,
    },
    Command(CommandEnvelope),
    /// The batch with this sequence number is stored; the agent may forget it.
    TelemetryAck {
        seq: u64,
    },
    Heartbeat,
    /// The device is retired; with `wipe`, the agent erases its state and identity.
    Decommissioned {
        wipe: bool,
    },
    /// An update to carry out (see [`crate::deployment`]); sent again after a reconnect until
    /// its execution is final, and again with `install_now` when a maintenance window opens.
    Deployment(Box<Deployment>),
    /// Stop working on this execution if it has not started installing.
    CancelExecution {
        execution_id: String,
    },
    /// Open a remote-support stream (see [`crate::streams`]); sent only to agents announcing
    /// [`feature::STREAMS`].
    StreamOpen(Box<crate::streams::StreamOpen>),
    /// The terminal on the stream changed size.
    StreamResize {
        stream: u32,
        cols: u16,
        rows: u16,
    },
    /// End the stream (the client left, the session was closed…); the agent answers
    /// `stream_closed`.
    StreamClose {
        stream: u32,
        reason: String,
    },
    /// The server passed on `bytes` of the stream's data: the agent may send that much more.
    StreamCredit {
        stream: u32,
        bytes: u32,
    },
}

/// Optional abilities an agent announces in `hello` (in their own module, which streams use too).
pub use crate::features as feature;

/// Samples taken at one time each; `seq` increases by one per batch an agent makes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryBatch {
    pub seq: u64,
    pub samples: Vec<Sample>,
}

/// Metric values taken at `ts` (milliseconds since the Unix epoch).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub ts: i64,
    pub metrics: BTreeMap<String, f64>,
}

/// A command for the agent to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandEnvelope {
    pub id: String,
    pub command: crate::api::commands::CommandSpec,
    /// Milliseconds since the epoch after which the command must not start.
    pub expires_at: i64,
}

/// Progress of a command on the device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandUpdate {
    pub command_id: String,
    pub state: CommandProgress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<crate::api::commands::CommandResult>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CommandProgress {
    Acked,
    Succeeded,
    Failed,
}

/// A binary frame: a 4-byte big-endian stream number, then the stream's bytes. Stream 0 is
/// reserved. Streams are opened by [`ServerMessage::StreamOpen`].
pub fn encode_stream_frame(stream: u32, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + data.len());
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(data);
    frame
}

/// Splits a binary frame into its stream number and bytes; `None` when it is too short.
pub fn decode_stream_frame(frame: &[u8]) -> Option<(u32, &[u8])> {
    let (head, data) = frame.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_as_tagged_json() {
        let hb: AgentMessage = serde_json::from_str(r#"{"type":"heartbeat"}"#).expect("parses");
        assert_eq!(hb, AgentMessage::Heartbeat);
        let ack = serde_json::to_string(&ServerMessage::TelemetryAck { seq: 7 }).expect("json");
        assert_eq!(ack, r#"{"type":"telemetry_ack","seq":7}"#);
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"telemetry","seq":1,"samples":[],"x":1}"#).is_err());
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"reboot_now"}"#).is_err());
    }

    #[test]
    fn a_stream_frame_round_trips_and_a_short_one_is_refused() {
        let frame = encode_stream_frame(3, b"ls\n");
        assert_eq!(decode_stream_frame(&frame), Some((3, b"ls\n".as_slice())));
        assert_eq!(decode_stream_frame(&[0, 1]), None);
    }
}
