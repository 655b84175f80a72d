//! Port forwarding end to end with real processes: `baton serve`, the real `baton-agent` with
//! `[remote] tunnel_ports`, the real `baton port-forward`, and real clients on its local ports.
//! `curl` reaches an HTTP server (Python's) that listens only on the device's loopback, `psql`
//! reaches PostgreSQL, 20 downloads at once through one session all arrive whole; the consent
//! hook runs once per session; each session is an event with its actor, target, duration,
//! connections and bytes. A port or host the device does not allow is refused with its reason,
//! and so are a viewer, another tenant, a token narrowed to terminals, and a second user on the
//! first one's session; a session closed by someone, or whose device goes offline, ends the
//! command saying so.

mod support;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use baton_client::Client;
use baton_proto::api::{
    access::{TokenCreate, UserCreate},
    events::Event,
    remote::{SessionCreate, SessionKind, SessionState},
};
use baton_testkit::{
    eventually,
    tools::{Tool, require},
};
use futures::StreamExt;
use support::{
    BATON, Server,
    check::{events, problem, random, server_with, sha256, text},
    lines,
    remote::{enrolled, other_tenant},
};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

const BOOTSTRAP: &str = "bt_remote-tunnel-test-bootstrap-token";
/// The PostgreSQL the machine runs (trust authentication), as `.ci/run` starts it.
const POSTGRES: (&str, u16) = ("127.0.0.1", 5432);

fn server() -> (Server, Client) {
    server_with(BOOTSTRAP)
}

