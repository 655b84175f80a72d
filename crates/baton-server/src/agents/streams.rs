//! The remote-support streams of one agent connection: numbering, opening (the agent accepts or
//! refuses each), flow control both ways, and closing — with a reason for the person on the
//! other end whichever side ends it, the connection's loss included. The session loop
//! (`session.rs`) feeds it frames and sends what it returns. The bytes waiting here for their
//! readers are the gauge `baton_remote_buffered_bytes` (at most one window per stream).

use std::{collections::HashMap, sync::Arc};

use baton_proto::{
    agent::{self, AgentMessage, ServerMessage, encode_stream_frame},
    streams::{Flow, StreamOpen},
};
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::connections::streams::{DeviceStream, StreamInput, StreamOutput, StreamRequest};

/// Streams open (or opening) at once on one connection: every TCP connection through a tunnel is
/// one (a browser opens several per page), so room for a few hundred. An idle stream costs a few
/// hundred bytes here; its bytes in flight are bounded by its window.
const MAX_STREAMS: usize = 256;

/// What to send to the agent.
pub enum Out {
    Text(ServerMessage),
    Binary(Vec<u8>),
}

struct Pending {
    reply: oneshot::Sender<Result<DeviceStream, String>>,
    /// The window the server grants on this stream (by its kind).
    window: u32,
    output: mpsc::UnboundedSender<StreamOutput>,
    output_rx: mpsc::UnboundedReceiver<StreamOutput>,
}

struct Open {
    output: mpsc::UnboundedSender<StreamOutput>,
    /// The agent's credit for what the server sends; the door waits on it.
    credit: Arc<Semaphore>,
    /// Both directions' accounts: what the agent sent that the reader has not passed on yet
    /// (at most the stream's window: [`baton_proto::streams::WINDOW`], `FILE_WINDOW` for files),
    /// and what the server sent that the agent has not credited.
    flow: Flow,
}

impl Drop for Open {
    fn drop(&mut self) {
        buffered(-f64::from(self.flow.unread()));
    }
}

/// Moves the gauge of bytes devices sent on remote streams that wait here for their reader.
fn buffered(delta: f64) {
    metrics::gauge!("baton_remote_buffered_bytes").increment(delta);
}

/// The `hello` features that open streams; [`Streams`] keeps which of them the agent named.
const STREAM_FEATURES: [&str; 5] = [
    agent::feature::STREAMS,
    agent::feature::LOGS,
    agent::feature::FILES,
    agent::feature::TUNNELS,
    agent::feature::SCREEN,
];

pub struct Streams {
    /// The kinds of stream the agent said it understands (its `hello` features), one bit each
    /// of [`STREAM_FEATURES`]: a connection keeps no copy of its `hello`'s strings.
    features: u8,
    next: u32,
    /// What doors send on this connection's streams; made with the first stream opened (most
    /// connections never carry one, and a channel costs memory per connection).
    input: Option<(mpsc::Sender<StreamInput>, mpsc::Receiver<StreamInput>)>,
    pending: HashMap<u32, Pending>,
    open: HashMap<u32, Open>,
}

impl Streams {
    pub fn new(features: &[String]) -> Self {
        let features = STREAM_FEATURES
            .iter()
            .enumerate()
            .filter(|(_, known)| features.iter().any(|f| f == *known))
            .fold(0, |bits, (i, _)| bits | 1 << i);
        Streams { features, next: 1, input: None, pending: HashMap::new(), open: HashMap::new() }
    }

    /// Whether the agent named `feature` in its `hello`.
    fn understands(&self, feature: &str) -> bool {
        STREAM_FEATURES.iter().position(|known| *known == feature).is_some_and(|i| self.features & 1 << i != 0)
    }

