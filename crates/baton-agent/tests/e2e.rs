//! End to end with real processes: `baton serve` and the `baton-agent` binary on this machine.
//! The agent enrolls with a token, reports this machine's inventory and telemetry, runs
//! commands (exec, the reboot hook), survives a server restart with commands queued while it
//! was stopped, keeps telemetry while the server is down, and stops when decommissioned.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{OnceLock, mpsc},
    time::Duration,
};

use baton_client::Client;
use baton_proto::api::{
    commands::{Command as Cmd, CommandCreate, CommandQuery, CommandSpec, CommandState, CommandTarget},
    devices::{Device, DeviceQuery},
    enrollment::EnrollmentTokenCreate,
    telemetry::TelemetryQuery,
};

const AGENT: &str = env!("CARGO_BIN_EXE_baton-agent");
const BOOTSTRAP: &str = "e2e-bootstrap-token-0123456789";

/// The `baton` server binary, built once per test process (it belongs to another crate).
fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status =
            Command::new(cargo).args(["build", "-q", "-p", "baton", "--bin", "baton"]).status().expect("cargo runs");
        assert!(status.success(), "building the baton server binary failed");
        Path::new(AGENT).with_file_name(format!("baton{}", std::env::consts::EXE_SUFFIX))
    })
}

struct Server {
    child: Child,
    url: String,
    addr: String,
}

