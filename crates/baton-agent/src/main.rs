//! `baton-agent`: enroll this device, run the agent, or show what it would report.

use std::{path::PathBuf, process::ExitCode};

use baton_agent::{Agent, AgentConfig, AgentError, DeviceSource, Exit, Storage, SystemSource, enroll};
use clap::{Parser, Subcommand};
use tracing_subscriber::{filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};

/// Exit status when the device is decommissioned (the systemd unit does not restart on it).
const EXIT_DECOMMISSIONED: u8 = 3;

#[derive(Parser)]
#[command(name = "baton-agent", version, about = "The Baton device agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Overrides {
    /// Config file (default /etc/baton/agent.toml, if present).
    #[arg(long, short = 'c', env = "BATON_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// The Baton server URL.
    #[arg(long)]
    server: Option<String>,
    /// Enrollment token (used when the agent has no identity yet).
    #[arg(long)]
    token: Option<String>,
    /// State directory (identity, buffered telemetry).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Serial to enroll with (default: the hardware serial).
    #[arg(long)]
    serial: Option<String>,
    /// PEM file of a CA to trust for the server.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll this device now and store its identity.
    Enroll(Overrides),
    /// Run the agent (enrolling first when it has no identity and a token is configured).
    Run(Overrides),
    /// Print the inventory this device would report.
    Inventory,
    /// Print one sample of the metrics this device would report.
    Metrics,
}

// One thread: the agent waits on its connection nearly all the time, and each worker thread
// would cost a stack and a malloc arena of its own. Blocking work (files, PTYs, bundles) goes
// to tokio's blocking pool or threads of its own either way.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::registry()
        .with(log_filter())
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    match run(Cli::parse()).await {
        Ok(Exit::Stopped) => ExitCode::SUCCESS,
        Ok(Exit::Decommissioned { wiped }) => {
            eprintln!(
                "this device was decommissioned by the server{}; the agent stops",
                if wiped { " and its state wiped" } else { "" }
            );
            ExitCode::from(EXIT_DECOMMISSIONED)
        }
        Err(AgentError::Decommissioned) => {
            eprintln!("error: {}", AgentError::Decommissioned);
            ExitCode::from(EXIT_DECOMMISSIONED)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<Exit, AgentError> {
    match cli.command {
        Command::Inventory => {
            let inventory = SystemSource::new().inventory();
            println!("{}", serde_json::to_string_pretty(&inventory).map_err(|e| AgentError::State(e.to_string()))?);
            Ok(Exit::Stopped)
        }
        Command::Metrics => {
            let mut source = SystemSource::new();
            let sample = source.sample();
            println!("{}", serde_json::to_string_pretty(&sample).map_err(|e| AgentError::State(e.to_string()))?);
            Ok(Exit::Stopped)
        }
        Command::Enroll(o) => {
            let config = configure(&o)?;
            enroll_now(&config).await?;
            Ok(Exit::Stopped)
        }
        Command::Run(o) => {
            let config = configure(&o)?;
            tracing::info!(server = ?config.server, state = %config.state_dir.display(), "starting baton-agent {}", baton_agent::AGENT_VERSION);
            Agent::builder(config).build()?.run(shutdown_signal()).await
        }
    }
}

fn configure(o: &Overrides) -> Result<AgentConfig, AgentError> {
    let mut config = AgentConfig::load(o.config.as_deref())?;
    if let Some(v) = &o.server {
        config.server = Some(v.clone());
    }
    if let Some(v) = &o.token {
        config.enrollment_token = Some(v.clone());
    }
    if let Some(v) = &o.state_dir {
        config.state_dir = v.clone();
    }
    if let Some(v) = &o.serial {
        config.serial = Some(v.clone());
    }
    if let Some(v) = &o.ca_cert {
        config.ca_cert = Some(v.clone());
    }
    Ok(config)
}

/// `baton-agent enroll`: one attempt, with a clear answer.
async fn enroll_now(config: &AgentConfig) -> Result<(), AgentError> {
    let server = config.server_url()?;
    let token = config
        .enrollment_token
        .as_deref()
        .ok_or_else(|| AgentError::Config("pass --token (an enrollment token)".into()))?;
    let mut source = SystemSource::new();
    let serial = config
        .serial
        .clone()
        .or_else(|| source.serial())
        .map(|s| baton_agent::config::clean_serial(&s))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AgentError::Config("this machine exposes no serial; pass --serial".into()))?;
    let storage = Storage::disk(&config.state_dir)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut http = reqwest::Client::builder();
    if let Some(pem) = config.ca_pem()? {
        http = http
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).map_err(|e| AgentError::Config(e.to_string()))?);
    }
    let http = http.build().map_err(|e| AgentError::Config(e.to_string()))?;
    let with_certificate = config.wants_certificate(&server);
    match enroll::enroll(&http, &server, token, &serial, source.inventory(), with_certificate).await {
        Ok(enroll::Enrolled { identity, status, update_keys, certificate }) => {
            if let Some(certificate) = &certificate {
                storage.save_certificate(certificate)?;
            }
            storage.save_identity(&identity)?;
            baton_agent::updates::pin_keys(&storage, &update_keys)?;
            println!(
                "enrolled as device {} ({}); identity stored in {}",
                identity.device_id,
                status.as_str(),
                storage.describe()
            );
            Ok(())
        }
        Err(enroll::EnrollFailure::Fatal(e)) => Err(e),
        Err(enroll::EnrollFailure::Retry(why, _)) => Err(AgentError::Network(why)),
    }
}

/// What to log: `RUST_LOG` as targets and levels (`warn`, `baton_agent=debug,info`), else `info`.
fn log_filter() -> Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
