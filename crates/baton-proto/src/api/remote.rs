//! Remote support: sessions an operator opens to a device (a terminal, a tunnel to a TCP port
//! on the device, its screen), their recordings, the tenant's remote-access policy, and the
//! messages of the attach WebSocket a browser or the CLI speaks.
//!
//! # Attaching
//! `POST /api/v1/devices/{id}/sessions` makes a session and a short-lived token bound to it;
//! the client opens `GET /api/v1/sessions/{session}/attach?token=…` as a WebSocket (a browser
//! cannot set headers on one, so the token rides in the URL, and works once). Binary frames are
//! the terminal's bytes both ways; text frames are [`AttachClientMessage`] and
//! [`AttachServerMessage`]. A watcher gets its own read-only token from
//! `POST /api/v1/devices/{id}/sessions/{session}/watch`.
//!
//! A screen session's binary frames are the RFB (VNC) protocol both ways, as noVNC speaks it.
//! A tunnel session's attach WebSocket holds the session open; each TCP connection through it
//! is a WebSocket of its own at `GET /api/v1/sessions/{session}/connect` (the opener's own
//! credentials), whose binary frames are the connection's bytes; an empty binary frame ends the
//! sender's direction (a TCP half-close).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a session carries.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// A shell (or one program) on a PTY.
    #[default]
    Terminal,
    /// TCP connections to one port the device reaches (its own web UI, a database…).
    Tunnel,
    /// The device's graphical screen over VNC: view only, or with keyboard and mouse.
    Screen,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Terminal => "terminal",
            SessionKind::Tunnel => "tunnel",
            SessionKind::Screen => "screen",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "terminal" => Some(SessionKind::Terminal),
            "tunnel" => Some(SessionKind::Tunnel),
            "screen" => Some(SessionKind::Screen),
            _ => None,
        }
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Made; waiting for its client to attach (its token expires otherwise).
    Pending,
    /// Attached and open on the device.
    Open,
    Closed,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Pending => "pending",
            SessionState::Open => "open",
            SessionState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(SessionState::Pending),
            "open" => Some(SessionState::Open),
            "closed" => Some(SessionState::Closed),
            _ => None,
        }
    }
}

/// `POST /api/v1/devices/{id}/sessions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionCreate {
    pub kind: SessionKind,
    /// The terminal's width in cells (default 80).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub cols: Option<u16>,
    /// The terminal's height in cells (default 24).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub rows: Option<u16>,
    /// Run this program and its arguments with a TTY instead of the device's shell; the
    /// session ends when it exits, with its exit code.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 256))]
    pub command: Vec<String>,
    /// Tunnel: the host the device connects to (default `localhost`: the device itself; a
    /// name or address on its network reaches a printer or a PLC behind it). The device's
    /// `[remote] tunnel_ports` must allow the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 253, pattern = r"^[A-Za-z0-9_:][A-Za-z0-9._:-]{0,252}$"))]
    pub host: Option<String>,
    /// Tunnel: the TCP port on `host` (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub port: Option<u16>,
    /// Screen: send keyboard and mouse too (`remote:screen-control`); without it the screen is
    /// only shown (`remote:screen-view`).
    #[serde(default)]
    pub control: bool,
}

/// A remote session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoteSession {
    pub id: String,
    pub device_id: String,
    pub kind: SessionKind,
    pub state: SessionState,
    /// Who opened it: a username, or `token:<name>` for an API token.
    pub opened_by: String,
    /// The address the opener came from.
    pub source_addr: Option<String>,
    /// The program run instead of the shell, if any.
    pub command: Vec<String>,
    /// A tunnel's host and port on the device's side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A screen session that controls (keyboard and mouse), not only views.
    #[serde(default)]
    pub control: bool,
    pub created_at: DateTime<Utc>,
    pub opened_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Why it ended, in words (the client left, idle for 30 minutes, the device went away…).
    pub close_reason: Option<String>,
    /// The command's exit code, when the device reported one.
    pub exit_code: Option<i32>,
    /// The recording, once the session has ended and it is stored.
    pub recording: Option<Recording>,
}

impl RemoteSession {
    /// What the session reaches, in a few words: the terminal's command (or `shell`), a
    /// tunnel's `host:port`, a screen's mode.
    pub fn what(&self) -> String {
        match self.kind {
            SessionKind::Terminal if self.command.is_empty() => "shell".to_owned(),
            SessionKind::Terminal => self.command.join(" "),
            SessionKind::Tunnel => {
                format!("tunnel to {}:{}", self.host.as_deref().unwrap_or("localhost"), self.port.unwrap_or_default())
            }
            SessionKind::Screen if self.control => "screen (control)".to_owned(),
            SessionKind::Screen => "screen (view)".to_owned(),
        }
    }
}

/// A session's recording: asciicast v2, as `asciinema play` and `asciinema cat` read it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recording {
    pub session_id: String,
    pub device_id: String,
    pub opened_by: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub size_bytes: u64,
    /// Whether keystrokes were recorded too (the tenant's policy at the time).
    pub input_recorded: bool,
}

/// A session made, with the token its client attaches with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionTicket {
    pub session: RemoteSession,
    /// Attaches once, within `expires_at`; bound to this session.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// Where to attach: the path of the WebSocket, token included.
    pub attach_path: String,
    /// Whether this ticket only watches.
    pub read_only: bool,
}

/// The tenant's remote-access policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RemotePolicy {
    /// Off: no remote session opens on any of the tenant's devices.
    pub enabled: bool,
    /// Record what operators type too. Keystrokes can hold passwords typed at prompts: turn
    /// this on only where the recordings are guarded as such.
    pub record_input: bool,
}

impl Default for RemotePolicy {
    fn default() -> Self {
        RemotePolicy { enabled: true, record_input: false }
    }
}

/// Client → server, on the attach WebSocket (text frames).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AttachClientMessage {
    /// The client's terminal changed size (ignored from watchers).
    Resize { cols: u16, rows: u16 },
}

/// Server → client, on the attach WebSocket (text frames).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AttachServerMessage {
    /// The device opened the session; bytes follow as binary frames.
    Opened { session_id: String, read_only: bool },
    /// The session ended; the WebSocket closes after this.
    Closed {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
}
