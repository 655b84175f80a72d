//! Bad MQTT input from a raw TCP client (packets encoded by hand here, not by the server's codec):
//! a connection that sends garbage, a truncated or oversize packet, an unknown protocol level or
//! a second CONNECT is closed, and a device connected at the same time never notices. Payloads
//! the server cannot use and messages over the rate are refused one by one, on a connection that
//! stays up.

use std::time::Duration;

use baton_proto::api::{events::EventQuery, telemetry::TelemetryQuery};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

use crate::{
    mqtt_clients::{PATIENCE, Version, device, latest, online_becomes},
    support::{TestApp, spawn_app, spawn_with, test_settings},
};

/// A packet as read: its first byte and the rest after the length.
type Packet = (u8, Vec<u8>);

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            return;
        }
    }
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&u16::try_from(s.len()).expect("short").to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// CONNECT with protocol `level` (4: 3.1.1, 5: 5), a clean session and a user name and password.
fn connect_packet(level: u8, user: &str, password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(b"MQTT", &mut body);
    body.extend_from_slice(&[level, 0xC2, 0, 60]); // user name, password, clean; keep-alive 60 s
    if level == 5 {
        body.push(0); // no properties
    }
    string(b"", &mut body); // client id: the server picks
    string(user.as_bytes(), &mut body);
    string(password.as_bytes(), &mut body);
    packet(0x10, &body)
}

fn level(version: Version) -> u8 {
    version.pick(4, 5)
}

/// PUBLISH with QoS 1.
fn publish_packet(version: Version, topic: &str, payload: &[u8], id: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string(topic.as_bytes(), &mut body);
    body.extend_from_slice(&id.to_be_bytes());
    if version == Version::V5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x32, &body)
}

/// A hand-driven MQTT connection.
struct Raw {
    stream: TcpStream,
    version: Version,
    next_id: u16,
}

impl Raw {
    async fn open(app: &TestApp, version: Version) -> Self {
        let stream = TcpStream::connect(app.mqtt_addr).await.expect("connects");
        Self { stream, version, next_id: 0 }
    }

    /// Opens a connection and logs in as the device; returns it and the CONNACK's body.
    async fn device(app: &TestApp, version: Version, id: &str, secret: &str) -> (Self, Vec<u8>) {
        let mut raw = Self::open(app, version).await;
        raw.send(&connect_packet(level(version), id, secret)).await;
        let (kind, connack) = raw.read().await.expect("a CONNACK");
        assert_eq!((kind, connack[1]), (0x20, 0), "{version:?}: accepted");
        (raw, connack)
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("writes");
    }

    /// The next packet, or `None` once the server closed the connection.
    async fn read(&mut self) -> Option<Packet> {
        let mut first = [0u8; 1];
        let read = timeout(PATIENCE, self.stream.read(&mut first)).await.expect("the server answers or closes");
        if !matches!(read, Ok(1)) {
            return None;
        }
        let (mut length, mut shift) = (0usize, 0);
        loop {
            let byte = self.stream.read_u8().await.ok()?;
            length += usize::from(byte & 0x7F) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.ok()?;
        Some((first[0], body))
    }

    /// Publishes telemetry with QoS 1 and returns the PUBACK's reason code.
    async fn publish(&mut self, topic: &str, payload: &[u8]) -> u8 {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&publish_packet(self.version, topic, payload, id)).await;
        let (kind, ack) = self.read().await.expect("a PUBACK");
        assert_eq!((kind, &ack[..2]), (0x40, &id.to_be_bytes()[..]), "the PUBACK of message {id}");
        ack.get(2).copied().unwrap_or(0)
    }

    /// Reads until the server closes the connection; returns what it sent before.
    async fn closed(&mut self) -> Vec<Packet> {
        let mut got = Vec::new();
        while let Some(packet) = self.read().await {
            got.push(packet);
        }
        got
    }
}

