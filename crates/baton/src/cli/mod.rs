//! The command line: global options, the command tree, and how errors read.
//!
//! Admin commands talk to a server through `baton-client` with the URL and token saved by
//! `baton login` (see [`profile`]); `--server` and `--token` (or `BATON_SERVER`, `BATON_TOKEN`)
//! override them for one call.

/// Prints a line on stdout, ignoring a closed stdout: a long-running command (the server, the
/// demo) must not die because whoever started it stopped reading its output.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod access;
mod artifacts;
mod attach;
mod attributes;
mod bundles;
mod commands;
mod cp;
mod demo;
mod demo_mqtt;
mod devices;
mod enrollment;
mod events;
mod groups;
mod import;
mod logs;
use crate::output;
mod port_forward;
mod profile;
mod recordings;
mod remote_policy;
mod rollouts;
mod serve;
mod sessions;
mod telemetry;
mod tenants;
mod terminal;
mod tty;
mod wait;

use baton_client::{Client, ClientError};
use clap::{Parser, Subcommand};

use crate::sim;

pub use output::Format;

#[derive(Parser)]
#[command(name = "baton", version, about = "Baton: manage a fleet of devices", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

/// Options every admin command takes.
#[derive(clap::Args, Clone)]
pub struct Global {
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Server URL, instead of the one saved by `baton login`.
    #[arg(long, global = true, env = "BATON_SERVER")]
    pub server: Option<String>,
    /// API token, instead of the one saved by `baton login`.
    #[arg(long, global = true, env = "BATON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Try Baton: a server and a simulated fleet in one process.
    Demo(demo::DemoArgs),
    /// Simulate a fleet of devices against a server.
    Sim(sim::SimArgs),
    /// Measure the server and agent under a simulated fleet (see BENCHMARKS.md).
    Bench(crate::bench::BenchArgs),
    /// Settings of the server.
    #[command(subcommand)]
    Config(serve::ConfigCommand),
    /// Sign in to a server and remember it.
    Login(access::LoginArgs),
    /// Forget the saved server and token (and end the session).
    Logout,
    /// Who you are signed in as.
    Whoami,
    /// Devices in the registry.
    #[command(subcommand)]
    Devices(devices::DevicesCommand),
    /// Groups of devices.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Enrollment tokens: let devices enroll themselves.
    #[command(subcommand)]
    EnrollmentTokens(enrollment::EnrollmentTokensCommand),
    /// Commands for devices: send, follow, cancel.
    #[command(subcommand)]
    Commands(commands::CommandsCommand),
    /// Telemetry of a device.
    #[command(subcommand)]
    Telemetry(telemetry::TelemetryCommand),
    /// The device event log.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// API tokens of your tenant.
    #[command(subcommand)]
    Tokens(access::TokensCommand),
    /// Users of your tenant.
    #[command(subcommand)]
    Users(access::UsersCommand),
    /// Tenants (platform administrators).
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Artifacts for updates: push, list, get, delete.
    #[command(subcommand)]
    Artifacts(artifacts::ArtifactsCommand),
    /// The keys that sign artifacts.
    #[command(subcommand)]
    SigningKeys(artifacts::SigningKeysCommand),
    /// Rollouts: take an artifact to devices in waves; follow and steer them.
    #[command(subcommand)]
    Rollouts(rollouts::RolloutsCommand),
    /// A shell on a device (or one command with a TTY: `-- cmd args…`), through the server.
    #[command(visible_alias = "ssh")]
    Terminal(terminal::TerminalArgs),
    /// A device's logs, live: the journal (-u unit, -p priority, --since) or a file (--file).
    Logs(logs::LogsArgs),
    /// Copy a file to a device, or a file or directory from one: `baton cp ./app.conf
    /// dev1:/etc/app/app.conf`, `baton cp dev1:/var/log/app ./logs` (SHA-256 checked, resumable).
    Cp(cp::CpArgs),
    /// Forward local ports to ports on (or behind) a device, through the server: `baton
    /// port-forward dev1 8080:localhost:80 :5432` (like `ssh -L` and `kubectl port-forward`).
    PortForward(port_forward::PortForwardArgs),
    /// Remote sessions of a device: list, show, close.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Recordings of remote sessions: list, download, replay.
    #[command(subcommand)]
    Recordings(recordings::RecordingsCommand),
    /// The tenant's remote-access policy.
    #[command(subcommand)]
    RemotePolicy(remote_policy::RemotePolicyCommand),
    /// Support bundles: a device's logs, inventory and diagnostics as one archive.
    #[command(subcommand, visible_alias = "bundles")]
    Bundle(bundles::BundleCommand),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Bench(args) => crate::bench::run(args, g.output).await,
        Command::Config(cmd) => serve::config(cmd),
        Command::Login(args) => access::login(args, &g).await,
        Command::Logout => access::logout().await,
        Command::Whoami => access::whoami(&connect(&g)?, &g).await,
        Command::Devices(cmd) => devices::run(cmd, &connect(&g)?, &g).await,
        Command::Groups(cmd) => groups::run(cmd, &connect(&g)?, &g).await,
        Command::EnrollmentTokens(cmd) => enrollment::run(cmd, &connect(&g)?, &g).await,
        Command::Commands(cmd) => commands::run(cmd, &connect(&g)?, &g).await,
        Command::Telemetry(cmd) => telemetry::run(cmd, &connect(&g)?, &g).await,
        Command::Events(cmd) => events::run(cmd, &connect(&g)?, &g).await,
        Command::Tokens(cmd) => access::tokens(cmd, &connect(&g)?, &g).await,
        Command::Users(cmd) => access::users(cmd, &connect(&g)?, &g).await,
        Command::Tenants(cmd) => tenants::run(cmd, &connect(&g)?, &g).await,
        Command::Artifacts(cmd) => artifacts::run(cmd, &connect(&g)?, &g).await,
        Command::SigningKeys(cmd) => artifacts::keys(cmd, &connect(&g)?, &g).await,
        Command::Rollouts(cmd) => rollouts::run(cmd, &connect(&g)?, &g).await,
        Command::Terminal(args) => terminal::run(args, &connect(&g)?).await,
        Command::Logs(args) => logs::run(args, &connect(&g)?).await,
        Command::Cp(args) => cp::run(args, &connect(&g)?).await,
        Command::PortForward(args) => port_forward::run(args, &connect(&g)?).await,
        Command::Sessions(cmd) => sessions::run(cmd, &connect(&g)?, &g).await,
        Command::Recordings(cmd) => recordings::run(cmd, &connect(&g)?, &g).await,
        Command::RemotePolicy(cmd) => remote_policy::run(cmd, &connect(&g)?, &g).await,
        Command::Bundle(cmd) => bundles::run(cmd, &connect(&g)?, &g).await,
    }
}

