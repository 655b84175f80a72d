//! What a power cut leaves: `baton serve` keeps its data directory on cutfs
//! (`baton_testkit::cutfs`, where whatever is not synced is lost at a cut), takes QoS 1
//! telemetry from `mosquitto_pub` and command batches through the API, and is killed with
//! SIGKILL while both are still coming in. Then the power is cut, the file system mounted
//! again (a new kernel cache, so no cached page hides a lost write), the server started on what
//! survived, and every message it PUBACKed and every batch it answered 201 for must be there.
//! Several cuts in a row, each on what the last one left.
//!
//! With `BATON_SQLITE_SYNCHRONOUS=normal` in the environment (the server inherits it) this test
//! fails: that setting syncs only at checkpoints.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use baton_client::Client;
use baton_proto::api::{
    commands::{CommandCreate, CommandSpec, CommandTarget},
    devices::DeviceCreate,
    telemetry::TelemetryQuery,
};
use baton_testkit::{Tool, cutfs::CutFs, eventually, require};
use support::Server;

const BOOTSTRAP: &str = "bt_power-cut-test-bootstrap-token";
/// Power cuts in one run, each followed by a restart on what survived.
const CUTS: usize = 4;
/// Devices publishing at once, one `mosquitto_pub` after another each.
const PUBLISHERS: usize = 3;
/// Acknowledged before the server is killed, per cut (more arrive while it is being killed).
const MESSAGES_PER_CUT: usize = 40;
const COMMANDS_PER_CUT: usize = 10;
/// The first sample's time; sample `k` is `k` seconds later, so each has a bucket of its own.
const HOURS_BACK: i64 = 3;

/// What the server acknowledged: (device index, sample number) and command batch ids.
#[derive(Default)]
struct Acked {
    samples: Mutex<Vec<(usize, u64)>>,
    batches: Mutex<Vec<String>>,
}

/// The devices, on the server's MQTT listener: (device id, secret), and the one commands target.
struct Fleet {
    publishers: Vec<(String, String)>,
    target: String,
    t0: i64,
}

