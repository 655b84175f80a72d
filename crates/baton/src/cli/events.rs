//! `baton events list` (the device event log) and `baton devices watch` (its live feed, one
//! line per event until interrupted).

use baton_client::{Client, Live};
use baton_proto::api::events::{Event, EventQuery, EventStreamQuery};
use futures::StreamExt;

use super::{
    Global,
    output::{self, Format, Tabular},
};

#[derive(clap::Subcommand)]
pub enum EventsCommand {
    /// List events, newest first.
    List {
        /// Only this device's events.
        #[arg(long)]
        device: Option<String>,
        /// An exact kind (`device.online`) or a prefix ending in `.` (`device.`).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub async fn run(cmd: EventsCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        EventsCommand::List { device, kind, limit } => {
            let page = client.events(&EventQuery { device, kind, limit: Some(limit), cursor: None }).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
    }
}

/// Follows device events and prints each as it comes, until Ctrl-C or the server goes away.
pub async fn watch(client: &Client, device: Option<String>, g: &Global) -> anyhow::Result<()> {
    let query = EventStreamQuery { device, kind: Some("device.".into()) };
    let mut events = client.event_stream(&query).await?;
    eprintln!("Watching device events on {}; press Ctrl-C to stop.", client.base_url());
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = &mut stop => return Ok(()),
        };
        match next {
            Some(Ok(Live::Item(event))) => print(&event, g.output)?,
            Some(Ok(Live::Lagged(n))) => eprintln!("({n} event(s) skipped: this watcher fell behind)"),
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("the server closed the event stream (is it shutting down?)"),
        }
    }
}

fn print(event: &Event, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Table => println!("{}", event.row().join("  ")),
        Format::Json => println!("{}", serde_json::to_string(event)?),
        Format::Yaml => print!("---\n{}", serde_yaml_ng::to_string(event)?),
    }
    Ok(())
}

impl Tabular for Event {
    fn headers() -> &'static [&'static str] {
        &["TIME", "DEVICE", "KIND", "DATA"]
    }
    fn row(&self) -> Vec<String> {
        let data = match &self.data {
            serde_json::Value::Null => "-".to_owned(),
            serde_json::Value::Object(o) if o.is_empty() => "-".to_owned(),
            other => other.to_string(),
        };
        vec![
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.device_id.clone().unwrap_or_else(|| "-".into()),
            self.kind.clone(),
            data,
        ]
    }
}