    /// The next thing a door sends on one of these streams; never, before the first stream.
    pub async fn input(&mut self) -> Option<StreamInput> {
        match &mut self.input {
            Some((_, rx)) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    fn input_sender(&mut self) -> mpsc::Sender<StreamInput> {
        self.input.get_or_insert_with(|| mpsc::channel(64)).0.clone()
    }

    /// A door asks for a stream: the `stream_open` to send, or a refusal told to the door.
    pub fn request(&mut self, request: StreamRequest) -> Option<Out> {
        let needs = request.kind.feature();
        if !self.understands(needs) {
            let what = request.kind.capability();
            let why = if self.understands(agent::feature::STREAMS) {
                format!("this device's agent is too old for remote {what}; update baton-agent")
            } else {
                "this device's agent cannot open remote sessions; update baton-agent".to_owned()
            };
            let _ = request.reply.send(Err(why));
            return None;
        }
        self.pending.retain(|_, p| !p.reply.is_closed());
        if self.pending.len() + self.open.len() >= MAX_STREAMS {
            let _ = request.reply.send(Err(format!("the device already has {MAX_STREAMS} streams open")));
            return None;
        }
        let stream = self.next_number();
        let (output, output_rx) = mpsc::unbounded_channel();
        let window = request.kind.window();
        self.pending.insert(stream, Pending { reply: request.reply, window, output, output_rx });
        let open =
            StreamOpen { stream, session_id: request.session_id, user: request.user, window, kind: request.kind };
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
            AgentMessage::StreamOpened { stream, window, file } => {
                let Some(pending) = self.pending.remove(&stream) else {
                    return Some(close(stream, "the client stopped waiting"));
                };
                let flow = Flow::new(pending.window, window);
                let credit = Arc::new(Semaphore::new(flow.window() as usize));
                let end = DeviceStream::new(stream, self.input_sender(), pending.output_rx, credit.clone(), file);
                if pending.reply.send(Ok(end)).is_err() {
                    // Whoever asked gave up waiting: the device need not keep it open.
                    return Some(close(stream, "the client stopped waiting"));
                }
                self.open.insert(stream, Open { output: pending.output, credit, flow });
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
                if let Some(open) = self.open.get_mut(&stream) {
                    open.credit.add_permits(open.flow.credit(bytes) as usize);
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
        if open.flow.receive(data.len()).is_err() {
            let reason = "the device sent more than its window";
            self.end_one(stream, reason);
            return Ok(Some(close(stream, reason)));
        }
        buffered(data.len() as f64);
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
                let open = self.open.get_mut(&stream)?;
                if open.flow.send(data.len()).is_err() {
                    // The door waits for credit first, so this is a bug here, not the device's.
                    let reason = "the server overran the device's window";
                    self.end_one(stream, reason);
                    return Some(close(stream, reason));
                }
                Some(Out::Binary(encode_stream_frame(stream, &data)))
            }
            StreamInput::Resize(stream, cols, rows) => {
                self.open.contains_key(&stream).then_some(Out::Text(ServerMessage::StreamResize { stream, cols, rows }))
            }
            StreamInput::Consumed(stream, bytes) => {
                let open = self.open.get_mut(&stream)?;
                let bytes = open.flow.pass_on(bytes as usize);
                buffered(-f64::from(bytes));
                (bytes > 0).then_some(Out::Text(ServerMessage::StreamCredit { stream, bytes }))
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

#[cfg(test)]
mod tests {
    use baton_proto::streams;
    use futures::FutureExt;

    use super::*;

    /// A stream the agent accepted with the default window, and the door's end of it.
    fn opened(streams: &mut Streams) -> (u32, DeviceStream) {
        let (reply, mut answer) = oneshot::channel();
        let kind = streams::StreamKind::Terminal { cols: 80, rows: 24, command: vec![] };
        let request = StreamRequest { session_id: "s".into(), user: "u".into(), kind, reply };
        let Some(Out::Text(ServerMessage::StreamOpen(open))) = streams.request(request) else { panic!("no open") };
        assert!(
            streams
                .from_agent(AgentMessage::StreamOpened { stream: open.stream, window: streams::WINDOW, file: None })
                .is_none()
        );
        (open.stream, answer.try_recv().expect("answered").expect("opened"))
    }

    /// The door sends everything its credit allows, as the session would pass it on.
    fn send_all(streams: &mut Streams, door: &DeviceStream) -> usize {
        let mut sent = 0;
        let mut data = Bytes::from(vec![0u8; 4 * streams::WINDOW as usize]);
        while door.to_device.send_chunk(&mut data).now_or_never().is_some() {
            let input = streams.input.as_mut().expect("made").1.try_recv().expect("input");
            assert!(matches!(streams.from_door(input), Some(Out::Binary(_))));
            sent = 4 * streams::WINDOW as usize - data.len();
        }
        sent
    }

    #[test]
    fn a_device_that_sends_past_its_window_loses_the_stream_and_the_reader_is_told() {
        let mut streams = Streams::new(&[agent::feature::STREAMS.to_owned()]);
        let (stream, mut door) = opened(&mut streams);
        let window = Bytes::from(vec![b'x'; streams::WINDOW as usize]);
        assert!(streams.data(stream, window).expect("within the window").is_none());
        let Ok(Some(Out::Text(ServerMessage::StreamClose { reason, .. }))) = streams.data(stream, Bytes::from("!"))
        else {
            panic!("the stream stays open past the window");
        };
        assert_eq!(reason, "the device sent more than its window");
        assert!(
            matches!(door.from_device.try_recv(), Ok(StreamOutput::Data(d)) if d.len() == streams::WINDOW as usize)
        );
        assert!(matches!(door.from_device.try_recv(), Ok(StreamOutput::Closed { reason: r, .. }) if r == reason));
    }

    #[test]
    fn credit_returns_what_was_passed_on_and_never_raises_the_window() {
        let mut streams = Streams::new(&[agent::feature::STREAMS.to_owned()]);
        let (stream, door) = opened(&mut streams);
        assert_eq!(send_all(&mut streams, &door), streams::WINDOW as usize);
        // A device crediting far more than it got gives back only what is in flight.
        streams.from_agent(AgentMessage::StreamCredit { stream, bytes: u32::MAX });
        assert_eq!(send_all(&mut streams, &door), streams::WINDOW as usize);

        // Output the reader passed on is credited to the device, once.
        assert!(streams.data(stream, Bytes::from(vec![0u8; 1000])).expect("data").is_none());
        let credit = streams.from_door(StreamInput::Consumed(stream, 5000));
        assert!(matches!(credit, Some(Out::Text(ServerMessage::StreamCredit { bytes: 1000, .. }))));
        assert!(streams.from_door(StreamInput::Consumed(stream, 5000)).is_none());
    }

    #[test]
    fn data_for_a_stream_never_opened_breaks_the_protocol_and_late_data_is_dropped() {
        let mut streams = Streams::new(&[agent::feature::STREAMS.to_owned()]);
        let (stream, door) = opened(&mut streams);
        assert!(streams.data(stream + 1, Bytes::from("x")).is_err());
        assert!(streams.data(0, Bytes::from("x")).is_err());
        drop(door);
        let input = streams.input.as_mut().expect("made").1.try_recv().expect("the door's close");
        assert!(matches!(streams.from_door(input), Some(Out::Text(ServerMessage::StreamClose { .. }))));
        assert!(matches!(streams.data(stream, Bytes::from("late")), Ok(None)));
    }
}
