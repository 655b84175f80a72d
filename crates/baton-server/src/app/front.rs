//! A plain HTTP connection's first requests, looked at before hyper takes the connection: the
//! two kinds whose cost a fleet multiplies by thousands are served here.
//!
//! **Device setups** (`POST /api/v1/enroll`, `GET /api/v1/agent/connect`), once all of the
//! request is here, wait for their place among the setups served at once (`connections::setup`)
//! holding only the bytes read, and go to hyper with the place once they have it
//! ([`WaitedPlace`](crate::connections::setup::WaitedPlace)). Waiting inside a
//! handler instead held hyper's buffers and task, about 25 KiB a connection: in a storm of
//! 10,000 devices starting at once, that was most of the server's peak memory, and the allocator
//! kept it afterwards. A setup that waits too long is told to come back (`429`, `Retry-After`),
//! as the handler would.
//!
//! **Devices' artifact downloads** (`GET /api/v1/agent/executions/{id}/artifact`), on Linux, are
//! sent by the kernel. A rollout's thousand devices fetch one large file at once; through hyper,
//! every chunk of it is read from the page cache into the server's memory and written out again.
//! nginx instead hands the file to the socket (`sendfile`), and `baton bench ota` sets the two
//! side by side. So the download's request is read here and routed through the same router as
//! every other request (the same credentials, scoping and answers), marked [`SendfileOffered`].
//! When the answer is a local artifact's bytes ([`Sendfile`]), its head is written here and its
//! body sent from the file by the kernel: no buffer in the server and no copy through it. Any
//! other answer (an error, a redirect to a bucket) is written here as it is. The connection stays
//! here for the device's next download.
//!
//! Anything else goes to hyper with every byte read so far put back in front of the stream
//! (`serve::Holding`), and so does the rest of the connection. TLS connections are hyper's from the
//! start.

#[cfg(target_os = "linux")]
use std::{fs::File, os::fd::AsFd, sync::Arc};
use std::{io, net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header},
    response::IntoResponse,
};
#[cfg(target_os = "linux")]
use baton_core::artifacts::{file_chunks::in_page_cache, serving::Serving};
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
#[cfg(target_os = "linux")]
use tokio::io::Interest;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
};
use tower::ServiceExt;

#[cfg(target_os = "linux")]
use crate::web::ranged::SendfileOffered;
use crate::{
    connections::{
        gate::Admitted,
        setup::{self, SetupLimit, SetupPlace},
    },
    web::ranged::Sendfile,
};

/// How the requests this module looks at begin.
const FIRST_LINES: [(&[u8], Kind); 3] = [
    (b"GET /api/v1/agent/executions/", Kind::Download),
    (b"GET /api/v1/agent/connect ", Kind::Setup),
    (b"POST /api/v1/enroll ", Kind::Setup),
];
/// A longer head is left to hyper, which refuses it.
const MAX_HEAD: usize = 16 * 1024;
/// Headers a request served here may carry (with more, it is left to hyper).
const MAX_HEADERS: usize = 48;
/// The largest answer body written here: problem documents of a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;
/// Bytes handed to the kernel per `sendfile` call, so downloads take turns on a worker thread
/// (nginx's `sendfile_max_chunk` defaults to 2 MiB).
#[cfg(target_os = "linux")]
const SLICE: usize = 1 << 20;

/// The kinds of request looked at here.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Download,
    Setup,
}

/// What became of a connection here.
pub enum Served {
    /// It ended: the client closed or asked to, went silent, was sent away, or the server is
    /// stopping.
    Closed,
    /// Hyper serves its next request and the rest: `read` is what was read of them already,
    /// and the first has the setup place it waited for.
    Handover { stream: TcpStream, read: Bytes, place: Option<SetupPlace> },
}

/// What a connection is held to here.
pub struct Front<'a> {
    pub router: &'a Router,
    pub setups: &'a SetupLimit,
    pub header_timeout: Duration,
    pub admitted: &'a Admitted,
}

