//! An artifact's bytes over HTTP, honouring one `Range` so an interrupted download resumes:
//! shared by the API (people and scripts) and the agents' door (devices, with their own
//! credentials). Every download is counted by the node's serving meter (`artifacts::serving`).
//!
//! Where the connection layer can hand a file to the socket itself (plain HTTP on Linux: see
//! `app::front`), it marks the request [`SendfileOffered`], and a local artifact's response
//! then carries [`Sendfile`] instead of a body, so its bytes go from the page cache to the socket
//! without passing through the server's memory.

use std::{fs::File, sync::Arc};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use baton_core::artifacts::{self, serving::Serving};

use crate::{Error, state::Shared};

/// On a request whose connection can send a file's bytes itself (see the module's doc).
#[derive(Clone, Copy, Debug)]
pub struct SendfileOffered;

/// On a response whose body (left empty) the connection sends from `file`: `len` bytes from
/// `start`, as its `Content-Length` says, counted by `serving`.
#[derive(Clone)]
pub struct Sendfile {
    pub file: Arc<File>,
    pub start: u64,
    pub len: u64,
    pub serving: Arc<Serving>,
}

/// An artifact's bytes as a response, honouring one `Range`; with the bytes left to the
/// connection ([`Sendfile`]) when it `offered` to send them and the store keeps a file.
pub async fn serve(
    app: &Shared,
    found: &artifacts::Located,
    headers: &HeaderMap,
    offered: Option<SendfileOffered>,
) -> Result<Response, Error> {
    let size = found.artifact.size;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match range.map(|r| parse_range(r, size)) {
        None => (StatusCode::OK, 0, size),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Some(None) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let file = match offered {
        Some(SendfileOffered) => artifacts::file(app.artifacts.as_ref(), found).await?,
        None => None,
    };
    let mut response = match file {
        Some(file) => {
            let mut r = Response::new(Body::empty());
            r.extensions_mut().insert(Sendfile { file, start, len, serving: Arc::new(app.serving.begin()) });
            r
        }
        None => {
            let stream = app.serving.count(artifacts::read(app.artifacts.as_ref(), found, start, len).await?);
            Response::new(Body::from_stream(stream))
        }
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", found.artifact.sha256)) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` of a resource of `size` bytes, as inclusive offsets;
/// `None` when it is malformed, holds several ranges, or lies outside.
pub(crate) fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (from, to) = spec.split_once('-')?;
    let (start, end) = match (from.trim(), to.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.checked_sub(n.min(size))?, size - 1)
        }
        (a, "") => (a.parse().ok()?, size - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size - 1)),
    };
    (start <= end && start < size).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_are_read_as_http_says() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=-5000", 1000), Some((0, 999)));
        assert_eq!(parse_range("bytes=990-5000", 1000), Some((990, 999)));
        for bad in ["bytes=1000-", "bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=x-1", "bytes=-"] {
            assert_eq!(parse_range(bad, 1000), None, "{bad}");
        }
    }
}
