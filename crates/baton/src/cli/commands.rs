//! `baton commands …`: send a command to devices (and optionally wait for it, see
//! [`super::wait`]), list, show and cancel commands.

use baton_client::Client;
use baton_proto::api::commands::{Command, CommandBatch, CommandCreate, CommandQuery, CommandSpec, CommandTarget};

use super::{
    Global,
    output::{self, Format, Tabular, ago},
    wait,
};

#[derive(clap::Subcommand)]
pub enum CommandsCommand {
    /// Queue a command for devices; each gets it when it is connected.
    Send(SendArgs),
    /// List commands, newest first.
    List {
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        batch: Option<String>,
        /// QUEUED, SENT, ACKED, SUCCEEDED, FAILED, EXPIRED or CANCELED.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one command with its result and output.
    Get { id: String },
    /// Cancel a command that has not finished.
    Cancel { id: String },
}

/// Which devices (combined, a device must match every part given), how, and what.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(true).args(["devices", "group", "labels"])))]
pub struct SendArgs {
    /// Device id, repeatable.
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Group id (subgroups included).
    #[arg(long)]
    group: Option<String>,
    /// Label selector, e.g. 'store=berlin-12,tier!=test'.
    #[arg(long, short = 'l')]
    labels: Option<String>,
    /// Seconds the command may wait for its device (server default: one day).
    #[arg(long)]
    ttl: Option<u32>,
    /// Sending again with the same key returns the first batch instead of a new one.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Wait until every command has finished, showing progress.
    #[arg(long)]
    wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 300, requires = "wait")]
    wait_timeout: u64,
    #[command(subcommand)]
    kind: Kind,
}

#[derive(clap::Subcommand)]
enum Kind {
    /// Run a program (`exec -- PROGRAM ARGS...`) or a shell line (`exec --shell 'LINE'`).
    Exec {
        /// A line for the device's shell, instead of a program.
        #[arg(long, conflicts_with = "argv")]
        shell: Option<String>,
        /// Seconds before the process is killed (agent default: 60).
        #[arg(long)]
        timeout: Option<u32>,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required_unless_present = "shell", value_name = "PROGRAM ARGS")]
        argv: Vec<String>,
    },
    /// Run the agent's reboot hook.
    Reboot,
    /// Answer at once: proves the round trip.
    Ping,
    /// Change how often the device reports telemetry.
    SetTelemetryInterval { seconds: u32 },
    /// Make the device report its inventory again.
    RefreshInventory,
    /// A command an application handles through the device SDK.
    Custom {
        name: String,
        /// Parameters as JSON, e.g. '{"level":3}'.
        #[arg(long)]
        params: Option<String>,
    },
}

impl Kind {
    fn spec(self) -> anyhow::Result<CommandSpec> {
        Ok(match self {
            Kind::Exec { shell, timeout, argv } => {
                let mut argv = argv.into_iter();
                CommandSpec::Exec { program: argv.next(), args: argv.collect(), shell, timeout_secs: timeout }
            }
            Kind::Reboot => CommandSpec::Reboot,
            Kind::Ping => CommandSpec::Ping,
            Kind::SetTelemetryInterval { seconds } => CommandSpec::SetTelemetryInterval { seconds },
            Kind::RefreshInventory => CommandSpec::RefreshInventory,
            Kind::Custom { name, params } => {
                let params = match params {
                    Some(p) => serde_json::from_str(&p).map_err(|e| anyhow::anyhow!("--params is not JSON: {e}"))?,
                    None => serde_json::Value::Null,
                };
                CommandSpec::Custom { name, params }
            }
        })
    }
}

pub async fn run(cmd: CommandsCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        CommandsCommand::Send(a) => send(a, client, g).await,
        CommandsCommand::List { device, batch, state, limit } => {
            let state = state.map(|s| s.to_ascii_uppercase());
            let page =
                client.commands(&CommandQuery { device, batch, state, limit: Some(limit), cursor: None }).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        CommandsCommand::Get { id } => {
            let command = client.command(&id).await?;
            output::one(g.output, &command)?;
            if g.output == Format::Table {
                print_result(&command);
            }
            Ok(())
        }
        CommandsCommand::Cancel { id } => output::one(g.output, &client.cancel_command(&id).await?),
    }
}

async fn send(a: SendArgs, client: &Client, g: &Global) -> anyhow::Result<()> {
    let req = CommandCreate {
        target: CommandTarget { device_ids: a.devices, group: a.group, labels: a.labels },
        command: a.kind.spec()?,
        ttl_secs: a.ttl,
        idempotency_key: a.idempotency_key,
    };
    let batch = client.create_commands(&req).await?;
    if !a.wait {
        return output::one(g.output, &batch);
    }
    if g.output == Format::Table {
        eprintln!(
            "Batch {}: {} for {} device(s); waiting (Ctrl-C stops waiting, not the commands)",
            batch.id,
            summary(&batch.command),
            batch.total
        );
    }
    wait::finish(client, batch, std::time::Duration::from_secs(a.wait_timeout), g).await
}

/// The command's result, for people: exit code, error and output.
pub fn print_result(command: &Command) {
    let Some(result) = &command.result else { return };
    if let Some(error) = &result.error {
        println!("failure: {error}");
    }
    for (name, text) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
        if !text.is_empty() {
            println!("--- {name} ---\n{}", text.trim_end_matches('\n'));
        }
    }
    if result.truncated {
        println!("(output truncated)");
    }
    if let Some(output) = &result.output {
        println!("--- output ---\n{output:#}");
    }
}

/// A command in a few words, e.g. `exec ls -l` or `set-telemetry-interval 30`.
pub fn summary(spec: &CommandSpec) -> String {
    let text = match spec {
        CommandSpec::Exec { shell: Some(line), .. } => format!("exec --shell {line}"),
        CommandSpec::Exec { program, args, .. } => {
            format!("exec {} {}", program.as_deref().unwrap_or_default(), args.join(" ")).trim_end().to_owned()
        }
        CommandSpec::SetTelemetryInterval { seconds } => format!("set-telemetry-interval {seconds}"),
        CommandSpec::Custom { name, .. } => format!("custom {name}"),
        other => other.kind().to_owned(),
    };
    match text.char_indices().nth(48) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Counts per state, e.g. `QUEUED=3 SUCCEEDED=7`.
pub fn states(batch: &CommandBatch) -> String {
    let parts: Vec<String> = batch.states.iter().filter(|(_, n)| **n > 0).map(|(s, n)| format!("{s}={n}")).collect();
    parts.join(" ")
}

impl Tabular for Command {
    fn headers() -> &'static [&'static str] {
        &["ID", "DEVICE", "COMMAND", "STATE", "EXIT", "CREATED", "FINISHED", "BATCH"]
    }
    fn row(&self) -> Vec<String> {
        let exit = self.result.as_ref().and_then(|r| r.exit_code);
        vec![
            self.id.clone(),
            self.device_id.clone(),
            summary(&self.command),
            self.state.as_str().to_owned(),
            exit.map_or_else(|| "-".into(), |c| c.to_string()),
            ago(Some(self.created_at)),
            ago(self.finished_at),
            self.batch_id.clone(),
        ]
    }
}

impl Tabular for CommandBatch {
    fn headers() -> &'static [&'static str] {
        &["BATCH", "COMMAND", "DEVICES", "FINISHED", "STATES", "CREATED BY", "CREATED"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            summary(&self.command),
            self.total.to_string(),
            self.finished().to_string(),
            states(self),
            self.created_by.clone().unwrap_or_else(|| "-".into()),
            ago(Some(self.created_at)),
        ]
    }
}
