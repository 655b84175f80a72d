//! Files on the device: what the agent says about a path it was asked to read, write or
//! describe (in `stream_opened`'s `file`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    /// Read as a tar stream of everything under it (symbolic links kept as links).
    Directory,
    /// Nothing is there (yet).
    Missing,
}

/// A path on the device, as the agent found it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileInfo {
    pub kind: FileKind,
    /// A file's length in bytes (0 for a directory or nothing).
    pub size: u64,
    /// A file's hex SHA-256 (read: of the whole file, before its bytes are sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Unix permission bits, where the platform has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Last modified, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ms: Option<i64>,
    /// Bytes the device kept of an interrupted upload of the same content: resume from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
}