impl Server {
    fn start(data: &Path, addr: &str) -> Self {
        let mut child = Command::new(server_binary())
            .args(["serve", "--http-addr", addr, "--mqtt-addr", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP)
            .env("BATON_ADMIN_PASSWORD", "correct-horse-battery-staple")
            .env("BATON_HEARTBEAT_SECS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("server starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let url = loop {
            let line = rx.recv_timeout(Duration::from_secs(60)).expect("the server says where it listens");
            if let Some(url) = line.strip_prefix("Baton is listening on ") {
                break url.trim().to_owned();
            }
        };
        let addr = url.trim_start_matches("http://").to_owned();
        Self { child, url, addr }
    }

    fn client(&self) -> Client {
        Client::new(&self.url, Some(BOOTSTRAP.into()), None).expect("client")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    fn start(server: &str, token: &str, state: &Path, serial: &str, config: &Path) -> Self {
        let child = Command::new(AGENT)
            .args(["run", "--server", server, "--token", token, "--serial", serial, "--config"])
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent starts");
        Self { child }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use baton_testkit::eventually;

async fn device_by_serial(client: &Client, serial: &str) -> Option<Device> {
    let q = DeviceQuery { q: Some(serial.to_lowercase()), ..Default::default() };
    client.devices(&q).await.ok()?.items.into_iter().find(|d| d.serial.as_deref() == Some(serial))
}

async fn online(client: &Client, serial: &str, want: bool) -> Device {
    eventually(&format!("{serial} is {}", if want { "online" } else { "offline" }), || async {
        device_by_serial(client, serial).await.filter(|d| d.connectivity.online == want)
    })
    .await
}

async fn send(client: &Client, device: &str, command: CommandSpec) -> String {
    let req = CommandCreate {
        target: CommandTarget { device_ids: vec![device.into()], ..Default::default() },
        command,
        ttl_secs: Some(600),
        idempotency_key: None,
    };
    let batch = client.create_commands(&req).await.expect("queued");
    let q = CommandQuery { batch: Some(batch.id), ..Default::default() };
    client.commands(&q).await.expect("commands").items[0].id.clone()
}

async fn finished(client: &Client, id: &str) -> Cmd {
    eventually("the command finishes", || async { client.command(id).await.ok().filter(|c| c.state.is_final()) }).await
}

async fn enrollment_token(client: &Client) -> String {
    let req = EnrollmentTokenCreate { name: "e2e".into(), ..Default::default() };
    client.create_enrollment_token(&req).await.expect("token").secret
}

fn agent_config(dir: &Path) -> PathBuf {
    let path = dir.join("agent.toml");
    let hook = dir.join("rebooted");
    std::fs::write(&path, format!("reboot_command = [\"touch\", \"{}\"]\n", hook.display())).expect("config");
    path
}

fn local(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn an_agent_enrolls_reports_this_machine_and_runs_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), "127.0.0.1:0");
    let client = server.client();
    let token = enrollment_token(&client).await;
    let _agent =
        AgentProcess::start(&server.url, &token, &dir.path().join("state"), "E2E-1", &agent_config(dir.path()));

    let device = online(&client, "E2E-1", true).await;
    assert_eq!(device.status.as_str(), "active");
    let inventory = client.device_inventory(&device.id).await.expect("inventory").expect("reported");
    assert_eq!(inventory.hostname.as_deref(), Some(local("hostname", &[]).trim()));
    let cores: u32 = local("nproc", &["--all"]).trim().parse().expect("nproc");
    assert_eq!(inventory.cpu_cores, Some(cores));
    assert_eq!(inventory.architecture.as_deref(), Some(std::env::consts::ARCH));
    assert_eq!(device.os_family.as_deref(), Some("linux"));

    let interval =
        finished(&client, &send(&client, &device.id, CommandSpec::SetTelemetryInterval { seconds: 1 }).await).await;
    assert_eq!(interval.state, CommandState::Succeeded);
    let latest = eventually("telemetry arrives", || async {
        client.latest_telemetry(&device.id).await.ok().filter(|l| l.metrics.contains_key("cpu.usage_pct"))
    })
    .await;
    assert!(latest.metrics["mem.total_bytes"] > 0.0);
    let series = eventually("a series has points", || async {
        let q = TelemetryQuery { metric: "cpu.usage_pct".into(), bucket_secs: Some(1), ..Default::default() };
        client.telemetry(&device.id, &q).await.ok().filter(|s| s.points.len() >= 2)
    })
    .await;
    assert!(series.points.iter().all(|p| (0.0..=100.0).contains(&p.value)));

    let exec =
        CommandSpec::Exec { program: Some("uname".into()), args: vec!["-a".into()], shell: None, timeout_secs: None };
    let uname = finished(&client, &send(&client, &device.id, exec).await).await;
    assert_eq!(uname.state, CommandState::Succeeded);
    let result = uname.result.expect("result");
    assert_eq!(result.stdout, local("uname", &["-a"]));
    assert_eq!(result.exit_code, Some(0));

    let reboot = finished(&client, &send(&client, &device.id, CommandSpec::Reboot).await).await;
    assert_eq!(reboot.state, CommandState::Succeeded);
    assert!(dir.path().join("rebooted").exists(), "the reboot hook ran (and not a reboot)");

    let failing = CommandSpec::Exec {
        program: None,
        args: vec![],
        shell: Some("echo nope >&2; exit 7".into()),
        timeout_secs: None,
    };
    let failed = finished(&client, &send(&client, &device.id, failing).await).await;
    assert_eq!(failed.state, CommandState::Failed);
    let result = failed.result.expect("result");
    assert_eq!((result.exit_code, result.stderr.as_str()), (Some(7), "nope\n"));
}

#[tokio::test]
async fn the_agent_rides_out_a_server_restart_and_gets_what_was_queued_while_it_was_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, "127.0.0.1:0");
    let client = server.client();
    let token = enrollment_token(&client).await;
    let state = dir.path().join("state");
    let config = agent_config(dir.path());
    let mut agent = AgentProcess::start(&server.url, &token, &state, "E2E-2", &config);
    let device = online(&client, "E2E-2", true).await;
    finished(&client, &send(&client, &device.id, CommandSpec::SetTelemetryInterval { seconds: 1 }).await).await;

    // The server dies; while it is down the agent keeps sampling.
    let addr = server.addr.clone();
    server.kill();
    let down_from = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(3)).await; // the outage being simulated, not a wait for an event
    let down_to = chrono::Utc::now();
    let server = Server::start(&data, &addr);
    let client = server.client();
    online(&client, "E2E-2", true).await;
    let _during = eventually("samples taken during the outage arrive", || async {
        let q = TelemetryQuery {
            metric: "cpu.usage_pct".into(),
            from: Some(down_from),
            to: Some(down_to),
            bucket_secs: Some(1),
            agg: None,
        };
        client.telemetry(&device.id, &q).await.ok().filter(|s| s.points.len() >= 2)
    })
    .await;