/// Serves the connection's downloads and its setup's wait, until it closes or brings a request
/// for hyper.
pub async fn serve(
    mut tcp: TcpStream,
    peer: SocketAddr,
    front: Front<'_>,
    stopping: &mut watch::Receiver<bool>,
) -> Served {
    let mut buf = BytesMut::new();
    loop {
        let head = tokio::select! {
            head = tokio::time::timeout(front.header_timeout, read_head(&mut tcp, &mut buf)) => head,
            () = front.admitted.pushed_out() => return Served::Closed,
            _ = stopping.wait_for(|stop| *stop) => return Served::Closed,
        };
        let len = match head {
            Ok(Ok(Head::Download(len))) => len,
            Ok(Ok(Head::Setup)) => {
                // A complete request: like any, it keeps its connection's place in the gate.
                front.admitted.proven();
                return wait_for_place(tcp, buf, &front, stopping).await;
            }
            Ok(Ok(Head::Other)) => return Served::Handover { stream: tcp, read: buf.freeze(), place: None },
            Ok(Ok(Head::Closed) | Err(_)) | Err(_) => return Served::Closed,
        };
        let Some((mut request, close)) = request(&buf[..len]) else {
            // Not one this path serves after all (an HTTP/1.0 client, a body): hyper's.
            return Served::Handover { stream: tcp, read: buf.freeze(), place: None };
        };
        buf.advance(len);
        front.admitted.proven();
        request.extensions_mut().insert(ConnectInfo(peer));
        #[cfg(target_os = "linux")]
        request.extensions_mut().insert(SendfileOffered);
        let response = match front.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let close = close || *stopping.borrow();
        if let Err(e) = answer(&mut tcp, response, close).await {
            tracing::debug!(%peer, error = %e, "artifact download ended");
            return Served::Closed;
        }
        if close {
            let _ = tcp.shutdown().await;
            return Served::Closed;
        }
    }
}

/// A setup's wait for its place, holding nothing but the connection and the bytes read; sent
/// away as the handler would be when none comes free in time.
async fn wait_for_place(
    mut tcp: TcpStream,
    buf: BytesMut,
    front: &Front<'_>,
    stopping: &mut watch::Receiver<bool>,
) -> Served {
    let place = tokio::select! {
        place = front.setups.enter() => place,
        () = front.admitted.pushed_out() => return Served::Closed,
        _ = stopping.wait_for(|stop| *stop) => return Served::Closed,
    };
    match place {
        Some(place) => Served::Handover { stream: tcp, read: buf.freeze(), place: Some(place) },
        None => {
            let refusal = crate::Error::from(baton_core::Error::RateLimited(setup::RETRY_AFTER_SECS)).into_response();
            if answer(&mut tcp, refusal, true).await.is_ok() {
                let _ = tcp.shutdown().await;
            }
            Served::Closed
        }
    }
}

/// What the bytes at the front of a connection are.
enum Head {
    /// A download's complete head, this long.
    Download(usize),
    /// A setup's request, all of it (hyper reads it from the bytes put back).
    Setup,
    /// Something else, or a head this module does not take.
    Other,
    /// Nothing: the client closed.
    Closed,
}

