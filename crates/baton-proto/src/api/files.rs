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

pub use crate::streams::{FileInfo, FileKind};

/// A path on a device, as its agent found it: the agent's [`FileInfo`] with the path asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoteFile {
    pub path: String,
    #[serde(flatten)]
    pub file: FileInfo,
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