    // The agent stops; a command queued meanwhile waits, and runs once it is back.
    agent.stop();
    online(&client, "E2E-2", false).await;
    let echo = CommandSpec::Exec {
        program: Some("echo".into()),
        args: vec!["queued while offline".into()],
        shell: None,
        timeout_secs: None,
    };
    let id = send(&client, &device.id, echo).await;
    assert_eq!(client.command(&id).await.expect("command").state, CommandState::Queued);
    let _agent = AgentProcess::start(&server.url, &token, &state, "E2E-2", &config);
    let done = finished(&client, &id).await;
    assert_eq!(done.state, CommandState::Succeeded);
    assert_eq!(done.result.expect("result").stdout, "queued while offline\n");
}

#[tokio::test]
async fn a_decommissioned_agent_is_refused_and_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), "127.0.0.1:0");
    let client = server.client();
    let token = enrollment_token(&client).await;
    let state = dir.path().join("state");
    let config = agent_config(dir.path());
    let mut agent = AgentProcess::start(&server.url, &token, &state, "E2E-3", &config);
    let device = online(&client, "E2E-3", true).await;

    client.decommission_device(&device.id, true).await.expect("decommissioned");
    let waited = tokio::task::spawn_blocking(move || agent.child.wait());
    let status = tokio::time::timeout(Duration::from_secs(60), waited)
        .await
        .expect("the agent exits within a minute")
        .expect("join")
        .expect("exit status");
    assert_eq!(status.code(), Some(3), "the agent exits as decommissioned");
    assert!(!state.join("identity.json").exists(), "wiped: the identity is gone");
    assert!(state.join("decommissioned").exists());

    // Started again, it does not hammer the server: it stops at once, saying why.
    let out = Command::new(AGENT)
        .args(["run", "--server", &server.url, "--token", &token, "--serial", "E2E-3", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("decommissioned"));
    let after = client.device(&device.id).await.expect("kept with its history");
    assert_eq!((after.status.as_str(), after.connectivity.online), ("decommissioned", false));
}

/// An agent config that installs files under `root`, with a health check that fails when the
/// installed file says `broken`.
fn update_config(dir: &Path, root: &Path) -> PathBuf {
    let path = dir.join("agent.toml");
    let file = root.join("etc/app/app.conf");
    let text = format!(
        "install_root = \"{}\"\nhealth_command = [\"sh\", \"-c\", \"! grep -q broken {}\"]\n",
        root.display(),
        file.display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

async fn rollout_done(client: &Client, id: &str) -> baton_proto::api::rollouts::Rollout {
    eventually("the rollout finishes", || async {
        client
            .rollout(id)
            .await
            .ok()
            .filter(|r| r.state.is_final() || r.state == baton_proto::api::rollouts::RolloutState::Paused)
    })
    .await
}

fn file_rollout(name: &str, artifact: &str, devices: Vec<String>) -> baton_proto::api::rollouts::RolloutCreate {
    use baton_proto::api::rollouts::*;
    RolloutCreate {
        name: name.into(),
        artifact_id: artifact.into(),
        targets: Targets { device_ids: devices, ..Targets::default() },
        failure_gate: FailureGate {
            failed_percent: None,
            failed_count: Some(10),
            min_executed: 1,
            action: GateAction::Pause,
        },
        retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        install: InstallSpec {
            path: Some("/etc/app/app.conf".into()),
            mode: Some("0640".into()),
            ..InstallSpec::default()
        },
        ..RolloutCreate::default()
    }
}

async fn upload(client: &Client, name: &str, version: &str, body: &[u8]) -> String {
    upload_kind(client, name, version, baton_proto::api::artifacts::ArtifactKind::File, body.to_vec()).await
}

async fn upload_kind(
    client: &Client,
    name: &str,
    version: &str,
    kind: baton_proto::api::artifacts::ArtifactKind,
    body: Vec<u8>,
) -> String {
    let facts = baton_proto::api::artifacts::ArtifactUpload {
        name: name.into(),
        version: version.into(),
        kind,
        ..Default::default()
    };
    let len = body.len() as u64;
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(body)]);
    client.upload_artifact(&facts, len, stream).await.expect("uploaded").id
}

