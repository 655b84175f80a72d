//! The session WebSockets from the CLI's side: connecting to a session ticket's URL (`ws://`, or
//! `wss://` trusting the web's roots plus the profile's private CA) — or to a route that takes
//! the caller's token, as a tunnel's connections do — and waiting for the server's first word:
//! `opened`, or `closed` with the reason the session was refused.

use std::sync::Arc;

use anyhow::Context;
use baton_proto::api::{problem::Problem, remote::AttachServerMessage};
use futures::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream,
    tungstenite::{
        self, Message,
        client::IntoClientRequest,
        http::{HeaderValue, header::AUTHORIZATION},
        protocol::WebSocketConfig,
    },
};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest frame accepted from the server (its chunks are at most 16 KiB).
const MAX_FRAME: usize = 1024 * 1024;

/// Opens the attach WebSocket at `url`; `ca_pem` is trusted besides the web's roots.
pub async fn connect(url: &str, ca_pem: Option<&[u8]>) -> anyhow::Result<Ws> {
    open(url, None, ca_pem).await.map_err(|e| match e {
        Refusal::Http(status, _) => anyhow::anyhow!("the server refused to attach the session (HTTP {status})"),
        Refusal::Other(e) => anyhow::anyhow!("cannot attach to the session: {e}"),
    })
}

/// Why a WebSocket did not open.
pub enum Refusal {
    /// The server answered with this status, and its problem's detail when it gave one.
    Http(u16, Option<String>),
    Other(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Http(status, Some(detail)) => write!(f, "the server refused (HTTP {status}): {detail}"),
            Refusal::Http(status, None) => write!(f, "the server refused (HTTP {status})"),
            Refusal::Other(e) => f.write_str(e),
        }
    }
}

/// Opens a WebSocket at `url`, with `bearer` as the `Authorization` when given (the routes that
/// take the caller's own credentials, as the REST API does).
pub async fn open(url: &str, bearer: Option<&str>, ca_pem: Option<&[u8]>) -> Result<Ws, Refusal> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME))
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0);
    let connector = match url.starts_with("wss:") {
        true => Some(Connector::Rustls(tls(ca_pem).map_err(|e| Refusal::Other(format!("{e:#}")))?)),
        false => None,
    };
    let mut request = url.into_client_request().map_err(|e| Refusal::Other(e.to_string()))?;
    if let Some(token) = bearer {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Refusal::Other("the token is not a valid header value".into()))?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    // No Nagle: a keystroke is one small frame and must leave at once.
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector)
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(response) => {
                let detail = response.body().as_deref().and_then(|b| serde_json::from_slice::<Problem>(b).ok());
                Refusal::Http(response.status().as_u16(), detail.map(|p| p.detail.unwrap_or(p.title)))
            }
            other => Refusal::Other(other.to_string()),
        })?;
    Ok(ws)
}

/// The session's start as the server tells it.
pub enum Start {
    Opened,
    /// Refused (by the device, its owner's consent hook, a limit…), with the reason.
    Refused(String),
}

/// Waits for the server's `opened` or `closed`, ignoring anything before it.
pub async fn start(ws: &mut Ws) -> anyhow::Result<Start> {
    while let Some(frame) = ws.next().await {
        match frame.context("the attach WebSocket failed")? {
            Message::Text(text) => match serde_json::from_str(&text) {
                Ok(AttachServerMessage::Opened { .. }) => return Ok(Start::Opened),
                Ok(AttachServerMessage::Closed { reason, .. }) => return Ok(Start::Refused(reason)),
                Err(_) => {}
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    anyhow::bail!("the server closed the attach WebSocket without saying why")
}

fn tls(ca_pem: Option<&[u8]>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_pemfile::certs(&mut ca_pem.unwrap_or_default()) {
        roots.add(cert.context("the profile's CA certificate")?).context("the profile's CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
