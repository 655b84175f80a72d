//! The limits that keep an internet-facing listener from being starved: silent, slow and idle
//! connections (device setups among them) closed after the header timeout (plain, TLS and MQTT), an upgraded WebSocket
//! left alone however quiet, one address held to its share with a clear refusal, and a load
//! balancer's PROXY header naming the client those limits count.

use std::time::{Duration, Instant};

use baton_proto::agent::ServerMessage;
use baton_testkit::PATIENCE;
use futures::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{TestApp, spawn_with, test_settings};

/// The header timeout these tests run with.
const TIMEOUT: Duration = Duration::from_secs(1);

async fn app_with(change: impl FnOnce(&mut baton_server::Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path());
    settings.header_timeout_secs = 1;
    change(&mut settings);
    spawn_with(settings, dir).await
}

/// Reads until the server closes the connection; returns what it sent. Fails past PATIENCE.
async fn until_closed(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the server closes the connection");
    seen
}

/// Asserts that a connection opened at `since` was closed by the timeout: not before it.
async fn closed_after_the_timeout(what: &str, since: Instant, stream: &mut (impl AsyncRead + Unpin)) {
    until_closed(stream).await;
    let lasted = since.elapsed();
    assert!(lasted >= TIMEOUT - Duration::from_millis(100), "{what}: closed after {lasted:?}, before the timeout");
}

async fn get_healthz(stream: &mut (impl AsyncWrite + AsyncRead + Unpin)) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: baton\r\n\r\n").await.expect("request");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await.expect("an answer in time").expect("reads");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn silent_slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let app = app_with(|_| {}).await;

    let since = Instant::now();
    let mut silent = TcpStream::connect(app.addr).await.expect("connects");
    closed_after_the_timeout("a silent connection", since, &mut silent).await;

    // Headers one line at a time, never finished.
    let since = Instant::now();
    let slow = TcpStream::connect(app.addr).await.expect("connects");
    let (mut reader, mut writer) = slow.into_split();
    let dribble = tokio::spawn(async move {
        let mut line: &[u8] = b"GET /healthz HTTP/1.1\r\n";
        while writer.write_all(line).await.is_ok() {
            line = b"x-slow: yes\r\n";
            tokio::time::sleep(Duration::from_millis(200)).await; // the client's pace
        }
    });
    closed_after_the_timeout("a slow header", since, &mut reader).await;
    dribble.abort();

    // A device setup sent slowly (an agent's connect, an enrollment's body) is closed alike,
    // before it is given a setup place.
    for (what, first, then) in [
        ("a slow connect", &b"GET /api/v1/agent/connect HTTP/1.1\r\n"[..], &b"x-slow: yes\r\n"[..]),
        (
            "a slow enrollment body",
            b"POST /api/v1/enroll HTTP/1.1\r\nhost: baton\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{",
            b" ",
        ),
    ] {
        let since = Instant::now();
        let (mut reader, mut writer) = TcpStream::connect(app.addr).await.expect("connects").into_split();
        let dribble = tokio::spawn(async move {
            let mut line = first;
            while writer.write_all(line).await.is_ok() {
                line = then;
                tokio::time::sleep(Duration::from_millis(200)).await; // the client's pace
            }
        });
        closed_after_the_timeout(what, since, &mut reader).await;
        dribble.abort();
    }

    // Kept alive after a response, then idle.
    let mut idle = TcpStream::connect(app.addr).await.expect("connects");
    assert!(get_healthz(&mut idle).await.starts_with("HTTP/1.1 200"));
    let since = Instant::now();
    closed_after_the_timeout("an idle kept-alive connection", since, &mut idle).await;

    // An agent's WebSocket, quiet for three timeouts, is still served.
    let device = crate::agent::enroll(&app, "QUIET-1").await;
    let mut ws = crate::agent::connect(&app, &device.device_id, &device.secret).await.expect("connects");
    ws.send(crate::agent::hello(None)).await.expect("hello");
    let welcome = ws.next().await.expect("a frame").expect("ok");
    assert!(matches!(welcome, Message::Text(ref t) if t.contains("welcome")), "{welcome:?}");
    tokio::time::sleep(TIMEOUT * 3).await; // the quiet spell being simulated
    let now = chrono::Utc::now().timestamp_millis();
    let batch = format!(r#"{{"type":"telemetry","seq":1,"samples":[{{"ts":{now},"metrics":{{"x":1.0}}}}]}}"#);
    ws.send(Message::Text(batch.into())).await.expect("still open");
    loop {
        let Message::Text(text) = ws.next().await.expect("a frame").expect("ok") else { continue };
        match serde_json::from_str::<ServerMessage>(&text).expect("parses") {
            ServerMessage::TelemetryAck { seq } => break assert_eq!(seq, 1),
            ServerMessage::Heartbeat => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn one_address_is_held_to_its_share_with_a_clear_refusal() {
    let app = app_with(|s| {
        s.header_timeout_secs = 60;
        s.max_connections_per_source = 2;
    })
    .await;
    let first = TcpStream::connect(app.addr).await.expect("connects");
    let mut second = TcpStream::connect(app.addr).await.expect("connects");
    assert!(get_healthz(&mut second).await.starts_with("HTTP/1.1 200"), "the second is served");

    let mut third = TcpStream::connect(app.addr).await.expect("connects");
    let answer = String::from_utf8_lossy(&until_closed(&mut third).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("retry-after: 5"), "{answer}");
    assert!(answer.contains("this address has 2 connections open"), "{answer}");

    drop(first);
    let served = baton_testkit::eventually("a place comes free", || async {
        let mut next = TcpStream::connect(app.addr).await.ok()?;
        get_healthz(&mut next).await.starts_with("HTTP/1.1 200").then_some(())
    });
    served.await;
}

#[tokio::test]
async fn a_balancer_names_its_clients_with_the_proxy_protocol() {
    let app = app_with(|s| {
        s.header_timeout_secs = 60;
        s.max_connections_per_source = 1;
        s.proxy_protocol_from = vec!["127.0.0.0/8".into()];
    })
    .await;
    let through_balancer = async |client: &str| {
        let mut stream = TcpStream::connect(app.addr).await.expect("connects");
        let header = format!("PROXY TCP4 {client} 10.0.0.1 50000 8080\r\n");
        stream.write_all(header.as_bytes()).await.expect("PROXY header");
        let answer = get_healthz(&mut stream).await;
        (stream, answer)
    };
    let (_a, answer) = through_balancer("192.0.2.7").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_b, answer) = through_balancer("192.0.2.8").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "another client has its own share: {answer}");
    let (_c, answer) = through_balancer("192.0.2.7").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "192.0.2.7's one place is taken: {answer}");

    // From a listed balancer, a connection without the header is not served.
    let mut bare = TcpStream::connect(app.addr).await.expect("connects");
    bare.write_all(b"GET /healthz HTTP/1.1\r\nhost: baton\r\n\r\n").await.expect("request");
    assert_eq!(until_closed(&mut bare).await, b"", "closed without an answer");
}

