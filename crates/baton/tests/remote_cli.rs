//! The remote-support commands of the real `baton` CLI against `baton serve` and the real
//! `baton-agent`: `baton terminal` runs one command and exits with its code; on a real
//! pseudo-terminal it passes Ctrl-C and size changes to the device and gives the terminal back
//! as it was however the session ends (the shell exits, the session is closed from elsewhere,
//! SIGTERM); `--watch` follows someone's session; `sessions`, `recordings` and `remote-policy`
//! show and change what the API does.

mod support;

use baton_client::Client;
use std::process::{Command, Stdio};

use baton_proto::api::{
    access::PageQuery,
    remote::{RemoteSession, SessionCreate, SessionState},
};
use baton_testkit::{PATIENCE, eventually};
use support::{
    BATON, Server,
    check::server_with,
    lines,
    remote::{LocalPty, Term, cli, enrolled},
};

const BOOTSTRAP: &str = "bt_remote-cli-test-bootstrap-token";
const SHELL: &str = "terminal = true\nshell = \"/bin/sh\"";

fn server() -> (Server, Client) {
    server_with(BOOTSTRAP)
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json<T: serde::de::DeserializeOwned>(output: &std::process::Output) -> T {
    assert!(output.status.success(), "failed: {}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
}

#[tokio::test]
async fn a_command_runs_with_its_exit_code_and_the_sessions_recordings_and_policy_commands_show_it() {
    let (server, client) = server();
    let (_agent, device) = enrolled(&client, &server.url, "cli-term-1", SHELL).await;
    let baton = |args: &[&str]| cli(&server.url, BOOTSTRAP, args);

    let policy: serde_json::Value = json(&baton(&["remote-policy", "get", "-o", "json"]));
    assert_eq!((policy["enabled"].as_bool(), policy["record_input"].as_bool()), (Some(true), Some(false)));
    let policy: serde_json::Value = json(&baton(&["remote-policy", "set", "--record-input", "true", "-o", "json"]));
    assert_eq!((policy["enabled"].as_bool(), policy["record_input"].as_bool()), (Some(true), Some(true)));

    // The device by its serial; stdin is not a terminal.
    let ran = baton(&["terminal", "cli-term-1", "--", "sh", "-c", "echo $((6*7)); exit 5"]);
    assert_eq!(ran.status.code(), Some(5), "stderr: {}", stderr(&ran));
    assert!(stdout(&ran).contains("42"), "{}", stdout(&ran));
    assert!(stderr(&ran).contains("baton: session ended: "), "{}", stderr(&ran));
    assert!(!stderr(&ran).contains("error:"), "{}", stderr(&ran));

    let listed: Vec<RemoteSession> = json(&baton(&["sessions", "list", "cli-term-1", "-o", "json"]));
    let [session] = listed.as_slice() else { panic!("one session: {listed:?}") };
    assert_eq!(session.command, ["sh", "-c", "echo $((6*7)); exit 5"]);
    assert_eq!(session.exit_code, Some(5));
    let table = stdout(&baton(&["sessions", "get", &device.id, &session.id]));
    assert!(table.contains("closed") && table.contains("echo $((6*7)); exit 5"), "{table}");

    let recorded = eventually("the recording is listed", || async {
        let out = baton(&["recordings", "list", "--device", "cli-term-1", "-o", "json"]);
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
        list.into_iter().next()
    })
    .await;
    assert_eq!(recorded["session_id"].as_str(), Some(session.id.as_str()));
    assert_eq!(recorded["input_recorded"].as_bool(), Some(true), "the policy asked for keystrokes");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("session.cast");
    let saved = baton(&["recordings", "download", "cli-term-1", &session.id, file.to_str().expect("path")]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    let cast = std::fs::read_to_string(&file).expect("the download");
    let header: serde_json::Value = serde_json::from_str(cast.lines().next().expect("a header")).expect("json");
    assert_eq!(header["version"].as_u64(), Some(2), "asciicast v2: {cast}");
    assert!(cast.contains("42"), "{cast}");

    // A watcher sees someone's session read-only until it is closed.
    let shell = SessionCreate { cols: Some(80), rows: Some(24), ..Default::default() };
    let ticket = client.open_session(&device.id, &shell).await.expect("session");
    let mut owner = Term::attach(&client.attach_url(&ticket)).await;
    owner.type_text("while :; do echo tick-$((6*7)); sleep 0.2; done\n").await;
    owner.expect("tick-42").await;
    let mut watcher = Command::new(BATON)
        .args(["terminal", "cli-term-1", "--watch", &ticket.session.id])
        .env("BATON_SERVER", &server.url)
        .env("BATON_TOKEN", BOOTSTRAP)
        .env("BATON_CONFIG_DIR", std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the watcher starts");
    let seen = lines(watcher.stdout.take().expect("stdout"));
    eventually("the watcher sees the output", || async { seen.try_recv().ok().filter(|l| l.contains("tick-42")) })
        .await;
    let ended = tokio::task::spawn_blocking(move || watcher.wait_with_output());
    assert!(baton(&["sessions", "close", "cli-term-1", &ticket.session.id]).status.success());
    let watched = tokio::time::timeout(PATIENCE, ended).await.expect("the watcher ends").expect("join").expect("wait");
    assert_eq!(watched.status.code(), Some(0), "{}", stderr(&watched));
    assert!(stderr(&watched).contains("baton: session ended: closed by"), "{}", stderr(&watched));

    // Switched off, a terminal is refused with the reason and a failing status.
    json::<serde_json::Value>(&baton(&["remote-policy", "set", "--enabled", "false", "-o", "json"]));
    let refused = baton(&["terminal", "cli-term-1", "--", "true"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("switched off"), "{}", stderr(&refused));
    let unknown = baton(&["terminal", "no-such-device"]);
    assert!(stderr(&unknown).contains("no device has the id, serial or name `no-such-device`"), "{}", stderr(&unknown));
}

/// `baton terminal <serial>` on a terminal of its own, then `stty -a` on the same terminal.
fn terminal_in_pty(server: &Server, serial: &str) -> LocalPty {
    let script =
        r#"sh -c 'echo "pid=$$"; exec "$BATON" terminal "$DEVICE"'; echo "baton-exit=$?"; stty -a; echo finished"#;
    let config = std::env::temp_dir();
    let config = config.to_str().expect("temp dir");
    let env = [
        ("BATON", BATON),
        ("DEVICE", serial),
        ("BATON_SERVER", server.url.as_str()),
        ("BATON_TOKEN", BOOTSTRAP),
        ("BATON_CONFIG_DIR", config),
    ];
    LocalPty::run(script, &env, 91, 27)
}

/// Waits for the end and checks the terminal is back in its usual mode: lines edited locally
/// (`icanon`) and typing echoed (`echo`), as `stty -a` shows it after `baton terminal` exited.
async fn ends_restored(pty: &LocalPty, exit: &str) -> String {
    pty.expect("finished").await;
    let screen = pty.screen();
    let after = screen.split("baton-exit=").nth(1).expect("baton exited");
    assert!(after.starts_with(exit), "exit status {exit} expected: {screen:?}");
    let modes: Vec<&str> = after.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig"] {
        assert!(modes.contains(&mode), "`{mode}` is not back on: {after:?}");
    }
    screen
}

/// Waits for the device's shell prompt: `baton terminal` is attached and in raw mode.
async fn attached(pty: &LocalPty) {
    prompt_after(pty, "pid=").await;
}

/// Waits for the device's shell prompt after the last `marker` on the screen.
async fn prompt_after(pty: &LocalPty, marker: &str) {
    eventually("the device's prompt", || async {
        let screen = pty.screen();
        let shown = screen.rsplit(marker).next().filter(|_| screen.contains(marker)).unwrap_or_default();
        if shown.contains("$ ") || shown.contains("# ") { Ok(()) } else { Err(screen) }
    })
    .await;
}

#[tokio::test]
async fn on_a_terminal_keys_and_sizes_reach_the_device_and_the_terminal_is_restored_however_it_ends() {
    let (server, client) = server();
    let (_agent, device) = enrolled(&client, &server.url, "cli-term-pty", SHELL).await;

    // Ctrl-C and a new window size reach the device; the shell exits.
    let pty = terminal_in_pty(&server, "cli-term-pty");
    attached(&pty).await;
    pty.type_text("stty size\n");
    pty.expect("27 91").await;
    pty.type_text("echo re\"\"ady; cat\n");
    pty.expect("ready").await;
    // The device's terminal echoes Ctrl-C as `^C`, interrupts `cat` and drops what was typed
    // before the shell's next prompt.
    pty.type_text("\x03");
    prompt_after(&pty, "^C").await;
    pty.type_text("echo al\"\"ive\n");
    pty.expect("alive").await;
    pty.resize(100, 31);
    eventually("the device sees the new size", || async {
        if pty.screen().contains("31 100") {
            return Ok(());
        }
        pty.type_text("stty size\n");
        Err("not yet")
    })
    .await;
    pty.type_text("exit 3\n");
    let screen = ends_restored(&pty, "3").await;
    assert!(screen.contains("baton: session ended: "), "{screen:?}");

    // Closed from elsewhere while attached.
    let pty = terminal_in_pty(&server, "cli-term-pty");
    attached(&pty).await;
    let open = open_session(&client, &device.id).await;
    let closed = cli(&server.url, BOOTSTRAP, &["sessions", "close", "cli-term-pty", &open.id, "-o", "json"]);
    assert!(closed.status.success(), "{}", stderr(&closed));
    let screen = ends_restored(&pty, "0").await;
    assert!(screen.contains("baton: session ended: closed by"), "{screen:?}");

    // SIGTERM: the terminal is restored, the session closed.
    let pty = terminal_in_pty(&server, "cli-term-pty");
    attached(&pty).await;
    let open = open_session(&client, &device.id).await;
    let pid = pty.screen().split("pid=").nth(1).and_then(|t| t.split_whitespace().next().map(str::to_owned));
    let pid = pid.expect("baton's pid");
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
    ends_restored(&pty, "143").await;
    eventually("the session is closed", || async {
        let s = client.session(&device.id, &open.id).await.ok()?;
        (s.state == SessionState::Closed).then_some(())
    })
    .await;
}

/// The device's one open session.
async fn open_session(client: &Client, device: &str) -> RemoteSession {
    eventually("an open session", || async {
        let page = client.sessions(device, &PageQuery::default()).await.ok()?;
        page.items.into_iter().find(|s| s.state == SessionState::Open)
    })
    .await
}
