//! Running commands on the device: `exec` (a program or a shell line, with a timeout and
//! captured, size-capped output), `reboot` (the configured hook — never the machine unless the
//! hook says so), `ping`, and custom commands handled by the application through the SDK. The
//! agent-level commands (`set-telemetry-interval`, `refresh-inventory`) are handled by the
//! connection, which owns what they change.

use std::{collections::HashMap, future::Future, pin::Pin, process::Stdio, sync::Arc, time::Duration};

use baton_proto::api::commands::{CommandResult, CommandSpec};
use tokio::{io::AsyncReadExt, process::Command};

/// What a custom command handler returns: its output, or why it failed.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send>>;
/// A custom command handler registered through the SDK.
pub type Handler = Arc<dyn Fn(serde_json::Value) -> HandlerFuture + Send + Sync>;

/// Replaces how `exec`, `reboot`, `ping` and custom commands run (the simulator answers them
/// without touching the machine).
pub type Runner = Arc<dyn Fn(CommandSpec) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// Default seconds before an `exec` is killed.
const DEFAULT_TIMEOUT_SECS: u32 = 60;

/// Runs commands that need nothing from the connection.
#[derive(Clone)]
pub struct Executor {
    pub reboot_command: Option<Vec<String>>,
    pub max_output_bytes: usize,
    pub handlers: Arc<HashMap<String, Handler>>,
    pub runner: Option<Runner>,
}

/// How a command ended.
pub struct Outcome {
    pub succeeded: bool,
    pub result: CommandResult,
}

impl Outcome {
    pub fn ok(result: CommandResult) -> Self {
        Self { succeeded: true, result }
    }

    pub fn failed(error: impl Into<String>) -> Self {
        Self { succeeded: false, result: CommandResult { error: Some(error.into()), ..CommandResult::default() } }
    }
}

impl Executor {
    pub async fn run(&self, spec: &CommandSpec) -> Outcome {
        if let Some(runner) = &self.runner {
            return runner(spec.clone()).await;
        }
        match spec {
            CommandSpec::Exec { program, args, shell, timeout_secs } => {
                let command = match (program, shell) {
                    (Some(p), _) => {
                        let mut c = Command::new(p);
                        c.args(args);
                        c
                    }
                    (None, Some(line)) => shell_command(line),
                    (None, None) => return Outcome::failed("exec needs a program or a shell line"),
                };
                let timeout = Duration::from_secs(u64::from(timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS)));
                self.exec(command, timeout).await
            }
            CommandSpec::Reboot => match &self.reboot_command {
                Some(hook) if !hook.is_empty() => {
                    let mut c = Command::new(&hook[0]);
                    c.args(&hook[1..]);
                    self.exec(c, Duration::from_secs(120)).await
                }
                _ => Outcome::failed("no reboot hook is configured (set `reboot_command` in the agent config)"),
            },
            CommandSpec::Ping => Outcome::ok(CommandResult {
                output: Some(serde_json::json!({"pong": chrono::Utc::now().timestamp_millis()})),
                ..CommandResult::default()
            }),
            CommandSpec::Custom { name, params } => match self.handlers.get(name) {
                Some(handler) => match handler(params.clone()).await {
                    Ok(output) => Outcome::ok(CommandResult { output: Some(output), ..CommandResult::default() }),
                    Err(e) => Outcome::failed(e),
                },
                None => Outcome::failed(format!("no handler for the custom command `{name}` on this device")),
            },
            CommandSpec::SetTelemetryInterval { .. }
            | CommandSpec::RefreshInventory
            | CommandSpec::SupportBundle { .. } => Outcome::failed("handled by the connection, not the executor"),
        }
    }

    /// Runs a process to completion or timeout, keeping at most `max_output_bytes` of each stream.
    async fn exec(&self, mut command: Command, timeout: Duration) -> Outcome {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        // Its own process group, so a timeout kills what it started too (a shell's children).
        #[cfg(unix)]
        command.process_group(0);
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => return Outcome::failed(format!("cannot start: {e}")),
        };
        let cap = self.max_output_bytes;
        let stdout = child.stdout.take().map(|s| tokio::spawn(read_capped(s, cap)));
        let stderr = child.stderr.take().map(|s| tokio::spawn(read_capped(s, cap)));
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => return Outcome::failed(format!("waiting for the process failed: {e}")),
            Err(_) => {
                kill_tree(&mut child).await;
                None
            }
        };
        // A grandchild that escaped the kill may hold the pipes open: do not wait for it forever.
        let collect = |h: Option<tokio::task::JoinHandle<(String, bool)>>| async move {
            match h {
                Some(h) => {
                    tokio::time::timeout(Duration::from_secs(2), h).await.ok().and_then(Result::ok).unwrap_or_default()
                }
                None => (String::new(), false),
            }
        };
        let ((stdout, cut_out), (stderr, cut_err)) = (collect(stdout).await, collect(stderr).await);
        let mut result = CommandResult { stdout, stderr, truncated: cut_out || cut_err, ..CommandResult::default() };
        match status {
            Some(status) => {
                result.exit_code = status.code();
                if status.success() {
                    Outcome::ok(result)
                } else {
                    result.error = Some(match status.code() {
                        Some(code) => format!("exited with status {code}"),
                        None => "killed by a signal".to_owned(),
                    });
                    Outcome { succeeded: false, result }
                }
            }
            None => {
                result.error = Some(format!("timed out after {} s and was killed", timeout.as_secs()));
                Outcome { succeeded: false, result }
            }
        }
    }
}