/// `python3 -m http.server` serving `dir` on the device's loopback only; killed when dropped.
struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        let said = lines(child.stdout.take().expect("stdout"));
        let line = said.recv_timeout(Duration::from_secs(30)).expect("http.server says where it listens");
        // "Serving HTTP on 127.0.0.1 port 43123 (http://127.0.0.1:43123/) ..."
        let port = line.split(" port ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse().ok());
        HttpServer { child, port: port.unwrap_or_else(|| panic!("no port in {line:?}")) }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `baton port-forward`: the local addresses it printed, one per mapping; killed
/// when dropped.
struct PortForward {
    child: Child,
    pub local: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

impl PortForward {
    /// Starts `baton port-forward ARGS` as `token` and waits for its `Forwarding` lines.
    fn start(server: &str, token: &str, args: &[&str], mappings: usize) -> Self {
        let config = tempfile::tempdir().expect("config dir");
        let mut child = Command::new(BATON)
            .arg("port-forward")
            .args(args)
            .env("BATON_CONFIG_DIR", config.path())
            .env("BATON_SERVER", server)
            .env("BATON_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("baton port-forward starts");
        let said = lines(child.stdout.take().expect("stdout"));
        let stderr = lines(child.stderr.take().expect("stderr"));
        let mut local = Vec::new();
        while local.len() < mappings {
            let line = said.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("baton port-forward did not say it forwards: {:?}", stderr.try_iter().collect::<Vec<_>>())
            });
            let addr = line.strip_prefix("Forwarding ").and_then(|r| r.split(" -> ").next());
            local.push(addr.unwrap_or_else(|| panic!("not a Forwarding line: {line:?}")).to_owned());
        }
        PortForward { child, local, stderr }
    }

    fn port(&self, mapping: usize) -> String {
        self.local[mapping].rsplit(':').next().expect("port").to_owned()
    }

    /// Sends `signal` (`INT` for Ctrl-C) and waits for the exit: its status and what it said on stderr.
    fn stop(mut self, signal: &str) -> (Option<i32>, String) {
        let sent = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        assert!(sent.expect("kill runs").success());
        self.exit()
    }

    /// Waits (at most a minute) for the command to end by itself.
    fn exit(&mut self) -> (Option<i32>, String) {
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "baton port-forward did not end");
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread has the last lines once the pipe closed.
        let said: Vec<String> = std::iter::from_fn(|| self.stderr.recv_timeout(Duration::from_secs(5)).ok()).collect();
        (status.code(), said.join("\n"))
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl -sS` of `url` to `out`, started (not waited for).
fn curl(url: &str, out: &Path) -> Child {
    Command::new("curl")
        .args(["-sS", "--max-time", "120", "-o"])
        .arg(out)
        .arg(url)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl starts")
}

#[tokio::test]
async fn curl_and_psql_reach_the_devices_loopback_and_20_downloads_at_once_arrive_whole() {
    if !require(&[Tool::Curl, Tool::Psql]) {
        return;
    }
    let direct = Command::new("psql")
        .args(["-h", POSTGRES.0, "-p", &POSTGRES.1.to_string(), "-U", "postgres", "-d", "test", "-Atc", "select 1"])
        .stdin(Stdio::null())
        .output()
        .expect("psql runs");
    assert!(
        direct.status.success(),
        "this test needs PostgreSQL on {}:{} with trust authentication for `postgres`, database `test` (as .ci/run starts it): {}",
        POSTGRES.0,
        POSTGRES.1,
        text(&direct.stderr)
    );
    let (server, client) = server();
    let site = tempfile::tempdir().expect("tempdir");
    std::fs::write(site.path().join("hello.txt"), "hello from the device's loopback\n").expect("file");
    let files: Vec<(String, Vec<u8>)> =
        (0..20).map(|i| (format!("file-{i}.bin"), random(1_000_000 + i * 150_000, i as u64 + 7))).collect();
    for (name, bytes) in &files {
        std::fs::write(site.path().join(name), bytes).expect("file");
    }
    let http = HttpServer::start(site.path());
    let consents = site.path().join("consents.log");
    let remote = format!(
        "tunnel_ports = [{}, {}]\nconsent_command = [\"sh\", \"-c\", \"echo \\\"$0\\\" >> {}\", \"{{session}}\"]",
        http.port,
        POSTGRES.1,
        consents.display()
    );
    let (_agent, device) = enrolled(&client, &server.url, "tunnel-1", &remote).await;

    let web = format!("0:localhost:{}", http.port);
    let db = format!(":{}:{}", POSTGRES.0, POSTGRES.1);
    let forward = PortForward::start(&server.url, BOOTSTRAP, &["tunnel-1", &web, &db], 2);
    assert!(forward.local.iter().all(|l| l.starts_with("127.0.0.1:") && !l.ends_with(":0")), "{:?}", forward.local);
    let (web_port, db_port) = (forward.port(0), forward.port(1));

    // curl reaches the server that listens only on the device's loopback.
    let got = Command::new("curl")
        .args(["-sS", "--max-time", "60", &format!("http://127.0.0.1:{web_port}/hello.txt")])
        .output()
        .expect("curl runs");
    assert!(got.status.success(), "curl: {}", text(&got.stderr));
    assert_eq!(text(&got.stdout), "hello from the device's loopback\n");

    // psql reaches PostgreSQL, its protocol both ways (and its TLS question answered).
    let got = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &db_port, "-U", "postgres", "-d", "test", "-Atc"])
        .arg("select 'through the tunnel', 6 * 7")
        .env("PGCONNECT_TIMEOUT", "30")
        .stdin(Stdio::null())
        .output()
        .expect("psql runs");
    assert!(got.status.success(), "psql: {}", text(&got.stderr));
    assert_eq!(text(&got.stdout).trim(), "through the tunnel|42");

    // 20 downloads at once through the one session, each whole.
    let here = tempfile::tempdir().expect("tempdir");
    let downloads: Vec<Child> = files
        .iter()
        .map(|(name, _)| curl(&format!("http://127.0.0.1:{web_port}/{name}"), &here.path().join(name)))
        .collect();
    for (child, (name, bytes)) in downloads.into_iter().zip(&files) {
        let out = child.wait_with_output().expect("curl ends");
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let got = std::fs::read(here.path().join(name)).expect("downloaded");
        assert_eq!((got.len(), sha256(&got)), (bytes.len(), sha256(bytes)), "{name}");
    }

    // Ctrl-C closes both sessions and exits 0.
    let (status, stderr) = forward.stop("INT");
    assert_eq!(status, Some(0), "stderr: {stderr}");

    // Each session is an event when it starts and when it ends, with who, what and how much.
    let started = events(&client, &device.id, "remote.session_started", 2).await;
    let ended = events(&client, &device.id, "remote.session_ended", 2).await;
    let web_bytes: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    for (event, port, connections, at_least) in [(0, http.port, 21, web_bytes), (1, POSTGRES.1, 1, 100)] {
        let of_port = |events: &[Event]| {
            events.iter().find(|e| e.data["port"].as_u64() == Some(u64::from(port))).cloned().expect("the port's event")
        };
        let (start, end) = (of_port(&started), of_port(&ended));
        for d in [&start.data, &end.data] {
            assert_eq!((d["kind"].as_str(), d["user"].as_str()), (Some("tunnel"), Some("token:bootstrap")), "{d}");
            assert_eq!(d["source_addr"].as_str(), Some("127.0.0.1"), "{d}");
        }
        let d = &end.data;
        let host = if event == 0 { "localhost" } else { POSTGRES.0 };
        assert_eq!(d["host"].as_str(), Some(host), "{d}");
        assert!(d["reason"].as_str().is_some_and(|r| r.starts_with("closed by token:bootstrap")), "{d}");
        assert!(d["duration_ms"].as_u64().is_some(), "{d}");
        // The web session's: hello.txt and the 20 downloads (the server's own check is not one).
        assert_eq!(d["connections"].as_u64(), Some(connections), "{d}");
        assert!(d["bytes_from_device"].as_u64().is_some_and(|b| b >= at_least), "{d}");
        assert!(d["bytes_to_device"].as_u64().is_some_and(|b| b > 0), "{d}");
    }

    // The consent hook asked once per session, not once per connection.
    let asked = std::fs::read_to_string(&consents).expect("the consent hook ran");
    let mut sessions: Vec<&str> = asked.lines().collect();
    assert_eq!(sessions.len(), 2, "{asked}");
    sessions.dedup();
    assert_eq!(sessions.len(), 2, "one question per session: {asked}");
}

/// `baton port-forward ARGS` as `token`, to its end: exit status and stderr.
fn port_forward_fails(server: &str, token: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = support::remote::cli(server, token, &[&["port-forward"], args].concat());
    (out.status.code(), text(&out.stderr))
}

#[tokio::test]
async fn a_port_or_host_the_device_does_not_allow_is_refused_saying_which_and_how_to_allow_it() {
    let (server, client) = server();
    // A port the device allows where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let remote = format!("tunnel_ports = [{closed}]");
    let (_agent, _device) = enrolled(&client, &server.url, "tunnel-2", &remote).await;
    let (_off, _) = enrolled(&client, &server.url, "tunnel-off", "").await;

    for (device, mapping, says) in [
        (
            "tunnel-2",
            "0:localhost:22".to_owned(),
            "port 22 is not one this device tunnels to; its `[remote] tunnel_ports` allow".to_owned(),
        ),
        (
            "tunnel-2",
            format!("0:10.0.0.7:{closed}"),
            "host `10.0.0.7` is not one this device tunnels to; its `[remote] tunnel_hosts` allow".to_owned(),
        ),
        (
            "tunnel-off",
            "0:localhost:80".to_owned(),
            "tunnels are off on this device; its owner can allow ports with `[remote] tunnel_ports = [...]`".to_owned(),
        ),
        ("tunnel-2", format!("0:localhost:{closed}"), format!("cannot connect to localhost:{closed} on the device")),
    ] {
        let (status, stderr) = port_forward_fails(&server.url, BOOTSTRAP, &[device, &mapping]);
        assert_eq!(status, Some(1), "{mapping}: {stderr}");
        assert!(stderr.contains("was refused"), "{mapping}: {stderr}");
        assert!(stderr.contains(&says), "{mapping}: {stderr}");
    }
}

/// A user of `role` in the server's tenant, signed in.
async fn signed_in(client: &Client, url: &str, username: &str, role: &str) -> Client {
    let password = format!("{username}-password-123");
    let user = UserCreate { username: username.into(), password: password.clone(), role: Some(role.into()) };
    client.create_user(&user).await.expect("user");
    let anonymous = Client::new(url, None, None).expect("client");
    let session = anonymous.login(None, username, &password).await.expect("login");
    anonymous.with_token(session.token)
}

/// Opens a connection's WebSocket through `session` as `token`: the HTTP status it was
/// refused with, or the close frame's reason.
async fn connect_as(client: &Client, session: &str, token: &str) -> Result<String, u16> {
    let mut request = client.tunnel_connect_url(session).into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let (mut ws, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(ws) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => return Err(response.status().as_u16()),
        Err(e) => panic!("connecting failed: {e}"),
    };
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| f.reason.to_string()).unwrap_or_default()),
            Some(Ok(Message::Binary(b))) => panic!("{} bytes came through another user's session", b.len()),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return Ok(String::new()),
        }
    }
}

#[tokio::test]
async fn who_may_not_tunnel_is_refused_and_a_session_closed_or_its_device_gone_ends_the_command() {
    let (server, client) = server();
    let site = tempfile::tempdir().expect("tempdir");
    std::fs::write(site.path().join("secret.txt"), "only for the opener\n").expect("file");
    let http = HttpServer::start(site.path());
    let (agent, device) = enrolled(&client, &server.url, "tunnel-3", &format!("tunnel_ports = [{}]", http.port)).await;
    let mapping = format!("0:localhost:{}", http.port);
    let tunnel = SessionCreate { kind: SessionKind::Tunnel, port: Some(http.port), ..Default::default() };

    // A viewer lacks remote:tunnel; another tenant does not find the device.
    let viewer = signed_in(&client, &server.url, "vera", "viewer").await;
    let (status, detail) = problem(viewer.open_session(&device.id, &tunnel).await);
    // (No remote permission at all: refused before the body is read, naming the first of them.)
    assert_eq!(status, 403, "{detail}");
    assert!(detail.contains("role `viewer` lacks the permission"), "{detail}");
    let (code, stderr) = port_forward_fails(&server.url, viewer.token().expect("token"), &["tunnel-3", &mapping]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("role `viewer` lacks the permission"), "{stderr}");
    let olga = other_tenant(&client, &server.url).await;
    let (status, _) = problem(olga.open_session(&device.id, &tunnel).await);
    assert_eq!(status, 404);
    let (code, stderr) = port_forward_fails(&server.url, olga.token().expect("token"), &[&device.id, &mapping]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains(&format!("no device has the id, serial or name `{}`", device.id)), "{stderr}");

    // A token narrowed to terminals opens no tunnel.
    let narrowed = TokenCreate {
        name: "terminal-only".into(),
        permissions: Some(vec!["devices:read".into(), "remote:terminal".into()]),
        ..Default::default()
    };
    let narrowed = client.create_token(&narrowed).await.expect("token").secret;
    let (code, stderr) = port_forward_fails(&server.url, &narrowed, &["tunnel-3", &mapping]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("remote:tunnel"), "{stderr}");

    // The opener's session carries the opener's connections only.
    let forward = PortForward::start(&server.url, BOOTSTRAP, &["tunnel-3", &mapping], 1);
    let session = eventually("the session is listed", || async {
        let page = client.sessions(&device.id, &Default::default()).await.ok()?;
        page.items.into_iter().find(|s| s.kind == SessionKind::Tunnel && s.state == SessionState::Open)
    })
    .await;
    let operator = signed_in(&client, &server.url, "otto", "operator").await;
    let refused = connect_as(&client, &session.id, operator.token().expect("token")).await;
    assert!(refused.as_ref().is_ok_and(|r| r.contains("not yours")), "{refused:?}");
    assert_eq!(connect_as(&client, &session.id, &narrowed).await, Err(403));
    assert_eq!(
        connect_as(&client, &session.id, olga.token().expect("token")).await.ok().map(|r| r.contains("not open")),
        Some(true)
    );
    let mine = Command::new("curl")
        .args(["-sS", "--max-time", "60", &format!("http://{}/secret.txt", forward.local[0])])
        .output()
        .expect("curl runs");
    assert_eq!(text(&mine.stdout), "only for the opener\n", "{}", text(&mine.stderr));

    // Closed by someone: the command ends with the reason.
    client.close_session(&device.id, &session.id).await.expect("closed");
    let mut forward = forward;
    let (status, stderr) = forward.exit();
    assert_eq!(status, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("the tunnel to localhost:{} ended: closed by token:bootstrap", http.port)),
        "{stderr}"
    );

    // Another local address; then the device goes offline, and so does the tunnel.
    let mut forward = PortForward::start(&server.url, BOOTSTRAP, &["--address", "127.0.0.2", "tunnel-3", &mapping], 1);
    assert!(forward.local[0].starts_with("127.0.0.2:"), "{:?}", forward.local);
    let got = Command::new("curl")
        .args(["-sS", "--max-time", "60", &format!("http://{}/secret.txt", forward.local[0])])
        .output()
        .expect("curl runs");
    assert_eq!(text(&got.stdout), "only for the opener\n", "{}", text(&got.stderr));
    drop(agent);
    let (status, stderr) = forward.exit();
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains("ended: the device went offline"), "{stderr}");
}
