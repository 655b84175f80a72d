//! How a simulated device answers commands, without ever touching the host: `ping` answers,
//! `exec` echoes what it would have run, `reboot` takes a moment and restarts the uptime, custom
//! commands say they were simulated. A device chosen as failing fails every `exec`, `reboot`
//! and custom command with exit code 1, and every update install ([`SimInstaller`]), so failure
//! handling and rollout gates can be tried at scale.

use std::time::Duration;

use baton_agent::executor::Outcome;
use baton_proto::api::commands::{CommandResult, CommandSpec};

use super::source::SharedSource;

/// How long a simulated reboot takes.
const REBOOT_DELAY: Duration = Duration::from_secs(2);

/// The answer of a device (`failing` or not) to `spec`.
pub async fn answer(spec: CommandSpec, failing: bool, source: SharedSource) -> Outcome {
    let fails =
        !matches!(spec, CommandSpec::Ping | CommandSpec::SetTelemetryInterval { .. } | CommandSpec::RefreshInventory);
    if failing && fails {
        let result = CommandResult {
            exit_code: Some(1),
            error: Some("simulated failure".into()),
            stderr: "simulated failure\n".into(),
            ..CommandResult::default()
        };
        return Outcome { succeeded: false, result };
    }
    match spec {
        CommandSpec::Ping => output(serde_json::json!({ "pong": chrono::Utc::now().timestamp_millis() })),
        CommandSpec::Exec { program, args, shell, .. } => {
            let line = match (program, shell) {
                (Some(program), _) => std::iter::once(program).chain(args).collect::<Vec<_>>().join(" "),
                (None, Some(shell)) => shell,
                (None, None) => return Outcome::failed("exec needs a program or a shell line"),
            };
            Outcome::ok(CommandResult {
                exit_code: Some(0),
                stdout: format!("simulated: {line}\n"),
                ..CommandResult::default()
            })
        }
        CommandSpec::Reboot => {
            tokio::time::sleep(REBOOT_DELAY).await;
            source.lock().reboot();
            output(serde_json::json!({ "simulated": true, "rebooted": true }))
        }
        CommandSpec::Custom { .. } | CommandSpec::SetTelemetryInterval { .. } | CommandSpec::RefreshInventory => {
            output(serde_json::json!({ "simulated": true }))
        }
        // The agent's connection makes bundles (from the sandbox, when `--sandbox` allows them);
        // a runner is never asked.
        CommandSpec::SupportBundle { .. } => Outcome::failed("support bundles are made by the agent, not the runner"),
    }
}

fn output(value: serde_json::Value) -> Outcome {
    Outcome::ok(CommandResult { output: Some(value), ..CommandResult::default() })
}

/// How a simulated device installs updates: it takes a moment, never touches the host, and a
/// device chosen as failing fails every install (so failure gates can be tried at scale).
pub struct SimInstaller {
    pub failing: bool,
}

impl baton_agent::updates::Installer for SimInstaller {
    fn install<'a>(
        &'a self,
        _job: &'a baton_agent::updates::InstallJob,
    ) -> baton_agent::updates::install::BoxFuture<'a, Result<(), baton_agent::updates::trust::Refusal>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if self.failing {
                return Err(baton_agent::updates::trust::Refusal {
                    class: baton_proto::api::rollouts::FailureClass::Install,
                    detail: "simulated installer failure".into(),
                });
            }
            Ok(())
        })
    }

    fn healthy<'a>(
        &'a self,
        _job: &'a baton_agent::updates::InstallJob,
    ) -> baton_agent::updates::install::BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn revert<'a>(
        &'a self,
        _job: &'a baton_agent::updates::InstallJob,
    ) -> baton_agent::updates::install::BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::source::SimSource;

    fn source() -> SharedSource {
        SharedSource::new(SimSource::new("sim", 1))
    }

    fn exec() -> CommandSpec {
        CommandSpec::Exec {
            program: Some("rm".into()),
            args: vec!["-rf".into(), "/".into()],
            shell: None,
            timeout_secs: None,
        }
    }

    #[tokio::test]
    async fn exec_only_says_what_it_would_have_run() {
        let outcome = answer(exec(), false, source()).await;
        assert!(outcome.succeeded);
        assert_eq!((outcome.result.stdout.as_str(), outcome.result.exit_code), ("simulated: rm -rf /\n", Some(0)));
        let custom = answer(
            CommandSpec::Custom { name: "open-drawer".into(), params: serde_json::Value::Null },
            false,
            source(),
        )
        .await;
        assert_eq!(custom.result.output, Some(serde_json::json!({ "simulated": true })));
    }

    #[tokio::test]
    async fn a_failing_device_fails_everything_but_ping() {
        for spec in [exec(), CommandSpec::Custom { name: "x".into(), params: serde_json::Value::Null }] {
            let outcome = answer(spec, true, source()).await;
            assert!(!outcome.succeeded);
            assert_eq!(outcome.result.exit_code, Some(1));
            assert_eq!(outcome.result.error.as_deref(), Some("simulated failure"));
        }
        assert!(answer(CommandSpec::Ping, true, source()).await.succeeded);
    }
}
