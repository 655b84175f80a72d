//! What a crash leaves behind: `baton serve` is killed with SIGKILL in the middle of work and
//! started again on the same data directory.

mod support;

use std::path::Path;

use baton_client::Client;
use baton_proto::api::artifacts::ArtifactUpload;
use baton_testkit::eventually;
use futures::StreamExt;
use support::Server;

const BOOTSTRAP: &str = "bt_crash-test-bootstrap-token";

/// The files in `dir` with their sizes.
fn files(dir: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .map_while(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_cut_by_a_kill_leaves_no_staging_file_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let staging = data.join("artifacts/staging");
    let env = [("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP)];
    let args = ["--http-addr", "127.0.0.1:0"];
    let mut server = Server::start_in(&data, &env, &args);
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");

    // 50 MB announced; 4 MiB sent, then the client waits as if on a slow link.
    let body = futures::stream::iter((0..4).map(|_| Ok(vec![7u8; 1 << 20]))).chain(futures::stream::pending());
    let facts = ArtifactUpload { name: "firmware".into(), version: "1.0.0".into(), ..Default::default() };
    let upload = tokio::spawn(async move { client.upload_artifact(&facts, 50_000_000, body).await });
    let staged = eventually("the upload is being staged", || async {
        let staged = files(&staging);
        if staged.iter().any(|(_, size)| *size >= 1 << 20) { Ok(staged) } else { Err(format!("{staged:?}")) }
    })
    .await;

    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("the server is gone");
    upload.abort();
    assert!(!files(&staging).is_empty(), "the kill left the half upload behind: {staged:?}");
    let restarted = Server::start_in(&data, &env, &args);
    assert_eq!(files(&staging), Vec::new(), "the half upload is swept when the server starts again");
    let client = Client::new(&restarted.url, Some(BOOTSTRAP.into()), None).expect("client");
    let listed = client.artifacts(&Default::default()).await.expect("artifacts");
    assert!(listed.items.is_empty(), "nothing half-stored is listed: {:?}", listed.items);
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
    let name = format!("crash_{}_{nanos}", std::process::id());
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
    use baton_proto::api::commands::{CommandCreate, CommandSpec, CommandTarget};
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

#[tokio::test(flavor = "multi_thread")]
async fn commands_created_while_the_server_is_killed_five_times_are_stored_once_and_all_finish() {
    use baton_proto::api::{
        commands::{CommandQuery, CommandState},
        devices::DeviceQuery,
        enrollment::EnrollmentTokenCreate,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port().to_string();
    let env = [("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP)];
    let addr = format!("127.0.0.1:{port}");
    let database = fresh_database();
    let mut args = vec!["--http-addr", addr.as_str()];
    if let Some(url) = &database {
        args.extend(["--database-url", url.as_str()]);
    }
    let mut server = Server::start_in(&data, &env, &args);
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let token = client
        .create_enrollment_token(&EnrollmentTokenCreate { name: "crash".into(), ..Default::default() })
        .await
        .expect("token")
        .secret;
    let _agent = impatient_agent(&server.url, &token, "CRASH-1");
    let device = eventually("the agent is online", || async {
        let page = client.devices(&DeviceQuery { online: Some(true), ..Default::default() }).await.ok()?;
        page.items.into_iter().next()
    })
    .await;

    let (created_tx, mut created) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let creator = tokio::spawn(keep_creating(client.clone(), device.id.clone(), created_tx, stopped));
    let mut answered: Vec<(String, String)> = Vec::new();
    for kill in 1..=5 {
        // A few more commands answered with 201 since the last start, then the kill.
        for _ in 0..5 {
            answered.push(created.recv().await.expect("the creator runs"));
        }
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("the server is gone");
        server = Server::start_in(&data, &env, &args);
        assert_eq!(server.url, client.base_url(), "restarted where the agent reconnects (kill {kill})");
    }
    stop.send_replace(true);
    creator.await.expect("the creator ends");
    while let Ok(more) = created.try_recv() {
        answered.push(more);
    }

    // Every request answered with 201 made exactly one command, whatever the kills cut.
    let all = eventually("every command finished once the device is back", || async {
        let mut commands = Vec::new();
        let mut cursor = None;
        loop {
            let query =
                CommandQuery { device: Some(device.id.clone()), limit: Some(500), cursor, ..Default::default() };
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
        all.iter().filter(|c| c.state != CommandState::Succeeded).map(|c| (&c.id, c.state)).collect::<Vec<_>>()
    );
}
