//! `baton logs <device>`: a device's journal (units, priority, since, a pattern) or one of its
//! log files (`--file`), the latest lines and, with `-f`, new ones as they are written — each
//! as `time unit[priority]: message`, or as the API's JSON lines with `--json`. Ctrl-C (or
//! SIGTERM) stops following; a refusal prints the server's reason and exits 1.

use std::io::Write;

use baton_client::Client;
use baton_proto::streams::{self, LogQuery, LogRecord, LogSource};
use futures::StreamExt;

use super::{devices, tty};

#[derive(clap::Args)]
pub struct LogsArgs {
    /// The device: its id, serial or name.
    device: String,
    /// A journal unit to show (repeat for several); all units when none.
    #[arg(short = 'u', long = "unit", value_name = "UNIT")]
    units: Vec<String>,
    /// Keep showing new entries as they are written, until Ctrl-C.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Journal entries of the last `90s`, `15m`, `1h`, `2d` (or seconds).
    #[arg(long, value_name = "DURATION", value_parser = since)]
    since: Option<u64>,
    /// Only entries whose message matches this regular expression (case-insensitive unless it
    /// has capitals).
    #[arg(long, value_name = "PATTERN")]
    grep: Option<String>,
    /// Read this log file on the device instead of the journal (absolute; under the agent's
    /// `[remote] log_paths`).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["units", "since", "priority"])]
    file: Option<String>,
    /// Journal entries of this priority or more urgent: 0–7 or emerg, alert, crit, err,
    /// warning, notice, info, debug.
    #[arg(short = 'p', long, value_name = "PRIORITY", value_parser = priority)]
    priority: Option<u8>,
    /// How many of the latest entries to show first (default 100; with --since, all of them).
    #[arg(short = 'n', long, value_name = "LINES")]
    lines: Option<u32>,
    /// Print each entry as the API's JSON line.
    #[arg(long)]
    json: bool,
}

fn since(text: &str) -> Result<u64, String> {
    streams::duration_secs(text).ok_or_else(|| "a duration like 90s, 15m, 1h or 2d, or seconds".to_owned())
}

fn priority(text: &str) -> Result<u8, String> {
    streams::priority(text).ok_or_else(|| "0–7, or emerg, alert, crit, err, warning, notice, info or debug".to_owned())
}

pub async fn run(args: LogsArgs, client: &Client) -> anyhow::Result<()> {
    let device = devices::resolve(client, &args.device).await?;
    let query = LogQuery {
        source: if args.file.is_some() { LogSource::File } else { LogSource::Journal },
        path: args.file,
        units: args.units,
        priority: args.priority,
        grep: args.grep,
        since_secs: args.since,
        lines: args.lines,
        follow: args.follow,
    };
    let mut records = client.logs(&device, &query).await?;
    let stop = tty::stop_signal()?;
    tokio::pin!(stop);
    let mut out = std::io::stdout().lock();
    loop {
        let record = tokio::select! {
            next = records.next() => match next {
                Some(record) => record?,
                None => return Ok(()),
            },
            _ = &mut stop => return Ok(()),
        };
        let line = if args.json { serde_json::to_string(&record)? } else { human(&record) };
        // A reader that went away (`| head`) ends the command quietly.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
    }
}

/// `2024-05-01T12:00:00.123Z nginx.service[3]: message`; a file's line names the file.
fn human(record: &LogRecord) -> String {
    let ts = record.ts.format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let from = record.unit.as_deref().unwrap_or(&record.source);
    let (from, message) = (printable(from), printable(&record.message));
    match record.priority {
        Some(p) => format!("{ts} {from}[{p}]: {message}"),
        None => format!("{ts} {from}: {message}"),
    }
}

/// A device's text with control characters shown as escapes, so a log line cannot drive the
/// operator's terminal (colours, titles, cursor moves); tabs stay.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.into();
    }
    text.chars()
        .map(|c| if c.is_control() && c != '\t' { c.escape_default().to_string() } else { c.to_string() })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_a_device_are_shown_not_obeyed() {
        assert_eq!(printable("plain\ttext"), "plain\ttext");
        assert_eq!(printable("\u{1b}]0;pwned\u{7}red\u{1b}[31m"), "\\u{1b}]0;pwned\\u{7}red\\u{1b}[31m");
    }
}
