//! `baton sim`: a fleet of simulated devices in one process, for demos, load tests and trying
//! commands at scale without real hardware. Each device is a real agent (`baton-agent`) with
//! memory storage, a synthetic inventory and metrics ([`source`]) and a command runner that never
//! touches the host ([`runner`]) — only a remote terminal, unless `--no-terminal`, is real:
//! `/bin/sh` on this machine; [`fleet`] starts and watches them, and is also called as a
//! library by `baton demo`. [`mqtt`] adds devices that speak MQTT instead of running the agent
//! (sensors, and a gateway in ThingsBoard's dialect), for the demo.
//!
//! The command shows a progress bar of connected devices while the fleet comes up (on a
//! terminal), then a status line every few seconds, and stops on Ctrl-C, SIGTERM or after
//! `--duration`.

mod applog;
pub mod fleet;
pub mod mqtt;
pub mod runner;
pub mod source;

use std::{path::PathBuf, time::Duration};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::{sync::watch, time::Instant};

pub use fleet::{Counts, FleetConfig, FleetReport, Progress, run_fleet};

/// How often the status line is printed once the fleet is up.
const LINE_EVERY: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub struct SimArgs {
    /// The Baton server, e.g. http://localhost:8080.
    #[arg(long, env = "BATON_SERVER")]
    server: String,
    /// An enrollment token (`baton enrollment-tokens create`), not an API token.
    #[arg(long, env = "BATON_ENROLLMENT_TOKEN", hide_env_values = true)]
    token: String,
    /// How many devices to simulate.
    #[arg(long)]
    devices: u32,
    /// Serials are PREFIX-00001, PREFIX-00002, …; a device keeps its identity across runs.
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Share of devices (0 to 1) that fail every exec, reboot and custom command.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    fail_rate: f64,
    /// Share of devices (0 to 1) that disconnect and come back every 30 to 120 s.
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    flap_rate: f64,
    /// Devices started per second.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    connect_rate: u32,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// PEM file of the CA that signed the server's certificate, when it is private.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Refuse remote terminals. Without it, the server's operators can open `/bin/sh` on this
    /// machine, as this user, through any simulated device (`baton terminal sim-00001`).
    #[arg(long)]
    no_terminal: bool,
    /// Let the server read the devices' logs, copy files and take support bundles, all inside
    /// this directory (each device gets `<serial>/logs` with a log it writes, and `<serial>/files`).
    #[arg(long, value_name = "DIR")]
    sandbox: Option<PathBuf>,
}

fn share(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=1.0).contains(&value) { Ok(value) } else { Err("must be between 0 and 1".into()) }
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    crate::process::init_tracing(baton_core::config::LogFormat::Text, "error");
    if args.token.starts_with("bt_") {
        anyhow::bail!(
            "--token takes an enrollment token (be_…, from `baton enrollment-tokens create`), not an API token"
        );
    }
    let config = FleetConfig {
        server: args.server.trim_end_matches('/').to_owned(),
        enrollment_token: args.token,
        devices: args.devices,
        prefix: args.prefix,
        fail_rate: args.fail_rate,
        flap_rate: args.flap_rate,
        connect_rate: args.connect_rate,
        ca_cert: args.ca_cert,
        terminal: !args.no_terminal,
        sandbox: args.sandbox.map(std::path::absolute).transpose()?,
    };
    config.validate()?;
    let signal = crate::process::shutdown_signal()?;
    let duration = args.duration.map(Duration::from_secs);
    let stop = async move {
        match duration {
            Some(d) => tokio::select! {
                () = signal => {}
                _ = tokio::time::sleep(d) => {}
            },
            None => signal.await,
        }
    };
    println!(
        "Simulating {} device(s) against {} ({} start(s) per second); Ctrl-C stops them.",
        config.devices, config.server, config.connect_rate
    );
    if config.terminal {
        println!("Remote terminals on them run /bin/sh on this machine as this user (--no-terminal refuses them).");
    }
    if let Some(dir) = &config.sandbox {
        println!("Their logs, files and support bundles live in {}.", dir.display());
    }
    let (tx, rx) = watch::channel(Progress::default());
    let display = tokio::spawn(show(rx, config.devices));
    let report = run_fleet(config, tx, stop).await?;
    let _ = display.await;
    println!("{}", summary(&report));
    if report.devices > 0 && report.last.failed == report.devices {
        anyhow::bail!("every device stopped: {}", report.first_error.as_deref().unwrap_or("no reason given"));
    }
    Ok(())
}

/// A progress bar while the fleet comes up (on a terminal), then a status line every few seconds.
async fn show(mut progress: watch::Receiver<Progress>, devices: u32) {
    let bar = ProgressBar::new(u64::from(devices));
    let style = ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {pos}/{len} connected  {msg}");
    bar.set_style(style.map(|s| s.progress_chars("=> ")).unwrap_or_else(|_| ProgressStyle::default_bar()));
    let mut bar = (!bar.is_hidden()).then_some(bar);
    let (mut next_line, mut told_error, mut told_all) = (Instant::now() + LINE_EVERY, false, false);
    while progress.changed().await.is_ok() {
        let p = progress.borrow_and_update().clone();
        let c = p.counts;
        if let (Some(error), false) = (&p.first_error, told_error) {
            told_error = true;
            let line = format!("A device stopped: {error}");
            match &bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
        if let Some(b) = &bar {
            b.set_position(u64::from(c.connected));
            b.set_message(line(&c));
            if c.settled(devices) {
                b.finish_and_clear();
                bar = None;
                told_all = true;
                println!("{} of {devices} device(s) connected after {:.1} s", c.connected, p.elapsed.as_secs_f64());
                next_line = Instant::now() + LINE_EVERY;
            }
            continue;
        }
        if !told_all && c.connected == devices {
            told_all = true;
            println!("All {devices} device(s) connected after {:.1} s", p.elapsed.as_secs_f64());
        }
        if Instant::now() >= next_line {
            next_line = Instant::now() + LINE_EVERY;
            println!("[{:>5.0} s] {}", p.elapsed.as_secs_f64(), line(&c));
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// `connected 998, connecting 2, pending 0, decommissioned 0`, plus what else is not zero.
fn line(c: &Counts) -> String {
    let mut text = format!(
        "connected {}, connecting {}, pending {}, decommissioned {}",
        c.connected, c.connecting, c.pending, c.decommissioned
    );
    for (name, n) in [("offline", c.offline), ("not started", c.waiting), ("failed", c.failed)] {
        if n > 0 {
            text.push_str(&format!(", {name} {n}"));
        }
    }
    text
}

fn summary(r: &FleetReport) -> String {
    let all = match r.all_connected_after {
        Some(d) => format!("all connected after {:.1} s", d.as_secs_f64()),
        None => "never all connected at once".into(),
    };
    format!(
        "Stopped after {:.1} s: {} device(s), at most {} connected at once, {all}; {} restart(s) of flapping \
         devices; {} failed",
        r.ran_for.as_secs_f64(),
        r.devices,
        r.peak_connected,
        r.restarts,
        r.last.failed
    )
}