/// Reads until the front of `buf` shows what it is: a download's complete head, a setup's
/// complete request, or something else.
async fn read_head(tcp: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Head> {
    loop {
        let mut undecided = false;
        for (line, kind) in FIRST_LINES {
            let seen = buf.len().min(line.len());
            if buf[..seen] != line[..seen] {
                continue;
            }
            if seen < line.len() {
                undecided = true;
                continue;
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match (request.parse(buf), kind) {
                (Ok(httparse::Status::Complete(len)), Kind::Download) => return Ok(Head::Download(len)),
                // A setup waits for its place only once all of it is here (head and body), so
                // no client holds a place while it sends slowly.
                (Ok(httparse::Status::Complete(len)), Kind::Setup) => match body_length(request.headers) {
                    Some(body) if body <= MAX_HEAD && buf.len() >= len + body => return Ok(Head::Setup),
                    Some(body) if body <= MAX_HEAD => undecided = true,
                    _ => return Ok(Head::Other),
                },
                (Ok(httparse::Status::Partial), _) if buf.len() <= MAX_HEAD => undecided = true,
                // Malformed, too many headers or too long: hyper answers it.
                _ => return Ok(Head::Other),
            }
        }
        if !undecided && !buf.is_empty() {
            return Ok(Head::Other);
        }
        buf.reserve(1024);
        if tcp.read_buf(buf).await? == 0 {
            return Ok(if buf.is_empty() { Head::Closed } else { Head::Other });
        }
    }
}

/// The length of a request's body by its headers; `None` when only hyper can serve it: a body
/// sent in chunks or of an unreadable length, or one the client sends only once told
/// `100 Continue` (`Expect`).
fn body_length(headers: &[httparse::Header<'_>]) -> Option<usize> {
    let mut length = 0;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") || h.name.eq_ignore_ascii_case("expect") {
            return None;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
        }
    }
    Some(length)
}

/// The request in `head` and whether the client asked to close after it; `None` for what this
/// path leaves to hyper: other than HTTP/1.1, a body, an upgrade, an `Expect`.
fn request(head: &[u8]) -> Option<(Request<Body>, bool)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(head).ok()?;
    if parsed.version != Some(1) {
        return None;
    }
    let mut request = Request::builder().method(Method::GET).uri(parsed.path?).version(Version::HTTP_11);
    let mut close = false;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        let body = name == header::CONTENT_LENGTH && h.value != b"0";
        if body || [header::TRANSFER_ENCODING, header::UPGRADE, header::EXPECT].contains(&name) {
            return None;
        }
        if name == header::CONNECTION && value.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("close")) {
            close = true;
        }
        request = request.header(name, value);
    }
    Some((request.body(Body::empty()).ok()?, close))
}

/// Writes `response`: its head, then its bytes from the file when it carries [`Sendfile`], else
/// its body — whole when it is small (an error, a redirect), streamed when it is not (an
/// artifact from a bucket, when devices are not sent to the bucket).
async fn answer(tcp: &mut TcpStream, response: Response<Body>, close: bool) -> io::Result<()> {
    let (mut parts, body) = response.into_parts();
    if let Some(s) = parts.extensions.remove::<Sendfile>() {
        tcp.write_all(&head(parts.status, &mut parts.headers, Some(s.len), close)).await?;
        #[cfg(target_os = "linux")]
        return send_file(tcp, &s.file, s.start, s.len, &s.serving).await;
        #[cfg(not(target_os = "linux"))]
        return Err(io::ErrorKind::Unsupported.into());
    }
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let length = declared.or(axum::body::HttpBody::size_hint(&body).exact());
    if length.is_some_and(|n| n <= MAX_ANSWER as u64) {
        let body = axum::body::to_bytes(body, MAX_ANSWER).await.map_err(io::Error::other)?;
        let mut out = head(parts.status, &mut parts.headers, Some(body.len() as u64), close);
        out.extend_from_slice(&body);
        return tcp.write_all(&out).await;
    }
    tcp.write_all(&head(parts.status, &mut parts.headers, length, close)).await?;
    let (mut body, mut sent) = (body.into_data_stream(), 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(io::Error::other)?;
        sent += chunk.len() as u64;
        match length {
            Some(n) if sent > n => return Err(io::Error::other("the body is longer than its content-length")),
            Some(_) => tcp.write_all(&chunk).await?,
            None if chunk.is_empty() => {}
            None => {
                tcp.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                tcp.write_all(&chunk).await?;
                tcp.write_all(b"\r\n").await?;
            }
        }
    }
    match length {
        Some(n) if sent < n => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended early")),
        Some(_) => Ok(()),
        None => tcp.write_all(b"0\r\n\r\n").await,
    }
}

