//! Tunnels: one TCP connection per stream, to a host and port the device's policy allows
//! (`[remote] tunnel_ports`, `tunnel_hosts`). Bytes go both ways within the flow control; an
//! empty data frame is the end of one direction (a half-close) both ways, and the stream closes
//! once both directions have ended, the server closes it, or the connection fails.

use std::{sync::Arc, time::Duration};

use baton_proto::{
    agent::AgentMessage,
    streams::{CREDIT_BATCH, FILE_WINDOW, MAX_CHUNK},
};
use bytes::{BufMut, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{Semaphore, mpsc},
    time::timeout,
};

use super::{Input, Outgoing};
use crate::config::RemoteConfig;

/// How long the device waits for the target to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the policy lets a tunnel reach `host:port`; the refusal says how to allow it.
pub(super) fn allowed(config: &RemoteConfig, host: &str, port: u16) -> Result<(), String> {
    if config.tunnel_ports.is_empty() {
        return Err("tunnels are off on this device; its owner can allow ports with `[remote] tunnel_ports = [...]` in the agent's config".into());
    }
    if !config.tunnel_ports.contains(&port) {
        return Err(format!(
            "port {port} is not one this device tunnels to; its `[remote] tunnel_ports` allow {:?}",
            config.tunnel_ports
        ));
    }
    if !config.tunnel_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(format!(
            "host `{host}` is not one this device tunnels to; its `[remote] tunnel_hosts` allow {:?}",
            config.tunnel_hosts
        ));
    }
    Ok(())
}

/// How one direction ended.
enum Half {
    /// Its sender ended it (EOF, or the server's empty frame).
    Done,
    /// The server closed the stream; nothing to tell it.
    ClosedByServer,
    Failed(String),
}

pub(super) async fn run(
    stream: u32,
    host: &str,
    port: u16,
    input: mpsc::UnboundedReceiver<Input>,
    credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
) {
    let tcp = match timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return refuse(&tx, stream, format!("cannot connect to {host}:{port} on the device: {e}")).await,
        Err(_) => {
            let reason = format!("{host}:{port} did not accept a connection within {} s", CONNECT_TIMEOUT.as_secs());
            return refuse(&tx, stream, reason).await;
        }
    };
    let _ = tcp.set_nodelay(true);
    let opened = AgentMessage::StreamOpened { stream, window: FILE_WINDOW, file: None };
    if tx.send(Outgoing::Message(opened)).await.is_err() {
        return;
    }
    let (reader, writer) = tcp.into_split();
    let up = to_server(stream, reader, credit, tx.clone());
    let down = to_target(stream, writer, input, tx.clone());
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    let reason = loop {
        tokio::select! {
            half = &mut up, if !up_done => match half {
                Half::Done if down_done => break "the connection closed".to_owned(),
                Half::Done => up_done = true,
                Half::ClosedByServer => return,
                Half::Failed(reason) => break reason,
            },
            half = &mut down, if !down_done => match half {
                Half::Done if up_done => break "the connection closed".to_owned(),
                Half::Done => down_done = true,
                Half::ClosedByServer => return,
                Half::Failed(reason) => break reason,
            },
        }
    };
    let closed = AgentMessage::StreamClosed { stream, reason, exit_code: None };
    let _ = tx.send(Outgoing::Message(closed)).await;
}

/// The target's bytes to the server, within its credit; an empty frame at the target's EOF.
async fn to_server(
    stream: u32,
    mut reader: tokio::net::tcp::OwnedReadHalf,
    credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
) -> Half {
    let mut buf = BytesMut::new();
    loop {
        // Read straight into the chunk that is sent (no copy), at most one chunk.
        buf.reserve(MAX_CHUNK);
        let n = match reader.read_buf(&mut (&mut buf).limit(MAX_CHUNK)).await {
            Ok(n) => n,
            Err(e) => return Half::Failed(format!("reading from the target failed: {e}")),
        };
        // The credit is closed when the stream ends.
        let Ok(permit) = credit.acquire_many(n as u32).await else { return Half::ClosedByServer };
        permit.forget();
        if tx.send(Outgoing::Data(stream, buf.split().freeze())).await.is_err() {
            return Half::ClosedByServer;
        }
        if n == 0 {
            return Half::Done;
        }
    }
}

/// The server's bytes to the target, credited back once written (in batches while more wait);
/// its empty frame shuts the target's side down.
async fn to_target(
    stream: u32,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut input: mpsc::UnboundedReceiver<Input>,
    tx: mpsc::Sender<Outgoing>,
) -> Half {
    let mut uncredited = 0u32;
    while let Some(next) = input.recv().await {
        match next {
            Input::Data(data) if data.is_empty() => {
                let _ = writer.shutdown().await;
                return Half::Done;
            }
            Input::Data(data) => {
                if let Err(e) = writer.write_all(&data).await {
                    return Half::Failed(format!("writing to the target failed: {e}"));
                }
                uncredited += data.len() as u32;
                if uncredited >= CREDIT_BATCH || input.is_empty() {
                    let credit = AgentMessage::StreamCredit { stream, bytes: std::mem::take(&mut uncredited) };
                    if tx.send(Outgoing::Message(credit)).await.is_err() {
                        return Half::ClosedByServer;
                    }
                }
            }
            Input::Resize(..) => {}
            Input::Close(_) => return Half::ClosedByServer,
        }
    }
    Half::ClosedByServer
}

async fn refuse(tx: &mpsc::Sender<Outgoing>, stream: u32, reason: String) {
    tracing::info!(%reason, "tunnel connection refused");
    let _ = tx.send(Outgoing::Message(AgentMessage::StreamRefused { stream, reason })).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_ports_and_hosts_are_tunnelled_to() {
        let none = RemoteConfig::default();
        assert!(allowed(&none, "localhost", 80).expect_err("off").contains("tunnel_ports = [...]"));
        let config = RemoteConfig { tunnel_ports: vec![80, 5432], ..RemoteConfig::default() };
        assert_eq!(allowed(&config, "localhost", 80), Ok(()));
        assert_eq!(allowed(&config, "127.0.0.1", 5432), Ok(()));
        assert!(allowed(&config, "localhost", 22).expect_err("port").contains("port 22"));
        assert!(allowed(&config, "10.0.0.7", 80).expect_err("host").contains("host `10.0.0.7`"));
    }
}
