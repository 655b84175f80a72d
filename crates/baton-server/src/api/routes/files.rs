//! Files on a device: `/api/v1/devices/{id}/files` (download a file, with `Range` to resume,
//! or a directory as tar; upload a file, resumable with `offset`) and `…/files/stat`. The
//! device's agent decides which paths it allows (`[remote] files`, `file_paths`) and refuses
//! others with the reason (403); the relay is `remote::files`.

use std::net::SocketAddr;

use axum::{
    body::Body,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use baton_core::remote::{
    self, Actor,
    files::{self, Direction, Transfer},
};
use baton_proto::{
    api::files::{CHECKSUM_HEADER, FileQuery, FileStatQuery, FileUpload, FileWritten, RemoteFile},
    streams::{FileInfo, FileKind, StreamKind},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    connections::DeviceStream,
    remote::{
        files::{Download, Ledger, Uploaded},
        open_stream,
    },
    state::AppState,
    web::{
        extract::{Authz, Json, Path, Query, perm},
        problem::problem,
        ranged::parse_range,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(download, upload)).routes(routes!(stat))
}

/// Who asks, and the transfer's id (the stream's session id on the device).
struct Asker {
    actor: Actor,
    id: String,
}

impl Asker {
    fn of(auth: &Authz<perm::RemoteFiles>, peer: SocketAddr) -> Self {
        Asker { actor: Actor::of(&auth.principal, Some(peer.ip().to_string())), id: baton_core::store::new_id() }
    }

    async fn open(&self, app: &AppState, device: &str, kind: StreamKind) -> Result<(DeviceStream, FileInfo), Error> {
        let stream = open_stream(&app.connections, device, &self.id, &self.actor.label, kind).await?;
        let info = stream.file.clone().ok_or_else(|| {
            baton_core::Error::Conflict("the device's agent did not describe the file; update baton-agent".into())
        })?;
        Ok((stream, info))
    }

    fn transfer(&self, device: &str, path: &str) -> Transfer {
        Transfer {
            id: self.id.clone(),
            device_id: device.to_owned(),
            actor: self.actor.clone(),
            path: path.to_owned(),
            size: 0,
            sha256: None,
            offset: 0,
            bytes: 0,
            complete: false,
            reason: String::new(),
        }
    }
}

/// Describe a path on the device: a file's size, SHA-256, mode and time, a directory, or
/// nothing. With `upload_sha256`, `received` says how many bytes of an interrupted upload of
/// that content the device kept: resume the upload from there.
#[utoipa::path(get, path = "/api/v1/devices/{id}/files/stat", tag = "remote",
    params(("id" = String, Path), FileStatQuery),
    responses((status = 200, body = RemoteFile),
        (status = 403, description = "The device refused: files are off, or the path is not allowed (the reason says which)"),
        (status = 409, description = "The device is offline, not active, or not an agent")))]
async fn stat(
    auth: Authz<perm::RemoteFiles>,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<FileStatQuery>,
) -> Result<Json<RemoteFile>, Error> {
    files::check_path(&q.path)?;
    let upload_sha256 = q.upload_sha256.as_deref().map(|s| files::check_sha256("upload_sha256", s)).transpose()?;
    remote::reachable(&app.db, auth.scope(), &id).await?;
    let asker = Asker::of(&auth, peer);
    let (_, info) = asker.open(&app, &id, StreamKind::FileStat { path: q.path.clone(), upload_sha256 }).await?;
    Ok(Json(RemoteFile { path: q.path, file: info }))
}

/// Download a file from the device, or a directory as a tar stream (links kept as links). A
/// file's answer carries its SHA-256 (`ETag`, `x-checksum-sha256`, `Digest`); `Range: bytes=N-`
/// resumes from byte N (206), and with `If-Range: "<sha256>"` only if the file is still that.
#[utoipa::path(get, path = "/api/v1/devices/{id}/files", tag = "remote", params(("id" = String, Path), FileQuery),
    responses((status = 200, description = "The file's bytes, or a directory as tar (application/x-tar)", content_type = "application/octet-stream"),
        (status = 206, description = "The bytes from the asked range on"),
        (status = 403, description = "The device refused: files are off, the path is not allowed or does not exist (the reason says which)"),
        (status = 409, description = "The device is offline, not active or not an agent, or the file is larger than `remote_file_max_bytes`"),
        (status = 416, description = "The range starts past the end of the file")))]
