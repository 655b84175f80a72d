//! Screen sessions: the device's VNC server relayed to the server's screen stream.

use std::sync::Arc;

use baton_proto::agent::AgentMessage;
use tokio::sync::{Semaphore, mpsc};

use super::{Input, Outgoing};
use crate::config::RemoteConfig;

pub(super) async fn run(
    _config: &RemoteConfig,
    stream: u32,
    _control: bool,
    _user: &str,
    _input: mpsc::UnboundedReceiver<Input>,
    _credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
) {
    let reason = "screen sessions are not ready on this agent yet".to_owned();
    let _ = tx.send(Outgoing::Message(AgentMessage::StreamRefused { stream, reason })).await;
}
