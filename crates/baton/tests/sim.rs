//! `baton sim` as a user runs it: the real binary against a real `baton serve` on a random port,
//! checked only through the REST API — devices enroll and come online with telemetry, go
//! offline when the simulator stops, and come back as the same devices on the next run.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
};

use baton_client::Client;
use baton_proto::api::{
    devices::{Device, DeviceQuery, DeviceStatus},
    enrollment::EnrollmentTokenCreate,
};
use support::{BATON, Server, lines, terminate};

const BOOTSTRAP: &str = "bt_sim-test-bootstrap-token";

use baton_testkit::eventually;

/// `baton sim` with its stdout and stderr read line by line.
struct Sim {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Sim {
    fn start(server: &str, token: &str, args: &[&str]) -> Self {
        let mut child = Command::new(BATON)
            .args(["sim", "--server", server, "--token", token])
            .args(args)
            .env_remove("BATON_SERVER")
            .env_remove("BATON_ENROLLMENT_TOKEN")
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("baton sim starts");
        let stdout = lines(child.stdout.take().expect("stdout"));
        let stderr = lines(child.stderr.take().expect("stderr"));
        Self { child, stdout, stderr }
    }

    /// Waits for the exit; returns the status and everything printed on stdout, then stderr.
    async fn exit(&mut self) -> (ExitStatus, Vec<String>) {
        let child = &mut self.child;
        let status = eventually("exit of the simulator", || {
            let exited = child.try_wait().expect("wait");
            async move { exited.ok_or_else(|| "still running".to_owned()) }
        })
        .await;
        // The reader threads end with the pipes, which close when the process exits.
        let mut printed: Vec<String> = self.stdout.iter().collect();
        printed.extend(self.stderr.iter());
        (status, printed)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn online(client: &Client) -> Vec<Device> {
    let query = DeviceQuery { online: Some(true), limit: Some(100), ..DeviceQuery::default() };
    client.devices(&query).await.expect("online devices").items
}

fn ids(devices: &[Device]) -> BTreeSet<String> {
    devices.iter().map(|d| d.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simulated_fleet_comes_online_with_telemetry_and_goes_offline_when_stopped() {
    let server = Server::start(&[("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP)], &["--http-addr", "127.0.0.1:0"]);
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let labels = BTreeMap::from([("fleet".to_owned(), "sim".to_owned())]);
    let req = EnrollmentTokenCreate { name: "sim".into(), labels, ..EnrollmentTokenCreate::default() };
    let token = client.create_enrollment_token(&req).await.expect("enrollment token").secret;

    let mut sim = Sim::start(&server.url, &token, &["--devices", "5", "--duration", "600", "--fail-rate", "0.2"]);
    let devices = eventually("5 devices online", || async {
        let devices = online(&client).await;
        if devices.len() == 5 { Ok(devices) } else { Err(format!("{} online", devices.len())) }
    })
    .await;
    let serials: BTreeSet<&str> = devices.iter().filter_map(|d| d.serial.as_deref()).collect();
    assert_eq!(serials, BTreeSet::from(["sim-00001", "sim-00002", "sim-00003", "sim-00004", "sim-00005"]));
    for device in &devices {
        assert_eq!(device.status, DeviceStatus::Active, "{device:?}");
        assert!(device.connectivity.online);
        assert_eq!(device.labels.get("fleet").map(String::as_str), Some("sim"));
        assert!(device.model.is_some() && device.os_family.is_some(), "inventory reported: {device:?}");
        let latest = eventually("telemetry", || async {
            let latest = client.latest_telemetry(&device.id).await.expect("latest telemetry");
            if latest.metrics.contains_key("cpu.usage_pct") { Ok(latest) } else { Err(format!("{latest:?}")) }
        })
        .await;
        for metric in ["mem.used_pct", "load.1m", "temp[cpu].celsius", "uptime.secs", "net.rx_bytes_per_s"] {
            assert!(latest.metrics.contains_key(metric), "{metric} missing: {latest:?}");
        }
    }

    terminate(&mut sim.child);
    let (status, printed) = sim.exit().await;
    assert!(status.success(), "{status}: {printed:#?}");
    assert!(printed.iter().any(|l| l.starts_with("All 5 device(s) connected after")), "{printed:#?}");
    assert!(printed.iter().any(|l| l.starts_with("Stopped after")), "{printed:#?}");
    eventually("devices offline", || async {
        let n = online(&client).await.len();
        if n == 0 { Ok(()) } else { Err(format!("{n} still online")) }
    })
    .await;

    // The next run enrolls the same serials again: the same devices, not new ones; and
    // --duration ends it on its own.
    let mut again = Sim::start(&server.url, &token, &["--devices", "5", "--duration", "3"]);
    let (status, printed) = again.exit().await;
    assert!(status.success(), "{status}: {printed:#?}");
    assert!(printed.iter().any(|l| l.starts_with("All 5 device(s) connected after")), "{printed:#?}");
    let all = client.devices(&DeviceQuery { limit: Some(100), ..DeviceQuery::default() }).await.expect("devices");
    assert_eq!(ids(&all.items), ids(&devices));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_token_or_a_refused_enrollment_token_ends_the_simulator_with_one_clear_error() {
    let server = Server::start(&[("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP)], &["--http-addr", "127.0.0.1:0"]);
    let mut api_token = Sim::start(&server.url, BOOTSTRAP, &["--devices", "1"]);
    let (status, printed) = api_token.exit().await;
    assert!(!status.success());
    assert!(printed.iter().any(|l| l.contains("not an API token")), "{printed:#?}");

    let mut refused = Sim::start(&server.url, "be_not-a-real-token", &["--devices", "2"]);
    let (status, printed) = refused.exit().await;
    assert!(!status.success());
    assert!(printed.iter().any(|l| l.starts_with("error: every device stopped")), "{printed:#?}");
}