#[tokio::test(flavor = "multi_thread")]
async fn no_acknowledged_message_or_command_is_lost_to_a_power_cut() {
    if !require(&[Tool::Fuse, Tool::Mosquitto]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (backing, mountpoint) = (dir.path().join("disk"), dir.path().join("mnt"));
    std::fs::create_dir(&backing).expect("backing dir");
    std::fs::create_dir(&mountpoint).expect("mount point");
    // Declared before the server, so a failing test stops the server before unmounting.
    let mut fs = CutFs::mount(&backing, &mountpoint).expect("cutfs mounts");
    let mut server = start(&mountpoint);
    let fleet = fleet(&client(&server)).await;
    let acked = Arc::new(Acked::default());
    let next = Arc::new(AtomicU64::new(0));
    for cut in 1..=CUTS {
        let before = (acked.samples.lock().expect("lock").len(), acked.batches.lock().expect("lock").len());
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = traffic(&server, &fleet, &acked, &next, &stop);
        eventually("enough traffic is acknowledged", || async {
            let (samples, batches) =
                (acked.samples.lock().expect("lock").len(), acked.batches.lock().expect("lock").len());
            let (samples, batches) = (samples - before.0, batches - before.1);
            if samples >= MESSAGES_PER_CUT && batches >= COMMANDS_PER_CUT {
                Ok(())
            } else {
                Err(format!("{samples} messages and {batches} batches acknowledged"))
            }
        })
        .await;
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("the server is gone");
        stop.store(true, Ordering::SeqCst);
        for task in traffic {
            task.await.expect("traffic task");
        }
        let lost = fs.cut().expect("the power is cut and the file system unmounted");
        assert!(lost.files > 0, "the server wrote through cutfs, so a cut drops something: {lost:?}");
        fs = CutFs::mount(&backing, &mountpoint).expect("cutfs mounts again");
        server = start(&mountpoint);
        let (samples, batches) = check(&client(&server), &fleet, &acked).await;
        println!(
            "cut {cut}: {lost:?} unsynced; after the restart all {samples} acknowledged messages and {batches} \
             created batches are stored"
        );
    }
    drop(server);
    drop(fs);
}

fn start(mountpoint: &Path) -> Server {
    let env = [
        ("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP),
        ("BATON_DEVICE_CONNECTS_PER_SECOND", "100000"),
        ("BATON_DEVICE_CONNECT_BURST", "100000"),
    ];
    Server::start_in(&mountpoint.join("data"), &env, &["--http-addr", "127.0.0.1:0"])
}

fn client(server: &Server) -> Client {
    Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client")
}

async fn fleet(client: &Client) -> Fleet {
    let mut publishers = Vec::new();
    for i in 0..PUBLISHERS {
        let device = DeviceCreate { serial: format!("sensor-{i}"), ..Default::default() };
        let device = client.create_device(&device).await.expect("device");
        let credential = client.issue_device_credential(&device.id).await.expect("credential");
        publishers.push((device.id, credential.secret));
    }
    let target = DeviceCreate { serial: "command-target".into(), ..Default::default() };
    let target = client.create_device(&target).await.expect("device").id;
    let now = chrono::Utc::now().timestamp_millis() / 1000 * 1000;
    Fleet { publishers, target, t0: now - HOURS_BACK * 3_600_000 }
}

/// Starts the publishers and the command creator; each records what was acknowledged and stops
/// once `stop` is set (or the server is gone: then nothing more is acknowledged anyway).
fn traffic(
    server: &Server,
    fleet: &Fleet,
    acked: &Arc<Acked>,
    next: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mqtt = server.mqtt_addr().expect("the server listens for MQTT");
    let mut tasks = Vec::new();
    for (index, (id, secret)) in fleet.publishers.iter().cloned().enumerate() {
        let (acked, next, stop, t0) = (acked.clone(), next.clone(), stop.clone(), fleet.t0);
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let message = serde_json::json!({"ts": t0 + k as i64 * 1000, "values": {"n": k}}).to_string();
                if support::publish_acked(&mqtt.port().to_string(), &id, &secret, &message).await {
                    acked.samples.lock().expect("lock").push((index, k));
                }
            }
        }));
    }
    let (client, target, acked, stop) = (client(server), fleet.target.clone(), acked.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let request = CommandCreate {
                target: CommandTarget { device_ids: vec![target.clone()], ..Default::default() },
                command: CommandSpec::Ping,
                ttl_secs: None,
                idempotency_key: None,
            };
            if let Ok(batch) = client.create_commands(&request).await {
                acked.batches.lock().expect("lock").push(batch.id);
            }
        }
    }));
    tasks
}

/// Asserts every acknowledged sample and batch is stored; returns how many were checked.
async fn check(client: &Client, fleet: &Fleet, acked: &Acked) -> (usize, usize) {
    let samples = acked.samples.lock().expect("lock").clone();
    let batches = acked.batches.lock().expect("lock").clone();
    let last = samples.iter().map(|(_, k)| *k).max().unwrap_or(0) as i64;
    let mut missing = Vec::new();
    for (index, (id, _)) in fleet.publishers.iter().enumerate() {
        let query = TelemetryQuery {
            metric: "n".into(),
            from: chrono::DateTime::from_timestamp_millis(fleet.t0),
            to: chrono::DateTime::from_timestamp_millis(fleet.t0 + (last + 1) * 1000),
            bucket_secs: Some(1),
            agg: None,
        };
        let series = client.telemetry(id, &query).await.expect("telemetry");
        let stored: BTreeMap<i64, f64> =
            series.points.iter().map(|p| ((p.ts.timestamp_millis() - fleet.t0) / 1000, p.value)).collect();
        let wanted: BTreeSet<u64> = samples.iter().filter(|(i, _)| *i == index).map(|(_, k)| *k).collect();
        missing.extend(wanted.into_iter().filter(|k| stored.get(&(*k as i64)) != Some(&(*k as f64))));
    }
    let mut lost_batches = Vec::new();
    for id in &batches {
        if !client.command_batch(id).await.is_ok_and(|b| b.total == 1) {
            lost_batches.push(id.clone());
        }
    }
    assert!(
        missing.is_empty() && lost_batches.is_empty(),
        "acknowledged, then lost to a power cut: {} of {} messages {missing:?}, {} of {} command batches {lost_batches:?}",
        missing.len(),
        samples.len(),
        lost_batches.len(),
        batches.len()
    );
    (samples.len(), batches.len())
}