#[tokio::test]
async fn a_file_rolled_out_to_two_agents_lands_whole_with_its_mode_and_a_broken_one_is_reverted() {
    use std::os::unix::fs::PermissionsExt;

    use baton_proto::api::rollouts::{ExecutionQuery, ExecutionState, RolloutState};

    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), "127.0.0.1:0");
    let client = server.client();
    let token = enrollment_token(&client).await;
    let mut roots = Vec::new();
    let mut agents = Vec::new();
    let mut devices = Vec::new();
    for i in 1..=2 {
        let home = dir.path().join(format!("agent-{i}"));
        let root = home.join("root");
        std::fs::create_dir_all(root.join("etc/app")).expect("root");
        // What was there before the update.
        std::fs::write(root.join("etc/app/app.conf"), b"old settings\n").expect("old file");
        let config = update_config(&home, &root);
        agents.push(AgentProcess::start(&server.url, &token, &home.join("state"), &format!("FILE-{i}"), &config));
        devices.push(online(&client, &format!("FILE-{i}"), true).await.id);
        roots.push(root);
    }

    let v1 = upload(&client, "app.conf", "1.0", b"good settings, version one\n").await;
    let first = client.create_rollout(&file_rollout("conf 1.0", &v1, devices.clone())).await.expect("rollout");
    let done = rollout_done(&client, &first.id).await;
    assert_eq!(done.state, RolloutState::Completed, "{:?}", done.progress);
    for root in &roots {
        let file = root.join("etc/app/app.conf");
        assert_eq!(std::fs::read(&file).expect("installed"), b"good settings, version one\n");
        assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o7777, 0o640);
        let leftovers: Vec<_> =
            std::fs::read_dir(root.join("etc/app")).expect("dir").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(leftovers.len(), 1, "nothing but the file itself: {leftovers:?}");
    }

    // Version 2 breaks the device's health check: each agent puts version 1 back.
    let v2 = upload(&client, "app.conf", "2.0", b"broken settings\n").await;
    let second = client.create_rollout(&file_rollout("conf 2.0", &v2, devices.clone())).await.expect("rollout");
    let done = rollout_done(&client, &second.id).await;
    let executions = client.all_rollout_executions(&second.id, &ExecutionQuery::default()).await.expect("executions");
    for e in &executions {
        assert_eq!(e.state, ExecutionState::RolledBack, "{e:?}");
        assert_eq!(e.installed_version.as_deref(), Some("1.0"), "the device says it still has 1.0: {e:?}");
        assert!(e.detail.as_deref().unwrap_or_default().contains("reverted"), "{e:?}");
    }
    assert_eq!(done.progress.failed, 2);
    for root in &roots {
        assert_eq!(std::fs::read(root.join("etc/app/app.conf")).expect("file"), b"good settings, version one\n");
    }
    drop(agents);
}

/// A rollout of agent artifact `artifact` to `device`, with a short verify window.
fn agent_rollout(name: &str, artifact: &str, device: &str) -> baton_proto::api::rollouts::RolloutCreate {
    use baton_proto::api::rollouts::*;
    RolloutCreate {
        name: name.into(),
        artifact_id: artifact.into(),
        targets: Targets { device_ids: vec![device.into()], ..Targets::default() },
        failure_gate: FailureGate {
            failed_percent: None,
            failed_count: Some(10),
            min_executed: 1,
            action: GateAction::Pause,
        },
        retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        install: InstallSpec { verify_secs: Some(30), ..InstallSpec::default() },
        ..RolloutCreate::default()
    }
}

async fn upload_agent(client: &Client, version: &str, script: String) -> String {
    upload_kind(client, "baton-agent", version, baton_proto::api::artifacts::ArtifactKind::Agent, script.into_bytes())
        .await
}

