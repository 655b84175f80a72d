//! One local TCP connection through a tunnel session: a WebSocket of its own to the server's
//! `/api/v1/sessions/{session}/connect`, and bytes piped both ways. Binary frames are the bytes;
//! an empty one ends its sender's direction (a TCP half-close), so a client that shuts down its
//! writing side (`curl` after its request, `psql` at `\q`) still reads the answer to its end. The
//! server's close frame says why a connection ended when it did not end by itself.

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};
use tokio_tungstenite::tungstenite::{Message, protocol::CloseFrame};

use super::super::attach::Ws;

/// The most read from the local socket into one frame: the chunk the server passes to the
/// device (it takes frames up to 64 KiB, and would cut a larger one into such chunks).
const CHUNK: usize = baton_proto::streams::MAX_CHUNK;

/// Pipes `tcp` through `ws` until both directions have ended or either side fails; the reason
/// when it did not end by itself (both sides done).
pub async fn pipe(tcp: TcpStream, ws: Ws) -> Result<(), String> {
    // Each frame leaves at once; the bytes were already gathered by the client that wrote them.
    let _ = tcp.set_nodelay(true);
    let (reader, writer) = tcp.into_split();
    let (sink, frames) = ws.split();
    let up = to_device(reader, sink);
    let down = to_local(frames, writer);
    tokio::pin!(up, down);
    let mut sent_all = false;
    loop {
        tokio::select! {
            sent = &mut up, if !sent_all => match sent {
                Ok(()) => sent_all = true,
                Err(reason) => return Err(reason),
            },
            // The WebSocket ended: the server is done with this connection.
            ended = &mut down => return ended,
        }
    }
}

/// The local socket's bytes to the server; an empty frame at its end of file. A read that fails
/// (the client reset the connection) closes the WebSocket, saying so.
async fn to_device(mut reader: OwnedReadHalf, mut sink: impl SinkExt<Message> + Unpin) -> Result<(), String> {
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        buf.reserve(CHUNK);
        let n = match reader.read_buf(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let reason = format!("the local connection failed: {e}");
                let frame =
                    CloseFrame { code: 1000.into(), reason: reason.chars().take(120).collect::<String>().into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return Err(reason);
            }
        };
        // On end of file this is the empty frame: the device's side reads end of file too.
        if sink.send(Message::Binary(buf.split().freeze())).await.is_err() {
            return Err("the connection to the server was lost".into());
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// The server's frames to the local socket: bytes are written, the empty frame shuts the local
/// socket's writing side down, the close frame ends the connection (with its reason, unless the
/// device's side had ended: then it ended by itself). A local client that went away ends it too.
async fn to_local(
    mut frames: impl futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    mut writer: OwnedWriteHalf,
) -> Result<(), String> {
    let mut received_all = false;
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(Message::Binary(bytes)) if bytes.is_empty() => {
                received_all = true;
                let _ = writer.shutdown().await;
            }
            Ok(Message::Binary(bytes)) => {
                // The local client went away (a browser does, often): nothing to tell.
                if writer.write_all(&bytes).await.is_err() {
                    return Ok(());
                }
            }
            Ok(Message::Close(frame)) => {
                let reason = frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty());
                return match reason {
                    _ if received_all => Ok(()),
                    Some(reason) => Err(reason),
                    None => Err("the server closed the connection".into()),
                };
            }
            Ok(_) => {}
            Err(e) => return Err(format!("the connection to the server was lost: {e}")),
        }
    }
    if received_all { Ok(()) } else { Err("the server ended the connection without a word".into()) }
}
