//! Remote-support streams on the agent's connection: the control messages that open, resize,
//! credit and close a numbered stream, and the limits both sides keep. A stream's bytes travel as
//! binary frames ([`crate::agent::encode_stream_frame`]).
//!
//! # Flow control
//! Each side may have at most the other's window of bytes in flight on a stream: the opener
//! grants [`StreamOpen::window`] for data the agent sends, the agent grants
//! [`crate::agent::AgentMessage::StreamOpened`]'s `window` for data the server sends; each side
//! hands credit back with a `stream_credit` message once it has passed bytes on. So a reader
//! that stalls holds at most one window on the server, and a busy stream cannot crowd out
//! telemetry and commands, which never wait for credit. Bytes beyond the window close the
//! stream. Both ends keep that account with [`Flow`]. A window is read as at least
//! [`MAX_CHUNK`] (one chunk always fits) and at most [`MAX_WINDOW`].

mod files;
mod flow;
mod logs;

use serde::{Deserialize, Serialize};

pub use files::{FileInfo, FileKind};
pub use flow::{Flow, Overrun};
pub use logs::{LogQuery, LogRecord, LogSource, duration_secs, priority};

/// The window each side grants by default: bytes in flight per stream and direction.
pub const WINDOW: u32 = 256 * 1024;
/// The largest window either side accepts from the other; a larger one is read as this.
pub const MAX_WINDOW: u32 = 4 * WINDOW;
/// The window both sides grant on file, tunnel and screen streams: bulk bytes, where a bigger window keeps the
/// pipe full across the hops (client, server, agent, disk) when a process is slow to be scheduled.
pub const FILE_WINDOW: u32 = MAX_WINDOW;
/// Bytes passed on before the other side is credited for them while more wait (one credit
/// message per 16 KiB chunk would be one frame each); a reader credits at once whatever it holds
/// when nothing else waits, so a peer never stalls on credit held back.
pub const CREDIT_BATCH: u32 = 64 * 1024;
/// Largest data chunk in one binary frame.
pub const MAX_CHUNK: usize = 16 * 1024;
/// Largest terminal dimension accepted, in cells.
pub const MAX_TERMINAL_CELLS: u16 = 1000;

/// Server → agent: open a stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamOpen {
    /// The stream's number on this connection (never 0, never reused while open).
    pub stream: u32,
    /// The remote session the stream belongs to (for the agent's log and consent hook).
    pub session_id: String,
    /// Who opened it, for the device's consent hook and log.
    pub user: String,
    /// Bytes the agent may send before it hears a credit.
    pub window: u32,
    pub kind: StreamKind,
}

/// What the stream carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StreamKind {
    /// A terminal: the configured shell on a PTY, or `command` when it is not empty.
    Terminal {
        cols: u16,
        rows: u16,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        command: Vec<String>,
    },
    /// Log entries, one [`LogRecord`] as JSON per line, from the journal or a file the agent's
    /// `[remote] log_paths` allow.
    Logs(LogQuery),
    /// A file's bytes from `offset`, or a directory as a tar stream; the agent's answer
    /// (`stream_opened`) describes it in `file`.
    FileRead {
        path: String,
        #[serde(default)]
        offset: u64,
    },
    /// Bytes for a file, from `offset` of `size`: kept beside it until all have come and their
    /// SHA-256 is `sha256`, then moved into place. The agent's answer says in `file.received`
    /// how much of an interrupted upload of the same content it kept; the stream ends with exit
    /// code 0 once the file is in place.
    FileWrite {
        path: String,
        size: u64,
        /// Hex SHA-256 of the whole file.
        sha256: String,
        #[serde(default)]
        offset: u64,
        /// Unix permission bits for a new file (default 0644).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
    /// Describes a path in the answer's `file` and closes; with `upload_sha256`, also how much
    /// of an interrupted upload of that content the device kept.
    FileStat {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upload_sha256: Option<String>,
    },
    /// A TCP connection to `host:port` as the device reaches it, if its `[remote] tunnel_ports`
    /// allow the port. An empty data frame from either side ends that side's direction (a
    /// half-close); the stream closes once the device's side of the connection has closed.
    Tunnel { host: String, port: u16 },
    /// The device's screen: its VNC server's RFB stream, with the security handshake done by
    /// the agent (the client is offered no authentication; the session's token was its proof).
    /// Without `control`, the agent drops the client's keyboard, pointer and clipboard messages.
    Screen {
        #[serde(default)]
        control: bool,
    },
}

