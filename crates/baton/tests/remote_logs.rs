//! Live logs with real processes: `baton serve`, the real `baton-agent` reading a log file under
//! its `log_paths` or a real journal directory (written by `systemd-journal-remote`, since
//! journald does not run here), the API's NDJSON stream and `baton logs`. A line appended to a
//! followed file shows within a second; `lines`, `grep`, units, priority and `since` filter;
//! paths outside the allow-list, `..` and symbolic links out are refused, as are a device whose
//! owner did not enable logs, a viewer and another tenant; each stream is an event with who
//! read what and how much.

mod support;

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use baton_client::{Client, ClientError};
use baton_proto::{
    api::{
        access::{TokenCreate, UserCreate},
        events::{Event, EventQuery},
        tenants::TenantCreate,
    },
    streams::{LogQuery, LogRecord, LogSource},
};
use baton_testkit::{
    PATIENCE, eventually,
    tools::{Tool, require},
};
use futures::{StreamExt, stream::BoxStream};
use support::{
    BATON, Server,
    check::server_with,
    lines,
    remote::{cli, enrolled, journal},
    terminate,
};

const BOOTSTRAP: &str = "bt_remote-logs-test-bootstrap-token";

type Records = BoxStream<'static, baton_client::Result<LogRecord>>;

fn server() -> (Server, Client) {
    server_with(BOOTSTRAP)
}

fn logs_in(dir: &Path) -> String {
    format!("logs = true\nlog_paths = [\"{}/**\"]", dir.display())
}

fn file(path: &Path) -> LogQuery {
    LogQuery { source: LogSource::File, path: Some(path.display().to_string()), ..LogQuery::default() }
}

fn append(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).expect("log file opens");
    writeln!(f, "{line}").expect("appended");
}

/// The next record whose message contains `needle`, with what came before it.
async fn until(records: &mut Records, needle: &str) -> (LogRecord, Vec<String>) {
    let mut before = Vec::new();
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(record) = records.next().await {
            let record = record.expect("a record");
            if record.message.contains(needle) {
                return Some(record);
            }
            before.push(record.message);
        }
        None
    })
    .await;
    match found {
        Ok(Some(record)) => (record, before),
        other => panic!("no record with {needle:?} (ended: {}); before it: {before:?}", other.is_ok()),
    }
}

/// Every message of a stream that ends by itself (not following).
async fn messages(client: &Client, device: &str, query: &LogQuery) -> Vec<String> {
    let records = client.logs(device, query).await.expect("the logs open");
    let all: Vec<_> = tokio::time::timeout(PATIENCE, records.collect()).await.expect("the stream ends");
    all.into_iter().map(|r: baton_client::Result<LogRecord>| r.expect("a record").message).collect()
}

fn refusal(answer: baton_client::Result<Records>) -> (u16, String) {
    match answer {
        Err(ClientError::Api { status, problem }) => (status.as_u16(), problem.detail.unwrap_or(problem.title)),
        Err(other) => panic!("not a problem: {other}"),
        Ok(_) => panic!("the logs opened"),
    }
}

async fn events(client: &Client, device: &str, kind: &str) -> Vec<Event> {
    let query = EventQuery { device: Some(device.into()), kind: Some(kind.into()), ..EventQuery::default() };
    client.events(&query).await.expect("events").items
}

