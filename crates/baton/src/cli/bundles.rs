//! `baton bundle create | list | get | progress | download`: support bundles (a device's logs,
//! inventory and diagnostics as a `tar.gz`). `create --wait` polls the request every second and
//! draws a line per device until every bundle is stored or failed; it exits 4 when some failed.

use std::{io::Write, path::PathBuf, time::Duration};

use anyhow::Context;
use baton_client::Client;
use baton_proto::api::bundles::{
    BundleCreate, BundleProgress, BundleQuery, BundleState, DeviceProgress, SupportBundle,
};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{
    ExitStatus, Global, devices,
    output::{self, Tabular},
    recordings::size,
};

const POLL: Duration = Duration::from_secs(1);
/// Devices drawn one line each while waiting (the status line counts them all).
const LINES: usize = 40;
/// Exit status when some bundles failed.
const SOME_FAILED: u8 = 4;

#[derive(clap::Subcommand)]
pub enum BundleCommand {
    /// Ask a device, a group or a selector's devices for a support bundle.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["device", "group", "selector"])))]
    Create {
        /// The device: its id, serial or name.
        device: Option<String>,
        /// A group id (its subgroups' devices too).
        #[arg(long)]
        group: Option<String>,
        /// A label selector, e.g. `site=berlin,tier!=test`.
        #[arg(long)]
        selector: Option<String>,
        /// Logs of this long before the device makes the bundle: `30m`, `1h`, `2d`.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Follow each device until its bundle is stored or failed.
        #[arg(long)]
        wait: bool,
    },
    /// Support bundles, newest first.
    List {
        /// Only this device's (its id, serial or name).
        #[arg(long)]
        device: Option<String>,
        /// Only this request's.
        #[arg(long)]
        request: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One support bundle.
    Get { id: String },
    /// A request's progress per device.
    Progress { request: String },
    /// Save a stored bundle (default: the name the server gives, after the device and time; `-`
    /// writes it to stdout).
    Download {
        id: String,
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
    },
}

pub async fn run(cmd: BundleCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        BundleCommand::Create { device, group, selector, since, wait } => {
            let device_id = match device {
                Some(d) => Some(devices::resolve(client, &d).await?),
                None => None,
            };
            let req = BundleCreate { device_id, group_id: group, selector, since: Some(since), since_secs: None };
            let requested = client.request_bundles(&req).await?;
            if !wait {
                eprintln!(
                    "Asked {} device(s) for a support bundle; follow with `baton bundle progress {}`.",
                    requested.bundles.len(),
                    requested.request_id
                );
                return output::list(g.output, &requested.bundles);
            }
            let progress = follow(client, &requested.request_id).await?;
            output::list(g.output, &progress.devices)?;
            let failed = progress.states.get(BundleState::Failed.as_str()).copied().unwrap_or(0);
            if failed > 0 {
                let message = format!("{failed} of {} support bundles failed", progress.total);
                return Err(ExitStatus { code: SOME_FAILED, message }.into());
            }
            Ok(())
        }
        BundleCommand::List { device, request, limit } => {
            let device_id = match device {
                Some(d) => Some(devices::resolve(client, &d).await?),
                None => None,
            };
            let q = BundleQuery { device_id, request_id: request, limit: Some(limit), cursor: None };
            let page = client.bundles(&q).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        BundleCommand::Get { id } => output::one(g.output, &client.bundle(&id).await?),
        BundleCommand::Progress { request } => output::list(g.output, &client.bundle_progress(&request).await?.devices),
        BundleCommand::Download { id, file } => download(client, &id, file).await,
    }
}

/// Polls a request until every bundle is stored or failed, drawing a line per device.
async fn follow(client: &Client, request: &str) -> anyhow::Result<BundleProgress> {
    let multi = MultiProgress::new();
    let status = multi.add(ProgressBar::new_spinner());
    status.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")?);
    status.enable_steady_tick(Duration::from_millis(120));
    let line = ProgressStyle::with_template("  {prefix:<24} {msg}")?;
    let mut lines: Vec<ProgressBar> = Vec::new();
    loop {
        let progress = client.bundle_progress(request).await?;
        while lines.len() < progress.devices.len().min(LINES) {
            lines.push(multi.add(ProgressBar::new(1).with_style(line.clone())));
        }
        for (bar, device) in lines.iter().zip(&progress.devices) {
            bar.set_prefix(device.device_name.clone());
            bar.set_message(describe(device));
        }
        let counts: Vec<String> = progress.states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        status.set_message(format!("{} device(s): {}", progress.total, counts.join(" · ")));
        if progress.finished() {
            status.finish();
            lines.iter().for_each(ProgressBar::finish);
            return Ok(progress);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A device's part in words, e.g. `stored 1.2 MiB` or `requested (device offline: QUEUED)`.
fn describe(d: &DeviceProgress) -> String {
    match d.state {
        BundleState::Stored => format!("stored {}", d.size_bytes.map(size).unwrap_or_default()),
        BundleState::Failed => format!("failed: {}", d.error.as_deref().unwrap_or("no reason given")),
        BundleState::Uploading => "uploading".into(),
        BundleState::Requested => match d.command_state.as_str() {
            "QUEUED" => "requested (waiting for the device to come online)".into(),
            "SENT" => "requested (sent to the device)".into(),
            _ => "collecting on the device".into(),
        },
    }
}

async fn download(client: &Client, id: &str, file: Option<PathBuf>) -> anyhow::Result<()> {
    let response = client.download_bundle(id).await?;
    let named = response
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("filename=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .filter(|n| !n.is_empty() && !n.contains(['/', '\\']) && !n.starts_with('.'))
        .map(PathBuf::from);
    let file = file.or(named).unwrap_or_else(|| PathBuf::from(format!("bundle-{id}.tar.gz")));
    let mut out: Box<dyn Write> = if file.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(&file).with_context(|| format!("cannot write {}", file.display()))?)
    };
    let mut body = response.bytes_stream();
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the download was cut off; run it again")?;
        out.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    out.flush()?;
    if file.as_os_str() != "-" {
        eprintln!("Saved the support bundle ({}) to {}; open it with `tar xzf`.", size(written), file.display());
    }
    Ok(())
}

impl Tabular for SupportBundle {
    fn headers() -> &'static [&'static str] {
        &["ID", "DEVICE", "STATE", "REQUESTED BY", "CREATED", "SINCE", "SIZE", "ERROR"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.device_id.clone(),
            self.state.as_str().to_owned(),
            self.requested_by.clone(),
            self.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            format!("{} s", self.since_secs),
            self.size_bytes.map(size).unwrap_or_else(|| "-".into()),
            self.error.clone().unwrap_or_else(|| "-".into()),
        ]
    }
}

impl Tabular for DeviceProgress {
    fn headers() -> &'static [&'static str] {
        &["DEVICE", "BUNDLE", "STATE", "COMMAND", "SIZE", "ERROR"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.device_name.clone(),
            self.bundle_id.clone(),
            self.state.as_str().to_owned(),
            self.command_state.as_str().to_owned(),
            self.size_bytes.map(size).unwrap_or_else(|| "-".into()),
            self.error.clone().unwrap_or_else(|| "-".into()),
        ]
    }
}