#[tokio::test]
async fn the_agent_updates_itself_and_goes_back_when_the_new_one_is_unhealthy() {
    use std::os::unix::fs::PermissionsExt;

    use baton_proto::api::rollouts::{ExecutionQuery, ExecutionState, RolloutState};

    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), "127.0.0.1:0");
    let client = server.client();
    let token = enrollment_token(&client).await;
    // The service runs the agent from its own path, which updates replace.
    let bin = dir.path().join("bin/baton-agent");
    std::fs::create_dir_all(bin.parent().expect("dir")).expect("bin dir");
    std::fs::copy(AGENT, &bin).expect("agent installed");
    let broken = dir.path().join("broken");
    let ran = dir.path().join("b-ran");
    let config = dir.path().join("agent.toml");
    let health = format!("test ! -e {}", broken.display());
    std::fs::write(
        &config,
        format!("agent_binary = \"{}\"\nhealth_command = [\"sh\", \"-c\", \"{health}\"]\n", bin.display()),
    )
    .expect("config");
    let mut child = Command::new(&bin)
        .args(["run", "--server", &server.url, "--token", &token, "--serial", "SELF-1", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("agent starts");
    let device = online(&client, "SELF-1", true).await.id;

    // Version B: a build that says it ran, then is the agent.
    let b = format!("#!/bin/sh\necho ran >> {}\nexec {AGENT} \"$@\"\n", ran.display());
    let v2 = upload_agent(&client, "2.0", b.clone()).await;
    let up = client.create_rollout(&agent_rollout("agent 2.0", &v2, &device)).await.expect("rollout");
    let done = rollout_done(&client, &up.id).await;
    assert_eq!(done.state, RolloutState::Completed, "{:?}", done.progress);
    let e = client.all_rollout_executions(&up.id, &ExecutionQuery::default()).await.expect("executions");
    assert_eq!((e[0].state, e[0].installed_version.as_deref()), (ExecutionState::Succeeded, Some("2.0")), "{e:?}");
    assert_eq!(std::fs::read_to_string(&bin).expect("bin"), b, "the service's binary is B now");
    assert!(ran.exists(), "the agent restarted into B");
    assert!(child.try_wait().expect("wait").is_none(), "the same process (PID) runs on");

    // Version C breaks the health check: the agent goes back to B by itself.
    let c = format!("#!/bin/sh\ntouch {}\nexec {AGENT} \"$@\"\n", broken.display());
    let v3 = upload_agent(&client, "3.0", c).await;
    let bad = client.create_rollout(&agent_rollout("agent 3.0", &v3, &device)).await.expect("rollout");
    let e = eventually("the rollback is reported", || async {
        let e = client.all_rollout_executions(&bad.id, &ExecutionQuery::default()).await.ok()?;
        e.into_iter().next().filter(|e| e.state.is_final())
    })
    .await;
    assert_eq!(e.state, ExecutionState::RolledBack, "{e:?}");
    assert_eq!(e.installed_version.as_deref(), Some("2.0"), "the device says it still runs 2.0: {e:?}");
    assert!(e.detail.as_deref().unwrap_or_default().contains("reverted"), "{e:?}");
    assert_eq!(std::fs::read_to_string(&bin).expect("bin"), b, "B is back in place");
    assert_eq!(std::fs::metadata(&bin).expect("meta").permissions().mode() & 0o111, 0o111);
    online(&client, "SELF-1", true).await;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_pre_install_hook_that_says_not_now_is_retried_later_and_then_installs() {
    use baton_proto::api::rollouts::{ExecutionQuery, ExecutionState, RetryPolicy, RolloutState};

    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), "127.0.0.1:0");
    let client = server.client();
    let token = enrollment_token(&client).await;
    let root = dir.path().join("root");
    let busy = dir.path().join("busy");
    std::fs::write(&busy, b"a sale is in progress").expect("busy marker");
    // "Not now" (75) while the till is busy; the till is free once the first answer is given.
    let hook = format!("if [ -e {0} ]; then rm {0}; exit 75; fi", busy.display());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!("install_root = \"{}\"\npre_install_command = [\"sh\", \"-c\", \"{hook}\"]\n", root.display()),
    )
    .expect("config");
    let _agent = AgentProcess::start(&server.url, &token, &dir.path().join("state"), "HOOK-1", &config);
    let device = online(&client, "HOOK-1", true).await.id;

    let v1 = upload(&client, "app.conf", "1.0", b"settings\n").await;
    let mut req = file_rollout("conf", &v1, vec![device]);
    req.retry = RetryPolicy { max_attempts: 3, backoff_secs: 1, max_backoff_secs: 2 };
    let made = client.create_rollout(&req).await.expect("rollout");
    let done = rollout_done(&client, &made.id).await;
    assert_eq!(done.state, RolloutState::Completed, "{:?}", done.progress);
    let e = client.all_rollout_executions(&made.id, &ExecutionQuery::default()).await.expect("executions");
    assert_eq!((e[0].state, e[0].attempt), (ExecutionState::Succeeded, 2), "{e:?}");
    assert!(
        e[0].detail.as_deref().unwrap_or_default().contains("retry later"),
        "the first attempt's reason stays: {e:?}"
    );
    assert_eq!(std::fs::read(root.join("etc/app/app.conf")).expect("installed"), b"settings\n");
}

