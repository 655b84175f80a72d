//! The journal, through `journalctl --output=json` (the system's, or `[remote]
//! journal_directory`): units, priority, time and lines become its options, the pattern its
//! `--grep` when it was built with PCRE2 (else the agent filters the messages), and each entry
//! a `LogRecord`. The child is killed when the stream ends.

use std::process::Stdio;

use baton_proto::streams::{LogQuery, LogRecord};
use chrono::DateTime;
use regex_lite::Regex;
use serde_json::Value;
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, ChildStdout, Command},
    sync::mpsc,
    task::JoinHandle,
};

use super::{DEFAULT_LINES, Input, Sink, closed, cut};
use crate::config::RemoteConfig;

/// A journal entry as JSON longer than this is skipped (its message alone may be 64 KiB).
const MAX_ENTRY: usize = 1 << 20;
/// What is kept of journalctl's complaints, to say why it failed.
const MAX_STDERR: u64 = 4096;

/// A running `journalctl`.
pub(super) struct Journal {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: JoinHandle<String>,
    /// The pattern, when `journalctl` cannot apply it itself.
    filter: Option<Regex>,
}

/// Starts `journalctl` for `query`; the reason when it cannot.
pub(super) async fn spawn(config: &RemoteConfig, query: &LogQuery, grep: Option<Regex>) -> Result<Journal, String> {
    let version = match Command::new("journalctl").arg("--version").stdin(Stdio::null()).output().await {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("journalctl is not installed on this device, so it has no journal to read; \
                        read a log file instead (source=file)"
                .into());
        }
        Err(e) => return Err(format!("journalctl cannot run: {e}")),
    };
    if let Some(dir) = &config.journal_directory
        && !dir.is_dir()
    {
        return Err(format!(
            "the journal directory {} does not exist; fix `[remote] journal_directory` in the agent's config",
            dir.display()
        ));
    }
    let pcre = version.contains("+PCRE2");
    let mut command = Command::new("journalctl");
    command.args(arguments(config, query, pcre, chrono::Utc::now().timestamp()));
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| format!("journalctl cannot start: {e}"))?;
    let stdout = BufReader::new(child.stdout.take().ok_or("journalctl has no output")?);
    let stderr = child.stderr.take().ok_or("journalctl has no error output")?;
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.take(MAX_STDERR).read_to_string(&mut text).await;
        text
    });
    let filter = if pcre { None } else { grep };
    Ok(Journal { child, stdout, stderr, filter })
}

/// `journalctl`'s arguments for `query` (`now` in Unix seconds, for `since_secs`).
fn arguments(config: &RemoteConfig, query: &LogQuery, pcre: bool, now: i64) -> Vec<String> {
    let mut args = vec!["--output=json".to_owned(), "--all".into(), "--no-pager".into(), "--quiet".into()];
    if let Some(dir) = &config.journal_directory {
        args.push(format!("--directory={}", dir.display()));
    }
    // `--unit=…` rather than `-u …`, so a unit cannot pass for an option.
    args.extend(query.units.iter().map(|u| format!("--unit={u}")));
    if let Some(priority) = query.priority {
        args.push(format!("--priority={priority}"));
    }
    if let Some(secs) = query.since_secs {
        args.push(format!("--since=@{}", now.saturating_sub(secs.min(i64::MAX as u64) as i64)));
    }
    match (query.lines, query.since_secs) {
        (Some(lines), _) => args.push(format!("--lines={lines}")),
        (None, None) => args.push(format!("--lines={DEFAULT_LINES}")),
        (None, Some(_)) => {}
    }
    if let Some(grep) = query.grep.as_ref().filter(|_| pcre) {
        args.push(format!("--grep={grep}"));
    }
    if query.follow {
        args.push("--follow".into());
    }
    args
}

