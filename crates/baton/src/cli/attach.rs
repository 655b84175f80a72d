//! The attach WebSocket from the CLI's side: connecting to a session ticket's URL (`ws://`, or
//! `wss://` trusting the web's roots plus the profile's private CA), and waiting for the server's
//! first word — `opened`, or `closed` with the reason the session was refused.

use std::sync::Arc;

use anyhow::Context;
use baton_proto::api::remote::AttachServerMessage;
use futures::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, protocol::WebSocketConfig},
};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest frame accepted from the server (its chunks are at most 16 KiB).
const MAX_FRAME: usize = 1024 * 1024;

/// Opens the attach WebSocket at `url`; `ca_pem` is trusted besides the web's roots.
pub async fn connect(url: &str, ca_pem: Option<&[u8]>) -> anyhow::Result<Ws> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME))
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0);
    let connector = if url.starts_with("wss:") { Some(Connector::Rustls(tls(ca_pem)?)) } else { None };
    // No Nagle: a keystroke is one small frame and must leave at once.
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector).await.map_err(
        |e| match e {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                anyhow::anyhow!("the server refused to attach the session (HTTP {})", response.status())
            }
            other => anyhow::anyhow!("cannot attach to the session: {other}"),
        },
    )?;
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