#[tokio::test]
async fn a_server_killed_in_the_middle_of_a_rollout_continues_it_and_no_device_installs_twice() {
    use baton_proto::api::rollouts::{ExecutionQuery, PauseReason, RolloutState, SuccessGate, Wave};

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, "127.0.0.1:0");
    let client = server.client();
    let token = enrollment_token(&client).await;
    let mut agents = Vec::new();
    let mut devices = Vec::new();
    let mut logs = Vec::new();
    for i in 1..=2 {
        let home = dir.path().join(format!("agent-{i}"));
        let log = home.join("installs.log");
        std::fs::create_dir_all(&home).expect("home");
        // Every install the device carries out leaves a line.
        let config = home.join("agent.toml");
        let text = format!(
            "install_root = \"{}\"\npost_install_command = [\"sh\", \"-c\", \"echo {{version}} >> {}\"]\n",
            home.join("root").display(),
            log.display()
        );
        std::fs::write(&config, text).expect("config");
        agents.push(AgentProcess::start(&server.url, &token, &home.join("state"), &format!("KILL-{i}"), &config));
        devices.push(online(&client, &format!("KILL-{i}"), true).await.id);
        logs.push(log);
    }
    let v1 = upload(&client, "app.conf", "1.0", b"settings\n").await;
    let mut req = file_rollout("conf", &v1, devices);
    req.waves = vec![Wave::Count(1), Wave::Percent(100.0)];
    req.success_gate = SuccessGate { percent: 100.0, bake_secs: 0, approval: true };
    let made = client.create_rollout(&req).await.expect("rollout");
    let held = rollout_done(&client, &made.id).await;
    assert_eq!((held.state, held.paused_reason), (RolloutState::Paused, Some(PauseReason::Approval)));

    // The server dies without a word (SIGKILL) in the middle of the rollout, and comes back.
    let addr = server.addr.clone();
    server.kill();
    let server = Server::start(&data, &addr);
    let client = server.client();
    let back = client.rollout(&made.id).await.expect("the rollout survived");
    assert_eq!((back.state, back.current_wave), (RolloutState::Paused, 1));
    online(&client, "KILL-1", true).await;
    online(&client, "KILL-2", true).await;
    client.steer_rollout(&made.id, "resume").await.expect("approved");
    let done = rollout_done(&client, &made.id).await;
    assert_eq!(done.state, RolloutState::Completed, "{:?}", done.progress);
    let executions = client.all_rollout_executions(&made.id, &ExecutionQuery::default()).await.expect("executions");
    assert!(executions.iter().all(|e| e.attempt == 1), "{executions:?}");
    for log in &logs {
        assert_eq!(std::fs::read_to_string(log).expect("log"), "1.0\n", "{} installed once", log.display());
    }
    drop(agents);
}
