//! `baton commands send --wait`: polls the batch about twice a second behind a progress bar until
//! every command is final or the wait times out, then reports. A single-device `exec` prints the
//! remote output and exits with the remote exit code when it failed.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use baton_client::Client;
use baton_proto::api::commands::{Command, CommandBatch, CommandQuery, CommandSpec, CommandState};
use indicatif::{ProgressBar, ProgressStyle};

use super::{
    ExitStatus, Global,
    commands::states,
    output::{self, Format},
};

const POLL: Duration = Duration::from_millis(500);

/// Waits for `batch`, then prints the outcome; fails when a command did not succeed.
pub async fn finish(client: &Client, batch: CommandBatch, timeout: Duration, g: &Global) -> anyhow::Result<()> {
    let (batch, all_final) = follow(client, batch, timeout).await?;
    if !all_final {
        output::one(g.output, &batch)?;
        anyhow::bail!(
            "stopped waiting after {} s with {} of {} command(s) final ({}); they go on: follow them with \
             `baton commands list --batch {}`",
            timeout.as_secs(),
            batch.finished(),
            batch.total,
            states(&batch),
            batch.id
        );
    }
    if batch.total == 1 && matches!(batch.command, CommandSpec::Exec { .. }) {
        return single_exec(client, &batch, g).await;
    }
    output::one(g.output, &batch)?;
    let succeeded = batch.states.get(CommandState::Succeeded.as_str()).copied().unwrap_or(0);
    if succeeded < batch.total {
        anyhow::bail!("{} of {} command(s) did not succeed ({})", batch.total - succeeded, batch.total, states(&batch));
    }
    Ok(())
}

/// Polls the batch behind a progress bar; `true` when every command is final.
async fn follow(client: &Client, mut batch: CommandBatch, timeout: Duration) -> anyhow::Result<(CommandBatch, bool)> {
    let bar = ProgressBar::new(batch.total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {pos}/{len} final  {msg}")?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let deadline = Instant::now() + timeout;
    loop {
        let finished = batch.finished();
        bar.set_position(finished);
        bar.set_message(states(&batch));
        let now = Instant::now();
        if finished >= batch.total || now >= deadline {
            bar.finish_and_clear();
            let all_final = finished >= batch.total;
            return Ok((batch, all_final));
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
        batch = client.command_batch(&batch.id).await?;
    }
}

/// Prints the one command's output as the device produced it and mirrors its outcome.
async fn single_exec(client: &Client, batch: &CommandBatch, g: &Global) -> anyhow::Result<()> {
    let query = CommandQuery { batch: Some(batch.id.clone()), limit: Some(1), ..Default::default() };
    let Some(command) = client.commands(&query).await?.items.into_iter().next() else {
        anyhow::bail!("batch {} has no command", batch.id);
    };
    match g.output {
        Format::Table => print_output(&command)?,
        f => output::structured(f, &command)?,
    }
    let device = &command.device_id;
    match command.state {
        CommandState::Succeeded => Ok(()),
        CommandState::Failed => {
            let result = command.result.unwrap_or_default();
            let code = result.exit_code.and_then(|c| u8::try_from(c).ok()).filter(|&c| c != 0);
            let message = match (code, &result.error) {
                (Some(c), _) => format!("the command exited with code {c} on device {device}"),
                (None, Some(error)) => format!("the command failed on device {device}: {error}"),
                (None, None) => format!("the command failed on device {device}"),
            };
            Err(ExitStatus { code: code.unwrap_or(1), message }.into())
        }
        state => anyhow::bail!("the command was {} on device {device} before it finished", state.as_str()),
    }
}

/// The remote stdout on stdout and stderr on stderr, as they were.
fn print_output(command: &Command) -> anyhow::Result<()> {
    let Some(result) = &command.result else { return Ok(()) };
    std::io::stdout().write_all(result.stdout.as_bytes())?;
    std::io::stdout().flush()?;
    std::io::stderr().write_all(result.stderr.as_bytes())?;
    if result.truncated {
        eprintln!("(output truncated)");
    }
    Ok(())
}
