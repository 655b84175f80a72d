//! One tunnel connection as a byte stream an HTTP client reads and writes (`AsyncRead +
//! AsyncWrite`): an in-memory duplex pipe whose far end a task relays to the device's stream —
//! each chunk sent within the device's credit, credit handed back once the device's bytes are
//! in the pipe, a shut-down write passed on as the end of that direction (an empty data frame)
//! and the device's end of its direction as a shut-down write. The connection counts as one of
//! the session's while it lasts, and ends with the session.

use std::sync::Arc;

use baton_proto::streams::MAX_CHUNK;
use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, DuplexStream},
    sync::oneshot,
};

use super::Tunnel;
use crate::{
    connections::{DeviceStream, streams::StreamOutput},
    remote::{NotOpened, Relay},
};

/// Bytes the pipe holds each way; a device's chunk is at most 16 KiB.
const PIPE_BYTES: usize = 64 * 1024;

/// Opens a connection through `tunnel` to its port on the device.
pub(super) async fn connect(app: &Relay, tunnel: Arc<Tunnel>) -> Result<DuplexStream, NotOpened> {
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let (opened_tx, opened) = oneshot::channel();
    let app = app.clone();
    tokio::spawn(async move {
        let mut connection = match tunnel.connect(&app).await {
            Ok(connection) => connection,
            Err(not) => {
                let _ = opened_tx.send(Err(not));
                return;
            }
        };
        let Some(stream) = connection.take_stream() else { return };
        if opened_tx.send(Ok(())).is_err() {
            return;
        }
        let (to_device, from_device) = relay(theirs, stream, tunnel.ended()).await;
        connection.count(to_device, from_device);
    });
    opened.await.unwrap_or(Err(NotOpened::Gone))?;
    Ok(ours)
}

/// Relays between the pipe's far end and the device's stream until the device's stream ends,
/// the pipe's reader goes away, or `closing` completes; the bytes each way.
async fn relay(pipe: DuplexStream, stream: DeviceStream, closing: impl Future<Output = String>) -> (u64, u64) {
    let DeviceStream { to_device, mut from_device, .. } = stream;
    let (mut reader, mut writer) = tokio::io::split(pipe);
    tokio::pin!(closing);
    let (mut sent, mut received) = (0u64, 0u64);
    let mut buffer = BytesMut::new();
    // Bytes read from the client that the device has not taken yet; the pipe is read again
    // once they have all gone, so a device slow to take them slows the client down.
    let mut pending = Bytes::new();
    let mut client_done = false;
    let reason = loop {
        buffer.reserve(MAX_CHUNK);
        tokio::select! {
            read = reader.read_buf(&mut buffer), if pending.is_empty() && !client_done => match read {
                Ok(0) | Err(_) => {
                    client_done = true;
                    if to_device.send_chunk(&mut Bytes::new()).await.is_err() {
                        break "the device's connection ended".to_owned();
                    }
                }
                Ok(n) => {
                    sent += n as u64;
                    pending = buffer.split().freeze();
                }
            },
            taken = to_device.send_chunk(&mut pending), if !pending.is_empty() => {
                if taken.is_err() {
                    break "the device's connection ended".to_owned();
                }
            }
            out = from_device.recv() => match out {
                Some(StreamOutput::Data(bytes)) if bytes.is_empty() => {
                    let _ = writer.shutdown().await;
                }
                Some(StreamOutput::Data(bytes)) => {
                    received += bytes.len() as u64;
                    tokio::select! {
                        written = writer.write_all(&bytes) => if written.is_err() {
                            break "the client went away".to_owned();
                        },
                        reason = &mut closing => break reason,
                    }
                    if to_device.consumed(bytes.len()).await.is_err() {
                        break "the device's connection ended".to_owned();
                    }
                }
                Some(StreamOutput::Closed { reason, .. }) => break reason,
                None => break "the device's connection ended".to_owned(),
            },
            reason = &mut closing => break reason,
        }
    };
    to_device.close(reason).await;
    (sent, received)
}
