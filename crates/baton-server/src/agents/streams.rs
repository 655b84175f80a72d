//! The remote-support streams of one agent connection: numbering, opening (the agent accepts or
//! refuses each), flow control both ways, and closing — with a reason for the person on the
//! other end whichever side ends it, the connection's loss included. The session loop
//! (`session.rs`) feeds it frames and sends what it returns.

use std::{collections::HashMap, sync::Arc};

use baton_proto::{
    agent::{AgentMessage, ServerMessage, encode_stream_frame},
    streams::{self, StreamOpen},
};
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::connections::streams::{DeviceStream, StreamInput, StreamOutput, StreamRequest};

/// Streams open (or opening) at once on one connection.
const MAX_STREAMS: usize = 32;

/// What to send to the agent.
pub enum Out {
    Text(ServerMessage),
    Binary(Vec<u8>),
}

struct Pending {
    reply: oneshot::Sender<Result<DeviceStream, String>>,
    output: mpsc::UnboundedSender<StreamOutput>,
    output_rx: mpsc::UnboundedReceiver<StreamOutput>,
}

struct Open {
    output: mpsc::UnboundedSender<StreamOutput>,
    /// The agent's credit for what the server sends; the door waits on it.
    credit: Arc<Semaphore>,
    /// The agent's window: credit never grows beyond it.
    window: u32,
    /// Bytes the agent sent that the reader has not passed on yet (at most [`streams::WINDOW`]).
    unread: u32,
}

pub struct Streams {
    /// Whether the agent said it understands streams.
    enabled: bool,
    next: u32,
    input_tx: mpsc::Sender<StreamInput>,
    pub input: mpsc::Receiver<StreamInput>,
    pending: HashMap<u32, Pending>,
    open: HashMap<u32, Open>,
}

impl Streams {
    pub fn new(enabled: bool) -> Self {
        let (input_tx, input) = mpsc::channel(64);
        Streams { enabled, next: 1, input_tx, input, pending: HashMap::new(), open: HashMap::new() }
    }

    /// A door asks for a stream: the `stream_open` to send, or a refusal told to the door.
    pub fn request(&mut self, request: StreamRequest) -> Option<Out> {
        if !self.enabled {
            let why = "this device's agent cannot open remote sessions; update baton-agent";
            let _ = request.reply.send(Err(why.into()));
            return None;
        }
        self.pending.retain(|_, p| !p.reply.is_closed());
        if self.pending.len() + self.open.len() >= MAX_STREAMS {
            let _ = request.reply.send(Err(format!("the device already has {MAX_STREAMS} streams open")));
            return None;
        }
        let stream = self.next_number();
        let (output, output_rx) = mpsc::unbounded_channel();
        self.pending.insert(stream, Pending { reply: request.reply, output, output_rx });
        let open = StreamOpen {
            stream,
            session_id: request.session_id,
            user: request.user,
            window: streams::WINDOW,
            kind: request.kind,
        };
        Some(Out::Text(ServerMessage::StreamOpen(Box::new(open))))
    }

    fn next_number(&mut self) -> u32 {
        loop {
            let n = self.next;
            self.next = self.next.checked_add(1).unwrap_or(1);
            if n != 0 && !self.pending.contains_key(&n) && !self.open.contains_key(&n) {
                return n;
            }
        }
    }

    /// A stream message from the agent.
    pub fn from_agent(&mut self, message: AgentMessage) -> Option<Out> {
        match message {
            AgentMessage::StreamOpened { stream, window } => {
                let Some(pending) = self.pending.remove(&stream) else {
                    return Some(close(stream, "the client stopped waiting"));
                };
                let window = window.clamp(1, 4 * streams::WINDOW);
                let credit = Arc::new(Semaphore::new(window as usize));
                let end = DeviceStream::new(stream, self.input_tx.clone(), pending.output_rx, credit.clone());
                if pending.reply.send(Ok(end)).is_err() {
                    // Whoever asked gave up waiting: the device need not keep it open.
                    return Some(close(stream, "the client stopped waiting"));
                }
                self.open.insert(stream, Open { output: pending.output, credit, window, unread: 0 });
                None
            }
            AgentMessage::StreamRefused { stream, reason } => {
                if let Some(pending) = self.pending.remove(&stream) {
                    let _ = pending.reply.send(Err(format!("the device refused: {reason}")));
                }
                None
            }
            AgentMessage::StreamClosed { stream, reason, exit_code } => {
                if let Some(open) = self.open.remove(&stream) {
                    let _ = open.output.send(StreamOutput::Closed { reason, exit_code });
                } else if let Some(pending) = self.pending.remove(&stream) {
                    let _ = pending.reply.send(Err(reason));
                }
                None
            }
            AgentMessage::StreamCredit { stream, bytes } => {
                if let Some(open) = self.open.get(&stream) {
                    let room = open.window as usize - open.credit.available_permits().min(open.window as usize);
                    open.credit.add_permits((bytes as usize).min(room));
                }
                None
            }
            _ => None,
        }
    }

    /// Bytes from the agent on a stream. Bytes for a stream closed a moment ago are dropped;
    /// for one never opened, the error says so (the agent breaks the protocol).
    pub fn data(&mut self, stream: u32, data: Bytes) -> Result<Option<Out>, String> {
        let Some(open) = self.open.get_mut(&stream) else {
            if stream == 0 || stream >= self.next || self.pending.contains_key(&stream) {
                return Err(format!("data for stream {stream}, which is not open"));
            }
            return Ok(None);
        };
        let len = data.len() as u32;
        if open.unread.saturating_add(len) > streams::WINDOW {
            let reason = "the device sent more than its window";
            self.end_one(stream, reason);
            return Ok(Some(close(stream, reason)));
        }
        open.unread += len;
        if open.output.send(StreamOutput::Data(data)).is_err() {
            self.open.remove(&stream);
            return Ok(Some(close(stream, "the client went away")));
        }
        Ok(None)
    }

    /// Something a door sent about one of its streams.
    pub fn from_door(&mut self, input: StreamInput) -> Option<Out> {
        match input {
            StreamInput::Data(stream, data) => {
                self.open.contains_key(&stream).then(|| Out::Binary(encode_stream_frame(stream, &data)))
            }
            StreamInput::Resize(stream, cols, rows) => {
                self.open.contains_key(&stream).then_some(Out::Text(ServerMessage::StreamResize { stream, cols, rows }))
            }
            StreamInput::Consumed(stream, bytes) => {
                let open = self.open.get_mut(&stream)?;
                open.unread = open.unread.saturating_sub(bytes);
                Some(Out::Text(ServerMessage::StreamCredit { stream, bytes }))
            }
            StreamInput::Close(stream, reason) => {
                let known = self.open.remove(&stream).is_some() || self.pending.remove(&stream).is_some();
                known.then(|| close(stream, &reason))
            }
        }
    }

    fn end_one(&mut self, stream: u32, reason: &str) {
        if let Some(open) = self.open.remove(&stream) {
            let _ = open.output.send(StreamOutput::Closed { reason: reason.into(), exit_code: None });
        }
    }

    /// The connection ended: every stream ends with `reason`.
    pub fn end(&mut self, reason: &str) {
        for (_, open) in self.open.drain() {
            let _ = open.output.send(StreamOutput::Closed { reason: reason.into(), exit_code: None });
        }
        for (_, pending) in self.pending.drain() {
            let _ = pending.reply.send(Err(reason.into()));
        }
    }
}

fn close(stream: u32, reason: &str) -> Out {
    Out::Text(ServerMessage::StreamClose { stream, reason: reason.into() })
}
