//! File transfer: reading a file (from an offset) or a directory (as tar), writing a file
//! (resumable, checked by SHA-256, moved into place whole), and describing a path; only under
//! `[remote] file_paths`, with `..` and symbolic links out of them refused.

use std::sync::Arc;

use baton_proto::{agent::AgentMessage, streams::StreamKind};
use tokio::sync::{Semaphore, mpsc};

use super::{Input, Outgoing};
use crate::config::RemoteConfig;

pub(super) async fn run(
    _config: &RemoteConfig,
    stream: u32,
    _kind: StreamKind,
    _user: &str,
    _input: mpsc::UnboundedReceiver<Input>,
    _credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
) {
    let reason = "remote files are not built into this agent yet".to_owned();
    let _ = tx.send(Outgoing::Message(AgentMessage::StreamRefused { stream, reason })).await;
}