#[tokio::test]
async fn a_line_appended_to_a_followed_file_shows_within_a_second_through_the_api_and_the_cli() {
    let (server, client) = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let (_agent, device) = enrolled(&client, &server.url, "logs-file", &logs_in(dir.path())).await;
    for i in 1..=5 {
        append(&log, &format!("{} line {i}", if i % 2 == 0 { "ERROR" } else { "info" }));
    }

    // The last `lines`, then what is written.
    let query = LogQuery { lines: Some(2), follow: true, ..file(&log) };
    let mut records = client.logs(&device.id, &query).await.expect("the logs open");
    let (record, before) = until(&mut records, "line 5").await;
    assert_eq!(before, ["ERROR line 4"], "the last 2 lines first");
    assert_eq!(record.source, log.display().to_string());
    let appended = Instant::now();
    append(&log, "fresh line 6");
    let (_, before) = until(&mut records, "fresh line 6").await;
    assert!(appended.elapsed() < Duration::from_secs(1), "shown after {:?}", appended.elapsed());
    assert!(before.is_empty(), "{before:?}");
    drop(records);
    let closed = eventually("the closed stream is an event", || async {
        events(&client, &device.id, "remote.logs_closed").await.into_iter().next()
    })
    .await;
    assert!(closed.data["reason"].as_str().unwrap_or_default().contains("went away"), "{:?}", closed.data);
    assert_eq!(closed.data["lines"].as_u64(), Some(3), "{:?}", closed.data);
    assert!(closed.data["bytes"].as_u64().unwrap_or_default() > 60, "{:?}", closed.data);
    let opened = events(&client, &device.id, "remote.logs_opened").await;
    let data = &opened.first().expect("an opened event").data;
    assert_eq!(data["path"].as_str(), Some(log.display().to_string().as_str()));
    assert_eq!(data["user"].as_str(), closed.data["user"].as_str());
    assert!(data["user"].as_str().unwrap_or_default().starts_with("token:"), "{data:?}");
    assert_eq!(data["source_addr"].as_str(), Some("127.0.0.1"));

    // `grep`: case-insensitive in small letters, exact with capitals; without `follow` it ends.
    let grep = |g: &str| LogQuery { grep: Some(g.into()), ..file(&log) };
    assert_eq!(messages(&client, &device.id, &grep("error")).await, ["ERROR line 2", "ERROR line 4"]);
    assert_eq!(messages(&client, &device.id, &grep("Info")).await, Vec::<String>::new());
    assert_eq!(messages(&client, &device.id, &grep("^info|fresh")).await.len(), 4);

    // The same through the API as it is: NDJSON.
    let url = format!("{}/api/v1/devices/{}/logs?source=file&path={}&lines=1", server.url, device.id, log.display());
    let answer = reqwest::Client::new().get(&url).bearer_auth(BOOTSTRAP).send().await.expect("answer");
    assert_eq!(answer.headers()["content-type"], "application/x-ndjson");
    let body = answer.text().await.expect("body");
    let record: LogRecord = serde_json::from_str(body.trim()).expect("one record a line");
    assert_eq!(record.message, "fresh line 6");

    // `baton logs -f --file`: the latest lines, what is appended, and Ctrl-C's cousin SIGTERM.
    let config = tempfile::tempdir().expect("config dir");
    let mut child = Command::new(BATON)
        .args(["logs", "logs-file", "-f", "-n", "1", "--file"])
        .arg(&log)
        .env("BATON_CONFIG_DIR", config.path())
        .env("BATON_SERVER", &server.url)
        .env("BATON_TOKEN", BOOTSTRAP)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("baton logs runs");
    let shown = lines(child.stdout.take().expect("stdout"));
    let first = shown.recv_timeout(PATIENCE).expect("the last line");
    assert!(first.ends_with(&format!("{}: fresh line 6", log.display())), "{first}");
    append(&log, "from the cli 7");
    let next = shown.recv_timeout(PATIENCE).expect("the appended line");
    assert!(next.ends_with("from the cli 7"), "{next}");
    terminate(&mut child);
    let status = child.wait().expect("baton logs ends");
    assert!(status.success(), "{status:?}");

    // A server that shuts down ends the stream instead of waiting for it.
    let mut records = client.logs(&device.id, &LogQuery { follow: true, ..file(&log) }).await.expect("logs");
    until(&mut records, "from the cli 7").await;
    let mut server = server;
    terminate(&mut server.child);
    let ended = tokio::time::timeout(PATIENCE, async { while let Some(Ok(_)) = records.next().await {} }).await;
    assert!(ended.is_ok(), "the stream ended with the server");
    let status = server.child.wait().expect("the server exits");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn paths_outside_the_allow_list_dot_dots_links_out_and_logs_switched_off_are_refused_saying_why() {
    let (server, client) = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = dir.path().join("allowed");
    std::fs::create_dir(&allowed).expect("mkdir");
    std::fs::write(dir.path().join("secret.log"), "secret\n").expect("written");
    std::os::unix::fs::symlink(dir.path().join("secret.log"), allowed.join("link.log")).expect("symlink");
    let (_agent, device) = enrolled(&client, &server.url, "logs-refusals", &logs_in(&allowed)).await;
    let (_off, off) = enrolled(&client, &server.url, "logs-off", "").await;

    let ask = |path: String| {
        let client = client.clone();
        let device = device.id.clone();
        async move {
            let query = LogQuery { source: LogSource::File, path: Some(path), ..LogQuery::default() };
            refusal(client.logs(&device, &query).await)
        }
    };
    let (status, detail) = ask(dir.path().join("secret.log").display().to_string()).await;
    assert_eq!(status, 403);
    assert!(detail.contains("not under the device's allowed log paths") && detail.contains("log_paths"), "{detail}");
    let (status, detail) = ask(format!("{}/../secret.log", allowed.display())).await;
    assert_eq!((status, detail.contains("must not contain `..`")), (403, true), "{detail}");
    let (status, detail) = ask(allowed.join("link.log").display().to_string()).await;
    assert_eq!((status, detail.contains("through a symbolic link")), (403, true), "{detail}");
    let (status, detail) = ask("relative.log".into()).await;
    assert_eq!((status, detail.contains("path")), (422, true), "{detail}");

    let windows = LogQuery { source: LogSource::EventLog, ..LogQuery::default() };
    let (status, detail) = refusal(client.logs(&device.id, &windows).await);
    assert_eq!((status, detail.contains("Windows Event Log is not supported yet")), (403, true), "{detail}");
    let (status, detail) = refusal(client.logs(&off.id, &file(&allowed.join("x.log"))).await);
    assert_eq!(status, 403);
    assert!(detail.contains("`[remote] logs = true`"), "{detail}");

    let url = format!("{}/api/v1/devices/{}/logs?since=yesterday", server.url, device.id);
    let answer = reqwest::Client::new().get(&url).bearer_auth(BOOTSTRAP).send().await.expect("answer");
    assert_eq!(answer.status().as_u16(), 422);
    assert!(answer.text().await.expect("body").contains("since"));

    // The CLI prints the device's reason and fails.
    let out = cli(
        &server.url,
        BOOTSTRAP,
        &["logs", "logs-refusals", "--file", &format!("{}/../secret.log", allowed.display())],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must not contain `..`"), "{stderr}");
    assert!(events(&client, &device.id, "remote.logs_opened").await.is_empty(), "nothing was opened");
}

#[tokio::test]
async fn a_viewer_and_another_tenant_are_refused() {
    let (server, admin) = server();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("app.log"), "hello\n").expect("written");
    let (_agent, device) = enrolled(&admin, &server.url, "logs-access", &logs_in(dir.path())).await;
    let viewer =
        UserCreate { username: "vera".into(), password: "viewer-password-123".into(), role: Some("viewer".into()) };
    admin.create_user(&viewer).await.expect("viewer");
    let session =
        Client::new(&server.url, None, None).expect("client").login(None, "vera", "viewer-password-123").await;
    let viewer = admin.with_token(session.expect("login").token);
    let token =
        TokenCreate { name: "readonly".into(), role: Some("viewer".into()), expires_in_days: None, permissions: None };
    let viewer_token = admin.with_token(admin.create_token(&token).await.expect("token").secret);
    let other = TenantCreate {
        name: "other".into(),
        display_name: None,
        admin: Some(UserCreate { username: "olga".into(), password: "other-password-123".into(), role: None }),
    };
    admin.create_tenant(&other).await.expect("tenant");
    let anonymous = Client::new(&server.url, None, None).expect("client");
    let login = anonymous.login(Some("other"), "olga", "other-password-123").await.expect("login");
    let other = admin.with_token(login.token);

    let query = file(&dir.path().join("app.log"));
    for (who, client) in [("viewer", &viewer), ("viewer token", &viewer_token)] {
        let (status, detail) = refusal(client.logs(&device.id, &query).await);
        assert_eq!(status, 403, "{who}: {detail}");
        assert!(detail.contains("remote:logs"), "{who}: {detail}");
    }
    let (status, _) = refusal(other.logs(&device.id, &query).await);
    assert_eq!(status, 404, "another tenant's device is not found");
    assert_eq!(messages(&admin, &device.id, &query).await, ["hello"], "the admin reads it");
}

#[tokio::test]
async fn the_journal_is_read_by_unit_priority_pattern_and_time_and_followed() {
    if !require(&[Tool::Journal]) {
        return;
    }
    let (server, client) = server();
    let dir = tempfile::tempdir().expect("tempdir");
    journal(
        dir.path(),
        &[
            (7200, "app.service", 6, "app started two hours ago"),
            (30, "app.service", 3, "app: disk full"),
            (20, "db.service", 6, "db: checkpoint done"),
            (10, "app.service", 6, "app: request served"),
        ],
    );
    let remote = format!("logs = true\njournal_directory = \"{}\"", dir.path().display());
    let (_agent, device) = enrolled(&client, &server.url, "logs-journal", &remote).await;
    let ask = |query: LogQuery| {
        let (client, device) = (client.clone(), device.id.clone());
        async move { messages(&client, &device, &query).await }
    };
    let all = LogQuery::default();
    assert_eq!(ask(all.clone()).await.len(), 4);
    let app = ask(LogQuery { units: vec!["app.service".into()], ..all.clone() }).await;
    assert_eq!(app, ["app started two hours ago", "app: disk full", "app: request served"]);
    assert_eq!(ask(LogQuery { priority: Some(3), ..all.clone() }).await, ["app: disk full"]);
    assert_eq!(ask(LogQuery { grep: Some("DB|disk".into()), ..all.clone() }).await, ["app: disk full"]);
    assert_eq!(ask(LogQuery { grep: Some("db|disk".into()), ..all.clone() }).await.len(), 2);
    assert_eq!(ask(LogQuery { since_secs: Some(3600), ..all.clone() }).await.len(), 3);
    assert_eq!(ask(LogQuery { lines: Some(1), ..all.clone() }).await, ["app: request served"]);

    // A record carries the journal's time, unit and priority.
    let records = client.logs(&device.id, &LogQuery { priority: Some(3), ..all.clone() }).await.expect("logs");
    let record = records.collect::<Vec<_>>().await.remove(0).expect("a record");
    assert_eq!(
        (record.unit.as_deref(), record.priority, record.source.as_str()),
        (Some("app.service"), Some(3), "journal")
    );
    assert!((chrono::Utc::now() - record.ts).num_seconds() >= 29, "{}", record.ts);

    // Following a unit: a new entry of it shows, another unit's does not.
    let follow = LogQuery { units: vec!["app.service".into()], lines: Some(0), follow: true, ..all.clone() };
    let mut records = client.logs(&device.id, &follow).await.expect("the logs open");
    journal(dir.path(), &[(0, "db.service", 6, "db: not shown"), (0, "app.service", 4, "app: live entry")]);
    let (record, before) = until(&mut records, "app: live entry").await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(record.priority, Some(4));
    drop(records);

    // `baton logs` with a unit and a priority by name.
    let out = cli(&server.url, BOOTSTRAP, &["logs", "logs-journal", "-u", "app.service", "-p", "err", "--since", "1h"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.trim_end().ends_with(" app.service[3]: app: disk full"), "{stdout}");
    let out = cli(&server.url, BOOTSTRAP, &["logs", "logs-journal", "--grep", "checkpoint", "--json"]);
    let record: LogRecord = serde_json::from_slice(&out.stdout).expect("a JSON line");
    assert_eq!(record.unit.as_deref(), Some("db.service"));
}
