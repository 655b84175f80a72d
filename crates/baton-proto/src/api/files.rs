//! Files on a device through the server: `/api/v1/devices/{id}/files` (download a file or a
//! directory as tar, upload a file) and `…/files/stat` (describe a path, and how much of an
//! interrupted upload the device kept). The bytes travel on a file stream to the agent
//! (`crate::streams::StreamKind::FileRead` / `FileWrite` / `FileStat`).

use serde::{Deserialize, Serialize};

/// `GET /api/v1/devices/{id}/files`: the path to download.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    /// An absolute path on the device, under its `[remote] file_paths`.
    pub path: String,
}

/// `GET /api/v1/devices/{id}/files/stat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct FileStatQuery {
    /// An absolute path on the device, under its `[remote] file_paths`.
    pub path: String,
    /// The hex SHA-256 of a file being uploaded to `path`: the answer's `received` says how
    /// many of its bytes the device kept from an interrupted upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_sha256: Option<String>,
}

/// `PUT /api/v1/devices/{id}/files`: what the body is, as query parameters (the body is the
/// file's bytes from `offset`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct FileUpload {
    /// An absolute path on the device, under its `[remote] file_paths`; the file is replaced
    /// whole once every byte arrived and the SHA-256 matches.
    pub path: String,
    /// The whole file's length in bytes.
    pub size: u64,
    /// The whole file's hex SHA-256.
    pub sha256: String,
    /// Where the body starts in the file: resume an interrupted upload from the `received` that
    /// `files/stat?upload_sha256=` reports (default 0).
    #[serde(default)]
    pub offset: u64,
    /// Permission bits in octal, e.g. `755` (default `644`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// What is at a path on a device (the agent protocol's `streams::FileKind`, as the API says it).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    /// Downloaded as a tar stream of everything under it (symbolic links kept as links).
    Directory,
    /// Nothing is there (yet).
    Missing,
}

/// A path on a device, as its agent found it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoteFile {
    pub path: String,
    pub kind: FileKind,
    /// A file's length in bytes (0 for a directory or nothing).
    pub size: u64,
    /// A file's hex SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Unix permission bits, where the device has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Last modified, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ms: Option<i64>,
    /// With `upload_sha256`: bytes of that upload the device kept; resume from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
}

/// An upload in place on the device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileWritten {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Header carrying a file's hex SHA-256 on a download.
pub const CHECKSUM_HEADER: &str = "x-checksum-sha256";