impl StreamKind {
    /// The agent capability (its `[remote]` switch) the stream needs.
    pub fn capability(&self) -> &'static str {
        match self {
            StreamKind::Terminal { .. } => "terminal",
            StreamKind::Logs(_) => "logs",
            StreamKind::FileRead { .. } | StreamKind::FileWrite { .. } | StreamKind::FileStat { .. } => "files",
            StreamKind::Tunnel { .. } => "tunnel",
            StreamKind::Screen { .. } => "screen",
        }
    }

    /// The window each side grants on this kind of stream.
    pub fn window(&self) -> u32 {
        match self {
            StreamKind::FileRead { .. }
            | StreamKind::FileWrite { .. }
            | StreamKind::FileStat { .. }
            | StreamKind::Tunnel { .. }
            | StreamKind::Screen { .. } => FILE_WINDOW,
            StreamKind::Terminal { .. } | StreamKind::Logs(_) => WINDOW,
        }
    }

    /// The feature an agent must announce in `hello` for this kind of stream.
    pub fn feature(&self) -> &'static str {
        match self {
            StreamKind::Terminal { .. } => crate::features::STREAMS,
            StreamKind::Logs(_) => crate::features::LOGS,
            StreamKind::FileRead { .. } | StreamKind::FileWrite { .. } | StreamKind::FileStat { .. } => {
                crate::features::FILES
            }
            StreamKind::Tunnel { .. } => crate::features::TUNNELS,
            StreamKind::Screen { .. } => crate::features::SCREEN,
        }
    }
}

/// Checks a terminal size the way both ends read it.
pub fn valid_size(cols: u16, rows: u16) -> bool {
    (1..=MAX_TERMINAL_CELLS).contains(&cols) && (1..=MAX_TERMINAL_CELLS).contains(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_reads_as_tagged_json() {
        let open = StreamOpen {
            stream: 1,
            session_id: "s".into(),
            user: "alice".into(),
            window: WINDOW,
            kind: StreamKind::Terminal { cols: 80, rows: 24, command: vec![] },
        };
        let json = serde_json::to_string(&open).expect("json");
        assert_eq!(
            json,
            r#"{"stream":1,"session_id":"s","user":"alice","window":262144,"kind":{"kind":"terminal","cols":80,"rows":24}}"#
        );
        assert_eq!(serde_json::from_str::<StreamOpen>(&json).expect("parses"), open);
        assert!(!valid_size(0, 24) && !valid_size(80, 1001) && valid_size(1000, 1));
    }

    #[test]
    fn a_log_query_reads_as_tagged_json_and_refuses_unknown_fields() {
        let kind = StreamKind::Logs(LogQuery {
            source: LogSource::File,
            path: Some("/var/log/app.log".into()),
            grep: Some("error".into()),
            follow: true,
            ..LogQuery::default()
        });
        let json = serde_json::to_string(&kind).expect("json");
        assert_eq!(serde_json::from_str::<StreamKind>(&json).expect("parses"), kind);
        assert!(json.starts_with(r#"{"kind":"logs","source":"file""#), "{json}");
        let unknown = json.replace(r#""follow""#, r#""follows""#);
        assert!(serde_json::from_str::<StreamKind>(&unknown).is_err(), "{unknown}");
    }
}
