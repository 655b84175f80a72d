//! A byte pipe between a client's WebSocket and a device's stream, for the sessions whose
//! bytes the server does not read (a tunnel's TCP connections, a screen's RFB): binary frames
//! both ways, each direction within the other end's pace (the device's credit one way, the
//! client's socket the other), and an empty binary frame as the end of one direction (a TCP
//! half-close), passed on both ways.

use std::{future::Future, time::Duration};

use axum::extract::ws::{Message as WsMessage, WebSocket};
use baton_proto::streams::CREDIT_BATCH;
use bytes::Bytes;
use tokio::time::timeout;

use crate::connections::{DeviceStream, streams::StreamOutput};

/// How a pipe ended, and what went through it.
#[derive(Debug, Clone, Default)]
pub struct Piped {
    pub reason: String,
    /// The client's WebSocket is still open: tell it why before closing.
    pub client_open: bool,
    pub bytes_to_device: u64,
    pub bytes_from_device: u64,
}

/// Pipes bytes until either end closes, the client stops reading for `stalled`, or `closing`
/// completes with a reason (the session closed, the server stops). The device's stream is
/// closed with the reason on the way out.
pub async fn pipe(
    socket: &mut WebSocket,
    stream: DeviceStream,
    stalled: Duration,
    closing: impl Future<Output = String>,
) -> Piped {
    let DeviceStream { to_device, mut from_device, .. } = stream;
    tokio::pin!(closing);
    let mut piped = Piped { client_open: true, ..Piped::default() };
    // Bytes the client sent that the device has not taken yet; the client is read again once
    // they have all gone, so a device slow to take them slows the client down.
    let mut typed = Bytes::new();
    let mut client_done = false;
    // Output passed on and not yet credited back to the device (in batches while more waits).
    let mut passed = 0usize;
    let reason = loop {
        tokio::select! {
            frame = socket.recv(), if typed.is_empty() && !client_done => match frame {
                Some(Ok(WsMessage::Binary(data))) if data.is_empty() => {
                    client_done = true;
                    if to_device.send_chunk(&mut Bytes::new()).await.is_err() {
                        break gone();
                    }
                }
                Some(Ok(WsMessage::Binary(data))) => {
                    piped.bytes_to_device += data.len() as u64;
                    typed = data;
                }
                Some(Ok(WsMessage::Text(_))) => break "the client sent text on a byte stream".to_owned(),
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => {
                    piped.client_open = false;
                    break "the client closed the connection".to_owned();
                }
            },
            sent = to_device.send_chunk(&mut typed), if !typed.is_empty() => {
                if sent.is_err() {
                    break gone();
                }
            }
            out = from_device.recv() => match out {
                Some(StreamOutput::Data(bytes)) => {
                    let len = bytes.len();
                    piped.bytes_from_device += len as u64;
                    tokio::select! {
                        sent = timeout(stalled, socket.send(WsMessage::Binary(bytes))) => match sent {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => {
                                piped.client_open = false;
                                break "the client closed the connection".to_owned();
                            }
                            Err(_) => break "the client stopped reading".to_owned(),
                        },
                        reason = &mut closing => break reason,
                    }
                    passed += len;
                    let batch = passed >= CREDIT_BATCH as usize || from_device.is_empty();
                    if passed > 0 && batch && to_device.consumed(std::mem::take(&mut passed)).await.is_err() {
                        break gone();
                    }
                }
                Some(StreamOutput::Closed { reason, .. }) => break reason,
                None => break gone(),
            },
            reason = &mut closing => break reason,
        }
    };
    to_device.close(reason.clone()).await;
    Piped { reason, ..piped }
}

fn gone() -> String {
    "the device's connection ended".to_owned()
}