async fn download(
    auth: Authz<perm::RemoteFiles>,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<FileQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    files::check_path(&q.path)?;
    remote::reachable(&app.db, auth.scope(), &id).await?;
    let asker = Asker::of(&auth, peer);
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|r| range_start(r).is_some());
    let read = |offset| StreamKind::FileRead { path: q.path.clone(), offset };
    let (mut stream, mut info) = asker.open(&app, &id, read(range.and_then(range_start).unwrap_or(0))).await?;
    let mut range = range.filter(|_| info.kind == FileKind::File);
    if range.is_some() && !if_range_holds(&headers, &info) {
        stream.to_device.close("the file changed; it is sent whole").await;
        (stream, info) = asker.open(&app, &id, read(0)).await?;
        range = None;
    }
    let mut transfer = asker.transfer(&id, &q.path);
    transfer.sha256 = info.sha256.clone();
    let max = app.settings.remote_file_max_bytes;
    if info.kind == FileKind::Directory {
        let ledger = Ledger::new(app.db.clone(), app.bus.clone(), auth.scope().clone(), Direction::Download, transfer);
        let download = Download { stream, stop_at: None, expect: None, limit: max, ledger };
        let mut response = Response::new(Body::from_stream(crate::remote::files::body(download)));
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
        disposition(h, &q.path, ".tar");
        return Ok(response);
    }
    if let Some(why) = files::too_large(info.size, max) {
        stream.to_device.close("the file is larger than the server transfers").await;
        return Err(baton_core::Error::Conflict(why).into());
    }
    let size = info.size;
    let (status, start, len) = match range.map(|r| parse_range(r, size)) {
        None => (StatusCode::OK, 0, size),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Some(None) => {
            stream.to_device.close("the range is outside the file").await;
            let mut r = problem(StatusCode::RANGE_NOT_SATISFIABLE, "range", format!("the file has {size} bytes"));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    (transfer.size, transfer.offset) = (size, start);
    let ledger = Ledger::new(app.db.clone(), app.bus.clone(), auth.scope().clone(), Direction::Download, transfer);
    let to_end = start + len == size;
    let download =
        Download { stream, stop_at: (!to_end).then_some(len), expect: to_end.then_some(len), limit: max, ledger };
    let mut response = Response::new(Body::from_stream(crate::remote::files::body(download)));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(sha) = &info.sha256 {
        checksum(h, sha);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    disposition(h, &q.path, "");
    Ok(response)
}

/// Upload a file to the device: the body is its bytes from `offset` (streamed to the device,
/// never held whole), `size` and `sha256` describe the whole file. The device keeps the bytes
/// beside the target until all have come and match the SHA-256, then moves the file into
/// place. A body that ends early leaves what came on the device: `files/stat?upload_sha256=`
/// says how much, and the upload resumes with `offset`.
#[utoipa::path(put, path = "/api/v1/devices/{id}/files", tag = "remote", params(("id" = String, Path), FileUpload),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = FileWritten),
        (status = 400, description = "The body ended before `size - offset` bytes; the device keeps them, resume with `offset`"),
        (status = 403, description = "The device refused: files are off, the path is not allowed, or it keeps fewer bytes than `offset` (the reason says which)"),
        (status = 409, description = "The device is offline, not active or not an agent, or it failed to write the file"),
        (status = 413, description = "`size` is larger than `remote_file_max_bytes`"),
        (status = 422, description = "A parameter is malformed, the body is longer than announced, or the bytes do not match `sha256`")))]
