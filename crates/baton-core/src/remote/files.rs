//! File transfer with a device, the server's part: what a request may ask (an absolute path of
//! at most 4096 bytes without NUL, a hex SHA-256, a size within `remote_file_max_bytes`, an
//! offset within the size, octal permission bits) and the event each transfer leaves, recorded
//! when it ends whether it completed or was cut. Where a path may lead is the device's to say
//! (its agent's `[remote] file_paths`); the bytes are relayed by the server's `remote`.

use baton_proto::api::files::FileUpload;

use super::{Actor, kind};
use crate::{Error, access::TenantScope, bus::SharedBus, events, store::Db};

/// The longest path accepted, in bytes.
pub const MAX_PATH: usize = 4096;

/// Checks a device path: absolute (`/…`, or `C:\…` for a Windows device), at most
/// [`MAX_PATH`] bytes, without NUL. Whether it is allowed is the device's decision.
pub fn check_path(path: &str) -> Result<(), Error> {
    let drive = path.as_bytes();
    let windows =
        drive.len() >= 3 && drive[0].is_ascii_alphabetic() && drive[1] == b':' && matches!(drive[2], b'\\' | b'/');
    if !(path.starts_with('/') || windows) {
        return Err(Error::invalid("path", "must be an absolute path on the device, e.g. /var/lib/app/config.toml"));
    }
    if path.len() > MAX_PATH || path.contains('\0') {
        return Err(Error::invalid("path", format!("at most {MAX_PATH} bytes, without NUL")));
    }
    Ok(())
}

/// A hex SHA-256 in lower case, or why not.
pub fn check_sha256(field: &str, sha256: &str) -> Result<String, Error> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha256.to_ascii_lowercase())
    } else {
        Err(Error::invalid(field, "must be a SHA-256 in hex (64 digits)"))
    }
}

/// Why a file of `size` bytes is over the server's limit, if it is; the HTTP door answers
/// 413 with it.
pub fn too_large(size: u64, max: u64) -> Option<String> {
    (size > max)
        .then(|| format!("the file is {size} bytes, more than this server transfers (`remote_file_max_bytes` = {max})"))
}

/// An upload's facts, checked: the SHA-256 in lower case and the mode as bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub offset: u64,
    pub mode: Option<u32>,
}

/// Checks an upload's query (its size against the limit is [`too_large`]'s).
pub fn check_upload(req: &FileUpload) -> Result<Upload, Error> {
    check_path(&req.path)?;
    let sha256 = check_sha256("sha256", &req.sha256)?;
    if req.offset > req.size {
        return Err(Error::invalid("offset", format!("must be at most the size, {}", req.size)));
    }
    let mode = match req.mode.as_deref() {
        None => None,
        Some(m) => {
            let bits = u32::from_str_radix(m, 8)
                .map_err(|_| Error::invalid("mode", "permission bits in octal, e.g. 644 or 0755"))?;
            // No setuid, setgid or sticky bit: an upload must not make a privileged program.
            if bits > 0o777 {
                return Err(Error::invalid("mode", "mode must be at most 0777"));
            }
            Some(bits)
        }
    };
    Ok(Upload { path: req.path.clone(), size: req.size, sha256, offset: req.offset, mode })
}

/// Which way a transfer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

/// One transfer, as its event tells it.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub id: String,
    pub device_id: String,
    pub actor: Actor,
    pub path: String,
    /// The file's size (a directory's: the bytes of its tar stream).
    pub size: u64,
    pub sha256: Option<String>,
    /// Where in the file this transfer started.
    pub offset: u64,
    /// Bytes this transfer carried.
    pub bytes: u64,
    pub complete: bool,
    pub reason: String,
}

/// Records the transfer's event (`remote.file_uploaded` or `remote.file_downloaded`).
pub async fn record(db: &Db, bus: &SharedBus, scope: &TenantScope, direction: Direction, t: &Transfer) {
    let kind = match direction {
        Direction::Upload => kind::FILE_UPLOADED,
        Direction::Download => kind::FILE_DOWNLOADED,
    };
    let data = serde_json::json!({
        "transfer_id": t.id, "user": t.actor.label, "source_addr": t.actor.source_addr, "path": t.path,
        "size": t.size, "sha256": t.sha256, "offset": t.offset, "bytes": t.bytes, "complete": t.complete,
        "reason": t.reason,
    });
    events::record(db, bus, scope, Some(&t.device_id), kind, data).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(path: &str, sha256: &str, offset: u64, mode: Option<&str>) -> FileUpload {
        FileUpload { path: path.into(), size: 10, sha256: sha256.into(), offset, mode: mode.map(Into::into) }
    }

    #[test]
    fn an_upload_is_checked_field_by_field() {
        let sha = "AB".repeat(32);
        let ok = check_upload(&upload("/data/x", &sha, 10, Some("0755"))).expect("valid");
        assert_eq!((ok.sha256, ok.mode), ("ab".repeat(32), Some(0o755)));
        let field = |r: Result<Upload, Error>| match r {
            Err(Error::Invalid { errors, .. }) => errors[0].field.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(check_upload(&upload("data/x", &sha, 0, None))), "path");
        assert_eq!(field(check_upload(&upload("/data/\0", &sha, 0, None))), "path");
        assert_eq!(field(check_upload(&upload(&format!("/{}", "a".repeat(MAX_PATH)), &sha, 0, None))), "path");
        assert_eq!(field(check_upload(&upload("/x", "abc", 0, None))), "sha256");
        assert_eq!(field(check_upload(&upload("/x", &sha, 11, None))), "offset");
        assert_eq!(field(check_upload(&upload("/x", &sha, 0, Some("9")))), "mode");
        assert_eq!(field(check_upload(&upload("/x", &sha, 0, Some("17777")))), "mode");
        for setuid in ["4755", "2755", "1777", "7777"] {
            match check_upload(&upload("/x", &sha, 0, Some(setuid))) {
                Err(Error::Invalid { errors, .. }) => assert_eq!(errors[0].message, "mode must be at most 0777"),
                other => panic!("{setuid}: {other:?}"),
            }
        }
        assert_eq!(check_upload(&upload("/x", &sha, 0, Some("777"))).expect("0777").mode, Some(0o777));
        assert!(check_path("C:\\data\\x").is_ok());
        assert!(too_large(11, 10).is_some_and(|m| m.contains("remote_file_max_bytes")) && too_large(10, 10).is_none());
    }
}
