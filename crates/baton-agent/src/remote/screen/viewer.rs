//! The viewer's side of a screen session (noVNC, through the server's stream): the agent greets
//! it as a VNC server of version 3.8 with no authentication (the session's token was its proof,
//! and the real server's password stays on the device), then relays bytes both ways from its
//! ClientInit on: the VNC server's within the server's credit, the viewer's through the
//! view-only filter unless the session controls the screen (then they pass unread: the VNC
//! server is the one that reads them). Either end closing ends the session.

use std::sync::Arc;

use baton_proto::{
    agent::AgentMessage,
    rfb::{SECURITY_NONE, VERSION_3_8, Version, ViewOnly},
    streams::MAX_CHUNK,
};
use bytes::{Buf, Bytes};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::{Semaphore, mpsc},
};

use super::super::{Input, Outgoing};
use super::vnc::Connection;

/// How a direction, or the session, ended.
pub(super) enum End {
    /// The server closed the stream; nothing to tell it.
    ClosedByServer,
    /// Ended for this reason, to be told.
    Because(String),
}

/// The viewer's end of the stream.
pub(super) struct Viewer {
    stream: u32,
    input: mpsc::UnboundedReceiver<Input>,
    credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
    /// Bytes the viewer sent that the handshake has not used yet.
    pending: Bytes,
}

impl Viewer {
    pub(super) fn new(
        stream: u32,
        input: mpsc::UnboundedReceiver<Input>,
        credit: Arc<Semaphore>,
        tx: mpsc::Sender<Outgoing>,
    ) -> Self {
        Viewer { stream, input, credit, tx, pending: Bytes::new() }
    }

    /// Greets the viewer, then relays between it and the VNC server until one ends.
    pub(super) async fn serve(mut self, vnc: Connection, control: bool) -> End {
        // The viewer's ClientInit is read and replaced: it always asks to share the screen, as a
        // viewer asking for it alone would make the VNC server drop everyone else on it (another
        // operator's session included).
        if let Err(end) = self.greet().await {
            return end;
        }
        let (mut reader, mut writer) = tokio::io::split(vnc);
        let Viewer { stream, input, credit, tx, pending } = self;
        let mut filter = (!control).then(ViewOnly::new);
        if let Err(end) = write(&mut writer, &mut None, &[1]).await {
            return end;
        }
        if let Err(end) = write(&mut writer, &mut filter, &pending).await {
            return end;
        }
        let up = to_viewer(stream, &mut reader, credit, tx.clone());
        let down = from_viewer(stream, &mut writer, filter, input, tx);
        tokio::select! {
            end = up => end,
            end = down => end,
        }
    }

    /// The handshake a viewer expects of a VNC server without authentication; the viewer's
    /// ClientInit (its "shared" flag) is what it returns.
    async fn greet(&mut self) -> Result<u8, End> {
        self.send(VERSION_3_8).await?;
        let mut answer = [0u8; 12];
        self.read(&mut answer).await?;
        let version =
            Version::read(&answer).map_err(|e| End::Because(format!("the viewer is not a VNC client: {e}")))?;
        if version == Version::V3_3 {
            self.send(&u32::from(SECURITY_NONE).to_be_bytes()).await?;
        } else {
            self.send(&[1, SECURITY_NONE]).await?;
            let mut chosen = [0u8; 1];
            self.read(&mut chosen).await?;
            if chosen[0] != SECURITY_NONE {
                return Err(End::Because(format!(
                    "the viewer chose security type {}, not the None offered",
                    chosen[0]
                )));
            }
            if version == Version::V3_8 {
                self.send(&0u32.to_be_bytes()).await?;
            }
        }
        let mut client_init = [0u8; 1];
        self.read(&mut client_init).await?;
        Ok(client_init[0])
    }

    /// Sends handshake bytes to the viewer within the server's credit.
    async fn send(&self, bytes: &[u8]) -> Result<(), End> {
        let permit = self.credit.acquire_many(bytes.len() as u32).await.map_err(|_| End::ClosedByServer)?;
        permit.forget();
        let data = Outgoing::Data(self.stream, Bytes::copy_from_slice(bytes));
        self.tx.send(data).await.map_err(|_| End::ClosedByServer)
    }

    /// Fills `buf` from the viewer's bytes, crediting each piece as it is taken.
    async fn read(&mut self, buf: &mut [u8]) -> Result<(), End> {
        let mut filled = 0;
        while filled < buf.len() {
            if self.pending.is_empty() {
                self.pending = match self.input.recv().await {
                    Some(Input::Data(data)) if data.is_empty() => {
                        return Err(End::Because("the viewer left during the handshake".into()));
                    }
                    Some(Input::Data(data)) => {
                        credit(&self.tx, self.stream, data.len()).await?;
                        data
                    }
                    Some(Input::Resize(..)) => continue,
                    Some(Input::Close(_)) | None => return Err(End::ClosedByServer),
                };
            }
            let n = (buf.len() - filled).min(self.pending.len());
            buf[filled..filled + n].copy_from_slice(&self.pending[..n]);
            self.pending.advance(n);
            filled += n;
        }
        Ok(())
    }
}

/// The VNC server's bytes to the viewer, within the server's credit.
async fn to_viewer(
    stream: u32,
    reader: &mut (impl AsyncRead + Unpin),
    credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
) -> End {
    let mut buf = vec![0u8; MAX_CHUNK];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => return End::Because("the VNC server ended the session".into()),
            Ok(n) => n,
            Err(e) => return End::Because(format!("reading from the VNC server failed: {e}")),
        };
        // The credit is closed when the stream ends.
        let Ok(permit) = credit.acquire_many(n as u32).await else { return End::ClosedByServer };
        permit.forget();
        if tx.send(Outgoing::Data(stream, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
            return End::ClosedByServer;
        }
    }
}

/// The viewer's bytes to the VNC server (filtered when viewing), credited back once written.
async fn from_viewer(
    stream: u32,
    writer: &mut (impl AsyncWrite + Unpin),
    mut filter: Option<ViewOnly>,
    mut input: mpsc::UnboundedReceiver<Input>,
    tx: mpsc::Sender<Outgoing>,
) -> End {
    while let Some(input) = input.recv().await {
        match input {
            Input::Data(data) if data.is_empty() => return End::Because("the viewer left".into()),
            Input::Data(data) => {
                if let Err(end) = write(writer, &mut filter, &data).await {
                    return end;
                }
                if let Err(end) = credit(&tx, stream, data.len()).await {
                    return end;
                }
            }
            Input::Resize(..) => {}
            Input::Close(_) => return End::ClosedByServer,
        }
    }
    End::ClosedByServer
}

/// Writes the viewer's `bytes` to the VNC server, what the filter passes of them when viewing.
async fn write(writer: &mut (impl AsyncWrite + Unpin), filter: &mut Option<ViewOnly>, bytes: &[u8]) -> Result<(), End> {
    let mut passed = Vec::new();
    let bytes = match filter {
        Some(filter) => {
            filter.feed(bytes, &mut passed).map_err(|e| End::Because(e.to_string()))?;
            &passed[..]
        }
        None => bytes,
    };
    if bytes.is_empty() {
        return Ok(());
    }
    writer.write_all(bytes).await.map_err(|e| End::Because(format!("writing to the VNC server failed: {e}")))
}

async fn credit(tx: &mpsc::Sender<Outgoing>, stream: u32, len: usize) -> Result<(), End> {
    let credit = AgentMessage::StreamCredit { stream, bytes: len as u32 };
    tx.send(Outgoing::Message(credit)).await.map_err(|_| End::ClosedByServer)
}
