//! Live logs: entries of the journal or of a file under `[remote] log_paths`, filtered as the
//! operator asked, one `LogRecord` as JSON per line on the stream.

use std::sync::Arc;

use baton_proto::{agent::AgentMessage, streams::LogQuery};
use tokio::sync::{Semaphore, mpsc};

use super::{Input, Outgoing};
use crate::config::RemoteConfig;

pub(super) async fn run(
    _config: &RemoteConfig,
    stream: u32,
    _query: LogQuery,
    _user: &str,
    _input: mpsc::UnboundedReceiver<Input>,
    _credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
) {
    let reason = "remote logs are not built into this agent yet".to_owned();
    let _ = tx.send(Outgoing::Message(AgentMessage::StreamRefused { stream, reason })).await;
}
