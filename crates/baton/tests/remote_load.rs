//! Remote terminals at scale and when things break, with real processes (`baton serve`, the real
//! `baton-agent` with `[remote] terminal = true`, clients on the attach WebSocket): 200 sessions
//! on 50 agents at once, each seeing only its own output; a client that stops reading (the
//! server holds one window, the device's program waits, the session still closes); a paste
//! larger than every window into a program that echoes it; an agent killed mid-session; a
//! server stopped under open sessions and started again. They run once, on SQLite, one at a
//! time (`.config/nextest.toml`).

mod support;

use baton_client::Client;
use baton_proto::api::{
    access::PageQuery,
    devices::{Device, DeviceQuery},
    enrollment::EnrollmentTokenCreate,
    remote::{RemoteSession, SessionCreate, SessionState},
};
use baton_testkit::eventually;
use support::{
    Server,
    remote::{Agent, Term, metric, process},
};

const BOOTSTRAP: &str = "bt_remote-load-bootstrap-token";
const TERMINAL: &str = "terminal = true\nshell = \"/bin/sh\"";
/// The window a stream's reader may leave unread on the server (`baton_proto::streams::WINDOW`).
const WINDOW: f64 = 262_144.0;
const BUFFERED: &str = "baton_remote_buffered_bytes";

fn session(command: &[&str]) -> SessionCreate {
    let command = command.iter().map(|a| a.to_string()).collect();
    SessionCreate { cols: Some(80), rows: Some(24), command, ..Default::default() }
}