/// A client for the saved (or overridden) server and token.
fn connect(g: &Global) -> anyhow::Result<Client> {
    let saved = profile::Profile::load()?;
    let server = g.server.clone().or(saved.server.clone()).ok_or_else(|| {
        anyhow::anyhow!("no server configured: run `baton login --server URL` first (or pass --server)")
    })?;
    // The saved token belongs to the saved server: never send it anywhere else.
    let saved_token = saved.token.clone().filter(|_| saved.server.as_deref() == Some(server.as_str()));
    let token = g.token.clone().or(saved_token);
    if token.is_none() {
        anyhow::bail!("not signed in to {server}: run `baton login --server {server}` first (or pass --token)");
    }
    let ca = saved.ca_pem()?;
    Ok(Client::new(&server, token, ca.as_deref())?)
}

/// The CA certificate (PEM) the saved profile trusts for the server, if any; what [`connect`]
/// gives the REST client, for the connections it does not make (the attach WebSocket).
fn ca_pem() -> anyhow::Result<Option<Vec<u8>>> {
    profile::Profile::load()?.ca_pem()
}

/// Ends the CLI with a chosen exit status, e.g. the exit code of a command run on a device.
#[derive(Debug)]
pub struct ExitStatus {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitStatus {}

/// The process exit status for an error: the one an [`ExitStatus`] chose, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<ExitStatus>().map_or(1, |s| s.code)
}

/// One line that says what went wrong and what to do next.
pub fn describe(e: &anyhow::Error) -> String {
    let Some(client) = e.downcast_ref::<ClientError>() else {
        return format!("{e:#}");
    };
    match client {
        ClientError::Unreachable { url, reason } => format!(
            "cannot reach the Baton server at {url} ({reason}); check the URL and that `baton serve` is running there"
        ),
        ClientError::Api { status, problem } if status.as_u16() == 401 => format!(
            "the server refused the credentials: {}; run `baton login` again",
            problem.detail.as_deref().unwrap_or(&problem.title)
        ),
        ClientError::Api { problem, .. } => {
            let line = problem.detail.clone().unwrap_or_else(|| problem.title.clone());
            let extra: Vec<String> = problem
                .errors
                .iter()
                .filter(|f| !line.contains(&f.message))
                .map(|f| format!("; {}: {}", f.field, f.message))
                .collect();
            format!("{line}{}", extra.concat())
        }
        other => other.to_string(),
    }
}