#[tokio::test]
async fn broken_connections_are_closed_and_a_device_connected_meanwhile_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = baton_server::Settings { mqtt_max_packet_bytes: 1024, ..test_settings(dir.path()) };
    let app = spawn_with(settings, dir).await;
    let (healthy_id, healthy_secret) = device(&app, "HEALTHY").await;
    let (mut healthy, _) = Raw::device(&app, Version::V5, &healthy_id, &healthy_secret).await;
    let mut value = 0;
    let mut carries_on = async |raw: &mut Raw, what: &str| {
        value += 1;
        let sample = json!({"n": value}).to_string();
        assert_eq!(raw.publish("baton/v1/me/telemetry", sample.as_bytes()).await, 0, "after {what}");
        assert_eq!(latest(&app, &healthy_id).await["n"], f64::from(value), "stored after {what}");
    };

    // Before any CONNECT.
    let connect = connect_packet(4, &healthy_id, &healthy_secret);
    let mut oversize_connect = vec![0x10];
    varint(4096, &mut oversize_connect);
    oversize_connect.extend_from_slice(&[0; 64]);
    let cases: [(&str, Vec<u8>, Vec<Packet>); 4] = [
        // ('G' reads as a PUBLISH of 69 bytes: the request is longer, so it is judged at once.)
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: baton\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nConnection: close\r\n\r\n"
                .to_vec(),
            vec![],
        ),
        ("garbage bytes", vec![0xFF; 64], vec![]),
        ("an oversize CONNECT", oversize_connect, vec![]),
        // A protocol level it does not speak is refused the way every version can read.
        ("an unknown protocol level", connect_packet(6, &healthy_id, &healthy_secret), vec![(0x20, vec![0, 1])]),
    ];
    for (what, bytes, answer) in cases {
        let mut raw = Raw::open(&app, Version::V311).await;
        raw.send(&bytes).await;
        assert_eq!(raw.closed().await, answer, "{what}: closed");
        carries_on(&mut healthy, what).await;
    }
    let mut truncated = Raw::open(&app, Version::V311).await;
    truncated.send(&connect[..connect.len() / 2]).await;
    truncated.stream.shutdown().await.expect("half-closed");
    assert_eq!(truncated.closed().await, [], "a truncated CONNECT, then close");
    carries_on(&mut healthy, "a truncated CONNECT").await;
    assert!(app.admin.device(&healthy_id).await.expect("device").connectivity.online, "never taken over");

    // After a good CONNECT, as another device.
    let (id, secret) = device(&app, "BROKEN").await;
    for version in Version::BOTH {
        let v5 = version == Version::V5;
        let mut oversize = publish_packet(version, "baton/v1/me/telemetry", &[b' '; 2000], 1);
        oversize.truncate(100); // the length says 2000+; the limit is 1024
        let truncated = publish_packet(version, "baton/v1/me/telemetry", br#"{"broken": 1}"#, 1);
        // MQTT 5 clients are told why in a DISCONNECT: the reasons it may carry (none: the
        // client itself closed). A second CONNECT is a protocol error (0x82) to MQTT 5, and
        // malformed (0x81) to Baton's codec; both are fine for a client.
        let cases: [(&str, Vec<u8>, &[u8]); 4] = [
            ("a second CONNECT", connect_packet(level(version), &id, &secret), &[0x81, 0x82]),
            ("an oversize PUBLISH", oversize, &[0x95]),
            ("a reserved packet type", vec![0x00, 0x00], &[0x81]),
            ("a truncated PUBLISH, then close", truncated[..truncated.len() - 3].to_vec(), &[]),
        ];
        for (what, bytes, reasons) in cases {
            let (mut raw, connack) = Raw::device(&app, version, &id, &secret).await;
            if v5 && what == "an oversize PUBLISH" {
                // The CONNACK told the client the limit: Maximum Packet Size (0x27) = 1024.
                let limit = [0x27, 0, 0, 4, 0];
                assert!(connack.windows(5).any(|w| w == limit), "the limit is announced: {connack:?}");
            }
            raw.send(&bytes).await;
            if reasons.is_empty() {
                raw.stream.shutdown().await.expect("half-closed");
            }
            let before_close = raw.closed().await;
            match before_close.as_slice() {
                [] => assert!(!v5 || reasons.is_empty(), "{version:?} {what}: closed without a DISCONNECT"),
                [(0xE0, body)] => {
                    assert!(v5, "{what}: MQTT 3.1.1 has no server DISCONNECT");
                    assert!(reasons.contains(&body[0]), "{what}: DISCONNECT {:#04x}, not {reasons:02x?}", body[0]);
                }
                other => panic!("{version:?} {what}: expected the connection closed, got {other:?}"),
            }
            online_becomes(&app, &id, false).await;
            carries_on(&mut healthy, what).await;
        }
    }
    assert!(latest(&app, &id).await.is_empty(), "nothing of the broken packets was stored");
}

