//! Remote terminals end to end with real processes: `baton serve`, the real `baton-agent` with
//! `[remote] terminal = true`, and a client on the attach WebSocket. A command runs on a real
//! PTY, a resize reaches `stty`, leaving ends the shell, the recording plays in the real
//! `asciinema`; the refusals (a viewer, another tenant, a token without `remote:terminal`, the
//! tenant's switch, an agent that did not enable terminals) each say why; a watcher sees the
//! output and cannot type.

mod support;

use baton_client::{Client, ClientError};
use baton_proto::api::{
    access::{PageQuery, TokenCreate, UserCreate},
    events::EventQuery,
    remote::{RemotePolicy, SessionCreate, SessionState},
};
use baton_testkit::{
    eventually,
    tools::{Tool, require},
};
use support::{
    Server,
    remote::{Term, enrolled, other_tenant},
};

const BOOTSTRAP: &str = "bt_remote-test-bootstrap-token";

fn terminal() -> SessionCreate {
    SessionCreate { cols: Some(80), rows: Some(24), ..Default::default() }
}

fn server() -> Server {
    Server::start(
        &[("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP), ("BATON_HEARTBEAT_SECS", "2")],
        &["--http-addr", "127.0.0.1:0"],
    )
}

#[tokio::test]
async fn a_terminal_runs_commands_resizes_ends_with_its_client_and_plays_in_asciinema() {
    if !require(&[Tool::Asciinema]) {
        return;
    }
    let server = server();
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let (_agent, device) = enrolled(&client, &server.url, "term-1", "terminal = true\nshell = \"/bin/sh\"").await;

    let ticket = client.open_session(&device.id, &terminal()).await.expect("session opens");
    assert_eq!(ticket.session.state, SessionState::Pending);
    let mut term = Term::attach(&client.attach_url(&ticket)).await;
    assert_eq!(term.closed, None, "the device opened the terminal");
    term.type_text("echo $((6*7))\n").await;
    term.expect("42").await;
    term.resize(100, 31).await;
    // Quotes split the markers, so only the shell's output (not the typed line's echo) has them.
    term.type_text("stty size; echo \"p\"\"id=$$\" \"e\"\"nd\"\n").await;
    term.expect("31 100").await;
    term.expect(" end").await;
    let pid: u32 = term
        .output
        .split("pid=")
        .last()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the shell's pid");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the shell runs while attached");
    let open = client.session(&device.id, &ticket.session.id).await.expect("session");
    assert_eq!(open.state, SessionState::Open);
    term.leave().await;

    let closed = eventually("the session is closed with its recording", || async {
        let s = client.session(&device.id, &ticket.session.id).await.ok()?;
        (s.state == SessionState::Closed && s.recording.is_some()).then_some(s)
    })
    .await;
    assert!(closed.close_reason.as_deref().is_some_and(|r| r.starts_with("closed by token:")), "{closed:?}");
    eventually("the shell ended with its client", || async {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .await;

    let cast = client.recording(&device.id, &ticket.session.id).await.expect("recording");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &cast).expect("write cast");
    // `asciinema cat` reads its controlling terminal: `script` gives it one.
    let cat = format!("asciinema cat {}", file.path().display());
    let played = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &cat, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("asciinema runs under script");
    assert!(played.status.success(), "asciinema cat: {}", String::from_utf8_lossy(&played.stderr));
    let printed = String::from_utf8_lossy(&played.stdout);
    assert!(printed.contains("42") && printed.contains("31 100"), "{printed}");
    let listed = client.recordings(Some(&device.id), &PageQuery::default()).await.expect("recordings");
    assert_eq!(listed.items.len(), 1);
    let recording = listed.items[0].recording.clone().expect("recording facts");
    assert_eq!(recording.size_bytes, cast.len() as u64);
    assert!(!recording.input_recorded, "keystrokes are not recorded unless the tenant asks");

    // A command with a TTY ends the session with its exit code.
    let ticket = client
        .open_session(
            &device.id,
            &SessionCreate { command: vec!["sh".into(), "-c".into(), "tty; exit 3".into()], ..terminal() },
        )
        .await
        .expect("session");
    let mut term = Term::attach(&client.attach_url(&ticket)).await;
    term.expect("/dev/pts/").await;
    let (_, code) = term.until_closed().await;
    assert_eq!(code, Some(3));
}

#[tokio::test]
async fn who_may_not_open_a_terminal_is_refused_and_told_why() {
    let server = server();
    let admin = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let (_off, quiet) = enrolled(&admin, &server.url, "term-off", "").await;
    let (_on, device) = enrolled(&admin, &server.url, "term-on", "terminal = true").await;

    // An agent that did not enable terminals refuses, saying how to allow it.
    let ticket = admin.open_session(&quiet.id, &terminal()).await.expect("session");
    let mut term = Term::attach(&admin.attach_url(&ticket)).await;
    let (reason, _) = term.until_closed().await;
    assert!(reason.contains("[remote] terminal = true"), "{reason}");
    let stored = admin.session(&quiet.id, &ticket.session.id).await.expect("session");
    assert_eq!(stored.state, SessionState::Closed);
    assert_eq!(stored.close_reason.as_deref(), Some(reason.as_str()));

    // A viewer, and a token without `remote:terminal`.
    let mut refused = Vec::new();
    admin
        .create_user(&UserCreate {
            username: "vera".into(),
            password: "viewer-password-123".into(),
            role: Some("viewer".into()),
        })
        .await
        .expect("viewer");
    let viewer = Client::new(&server.url, None, None).expect("client");
    let session = viewer.login(None, "vera", "viewer-password-123").await.expect("login");
    refused.push(("viewer", viewer.with_token(session.token)));
    let scoped = admin
        .create_token(&TokenCreate {
            name: "readonly".into(),
            role: Some("viewer".into()),
            expires_in_days: None,
            permissions: None,
        })
        .await
        .expect("token");
    refused.push(("viewer token", admin.with_token(scoped.secret)));
    // An operator of another tenant.
    let other = other_tenant(&admin, &server.url).await;
    for (who, client) in &refused {
        match client.open_session(&device.id, &terminal()).await {
            Err(ClientError::Api { status, problem }) => {
                assert_eq!(status.as_u16(), 403, "{who}: {problem:?}");
                assert!(
                    problem.detail.as_deref().unwrap_or_default().contains("remote:terminal"),
                    "{who}: {problem:?}"
                );
            }
            other => panic!("{who} opened a terminal: {other:?}"),
        }
    }
    match other.open_session(&device.id, &terminal()).await {
        Err(ClientError::Api { status, .. }) => {
            assert_eq!(status.as_u16(), 404, "another tenant's device is not found")
        }
        answer => panic!("another tenant opened a terminal: {answer:?}"),
    }

    // A watcher sees the output and cannot type.
    let ticket = admin.open_session(&device.id, &terminal()).await.expect("session");
    let mut owner = Term::attach(&admin.attach_url(&ticket)).await;
    owner.type_text("echo ready\n").await;
    owner.expect("ready").await;
    let watch = admin.watch_session(&device.id, &ticket.session.id).await.expect("watch ticket");
    assert!(watch.read_only);
    let mut watcher = Term::attach(&admin.attach_url(&watch)).await;
    watcher.type_text("echo typed-by-watcher\n").await;
    owner.type_text("echo from-$((40+2))-owner\n").await;
    watcher.expect("from-42-owner").await;
    owner.expect("from-42-owner").await;
    assert!(!owner.output.contains("typed-by-watcher"), "the watcher typed: {}", owner.output);
    // The attach token works once.
    let again = tokio_tungstenite::connect_async(admin.attach_url(&ticket)).await;
    assert!(again.is_err(), "a used attach token attached again");
    let closed = admin.close_session(&device.id, &ticket.session.id).await.expect("closed");
    assert_eq!(closed.state, SessionState::Closed);
    let (reason, _) = watcher.until_closed().await;
    assert!(reason.starts_with("closed by"), "{reason}");

    // The tenant's switch.
    admin.set_remote_policy(&RemotePolicy { enabled: false, record_input: false }).await.expect("policy");
    match admin.open_session(&device.id, &terminal()).await {
        Err(ClientError::Api { status, problem }) => {
            assert_eq!(status.as_u16(), 403);
            assert!(problem.detail.as_deref().unwrap_or_default().contains("switched off"), "{problem:?}");
        }
        answer => panic!("a terminal opened with remote access off: {answer:?}"),
    }
}

#[tokio::test]
async fn limits_consent_input_recording_and_events_work_as_configured() {
    let server = Server::start(
        &[
            ("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP),
            ("BATON_HEARTBEAT_SECS", "2"),
            ("BATON_REMOTE_IDLE_TIMEOUT_SECS", "2"),
            ("BATON_REMOTE_SESSIONS_PER_DEVICE", "1"),
        ],
        &["--http-addr", "127.0.0.1:0"],
    );
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let marks = tempfile::tempdir().expect("tempdir");
    let asked = marks.path().join("asked");
    // The consent hook approves, and notes who asked.
    let approve = format!(
        "terminal = true\nconsent_command = [\"/bin/sh\", \"-c\", \"echo \\\"$0\\\" > {}\", \"{{user}}\"]",
        asked.display()
    );
    let (_agent, device) = enrolled(&client, &server.url, "term-consent", &approve).await;
    let (_grumpy, refusing) =
        enrolled(&client, &server.url, "term-no", "terminal = true\nconsent_command = [\"/bin/false\"]").await;

    // Keystrokes are recorded when the tenant asks.
    client.set_remote_policy(&RemotePolicy { enabled: true, record_input: true }).await.expect("policy");
    let ticket = client.open_session(&device.id, &terminal()).await.expect("session");
    // One session per device here: a second is refused while the first waits to be attached.
    match client.open_session(&device.id, &terminal()).await {
        Err(ClientError::Api { status, problem }) => {
            assert_eq!(status.as_u16(), 409);
            assert!(problem.detail.as_deref().unwrap_or_default().contains("limit"), "{problem:?}");
        }
        answer => panic!("a second session opened over the limit: {answer:?}"),
    }
    let mut term = Term::attach(&client.attach_url(&ticket)).await;
    assert_eq!(term.closed, None);
    assert_eq!(std::fs::read_to_string(&asked).expect("the hook ran").trim(), "token:bootstrap");
    term.type_text("echo typed-$((1+1))\n").await;
    term.expect("typed-2").await;
    // Then nothing for the idle timeout.
    let (reason, _) = term.until_closed().await;
    assert_eq!(reason, "idle for 2 s");
    let closed = eventually("the recording is stored", || async {
        client.session(&device.id, &ticket.session.id).await.ok().filter(|s| s.recording.is_some())
    })
    .await;
    assert!(closed.recording.as_ref().is_some_and(|r| r.input_recorded));
    let cast = String::from_utf8(client.recording(&device.id, &ticket.session.id).await.expect("cast")).expect("utf-8");
    let typed: String = cast
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<(f64, String, String)>(l).ok())
        .filter(|(_, code, _)| code == "i")
        .map(|(_, _, data)| data)
        .collect();
    assert_eq!(typed, "echo typed-$((1+1))\n");

    // Both ends are events with the user and their address.
    let events = client
        .events(&EventQuery {
            device: Some(device.id.clone()),
            kind: Some("remote.".into()),
            limit: None,
            cursor: None,
        })
        .await
        .expect("events");
    let kinds: Vec<&str> = events.items.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["remote.session_ended", "remote.session_started"]);
    for event in &events.items {
        assert_eq!(event.data["user"], "token:bootstrap");
        assert_eq!(event.data["source_addr"], "127.0.0.1");
    }
    assert_eq!(events.items[0].data["reason"], "idle for 2 s");

    // A hook that says no refuses the session, saying so.
    let ticket = client.open_session(&refusing.id, &terminal()).await.expect("session");
    let mut term = Term::attach(&client.attach_url(&ticket)).await;
    let (reason, _) = term.until_closed().await;
    assert!(reason.contains("declined"), "{reason}");
}

#[tokio::test]
async fn a_terminal_flooding_output_does_not_hold_up_the_devices_commands() {
    use baton_proto::api::commands::{CommandCreate, CommandQuery, CommandSpec, CommandState, CommandTarget};
    use futures::StreamExt;

    let server = server();
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let (_agent, device) = enrolled(&client, &server.url, "term-busy", "terminal = true").await;
    let flood = SessionCreate { command: vec!["yes".into(), "busy-terminal".into()], ..terminal() };
    let ticket = client.open_session(&device.id, &flood).await.expect("session");
    let (mut ws, _) = tokio_tungstenite::connect_async(client.attach_url(&ticket)).await.expect("attach");
    // The client keeps reading the flood as fast as it comes.
    let (bytes_tx, bytes) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut total = 0;
        while let Some(Ok(frame)) = ws.next().await {
            total += frame.len();
            bytes_tx.send_replace(total);
        }
    });
    eventually("the terminal floods", || async { (*bytes.borrow() > 4 * 1024 * 1024).then_some(()) }).await;

    // Meanwhile commands go through the same connection, one after another.
    for i in 0..5 {
        let req = CommandCreate {
            target: CommandTarget { device_ids: vec![device.id.clone()], ..Default::default() },
            command: CommandSpec::Exec {
                program: None,
                args: vec![],
                shell: Some(format!("echo cmd-{i}")),
                timeout_secs: None,
            },
            ttl_secs: Some(600),
            idempotency_key: None,
        };
        let batch = client.create_commands(&req).await.expect("queued");
        let done = eventually("the command finishes while the terminal floods", || async {
            let q = CommandQuery { batch: Some(batch.id.clone()), ..Default::default() };
            let command = client.commands(&q).await.ok()?.items.pop()?;
            (command.state == CommandState::Succeeded).then_some(command)
        })
        .await;
        let stdout = done.result.map(|r| r.stdout).unwrap_or_default();
        assert_eq!(stdout.trim(), format!("cmd-{i}"));
    }
    assert!(!reader.is_finished(), "the terminal was still flooding");
    let before = *bytes.borrow();
    eventually("the flood goes on", || async { (*bytes.borrow() > before).then_some(()) }).await;
    client.close_session(&device.id, &ticket.session.id).await.expect("closed");
    reader.await.expect("reader ends when the session closes");
}

#[tokio::test]
async fn a_session_is_closed_at_its_maximum_length_even_while_busy() {
    let server = Server::start(
        &[("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP), ("BATON_REMOTE_MAX_SESSION_SECS", "2")],
        &["--http-addr", "127.0.0.1:0"],
    );
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let (_agent, device) = enrolled(&client, &server.url, "term-long", "terminal = true").await;
    // A program that keeps printing: never idle.
    let busy = SessionCreate {
        command: vec!["sh".into(), "-c".into(), "while :; do echo tick; sleep 0.2; done".into()],
        ..terminal()
    };
    let ticket = client.open_session(&device.id, &busy).await.expect("session");
    let mut term = Term::attach(&client.attach_url(&ticket)).await;
    term.expect("tick").await;
    let (reason, _) = term.until_closed().await;
    assert_eq!(reason, "open for the longest a session may be (2 s)");
    assert!(term.output.matches("tick").count() >= 2, "it was busy until then: {}", term.output);
    let stored = client.session(&device.id, &ticket.session.id).await.expect("session");
    assert_eq!(stored.close_reason.as_deref(), Some(reason.as_str()));
}