#[tokio::test]
async fn slow_tls_handshakes_and_mqtt_clients_that_never_connect_are_closed_after_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let mut settings = test_settings(dir.path());
    settings.header_timeout_secs = 1;
    settings.tls_cert = Some(cert);
    settings.tls_key = Some(key);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let app = baton_server::App::build_with_listener(settings, listener).await.expect("app");
    let (https, mqtt, mqtts) = (app.local_addr(), app.mqtt_addr().expect("mqtt"), app.mqtt_tls_addr().expect("mqtts"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    // A handshake begun (the first bytes of a ClientHello) and never finished.
    for (what, addr, opening) in [
        ("HTTPS, silent", https, &b""[..]),
        ("HTTPS, half a hello", https, b"\x16\x03\x01\x00"),
        ("MQTT, silent", mqtt, b""),
    ] {
        let since = Instant::now();
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        stream.write_all(opening).await.expect("writes");
        closed_after_the_timeout(what, since, &mut stream).await;
    }

    // MQTT over TLS: the handshake done, then no CONNECT.
    let connector = crate::support::tls_connector(&certified.cert);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let since = Instant::now();
    let tcp = TcpStream::connect(mqtts).await.expect("connects");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    closed_after_the_timeout("MQTT over TLS without CONNECT", since, &mut tls).await;

    let _ = stop.send(());
    server.await.expect("joins").expect("stops cleanly");
}
