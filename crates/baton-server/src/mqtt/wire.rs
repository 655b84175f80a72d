//! Bytes in and out of one MQTT connection: a read buffer that holds nothing while the
//! connection is idle, packets decoded under the size limit, and an output buffer written
//! with a deadline (a client that stops reading is dropped, never waited on).

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use baton_proto::mqtt::{self, DecodeError, Packet, Version};
use futures::FutureExt;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    time::timeout,
};

/// How long one write may take before the client counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// Read buffers larger than this are given back once drained.
const KEEP_BUFFER: usize = 4096;
/// An idle connection's first read: most packets of a device fit; a larger burst goes on into
/// a heap buffer.
const FIRST_READ: usize = 1024;

pub(super) struct Wire<S> {
    pub stream: S,
    pub version: Version,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Largest packet accepted from the client.
    pub max_in: usize,
    /// Largest packet the client accepts (MQTT 5 `Maximum Packet Size`).
    pub max_out: usize,
}

/// Why the connection cannot go on.
#[derive(Debug)]
pub(super) enum WireError {
    Closed,
    Io,
    Decode(DecodeError),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(stream: S, max_in: usize) -> Self {
        Self { stream, version: Version::V311, input: Vec::new(), output: Vec::new(), max_in, max_out: usize::MAX }
    }

    /// The next complete packet already in the buffer, if any.
    pub fn next_buffered(&mut self, connected: bool) -> Result<Option<Packet>, WireError> {
        let version = connected.then_some(self.version);
        match mqtt::decode(&self.input, version, self.max_in) {
            Ok(Some((packet, used))) => {
                self.input.drain(..used);
                if self.input.is_empty() {
                    self.input = Vec::new();
                }
                Ok(Some(packet))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(WireError::Decode(e)),
        }
    }

    /// Reads more bytes. Cancel-safe: nothing is lost when another branch of a `select!` wins.
    /// With nothing buffered (an idle connection), it reads into a buffer on the stack of each
    /// poll, not of the future: an idle connection holds no read buffer at all, neither on the
    /// heap nor in its task's waiting state.
    pub async fn fill(&mut self) -> Result<(), WireError> {
        let read = if self.input.is_empty() {
            let n = std::future::poll_fn(|cx| self.poll_first(cx)).await;
            if let Ok(FIRST_READ) = n {
                // A burst: take what else is already there now, without waiting for more.
                self.input.reserve(4096);
                while let Some(Ok(1..)) = self.stream.read_buf(&mut self.input).now_or_never() {
                    if self.input.len() >= 64 * 1024 {
                        break;
                    }
                    if self.input.capacity() - self.input.len() < 512 {
                        self.input.reserve(self.input.len());
                    }
                }
            }
            n
        } else {
            if self.input.capacity() - self.input.len() < 512 {
                self.input.reserve(self.input.len().clamp(1024, 64 * 1024));
            }
            self.stream.read_buf(&mut self.input).await
        };
        match read {
            Ok(0) => Err(WireError::Closed),
            Ok(_) => Ok(()),
            Err(_) => Err(WireError::Io),
        }
    }

    /// One read attempt into a buffer that lives only for this poll (a pending read has taken
    /// nothing, so the next poll may use another buffer); what came is kept in `input`.
    fn poll_first(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let mut first = [0u8; FIRST_READ];
        let mut buf = ReadBuf::new(&mut first);
        match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                self.input.extend_from_slice(buf.filled());
                Poll::Ready(Ok(buf.filled().len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads until a whole packet is there.
    pub async fn read(&mut self, connected: bool) -> Result<Packet, WireError> {
        loop {
            if let Some(packet) = self.next_buffered(connected)? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    /// Queues a packet; packets over the client's limit are dropped (MQTT 5 forbids sending them).
    pub fn queue(&mut self, packet: &Packet) -> bool {
        let start = self.output.len();
        mqtt::encode(packet, self.version, &mut self.output);
        if self.output.len() - start > self.max_out {
            self.output.truncate(start);
            return false;
        }
        true
    }

    /// Writes what was queued.
    pub async fn flush(&mut self) -> Result<(), WireError> {
        if self.output.is_empty() {
            return Ok(());
        }
        let written = timeout(SEND_TIMEOUT, async {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await
        })
        .await;
        self.output.clear();
        if self.output.capacity() > KEEP_BUFFER {
            self.output = Vec::new();
        }
        match written {
            Ok(Ok(())) => Ok(()),
            _ => Err(WireError::Io),
        }
    }

    /// Sends one packet now and closes the write side (refusals, the last DISCONNECT).
    pub async fn finish(&mut self, packet: Option<&Packet>) {
        if let Some(p) = packet {
            self.queue(p);
        }
        let _ = self.flush().await;
        let _ = timeout(Duration::from_secs(2), self.stream.shutdown()).await;
    }
}