/// Kills the process and, on Unix, its whole process group (the child leads its own group, see
/// `exec`). Done by system call: an external `kill -KILL -<pgid>` is parsed differently by
/// different `kill` programs, and one reading of it signals every process.
async fn kill_tree(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.kill().await;
}

fn shell_command(line: &str) -> Command {
    if cfg!(windows) {
        let mut c = Command::new("cmd");
        c.args(["/C", line]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", line]);
        c
    }
}

/// Reads a stream to its end, keeping the first `cap` bytes; says whether anything was cut.
async fn read_capped(mut stream: impl tokio::io::AsyncRead + Unpin, cap: usize) -> (String, bool) {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut cut = false;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), cut)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn executor() -> Executor {
        Executor { reboot_command: None, max_output_bytes: 16, handlers: Arc::new(HashMap::new()), runner: None }
    }

    fn exec(shell: &str, timeout_secs: u32) -> CommandSpec {
        CommandSpec::Exec { program: None, args: vec![], shell: Some(shell.into()), timeout_secs: Some(timeout_secs) }
    }

    #[tokio::test]
    async fn output_and_exit_code_are_captured_and_capped() {
        let ok = executor().run(&exec("echo hello; echo oops >&2", 10)).await;
        assert!(ok.succeeded);
        assert_eq!((ok.result.stdout.as_str(), ok.result.stderr.as_str()), ("hello\n", "oops\n"));
        let failed = executor().run(&exec("printf 'aaaaaaaaaaaaaaaaaaaaaaaa'; exit 3", 10)).await;
        assert!(!failed.succeeded);
        assert_eq!(failed.result.exit_code, Some(3));
        assert_eq!(failed.result.stdout.len(), 16);
        assert!(failed.result.truncated);
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed() {
        let slow = executor().run(&exec("sleep 30", 1)).await;
        assert!(!slow.succeeded);
        assert!(slow.result.error.as_deref().is_some_and(|e| e.contains("timed out")));
    }

    #[tokio::test]
    async fn reboot_without_a_hook_says_how_to_configure_one() {
        let outcome = executor().run(&CommandSpec::Reboot).await;
        assert!(!outcome.succeeded);
        assert!(outcome.result.error.as_deref().is_some_and(|e| e.contains("reboot_command")));
    }
}