#[tokio::test]
async fn a_payload_that_is_not_json_is_refused_recorded_and_the_connection_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_with(test_settings(dir.path()), dir).await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("SLOPPY-{version:?}")).await;
        let (mut raw, _) = Raw::device(&app, version, &id, &secret).await;
        let refused = version.pick(0, 0x99); // 3.1.1 cannot say why: the message is just dropped
        assert_eq!(raw.publish("baton/v1/me/telemetry", b"temp=21.5").await, refused, "{version:?}: not JSON");
        assert_eq!(raw.publish("baton/v1/me/telemetry", b"\"hot\"").await, refused, "{version:?}: a wrong shape");
        assert_eq!(raw.publish("baton/v1/me/attributes", b"[1, 2]").await, refused, "{version:?}: not an object");
        assert!(latest(&app, &id).await.is_empty());

        let query =
            EventQuery { device: Some(id.clone()), kind: Some("device.message_rejected".into()), ..Default::default() };
        let events = app.admin.events(&query).await.expect("events").items;
        assert_eq!(events.len(), 1, "{version:?}: at most one event per 10 s and connection: {events:?}");
        let data = &events[0].data;
        assert_eq!((&data["topic"], &data["reason_code"]), (&json!("baton/v1/me/telemetry"), &json!(0x99)), "{data}");
        assert!(data["reason"].as_str().is_some_and(|r| r.contains("JSON")), "says why: {data}");

        assert_eq!(raw.publish("baton/v1/me/telemetry", br#"{"temp": 21.5}"#).await, 0, "{version:?}: still up");
        assert_eq!(latest(&app, &id).await["temp"], 21.5);
    }
}

#[tokio::test]
async fn messages_over_the_rate_are_refused_and_the_connection_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings =
        baton_server::Settings { mqtt_messages_per_second: 1, mqtt_message_burst: 3, ..test_settings(dir.path()) };
    let app = spawn_with(settings, dir).await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("CHATTY-{version:?}")).await;
        let (mut raw, _) = Raw::device(&app, version, &id, &secret).await;
        let now = chrono::Utc::now().timestamp_millis();
        // Ten messages in one write: far faster than one a second.
        let mut burst = Vec::new();
        for i in 0..10u16 {
            let sample = json!({"ts": now - 10_000 + i64::from(i) * 1000, "values": {"n": i}}).to_string();
            burst.extend(publish_packet(version, "baton/v1/me/telemetry", sample.as_bytes(), i + 1));
        }
        raw.send(&burst).await;
        let mut codes = Vec::new();
        for _ in 0..10 {
            let (kind, ack) = raw.read().await.expect("a PUBACK for each");
            assert_eq!(kind, 0x40);
            codes.push(ack.get(2).copied().unwrap_or(0));
        }
        assert_eq!(codes[..3], [0, 0, 0], "{version:?}: the burst is allowed: {codes:?}");
        if version == Version::V5 {
            assert!(codes[3..].contains(&0x97), "{version:?}: quota exceeded: {codes:?}");
        }
        let from = chrono::DateTime::from_timestamp_millis(now - 20_000);
        let query = TelemetryQuery { metric: "n".into(), from, bucket_secs: Some(1), ..Default::default() };
        let stored = app.admin.telemetry(&id, &query).await.expect("series").points.len();
        assert!((3..10).contains(&stored), "{version:?}: the burst was stored, the excess dropped: {stored}");

        // The connection is still up; once the rate allows, messages are taken again.
        let retried = async {
            for k in 1.. {
                let sample = json!({"later": k}).to_string();
                raw.publish("baton/v1/me/telemetry", sample.as_bytes()).await;
                if latest(&app, &id).await.get("later") == Some(&f64::from(k)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await; // the polling interval
            }
        };
        timeout(PATIENCE, retried)
            .await
            .unwrap_or_else(|_| panic!("{version:?}: the rate never allowed a message again"));
    }
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_one_and_a_half_keep_alives_and_goes_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Clients are held to a 1 s keep-alive whatever they ask for (60 s here).
    let settings = baton_server::Settings { mqtt_max_keepalive_secs: 1, ..test_settings(dir.path()) };
    let app = spawn_with(settings, dir).await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("QUIET-{version:?}")).await;
        let (mut raw, connack) = Raw::device(&app, version, &id, &secret).await;
        if version == Version::V5 {
            // Server Keep Alive (0x13) = 1 is announced in the CONNACK's properties.
            assert!(connack.windows(3).any(|w| w == [0x13, 0, 1]), "{version:?}: {connack:?}");
        }
        online_becomes(&app, &id, true).await;
        let ending = raw.closed().await;
        if version == Version::V5 {
            assert!(matches!(ending.last(), Some((0xE0, body)) if body.first() == Some(&0x8D)), "{ending:?}");
        }
        online_becomes(&app, &id, false).await;
    }
}