/// Sends the entries until journalctl ends (not following) or the stream is closed.
pub(super) async fn run(mut journal: Journal, mut sink: Sink, mut input: mpsc::UnboundedReceiver<Input>) {
    if sink.opened().await.is_err() {
        return;
    }
    let mut line = Vec::new();
    loop {
        tokio::select! {
            reason = closed(&mut input) => return sink.close(reason, None).await,
            read = next_line(&mut journal.stdout, &mut line) => match read {
                Ok(true) => {
                    let record = parse(&line).filter(|r| journal.filter.as_ref().is_none_or(|g| g.is_match(&r.message)));
                    if let Some(record) = record && sink.push(&record).await.is_err() {
                        return;
                    }
                    if journal.stdout.buffer().is_empty() && sink.flush().await.is_err() {
                        return;
                    }
                }
                Ok(false) | Err(_) => break,
            },
        }
    }
    let status = journal.child.wait().await.ok();
    let stderr = journal.stderr.await.unwrap_or_default();
    match status.and_then(|s| s.code()) {
        Some(0) => sink.close("the end of the journal".into(), Some(0)).await,
        code => {
            let why = stderr.trim().lines().last().unwrap_or("no reason given").to_owned();
            sink.close(format!("journalctl failed: {why}"), Some(code.unwrap_or(1))).await;
        }
    }
}

/// Reads one line (up to [`MAX_ENTRY`] bytes; the rest of a longer one is skipped). False at
/// the end.
async fn next_line(reader: &mut (impl AsyncBufRead + Unpin), line: &mut Vec<u8>) -> std::io::Result<bool> {
    line.clear();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(!line.is_empty());
        }
        let (used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = MAX_ENTRY.saturating_sub(line.len());
        line.extend_from_slice(&buf[..used.min(room)]);
        reader.consume(used);
        if done {
            return Ok(true);
        }
    }
}

/// A journal entry (`journalctl --output=json`) as a record; `None` when it is not one.
fn parse(line: &[u8]) -> Option<LogRecord> {
    let entry: serde_json::Map<String, Value> = serde_json::from_slice(line).ok()?;
    let text = |key: &str| entry.get(key).and_then(field);
    let micros: i64 = text("__REALTIME_TIMESTAMP")?.parse().ok()?;
    let ts = DateTime::from_timestamp_micros(micros)?;
    let unit = text("_SYSTEMD_UNIT").or_else(|| text("SYSLOG_IDENTIFIER")).or_else(|| text("_COMM"));
    let priority = text("PRIORITY").and_then(|p| p.parse().ok());
    let message = cut(text("MESSAGE").unwrap_or_default());
    Some(LogRecord { ts, source: "journal".into(), unit, priority, message })
}

/// A field's value: text, bytes (an array of numbers, for a value that is not UTF-8), or the
/// first of several values.
fn field(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_u64) => {
            let bytes: Vec<u8> = items.iter().filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok())).collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        Value::Array(items) => items.first().and_then(field),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_as_a_record_whatever_its_message_is_made_of() {
        let entry = br#"{"__REALTIME_TIMESTAMP":"1700000000123456","_SYSTEMD_UNIT":"app.service","PRIORITY":"3","MESSAGE":"disk full"}"#;
        let record = parse(entry).expect("a record");
        assert_eq!(record.ts.timestamp_micros(), 1_700_000_000_123_456);
        assert_eq!(
            (record.unit.as_deref(), record.priority, record.message.as_str()),
            (Some("app.service"), Some(3), "disk full")
        );
        let bytes = br#"{"__REALTIME_TIMESTAMP":"1","SYSLOG_IDENTIFIER":"cron","MESSAGE":[104,105,255]}"#;
        let record = parse(bytes).expect("a record");
        assert_eq!((record.unit.as_deref(), record.message.as_str()), (Some("cron"), "hi\u{fffd}"));
        let twice = br#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":["first","second"]}"#;
        assert_eq!(parse(twice).expect("a record").message, "first");
        assert!(parse(b"not json").is_none() && parse(br#"{"MESSAGE":"no time"}"#).is_none());
    }

    #[test]
    fn the_query_becomes_options_that_cannot_be_taken_for_others() {
        let config = RemoteConfig { journal_directory: Some("/tmp/j".into()), ..RemoteConfig::default() };
        let query = LogQuery {
            units: vec!["app.service".into(), "--boot".into()],
            priority: Some(3),
            grep: Some("err".into()),
            since_secs: Some(60),
            follow: true,
            ..LogQuery::default()
        };
        let args = arguments(&config, &query, true, 1000);
        for expected in [
            "--directory=/tmp/j",
            "--unit=app.service",
            "--unit=--boot",
            "--priority=3",
            "--since=@940",
            "--grep=err",
            "--follow",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--lines")), "all entries since: {args:?}");
        let plain = arguments(&RemoteConfig::default(), &LogQuery::default(), false, 0);
        assert!(
            plain.contains(&"--lines=100".to_owned())
                && !plain.iter().any(|a| a.starts_with("--grep") || a == "--follow")
        );
    }
}