fn env() -> [(&'static str, &'static str); 2] {
    [("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP), ("BATON_HEARTBEAT_SECS", "2")]
}

fn admin(server: &Server) -> Client {
    Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client")
}

/// `n` agents enrolled with one token, once all are online.
async fn fleet(client: &Client, url: &str, n: usize) -> (Vec<Agent>, Vec<Device>) {
    let req = EnrollmentTokenCreate { name: "load".into(), ..EnrollmentTokenCreate::default() };
    let token = client.create_enrollment_token(&req).await.expect("enrollment token").secret;
    let agents = (0..n).map(|i| Agent::start(url, &token, &format!("load-{i:03}"), TERMINAL)).collect();
    let devices = online(client, n).await;
    (agents, devices)
}

/// The `n` devices, once every one of them is online.
async fn online(client: &Client, n: usize) -> Vec<Device> {
    let query = DeviceQuery { online: Some(true), limit: Some(200), ..Default::default() };
    eventually(&format!("{n} devices are online"), || async {
        let page = client.devices(&query).await.ok()?;
        (page.items.len() == n).then_some(page.items)
    })
    .await
}

async fn stored(client: &Client, device: &str, id: &str) -> RemoteSession {
    client.session(device, id).await.expect("session")
}

#[tokio::test]
async fn two_hundred_sessions_on_fifty_agents_each_see_their_own_output_and_all_close() {
    let server = Server::start(&env(), &["--http-addr", "127.0.0.1:0"]);
    let client = admin(&server);
    let (_agents, devices) = fleet(&client, &server.url, 50).await;

    // Four per device (its default limit): 200, within the tenant's 256.
    let mut tickets = Vec::new();
    for device in &devices {
        for _ in 0..4 {
            tickets.push(client.open_session(&device.id, &session(&[])).await.expect("session opens"));
        }
    }
    let terms = futures::future::join_all(tickets.iter().enumerate().map(|(i, ticket)| {
        let url = client.attach_url(ticket);
        async move {
            let mut term = Term::attach(&url).await;
            assert_eq!(term.closed, None, "session {i} opened");
            // Quotes split the marker, so only the shell's output (not the typed line) has it.
            term.type_text(&format!("echo \"s-\"\"{i}-ok\"\n")).await;
            term.expect(&format!("s-{i}-ok")).await;
            term
        }
    }))
    .await;
    for (i, term) in terms.iter().enumerate() {
        let markers: Vec<&str> = (term.output.split("s-").skip(1))
            .filter_map(|t| Some(t.split_once("-ok")?.0).filter(|n| n.parse::<u32>().is_ok()))
            .collect();
        assert_eq!(markers, [i.to_string()], "session {i} saw only its own output: {:?}", term.output);
    }
    for device in &devices {
        let page = client.sessions(&device.id, &PageQuery::default()).await.expect("sessions");
        assert_eq!(page.items.len(), 4);
        assert!(page.items.iter().all(|s| s.state == SessionState::Open), "{:?}", page.items);
    }

    futures::future::join_all(terms.into_iter().map(Term::leave)).await;
    for ticket in &tickets {
        let s = &ticket.session;
        let closed = eventually("every session is stored closed", || async {
            let found = client.session(&s.device_id, &s.id).await.ok()?;
            (found.state == SessionState::Closed).then_some(found)
        })
        .await;
        assert!(closed.close_reason.as_deref().is_some_and(|r| r.starts_with("closed by token:")), "{closed:?}");
    }

    // Healthy: ready, nothing buffered, every device still online, a new session works.
    let ready = reqwest::get(format!("{}/readyz", server.url)).await.expect("readyz");
    assert!(ready.status().is_success(), "{ready:?}");
    eventually("no stream holds output", || async { (metric(&server.url, BUFFERED).await == 0.0).then_some(()) }).await;
    online(&client, 50).await;
    let ticket = client.open_session(&devices[7].id, &session(&[])).await.expect("session opens");
    let mut term = Term::attach(&client.attach_url(&ticket)).await;
    term.type_text("echo \"af\"\"ter\"\n").await;
    term.expect("after").await;
}

#[tokio::test]
async fn a_client_that_stops_reading_holds_one_window_on_the_server_and_the_device_waits() {
    let server = Server::start(&env(), &["--http-addr", "127.0.0.1:0"]);
    let client = admin(&server);
    let (_agents, devices) = fleet(&client, &server.url, 1).await;
    let device = &devices[0];
    let endless = session(&["sh", "-c", "echo \"p\"\"id=$$\"; exec yes a-line-of-endless-output"]);
    let ticket = client.open_session(&device.id, &endless).await.expect("session opens");
    let mut term = Term::attach(&client.attach_url(&ticket)).await;
    term.expect("a-line-of-endless-output").await;
    let pid = term.printed_pid();
    // From here on the client reads nothing, and keeps its WebSocket open.

    eventually("the server holds a full window of the stalled stream", || async {
        let held = metric(&server.url, BUFFERED).await;
        assert!(held <= WINDOW, "the server holds {held} bytes, more than a window");
        (held > WINDOW - 16_384.0).then_some(()).ok_or(format!("{held} bytes"))
    })
    .await;
    let mut last = None;
    let stalled = eventually("the program on the device stops writing, held up by the terminal", || {
        let seen = process(pid).expect("the program runs");
        let (before, now) = (last.replace(seen.written), seen.written);
        async move { (seen.sleeping && before == Some(now)).then_some(seen) }
    })
    .await;

    // Watched for three seconds (a span to observe, not a wait for anything): unchecked, `yes`
    // writes hundreds of MiB in that time; held, it writes nothing more, the server keeps at
    // most the window, and its memory stays put.
    let server_pid = server.child.id();
    let rss = process(server_pid).expect("the server runs").rss_kib;
    for _ in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let held = metric(&server.url, BUFFERED).await;
        assert!(held <= WINDOW, "the server holds {held} bytes, more than a window");
        let now = process(pid).expect("the program still runs");
        assert!(now.alive && now.written == stalled.written, "the program went on writing: {now:?}");
        let grown = process(server_pid).expect("the server runs").rss_kib.saturating_sub(rss);
        assert!(grown < 4 * 1024, "the server grew by {grown} KiB");
    }

    // The stalled session still closes at once, and the program on the device ends with it.
    let closed = client.close_session(&device.id, &ticket.session.id).await.expect("close");
    assert_eq!(closed.state, SessionState::Closed, "{closed:?}");
    eventually("the program on the device ended", || async { process(pid).is_none().then_some(()) }).await;
    eventually("nothing is held for the stream", || async {
        (metric(&server.url, BUFFERED).await == 0.0).then_some(())
    })
    .await;
    drop(term);
}

#[tokio::test]
async fn a_paste_larger_than_the_windows_into_a_program_that_echoes_it_goes_through() {
    let server = Server::start(&env(), &["--http-addr", "127.0.0.1:0"]);
    let client = admin(&server);
    let (_agents, devices) = fleet(&client, &server.url, 1).await;
    // `cat` on a terminal: every line comes back twice (the echo and cat's copy), so output
    // waits on the client while input waits on the device.
    let ticket = client.open_session(&devices[0].id, &session(&["cat"])).await.expect("session opens");
    let mut term = Term::attach(&client.attach_url(&ticket)).await;
    let lines = 8192;
    let paste: String = (0..lines).map(|n| format!("{n:06}:{}\n", "x".repeat(248))).collect();
    assert!(paste.len() >= 8 * WINDOW as usize);
    term.paste(paste.as_bytes()).await;
    term.type_text("\u{4}").await;
    let (reason, code) = term.until_closed().await;
    assert_eq!(code, Some(0), "{reason}");
    for n in [0, lines / 2, lines - 1] {
        let line = format!("{n:06}:x");
        assert_eq!(term.output.matches(&line).count(), 2, "line {n} came back twice");
    }
}

#[tokio::test]
async fn a_device_that_vanishes_ends_its_session_saying_so() {
    let server = Server::start(&env(), &["--http-addr", "127.0.0.1:0"]);
    let client = admin(&server);
    let (mut agents, devices) = fleet(&client, &server.url, 1).await;
    let ticket = client.open_session(&devices[0].id, &session(&[])).await.expect("session opens");
    let mut term = Term::attach(&client.attach_url(&ticket)).await;
    term.type_text("echo \"rea\"\"dy\"\n").await;
    term.expect("ready").await;

    agents[0].child.kill().expect("SIGKILL");
    let (reason, _) = term.until_closed().await;
    assert!(reason.starts_with("the device's connection ended"), "{reason}");
    let closed = eventually("the session is stored closed", || async {
        let s = stored(&client, &devices[0].id, &ticket.session.id).await;
        (s.state == SessionState::Closed).then_some(s)
    })
    .await;
    assert_eq!(closed.close_reason.as_deref(), Some(reason.as_str()));
}

#[tokio::test]
async fn a_server_restart_closes_open_sessions_and_its_agents_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start_in(&data, &env(), &["--http-addr", "127.0.0.1:0"]);
    let client = admin(&server);
    let (_agents, devices) = fleet(&client, &server.url, 2).await;
    let mut open = Vec::new();
    for device in &devices {
        let ticket = client.open_session(&device.id, &session(&[])).await.expect("session opens");
        let mut term = Term::attach(&client.attach_url(&ticket)).await;
        term.type_text("echo \"rea\"\"dy\"\n").await;
        term.expect("ready").await;
        open.push((ticket, term));
    }

    support::terminate(&mut server.child);
    for (_, term) in &mut open {
        let (reason, _) = term.until_closed().await;
        assert_eq!(reason, "the server is shutting down");
    }
    assert!(server.child.wait().expect("the server exits").success());

    let addr = server.url.trim_start_matches("http://").to_owned();
    let server = Server::start_in(&data, &env(), &["--http-addr", &addr]);
    let client = admin(&server);
    online(&client, 2).await;
    for (ticket, _) in &open {
        let s = stored(&client, &ticket.session.device_id, &ticket.session.id).await;
        assert_eq!(s.state, SessionState::Closed);
        assert_eq!(s.close_reason.as_deref(), Some("the server is shutting down"), "{s:?}");
    }
    let ticket = client.open_session(&devices[1].id, &session(&[])).await.expect("session opens");
    let mut term = Term::attach(&client.attach_url(&ticket)).await;
    term.type_text("echo \"back\"\"-again\"\n").await;
    term.expect("back-again").await;
}
