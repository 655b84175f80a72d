//! `baton recordings list | download | play`: the recordings of remote sessions (asciicast v2,
//! what `asciinema play` and `asciinema cat` read), the tenant's or one device's; `play` runs
//! the local `asciinema` on a download.

use std::{io::Write, path::PathBuf, process::Command};

use anyhow::Context;
use baton_client::Client;
use baton_proto::api::{access::PageQuery, remote::Recording};

use super::{
    ExitStatus, Global, devices,
    output::{self, Tabular},
};

#[derive(clap::Subcommand)]
pub enum RecordingsCommand {
    /// Sessions with a recording, newest first.
    List {
        /// Only this device's (its id, serial or name).
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Save a session's recording (default `session-<id>.cast`; `-` writes it to stdout).
    Download { device: String, session: String, file: Option<PathBuf> },
    /// Replay a session's recording in this terminal with `asciinema play`.
    Play { device: String, session: String },
}

pub async fn run(cmd: RecordingsCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        RecordingsCommand::List { device, limit } => {
            let device = match device {
                Some(d) => Some(devices::resolve(client, &d).await?),
                None => None,
            };
            let page = client.recordings(device.as_deref(), &PageQuery { limit: Some(limit), cursor: None }).await?;
            output::more_rows(&page.next_cursor);
            let recordings: Vec<Recording> = page.items.into_iter().filter_map(|s| s.recording).collect();
            output::list(g.output, &recordings)
        }
        RecordingsCommand::Download { device, session, file } => {
            let device = devices::resolve(client, &device).await?;
            let cast = client.recording(&device, &session).await?;
            let file = file.unwrap_or_else(|| PathBuf::from(format!("session-{session}.cast")));
            if file.as_os_str() == "-" {
                std::io::stdout().write_all(&cast)?;
                return Ok(());
            }
            std::fs::write(&file, &cast).with_context(|| format!("cannot write {}", file.display()))?;
            eprintln!(
                "Saved the recording ({}) to {}; replay it with `asciinema play`.",
                size(cast.len() as u64),
                file.display()
            );
            Ok(())
        }
        RecordingsCommand::Play { device, session } => {
            let device = devices::resolve(client, &device).await?;
            let cast = client.recording(&device, &session).await?;
            let file = tempfile::Builder::new().suffix(".cast").tempfile()?;
            std::fs::write(file.path(), &cast)?;
            play(file.path())
        }
    }
}

fn play(file: &std::path::Path) -> anyhow::Result<()> {
    let status = Command::new("asciinema").arg("play").arg(file).status().map_err(|e| {
        anyhow::anyhow!("cannot run asciinema ({e}); install it (apt-get install asciinema, or pipx install asciinema)")
    })?;
    match status.code() {
        Some(0) => Ok(()),
        code => {
            let code = code.and_then(|c| u8::try_from(c).ok()).unwrap_or(1);
            Err(ExitStatus { code, message: format!("asciinema play exited with {status}") }.into())
        }
    }
}

/// A byte count for people: `812 B`, `14.2 KiB`, `3.1 MiB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

impl Tabular for Recording {
    fn headers() -> &'static [&'static str] {
        &["SESSION", "DEVICE", "OPENED BY", "STARTED", "DURATION", "SIZE", "KEYSTROKES"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.session_id.clone(),
            self.device_id.clone(),
            self.opened_by.clone(),
            self.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            format!("{:.1} s", self.duration_ms as f64 / 1000.0),
            size(self.size_bytes),
            if self.input_recorded { "recorded" } else { "-" }.to_owned(),
        ]
    }
}
