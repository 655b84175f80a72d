//! Live logs: entries of the journal ([`journal`]) or of a file under `[remote] log_paths`
//! ([`file`]), filtered as the operator asked, one `LogRecord` as JSON per line on the stream.
//! The stream opens once the source could be read (a path outside the allow-list, a bad
//! pattern or a missing `journalctl` is refused with the reason), sends what there is within
//! the server's credit, and — unless it follows — closes with exit code 0 at the end.

mod file;
mod journal;

use std::sync::Arc;

use baton_proto::{
    agent::AgentMessage,
    streams::{self, LogQuery, LogRecord, LogSource},
};
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

use super::{Input, Outgoing};
use crate::config::RemoteConfig;

/// Lines shown first when the query does not say.
pub(super) const DEFAULT_LINES: u32 = 100;
/// A message longer than this is cut (a file's line, a journal entry's message).
pub(super) const MAX_LINE: usize = 64 * 1024;
/// Output gathered before it is sent; a batch larger than this goes out in several rounds.
const BATCH: usize = 64 * 1024;

pub(super) async fn run(
    config: &RemoteConfig,
    stream: u32,
    query: LogQuery,
    user: &str,
    input: mpsc::UnboundedReceiver<Input>,
    credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
) {
    let grep = match query.grep.as_deref().map(pattern).transpose() {
        Ok(grep) => grep,
        Err(reason) => return refuse(&tx, stream, reason).await,
    };
    let sink = Sink { stream, credit, tx: tx.clone(), buf: Vec::new() };
    tracing::info!(user, source = ?query.source, path = ?query.path, units = ?query.units, "remote logs opening");
    match query.source {
        LogSource::EventLog => refuse(&tx, stream, "the Windows Event Log is not supported yet".into()).await,
        LogSource::File => match file::open(config, &query) {
            Ok(opened) => file::run(opened, &query, grep, sink, input).await,
            Err(reason) => refuse(&tx, stream, reason).await,
        },
        LogSource::Journal => match journal::spawn(config, &query, grep).await {
            Ok(journal) => journal::run(journal, sink, input).await,
            Err(reason) => refuse(&tx, stream, reason).await,
        },
    }
}

async fn refuse(tx: &mpsc::Sender<Outgoing>, stream: u32, reason: String) {
    let _ = tx.send(Outgoing::Message(AgentMessage::StreamRefused { stream, reason })).await;
}

/// The operator's pattern, case-insensitive unless it has capitals (as `journalctl --grep`).
fn pattern(grep: &str) -> Result<regex_lite::Regex, String> {
    let insensitive = !grep.chars().any(char::is_uppercase);
    regex_lite::RegexBuilder::new(grep)
        .case_insensitive(insensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("the grep pattern is not a valid regular expression: {e}"))
}

/// Cuts `text` to [`MAX_LINE`] bytes (on a character boundary), saying so.
fn cut(mut text: String) -> String {
    if text.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" […cut]");
    }
    text
}

/// The server closed the stream or its connection went away: stop sending.
pub(super) struct Stopped;

/// The stream's outgoing side: records gathered as JSON lines, sent within the server's credit.
pub(super) struct Sink {
    stream: u32,
    /// The server's credit for this stream; closed when the stream is closed, so a send waiting
    /// for credit ends.
    credit: Arc<Semaphore>,
    tx: mpsc::Sender<Outgoing>,
    buf: Vec<u8>,
}

impl Sink {
    /// Tells the server the stream is open.
    pub(super) async fn opened(&self) -> Result<(), Stopped> {
        let opened = AgentMessage::StreamOpened { stream: self.stream, window: streams::WINDOW, file: None };
        self.tx.send(Outgoing::Message(opened)).await.map_err(|_| Stopped)
    }

    /// Adds a record; sends what is gathered once it is a batch.
    pub(super) async fn push(&mut self, record: &LogRecord) -> Result<(), Stopped> {
        if serde_json::to_writer(&mut self.buf, record).is_ok() {
            self.buf.push(b'\n');
        }
        if self.buf.len() >= BATCH { self.flush().await } else { Ok(()) }
    }

    /// Sends everything gathered, in chunks, each once the server has credit for it.
    pub(super) async fn flush(&mut self) -> Result<(), Stopped> {
        let mut sent = 0;
        while sent < self.buf.len() {
            let n = (self.buf.len() - sent).min(streams::MAX_CHUNK);
            match self.credit.acquire_many(n as u32).await {
                Ok(permits) => permits.forget(),
                Err(_) => return Err(Stopped),
            }
            let chunk = Bytes::copy_from_slice(&self.buf[sent..sent + n]);
            self.tx.send(Outgoing::Data(self.stream, chunk)).await.map_err(|_| Stopped)?;
            sent += n;
        }
        self.buf.clear();
        Ok(())
    }

    /// Ends the stream with `reason` and, when the log ended by itself, its exit code.
    pub(super) async fn close(mut self, reason: String, exit_code: Option<i32>) {
        if exit_code.is_some() && self.flush().await.is_err() {
            return;
        }
        let closed = AgentMessage::StreamClosed { stream: self.stream, reason, exit_code };
        let _ = self.tx.send(Outgoing::Message(closed)).await;
    }
}

/// Waits until the server closes the stream (or its connection goes away); the reason.
pub(super) async fn closed(input: &mut mpsc::UnboundedReceiver<Input>) -> String {
    loop {
        match input.recv().await {
            Some(Input::Close(reason)) => return reason,
            None => return "the connection to the server ended".into(),
            // A log stream takes no input; the server sends none.
            Some(Input::Data(_) | Input::Resize(..)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_case_insensitive_unless_it_has_capitals() {
        let lower = pattern("error").expect("valid");
        assert!(lower.is_match("an ERROR here") && lower.is_match("error"));
        let upper = pattern("Error").expect("valid");
        assert!(upper.is_match("an Error") && !upper.is_match("an error"));
        let bad = pattern("(unclosed").expect_err("invalid");
        assert!(bad.contains("not a valid regular expression"), "{bad}");
    }

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_LINE);
        let cut = cut(long);
        assert!(cut.len() <= MAX_LINE + 16 && cut.ends_with("[…cut]"), "{}", cut.len());
        assert_eq!(super::cut("short".into()), "short");
    }
}
