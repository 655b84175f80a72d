//! Remote-support streams opened on a device's live agent connection: what a door asks
//! ([`StreamRequest`]), what it gets back ([`DeviceStream`]: input to the device with the
//! device's credit, output from it), and the flow control around them. The agent session
//! (`agents::session`) owns the stream numbers and the wire; the relay that serves a person
//! (`remote`) holds the other end. Neither imports the other: both meet here.
//!
//! Output the device sends waits here, unread, at most one window per stream
//! ([`streams::WINDOW`]; [`streams::FILE_WINDOW`] on file streams, bulk bytes): the reader
//! hands credit back ([`DeviceStream::consumed`]) only once it has passed the bytes on, so a
//! client that stops reading stops the device's output at that bound.

use std::sync::Arc;

use baton_proto::streams::{self, FileInfo, StreamKind};
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// A door asks a device's session to open a stream.
pub struct StreamRequest {
    pub session_id: String,
    pub user: String,
    pub kind: StreamKind,
    pub reply: oneshot::Sender<Result<DeviceStream, String>>,
}

/// What travels from a door to the agent session about one stream.
#[derive(Debug)]
pub enum StreamInput {
    Data(u32, Bytes),
    Resize(u32, u16, u16),
    /// The reader passed on this many bytes of output: the device may send that much more.
    Consumed(u32, u32),
    Close(u32, String),
}

/// What the device said on a stream.
#[derive(Debug)]
pub enum StreamOutput {
    Data(Bytes),
    /// The stream ended (on the device, or its connection went away); nothing follows.
    Closed {
        reason: String,
        exit_code: Option<i32>,
    },
}

/// The door's end of an open stream: what goes to the device, and what comes from it. The two
/// halves are apart so a relay can wait for the device's credit and for its output at once.
pub struct DeviceStream {
    pub to_device: ToDevice,
    /// What the device says on the stream; `None` once its session is gone without a word.
    pub from_device: mpsc::UnboundedReceiver<StreamOutput>,
    /// For file streams: the path as the device found it when it opened the stream.
    pub file: Option<FileInfo>,
}

/// Input, resizes, credit and the close, to the device. Dropping it closes the stream.
pub struct ToDevice {
    stream: u32,
    input: mpsc::Sender<StreamInput>,
    /// Bytes the device still accepts; the agent session adds what the device credits back.
    credit: Arc<Semaphore>,
    closed: bool,
}

/// The device's connection is gone.
#[derive(Debug)]
pub struct Gone;

impl DeviceStream {
    /// The session's side of a new stream: it keeps `output`'s sender and the credit.
    pub fn new(
        stream: u32,
        input: mpsc::Sender<StreamInput>,
        output: mpsc::UnboundedReceiver<StreamOutput>,
        credit: Arc<Semaphore>,
        file: Option<FileInfo>,
    ) -> Self {
        DeviceStream { to_device: ToDevice { stream, input, credit, closed: false }, from_device: output, file }
    }
}

impl ToDevice {
    /// Sends the first chunk of `data` (at most [`streams::MAX_CHUNK`]) once the device has
    /// credit for it, and leaves the rest in `data`. Cancel-safe: cancelled before it returns,
    /// it took neither bytes nor credit, so a relay can wait on it beside the device's output.
    pub async fn send_chunk(&self, data: &mut Bytes) -> Result<(), Gone> {
        let len = data.len().min(streams::MAX_CHUNK);
        let credit = self.credit.acquire_many(len as u32).await.map_err(|_| Gone)?;
        let slot = self.input.reserve().await.map_err(|_| Gone)?;
        credit.forget();
        slot.send(StreamInput::Data(self.stream, data.split_to(len)));
        Ok(())
    }

    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), Gone> {
        self.input.send(StreamInput::Resize(self.stream, cols, rows)).await.map_err(|_| Gone)
    }

    /// Hands back credit for output passed on.
    pub async fn consumed(&self, bytes: usize) -> Result<(), Gone> {
        self.input.send(StreamInput::Consumed(self.stream, bytes as u32)).await.map_err(|_| Gone)
    }

    /// Ends the stream on the device with a reason (nothing, if it ended there already).
    pub async fn close(mut self, reason: impl Into<String>) {
        self.closed = true;
        let _ = self.input.send(StreamInput::Close(self.stream, reason.into())).await;
    }
}

impl Drop for ToDevice {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.input.try_send(StreamInput::Close(self.stream, "the client went away".into()));
        }
    }
}
