//! Durability through crashes: while `baton serve` is killed with SIGKILL five times and
//! started again on the same data (its embedded SQLite, or with `BATON_TEST_DATABASE_URL` a fresh
//! PostgreSQL database), devices publish telemetry with QoS 1 (`mosquitto_pub`, each message
//! carrying its own timestamp) and an operator creates commands through the API for a real
//! `baton-agent`. After every restart each MQTT device sends again what it never saw
//! acknowledged, as a QoS 1 client does, and a few samples it did see acknowledged, as a device
//! that lost its own state would; a command request the kill cut is sent again with its
//! idempotency key. At the end every acknowledged sample and every command answered 201 is
//! stored — counted — none twice, and every command has finished on the device.

mod support;

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use baton_client::Client;
use baton_proto::api::{
    commands::{CommandCreate, CommandQuery, CommandSpec, CommandState, CommandTarget},
    devices::{DeviceCreate, DeviceQuery},
    enrollment::EnrollmentTokenCreate,
    telemetry::{Aggregate, TelemetryQuery},
};
use baton_testkit::{Tool, eventually, require};
use support::Server;

const BOOTSTRAP: &str = "bt_durability-test-bootstrap-token";
const ENV: [(&str, &str); 3] = [
    ("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP),
    // `mosquitto_pub` connects once per message.
    ("BATON_DEVICE_CONNECTS_PER_SECOND", "100000"),
    ("BATON_DEVICE_CONNECT_BURST", "100000"),
];
const KILLS: usize = 5;
/// Devices publishing at once, one `mosquitto_pub` after another each.
const PUBLISHERS: usize = 3;
/// New samples acknowledged in each life of the server, before it is killed.
const MESSAGES_PER_LIFE: usize = 30;
/// Acknowledged samples each device sends again after a restart.
const RESENT_ACKED: usize = 3;
/// Commands answered 201 in each life of the server, before it is killed.
const COMMANDS_PER_LIFE: usize = 5;

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_and_commands_acknowledged_through_five_kills_are_all_stored_once() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // One HTTP port for every life, where the agent reconnects; MQTT's is read anew each time.
    let addr = format!("127.0.0.1:{}", free_port());
    let database = fresh_database();
    let mut args = vec!["--http-addr", addr.as_str()];
    if let Some(url) = &database {
        args.extend(["--database-url", url.as_str()]);
    }
    let mut server = Server::start_in(&data, &ENV, &args);
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");

    // The agent first, so the only device online is its own.
    let token = client
        .create_enrollment_token(&EnrollmentTokenCreate { name: "durability".into(), ..Default::default() })
        .await
        .expect("token")
        .secret;
    let _agent = impatient_agent(&server.url, &token, "DURABLE-1");
    let agent = eventually("the agent is online", || async {
        let page = client.devices(&DeviceQuery { online: Some(true), ..Default::default() }).await.ok()?;
        page.items.into_iter().next()
    })
    .await;
    let devices = devices(&client).await;

    let t0 = (chrono::Utc::now().timestamp_millis() / 1000 - 3 * 3600) * 1000;
    let ledger = Arc::new(Ledger::default());
    let next = Arc::new(AtomicU64::new(0));
    let (created_tx, mut created) = tokio::sync::mpsc::unbounded_channel();
    let (stop_creating, stopped) = tokio::sync::watch::channel(false);
    let creator = tokio::spawn(keep_creating(client.clone(), agent.id.clone(), created_tx, stopped));
    let mut answered: Vec<(String, String)> = Vec::new();
    for life in 0..=KILLS {
        let target = ledger.acked() + MESSAGES_PER_LIFE;
        let stop = Arc::new(AtomicBool::new(false));
        let publishers = publish(&server, &devices, t0, &ledger, &next, &stop);
        eventually("the server acknowledges samples", || async {
            let acked = ledger.acked();
            if acked >= target { Ok(()) } else { Err(format!("{acked} of {target} acknowledged")) }
        })
        .await;
        for _ in 0..COMMANDS_PER_LIFE {
            answered.push(created.recv().await.expect("the creator runs"));
        }
        if life < KILLS {
            server.child.kill().expect("SIGKILL");
            server.child.wait().expect("the server is gone");
        }
        stop.store(true, Ordering::SeqCst);
        for task in publishers {
            task.await.expect("publisher");
        }
        if life < KILLS {
            server = Server::start_in(&data, &ENV, &args);
            assert_eq!(server.url, client.base_url(), "restarted where the agent reconnects (kill {})", life + 1);
        }
    }
    stop_creating.send_replace(true);
    creator.await.expect("the creator ends");
    while let Ok(more) = created.try_recv() {
        answered.push(more);
    }

    let (acked, stored) = check_telemetry(&client, &devices, t0, &ledger).await;
    let commands = check_commands(&client, &agent.id, &answered).await;
    println!(
        "{KILLS} kills: {acked} samples acknowledged and {stored} points stored, each once; {commands} commands created, each stored once and finished"
    );
}

