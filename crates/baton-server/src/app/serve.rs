//! The HTTP listener (the API, the console and the agents' WebSocket door), served connection
//! by connection so each is held to the limits an internet-facing door needs: the connection
//! gate (per address and in total), the PROXY header from a listed balancer, a bounded TLS
//! handshake (the client's certificate, if it sent one, goes with each request), and a header timeout that runs from when the connection opens or goes idle — so
//! slow and silent clients are closed — until a request is complete or the connection becomes
//! a WebSocket (whose own heartbeats then govern it). A plain connection's first requests pass
//! through `front` before hyper: device setups wait for their place there, and devices' artifact
//! downloads are sent by the kernel.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use bytes::Bytes;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::front::{self, Served};
use crate::{
    connections::{
        admission::{self, NotAdmitted},
        gate::{Admitted, ConnectionGate, Refusal},
        proxy::TrustedProxies,
        setup::{SetupLimit, SetupPlace, WaitedPlace},
    },
    state::AppState,
    tls::ClientCertificate,
};

/// What every connection is held to.
#[derive(Clone)]
pub struct Limits {
    pub gate: Arc<ConnectionGate>,
    pub proxies: TrustedProxies,
    /// Device setups wait for their place before hyper takes their connection (`front`).
    pub setups: SetupLimit,
    /// For the PROXY header, the TLS handshake, and each request's headers.
    pub header_timeout: Duration,
}

impl Limits {
    pub fn of(state: &AppState) -> Self {
        Self {
            gate: state.gate.clone(),
            proxies: state.proxies.clone(),
            setups: state.setups.clone(),
            header_timeout: state.settings.header_timeout(),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then lets requests in flight
/// finish, for up to [`DRAIN`] (upgraded connections are on their own by then: their sessions
/// are told to end through the application state).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next() => continue,
            accepted = admission::accept(&listener, "http") => accepted,
        };
        let (router, limits, tls, stopping) = (router.clone(), limits.clone(), tls.clone(), stopping.clone());
        connections.spawn(connection(tcp, peer, tls, router, limits, stopping));
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "requests still running after {DRAIN:?}; closing them");
        connections.shutdown().await;
    }
}

/// How long requests in flight may run on after shutdown begins.
const DRAIN: Duration = Duration::from_secs(30);

/// One connection, from accept to close.
async fn connection(
    mut tcp: TcpStream,
    from: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let (peer, admitted) =
        match admission::admit(&limits.gate, &limits.proxies, &mut tcp, from, limits.header_timeout).await {
            Ok((peer, admitted)) => (peer, Arc::new(admitted)),
            Err(NotAdmitted::NoClient) => return,
            Err(NotAdmitted::Refused(refusal, peer)) => return refuse(tcp, tls.is_some(), refusal, peer).await,
        };
    match tls {
        None => {
            let front = front::Front {
                router: &router,
                setups: &limits.setups,
                header_timeout: limits.header_timeout,
                admitted: &admitted,
            };
            let (stream, place) = match front::serve(tcp, peer, front, &mut stopping).await {
                Served::Closed => return,
                Served::Handover { stream, read, place } => (Holding::new(stream, read, &admitted), place),
            };
            // Boxed: the connection's task stays small while it waits in `front`.
            Box::pin(http(stream, peer, None, place, router, &limits, stopping)).await
        }
        Some(acceptor) => {
            let handshake = tokio::select! {
                done = tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)) => done,
                () = admitted.pushed_out() => return,
            };
            match handshake {
                Ok(Ok(stream)) => {
                    let certificate = ClientCertificate::of(stream.get_ref().1);
                    let stream = Holding::new(stream, Bytes::new(), &admitted);
                    Box::pin(http(stream, peer, certificate, None, router, &limits, stopping)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// HTTP/1.1 on an admitted connection, with upgrades (the agents' WebSocket); the first request
/// carries the setup `place` its connection waited for in `front`, if it did.
#[allow(clippy::too_many_arguments)]
async fn http<S>(
    stream: Holding<S>,
    peer: SocketAddr,
    certificate: Option<ClientCertificate>,
    place: Option<SetupPlace>,
    router: Router,
    limits: &Limits,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let admitted = stream.place.clone();
    let held = admitted.clone();
    let waited = std::sync::Mutex::new(place);
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        // A complete request's headers: the connection has shown it is a real client.
        held.proven();
        if let Some(place) = waited.lock().ok().and_then(|mut p| p.take()) {
            request.extensions_mut().insert(WaitedPlace::new(place));
        }
        request.extensions_mut().insert(ConnectInfo(peer));
        if let Some(certificate) = &certificate {
            request.extensions_mut().insert(certificate.clone());
        }
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                }
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !draining => {
                // Finish the request in flight, then close.
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            () = admitted.pushed_out() => {
                return tracing::debug!(%peer, "closed to make room for a newer connection");
            }
        }
    }
}

/// A connection's stream as hyper reads it: what `front` read of it already comes first, and it
/// holds the connection's place in the gate for as long as it lives (through an upgrade too: a
/// WebSocket keeps counting).
struct Holding<S> {
    stream: S,
    read: Bytes,
    place: Arc<Admitted>,
}

impl<S> Holding<S> {
    fn new(stream: S, read: Bytes, place: &Arc<Admitted>) -> Self {
        Self { stream, read, place: place.clone() }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Holding<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read.split_to(n));
        if this.read.is_empty() {
            // Let the buffer go: a WebSocket lives on for hours.
            this.read = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Holding<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Turns a connection away: on plain HTTP with a `503` saying why (a TLS client gets the
/// connection closed; there is no handshake to answer in).
async fn refuse(mut tcp: TcpStream, tls: bool, refusal: Refusal, peer: SocketAddr) {
    metrics::counter!("baton_connections_refused_total").increment(1);
    tracing::debug!(%peer, %refusal, "connection refused");
    if tls {
        return;
    }
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": format!("{refusal}; try again later"),
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 5\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await
    .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
}