/// The status line and headers of an answer of `length` bytes (in chunks when not known).
fn head(status: StatusCode, headers: &mut axum::http::HeaderMap, length: Option<u64>, close: bool) -> Vec<u8> {
    for framing in [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONNECTION] {
        headers.remove(framing);
    }
    let reason = status.canonical_reason().unwrap_or("");
    let date = jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S GMT");
    let mut out = format!("HTTP/1.1 {} {reason}\r\ndate: {date}\r\n", status.as_u16());
    match length {
        Some(length) => out.push_str(&format!("content-length: {length}\r\n")),
        None => out.push_str("transfer-encoding: chunked\r\n"),
    }
    if close {
        out.push_str("connection: close\r\n");
    }
    let mut out = out.into_bytes();
    for (name, value) in headers.iter() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Sends `len` bytes of `file` from `start` to the socket with `sendfile(2)`. Bytes the page
/// cache holds are sent from the worker thread (the socket being non-blocking, a call never
/// waits); a slice that must come from the disk first is sent from the blocking pool, so no
/// worker waits for the disk.
#[cfg(target_os = "linux")]
async fn send_file(tcp: &TcpStream, file: &Arc<File>, start: u64, len: u64, serving: &Serving) -> io::Result<()> {
    let (mut at, end) = (start, start.saturating_add(len));
    while at < end {
        let count = usize::try_from(end - at).unwrap_or(usize::MAX).min(SLICE);
        let sent = if in_page_cache(file, at) && in_page_cache(file, at + count as u64 - 1) {
            tcp.async_io(Interest::WRITABLE, || {
                let mut offset = at;
                rustix::fs::sendfile(tcp, file.as_ref(), Some(&mut offset), count).map_err(io::Error::from)
            })
            .await?
        } else {
            tcp.writable().await?;
            let (socket, file) = (tcp.as_fd().try_clone_to_owned()?, file.clone());
            let sent = tokio::task::spawn_blocking(move || {
                let mut offset = at;
                rustix::fs::sendfile(&socket, file.as_ref(), Some(&mut offset), count)
            })
            .await
            .map_err(io::Error::other)?;
            match sent {
                Ok(n) => n,
                Err(rustix::io::Errno::AGAIN) => {
                    // The socket is full: forget its readiness, so the next turn waits for room.
                    let _ = tcp.try_io(Interest::WRITABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if sent == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the artifact's file is shorter than recorded"));
        }
        at += sent as u64;
        serving.sent(sent as u64);
        metrics::counter!("baton_artifact_sendfile_bytes_total").increment(sent as u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_bodiless_http_1_1_requests_are_taken() {
        let ok = b"GET /api/v1/agent/executions/x/artifact HTTP/1.1\r\nhost: a\r\nrange: bytes=0-9\r\n\r\n";
        let (taken, close) = request(ok).expect("taken");
        assert_eq!(taken.headers()["range"], "bytes=0-9");
        assert!(!close);
        let closing = b"GET /api/v1/agent/executions/x/artifact HTTP/1.1\r\nConnection: Close\r\n\r\n";
        assert!(request(closing).expect("taken").1);
        for other in [
            &b"GET /api/v1/agent/executions/x/artifact HTTP/1.0\r\n\r\n"[..],
            b"GET /api/v1/agent/executions/x/artifact HTTP/1.1\r\ncontent-length: 5\r\n\r\n",
            b"GET /api/v1/agent/executions/x/artifact HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET /api/v1/agent/executions/x/artifact HTTP/1.1\r\nupgrade: websocket\r\n\r\n",
        ] {
            assert!(request(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn a_body_is_measured_by_its_length_and_chunks_or_expect_are_left_to_hyper() {
        let header = |name, value| httparse::Header { name, value };
        assert_eq!(body_length(&[header("Host", b"a")]), Some(0));
        assert_eq!(body_length(&[header("Content-Length", b" 42 ")]), Some(42));
        assert_eq!(body_length(&[header("content-length", b"x")]), None);
        assert_eq!(body_length(&[header("Transfer-Encoding", b"chunked")]), None);
        assert_eq!(body_length(&[header("Content-Length", b"9"), header("Expect", b"100-continue")]), None);
    }

    #[test]
    fn an_answer_head_frames_its_body_itself() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("1"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(header::ETAG, HeaderValue::from_static("\"e\""));
        let text = String::from_utf8(head(StatusCode::PARTIAL_CONTENT, &mut headers, Some(10), true)).expect("text");
        assert!(text.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{text}");
        assert!(text.contains("content-length: 10\r\n") && text.contains("connection: close\r\n"), "{text}");
        assert!(text.contains("etag: \"e\"\r\n") && !text.contains("chunked"), "{text}");
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert!(text.ends_with("\r\n\r\n"));
    }
}