#[tokio::test]
async fn too_many_connection_attempts_from_one_address_are_refused_in_the_connack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings =
        baton_server::Settings { device_connects_per_second: 1, device_connect_burst: 2, ..test_settings(dir.path()) };
    let app = spawn_with(settings, dir).await;
    let (id, secret) = device(&app, "EAGER").await;
    for version in Version::BOTH {
        // Twice the burst in a row: the first are accepted, then a refusal that says why.
        let mut codes = Vec::new();
        for _ in 0..4 {
            let mut raw = Raw::open(&app, version).await;
            raw.send(&connect_packet(level(version), &id, &secret)).await;
            let (kind, connack) = raw.read().await.expect("a CONNACK");
            assert_eq!(kind, 0x20);
            codes.push(connack[1]);
        }
        assert!(codes.contains(&version.pick(3, 0x9F)), "{version:?}: {codes:?}");
    }
}

#[tokio::test]
async fn qos_2_telemetry_is_stored_once_and_released_with_pubcomp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_with(test_settings(dir.path()), dir).await;
    for version in Version::BOTH {
        let (id, secret) = device(&app, &format!("EXACT-{version:?}")).await;
        let (mut raw, _) = Raw::device(&app, version, &id, &secret).await;
        let now = chrono::Utc::now().timestamp_millis();
        let sample = json!({"ts": now, "values": {"exact": 1}}).to_string();
        let mut qos2 = publish_packet(version, "baton/v1/me/telemetry", sample.as_bytes(), 7);
        qos2[0] = 0x34; // QoS 2
        raw.send(&qos2).await;
        let (kind, rec) = raw.read().await.expect("PUBREC");
        assert_eq!((kind, &rec[..2]), (0x50, &[0u8, 7][..]), "{version:?}");
        // The client did not see the PUBREC and sends the message again, marked DUP.
        qos2[0] = 0x3C;
        raw.send(&qos2).await;
        let (kind, _) = raw.read().await.expect("PUBREC again");
        assert_eq!(kind, 0x50);
        raw.send(&packet(0x62, &[0, 7])).await; // PUBREL
        let (kind, comp) = raw.read().await.expect("PUBCOMP");
        assert_eq!((kind, &comp[..2]), (0x70, &[0u8, 7][..]), "{version:?}");
        let from = chrono::DateTime::from_timestamp_millis(now - 1000);
        let query = TelemetryQuery { metric: "exact".into(), from, ..Default::default() };
        let points = app.admin.telemetry(&id, &query).await.expect("series").points;
        assert_eq!(points.len(), 1, "{version:?}: stored once: {points:?}");
    }
}

#[tokio::test]
async fn a_qos_1_message_sent_again_is_stored_once_and_a_burst_without_times_is_every_sample() {
    let app = spawn_app().await;
    let (id, secret) = device(&app, "RESENT-1").await;
    let (mut raw, _) = Raw::device(&app, Version::V311, &id, &secret).await;
    let now = chrono::Utc::now().timestamp_millis();
    let sample = json!({"ts": now, "values": {"resent": 1}}).to_string();
    let mut message = publish_packet(Version::V311, "baton/v1/me/telemetry", sample.as_bytes(), 9);
    raw.send(&message).await;
    assert_eq!(raw.read().await.expect("PUBACK").0, 0x40);
    // The client did not see the PUBACK and sends the message again, marked DUP.
    message[0] |= 0x08;
    raw.send(&message).await;
    assert_eq!(raw.read().await.expect("PUBACK again").0, 0x40);
    let from = chrono::DateTime::from_timestamp_millis(now - 1000);
    let query = TelemetryQuery { metric: "resent".into(), from, ..Default::default() };
    let points = app.admin.telemetry(&id, &query).await.expect("series").points;
    assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), 1, "stored once: {points:?}");

    // Twenty messages without a time in one write: the same millisecond, twenty samples.
    let burst: Vec<u8> = (1..=20u16)
        .flat_map(|n| publish_packet(Version::V311, "baton/v1/me/telemetry", br#"{"burst":1}"#, 100 + n))
        .collect();
    raw.send(&burst).await;
    for _ in 0..20 {
        assert_eq!(raw.read().await.expect("PUBACK").0, 0x40);
    }
    // Stamped a millisecond apart from the time of the first, so the last lie a little ahead.
    let to = chrono::DateTime::from_timestamp_millis(now + 60_000);
    let query = TelemetryQuery { metric: "burst".into(), from, to, ..Default::default() };
    let points = app.admin.telemetry(&id, &query).await.expect("series").points;
    assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), 20, "{points:?}");
}
