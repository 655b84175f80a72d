//! The listener under a flood, as an attacker would try it: `baton serve` with soft and hard
//! open-file limits of 1,024 (`prlimit`), and 2,000 clients sending headers a line a second
//! plus 2,000 that send nothing, from 40 loopback addresses. Meanwhile `/healthz`, the API, an
//! agent's WebSocket and MQTT keep answering; the flood is closed; the agent stays connected.

mod support;

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    time::Duration,
};

use baton_client::Client;
use baton_proto::api::{
    devices::{DeviceCreate, DeviceQuery},
    enrollment::EnrollmentTokenCreate,
    events::EventQuery,
};
use baton_testkit::{PATIENCE, Tool, eventually, require};
use support::Server;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    task::JoinSet,
};

const BOOTSTRAP: &str = "bt_flood-test-bootstrap-token";
const SOURCES: u8 = 40;
const SLOW: usize = 2000;
const IDLE: usize = 2000;

/// A connection from `127.0.0.<source>`.
async fn connect_from(source: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, source), 0)))?;
    socket.connect(to).await
}

/// Holds a connection, sending a header line a second if `slow`, until the server closes it.
async fn flood_one(stream: TcpStream, slow: bool) {
    let (mut reader, mut writer) = stream.into_split();
    let dribble = async move {
        if !slow {
            return std::future::pending().await;
        }
        let mut line: &[u8] = b"GET /api/v1/devices HTTP/1.1\r\n";
        while writer.write_all(line).await.is_ok() {
            line = b"x-slow: yes\r\n";
            tokio::time::sleep(Duration::from_secs(1)).await; // the attacker's pace
        }
        std::future::pending().await
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        while matches!(reader.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        () = closed => {}
        () = dribble => {}
    }
}

/// The soft and hard open-file limits of process `pid`.
fn open_file_limits(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_slow_and_idle_connections_does_not_starve_the_server() {
    if !require(&[Tool::Mosquitto]) {
        return;
    }
    // This process holds the flood: 4,000 sockets and more.
    baton_server::app::files::raise_open_file_limit();
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("BATON_BOOTSTRAP_TOKEN", BOOTSTRAP),
        ("BATON_HEADER_TIMEOUT_SECS", "3"),
        ("BATON_MAX_CONNECTIONS_PER_SOURCE", "64"),
    ];
    let server = Server::start_under(
        &["prlimit", "--nofile=1024:1024", "--"],
        &dir.path().join("data"),
        &env,
        &["--http-addr", "127.0.0.1:0"],
    );
    let limits = open_file_limits(server.child.id());
    assert!(limits.split_whitespace().filter(|w| *w == "1024").count() == 2, "{limits}");
    let addr: SocketAddr = server.url.trim_start_matches("http://").parse().expect("address");
    let mqtt = server.mqtt_addr().expect("MQTT listens");
    let client = Client::new(&server.url, Some(BOOTSTRAP.into()), None).expect("client");
    let device = client.create_device(&DeviceCreate { serial: "mqtt-1".into(), ..Default::default() }).await;
    let device = device.expect("an MQTT device");
    let credential = client.issue_device_credential(&device.id).await.expect("its credential");
    let token = EnrollmentTokenCreate { name: "flood".into(), ..Default::default() };
    let token = client.create_enrollment_token(&token).await.expect("enrollment token").secret;

    // The flood, from 127.0.0.2 up.
    let mut flood = JoinSet::new();
    for i in 0..SLOW + IDLE {
        let source = 2 + (i % usize::from(SOURCES)) as u8;
        match connect_from(source, addr).await {
            Ok(stream) => {
                flood.spawn(flood_one(stream, i < SLOW));
            }
            Err(e) => panic!("connection {i} from 127.0.0.{source}: {e}"),
        }
    }

    // Meanwhile: the health check, the API, an agent and an MQTT device are served.
    let health = eventually("/healthz answers", || async {
        let response = reqwest::get(format!("{}/healthz", server.url)).await.map_err(|e| e.to_string())?;
        if response.status() == 200 { Ok(()) } else { Err(response.status().to_string()) }
    });
    health.await;
    let listed = client.devices(&DeviceQuery::default()).await.expect("the API answers");
    assert_eq!(listed.items.len(), 1);
    let mut sim = Command::new(support::BATON)
        .args(["sim", "--server", &server.url, "--token", &token, "--devices", "1", "--prefix", "agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("baton sim starts");
    let online = DeviceQuery { online: Some(true), ..Default::default() };
    let agent = eventually("the agent is online", || async {
        let page = client.devices(&online).await.map_err(|e| e.to_string())?;
        page.items.into_iter().find(|d| d.serial.as_deref() == Some("agent-00001")).ok_or("not yet".to_owned())
    })
    .await;
    let published = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &mqtt.port().to_string(), "-V", "mqttv5", "-q", "1"])
        .args(["-i", "mqtt-1", "-u", &device.id, "-P", &credential.secret])
        .args(["-t", "baton/v1/me/telemetry", "-m", r#"{"flood.survived": 1}"#])
        .output();
    let published = tokio::time::timeout(PATIENCE, published).await.expect("in time").expect("runs");
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    let latest = client.latest_telemetry(&device.id).await.expect("latest");
    assert_eq!(latest.metrics.get("flood.survived"), Some(&1.0), "stored before the PUBACK");

    // Every flooding connection is closed: by the header timeout, or to make room.
    let drained = tokio::time::timeout(PATIENCE, async { while flood.join_next().await.is_some() {} }).await;
    assert!(drained.is_ok(), "{} flooding connections still open", flood.len());
    // The agent's WebSocket, quiet between heartbeats, was never cut.
    let still = client.device(&agent.id).await.expect("device");
    assert!(still.connectivity.online, "{still:?}");
    let query = EventQuery { device: Some(agent.id.clone()), kind: Some("device.".into()), ..Default::default() };
    let kinds: Vec<String> = client.events(&query).await.expect("events").items.into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "device.online").count(), 1, "one connection throughout: {kinds:?}");
    assert!(!kinds.iter().any(|k| k == "device.offline"), "{kinds:?}");
    let _ = sim.kill();
    let _ = sim.wait();
}