async fn upload(
    auth: Authz<perm::RemoteFiles>,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<FileUpload>,
    body: Body,
) -> Result<Response, Error> {
    let up = files::check_upload(&q)?;
    if let Some(why) = files::too_large(up.size, app.settings.remote_file_max_bytes) {
        return Ok(problem(StatusCode::PAYLOAD_TOO_LARGE, "too-large", why));
    }
    remote::reachable(&app.db, auth.scope(), &id).await?;
    let asker = Asker::of(&auth, peer);
    let kind = StreamKind::FileWrite {
        path: up.path.clone(),
        size: up.size,
        sha256: up.sha256.clone(),
        offset: up.offset,
        mode: up.mode,
    };
    let (stream, _) = asker.open(&app, &id, kind).await?;
    let mut transfer = asker.transfer(&id, &up.path);
    (transfer.size, transfer.sha256, transfer.offset) = (up.size, Some(up.sha256.clone()), up.offset);
    let mut ledger = Ledger::new(app.db.clone(), app.bus.clone(), auth.scope().clone(), Direction::Upload, transfer);
    let expected = up.size - up.offset;
    let mut sent = 0;
    let end = crate::remote::files::upload(stream, body.into_data_stream(), expected, &mut sent).await;
    ledger.transfer.bytes = sent;
    match end {
        Uploaded::Written => {
            ledger.finish(true, "written");
            let written = FileWritten { path: up.path, size: up.size, sha256: up.sha256 };
            Ok((StatusCode::CREATED, Json(written)).into_response())
        }
        Uploaded::Mismatch(reason) => {
            ledger.finish(false, reason.clone());
            Err(baton_core::Error::invalid("sha256", reason).into())
        }
        Uploaded::Short { sent } => {
            let kept = up.offset + sent;
            let detail = format!(
                "the body ended after {sent} of {expected} bytes; the device keeps {kept} bytes of the file: resume with offset={kept}"
            );
            ledger.finish(false, detail.clone());
            Ok(problem(StatusCode::BAD_REQUEST, "incomplete-upload", detail))
        }
        Uploaded::TooLong => {
            ledger.finish(false, "the body was longer than size - offset");
            Err(baton_core::Error::invalid("size", format!("the body has more than size - offset = {expected} bytes"))
                .into())
        }
        Uploaded::Failed(reason) => {
            ledger.finish(false, reason.clone());
            Err(baton_core::Error::Conflict(format!("the device did not write the file: {reason}")).into())
        }
    }
}

/// Where a `Range` this route honours starts: one range, `bytes=N-` or `bytes=N-M` (others
/// are ignored, and the whole file is sent).
fn range_start(range: &str) -> Option<u64> {
    let spec = range.trim().strip_prefix("bytes=")?;
    let (from, to) = spec.split_once('-')?;
    if spec.contains(',') || !(to.trim().is_empty() || to.trim().parse::<u64>().is_ok()) {
        return None;
    }
    from.trim().parse().ok()
}

/// Whether a ranged request may be answered with a part: no `If-Range`, or it names the
/// file's current SHA-256 as its entity tag.
fn if_range_holds(headers: &HeaderMap, info: &FileInfo) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(v) => info.sha256.as_ref().is_some_and(|sha| v.as_bytes() == format!("\"{sha}\"").as_bytes()),
    }
}

fn checksum(h: &mut HeaderMap, sha: &str) {
    let raw: Option<Vec<u8>> =
        (0..sha.len()).step_by(2).map(|i| sha.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect();
    let values = [
        (header::ETAG, format!("\"{sha}\"")),
        (header::HeaderName::from_static(CHECKSUM_HEADER), sha.to_owned()),
        (header::HeaderName::from_static("digest"), format!("sha-256={}", base64_of(raw.unwrap_or_default()))),
    ];
    for (name, value) in values {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}

fn base64_of(bytes: Vec<u8>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `Content-Disposition` with the path's last name (quotes and controls left out).
fn disposition(h: &mut HeaderMap, path: &str, suffix: &str) {
    let name = path.rsplit(['/', '\\']).find(|s| !s.is_empty()).unwrap_or("download");
    let name: String = name.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}{suffix}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
}