/// Every acknowledged sample is stored, once: a sample's bucket of one second holds exactly one
/// point. Returns (samples acknowledged, points stored).
async fn check_telemetry(client: &Client, devices: &[(String, String)], t0: i64, ledger: &Ledger) -> (usize, u64) {
    let acked = ledger.acked.lock().expect("lock").clone();
    let sent = ledger.sent.lock().expect("lock").clone();
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
    (acked.len(), stored)
}

/// Every request answered with 201 made exactly one command, whatever the kills cut, and each
/// finished on the device. Returns how many.
async fn check_commands(client: &Client, device: &str, answered: &[(String, String)]) -> usize {
    let all = eventually("every command finished once the device is back", || async {
        let mut commands = Vec::new();
        let mut cursor = None;
        loop {
            let query =
                CommandQuery { device: Some(device.to_owned()), limit: Some(500), cursor, ..Default::default() };
            let page = client.commands(&query).await.ok()?;
            commands.extend(page.items);
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        commands.iter().all(|c| c.state.is_final()).then_some(commands)
    })
    .await;
    let keys: std::collections::BTreeSet<&str> = answered.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), answered.len(), "each key answered once");
    let mut stored: Vec<&str> = all.iter().map(|c| c.batch_id.as_str()).collect();
    stored.sort_unstable();
    let mut expected: Vec<&str> = answered.iter().map(|(_, b)| b.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(stored, expected, "each created command is stored once, and nothing else is");
    assert!(
        all.iter().all(|c| c.state == CommandState::Succeeded),
        "every ping was answered: {:?}",
        all.iter()
            .filter(|c| c.state != CommandState::Succeeded)
            .map(|c| (&c.id, c.state, &c.result))
            .collect::<Vec<_>>()
    );
    all.len()
}

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

/// The publishing MQTT devices: (device id, secret).
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
                if support::publish_acked(&port, &id, &secret, &message).await {
                    ledger.acked.lock().expect("lock").insert((index, k));
                }
            }
        }));
    }
    tasks
}

/// A free port on loopback, so the server can be started again where the agent reconnects.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// With `BATON_TEST_DATABASE_URL` (a PostgreSQL server), a fresh database there for the server
/// to run on; without, the server uses its embedded SQLite in the data dir.
fn fresh_database() -> Option<String> {
    let base = std::env::var("BATON_TEST_DATABASE_URL").ok()?;
    let (server, _) = base.rsplit_once('/').expect("BATON_TEST_DATABASE_URL ends in /<database>");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let name = format!("durability_{}_{nanos}", std::process::id());
    let made = std::process::Command::new("psql")
        .args([base.as_str(), "-qAtc", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql runs");
    assert!(made.success(), "CREATE DATABASE {name}");
    Some(format!("{server}/{name}"))
}

/// A real `baton-agent` enrolling at `url`, retrying at most every second while the server is
/// down (its default patience grows to a minute).
fn impatient_agent(url: &str, token: &str, serial: &str) -> support::remote::Agent {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let state = dir.path().join("state");
    let text = format!(
        "server = \"{url}\"\nenrollment_token = \"{token}\"\nserial = \"{serial}\"\nstate_dir = \"{}\"\nmax_backoff_secs = 1\n",
        state.display()
    );
    std::fs::write(&config, text).expect("agent config");
    let child = std::process::Command::new(support::remote::agent_binary())
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("baton-agent starts");
    support::remote::Agent { child, dir }
}

/// Creates `ping` commands for `device` one after another, each with its own idempotency key;
/// a request the kill cuts is sent again with the same key until the server answers 201.
/// Sends each created batch's id on `created` and stops after `stop` says so.
async fn keep_creating(
    client: Client,
    device: String,
    created: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    for i in 0.. {
        if *stop.borrow() {
            return;
        }
        let key = format!("crash-{i}");
        let req = CommandCreate {
            target: CommandTarget { device_ids: vec![device.clone()], ..Default::default() },
            command: CommandSpec::Ping,
            ttl_secs: Some(600),
            idempotency_key: Some(key.clone()),
        };
        let batch =
            eventually(&format!("command {key} is created"), || async { client.create_commands(&req).await.ok() })
                .await;
        let _ = created.send((key, batch.id));
    }
}
