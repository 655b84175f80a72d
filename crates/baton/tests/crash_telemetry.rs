//! Telemetry through five SIGKILLs: devices publish samples with QoS 1 (`mosquitto_pub`, each
//! message carrying its own timestamp) while `baton serve` is killed and started again on the
//! same data directory. After every restart each device sends again what it never saw
//! acknowledged, as a QoS 1 client does, and a few samples it did see acknowledged, as a device
//! that lost its own state would. At the end every acknowledged sample is stored, and none
//! twice: a sample's bucket of one second holds exactly one point.

mod support;

use std::{
    collections::BTreeSet,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use baton_client::Client;
use baton_proto::api::{
    devices::DeviceCreate,
    telemetry::{Aggregate, TelemetryQuery},
};
use baton_testkit::{Tool, eventually, require};
use support::Server;

const BOOTSTRAP: &str = "bt_crash-telemetry-test-bootstrap-token";
const KILLS: usize = 5;
/// Devices publishing at once, one `mosquitto_pub` after another each.
const PUBLISHERS: usize = 3;
/// New samples acknowledged in each life of the server, before it is killed.
const MESSAGES_PER_LIFE: usize = 30;
/// Acknowledged samples each device sends again after a restart.
const RESENT_ACKED: usize = 3;

/// Samples by (device index, sample number): sample `k` is taken `k` seconds after `t0`.
#[derive(Default)]
struct Ledger {
    sent: Mutex<BTreeSet<(usize, u64)>>,
    acked: Mutex<BTreeSet<(usize, u64)>>,
}

impl Ledger {
    fn acked(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    /// What device `index` sends first in a new life: what it sent without an acknowledgement,
    /// and its last few acknowledged samples.
    fn resend(&self, index: usize) -> Vec<u64> {
        let acked = self.acked.lock().expect("lock");
        let sent = self.sent.lock().expect("lock");
        let mine = |set: &BTreeSet<(usize, u64)>| set.iter().filter(|(i, _)| *i == index).map(|(_, k)| *k).collect();
        let (acked, sent): (BTreeSet<u64>, BTreeSet<u64>) = (mine(&acked), mine(&sent));
        let mut again: Vec<u64> = sent.difference(&acked).copied().collect();
        again.extend(acked.iter().rev().take(RESENT_ACKED));
        again
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_sample_survives_five_kills_and_none_is_stored_twice() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = start(&data);
    let devices = devices(&client(&server)).await;
    let t0 = (chrono::Utc::now().timestamp_millis() / 1000 - 3 * 3600) * 1000;
    let ledger = Arc::new(Ledger::default());
    let next = Arc::new(AtomicU64::new(0));
    for life in 0..=KILLS {
        let target = ledger.acked() + MESSAGES_PER_LIFE;
        let stop = Arc::new(AtomicBool::new(false));
        let publishers = publish(&server, &devices, t0, &ledger, &next, &stop);
        eventually("the server acknowledges samples", || async {
            let acked = ledger.acked();
            if acked >= target { Ok(()) } else { Err(format!("{acked} of {target} acknowledged")) }
        })
        .await;
        if life < KILLS {
            server.child.kill().expect("SIGKILL");
            server.child.wait().expect("the server is gone");
        }
        stop.store(true, Ordering::SeqCst);
        for task in publishers {
            task.await.expect("publisher");
        }
        if life < KILLS {
            server = start(&data);
        }
    }
    let acked = ledger.acked.lock().expect("lock").clone();
    let sent = ledger.sent.lock().expect("lock").clone();
    let client = client(&server);
    let mut lost: Vec<(usize, u64)> = Vec::new();
    let mut twice = Vec::new();
    let mut stored = 0;
    for (index, id) in devices.iter().map(|(id, _)| id).enumerate() {
        let last = sent.iter().filter(|(i, _)| *i == index).map(|(_, k)| *k).max().unwrap_or(0) as i64;
        let query = TelemetryQuery {
            metric: "n".into(),
            from: chrono::DateTime::from_timestamp_millis(t0),
            to: chrono::DateTime::from_timestamp_millis(t0 + (last + 1) * 1000),
            bucket_secs: Some(1),
            agg: Some(Aggregate::Avg),
        };
        let series = client.telemetry(id, &query).await.expect("telemetry");
        let mut seen = BTreeSet::new();
        for point in &series.points {
            let k = ((point.ts.timestamp_millis() - t0) / 1000) as u64;
            assert!(sent.contains(&(index, k)) && point.value == k as f64, "stored but never sent: {point:?}");
            if point.count != 1 {
                twice.push((index, k, point.count));
            }
            stored += point.count;
            seen.insert(k);
        }
        lost.extend(acked.iter().filter(|(i, k)| *i == index && !seen.contains(k)).copied());
    }
    assert!(lost.is_empty(), "acknowledged, then lost to a kill: {} of {} samples {lost:?}", lost.len(), acked.len());
    assert!(twice.is_empty(), "stored more than once (device, sample, times): {twice:?}");
    println!("{KILLS} kills: {} samples acknowledged, {stored} points stored, each once", acked.len());
}

fn start(data: &Path) -> Server {
    let env = [
        ("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP),
        ("BATON_DEVICE_CONNECTS_PER_SECOND", "100000"),
        ("BATON_DEVICE_CONNECT_BURST", "100000"),
    ];
    Server::start_in(data, &env, &["--http-addr", "127.0.0.1:0"])
}

fn client(server: &Server) -> Client {
    Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client")
}

/// The publishing devices: (device id, secret).
async fn devices(client: &Client) -> Vec<(String, String)> {
    let mut devices = Vec::new();
    for i in 0..PUBLISHERS {
        let device = DeviceCreate { serial: format!("sensor-{i}"), ..Default::default() };
        let device = client.create_device(&device).await.expect("device");
        let credential = client.issue_device_credential(&device.id).await.expect("credential");
        devices.push((device.id, credential.secret));
    }
    devices
}

/// One task per device: first what it sends again, then new samples until `stop` is set (or
/// the server is gone, when nothing more is acknowledged).
fn publish(
    server: &Server,
    devices: &[(String, String)],
    t0: i64,
    ledger: &Arc<Ledger>,
    next: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let port = server.mqtt_addr().expect("the server listens for MQTT").port().to_string();
    let mut tasks = Vec::new();
    for (index, (id, secret)) in devices.iter().cloned().enumerate() {
        let (ledger, next, stop, port) = (ledger.clone(), next.clone(), stop.clone(), port.clone());
        tasks.push(tokio::spawn(async move {
            let mut again = ledger.resend(index).into_iter();
            while !stop.load(Ordering::SeqCst) {
                let k = again.next().unwrap_or_else(|| next.fetch_add(1, Ordering::SeqCst));
                ledger.sent.lock().expect("lock").insert((index, k));
                let message = serde_json::json!({"ts": t0 + k as i64 * 1000, "values": {"n": k}}).to_string();
                let published = tokio::process::Command::new("mosquitto_pub")
                    .args(["-d", "-h", "127.0.0.1", "-p", &port, "-q", "1"])
                    .args(["-i", &id, "-u", &id, "-P", &secret, "-t", "baton/v1/me/telemetry", "-m", &message])
                    .kill_on_drop(true)
                    .output();
                if let Ok(Ok(out)) = tokio::time::timeout(Duration::from_secs(20), published).await
                    && String::from_utf8_lossy(&out.stdout).contains("received PUBACK (Mid: 1, RC:0)")
                {
                    ledger.acked.lock().expect("lock").insert((index, k));
                }
            }
        }));
    }
    tasks
}
