//! The agent protocol under bad input, from a raw WebSocket client: frames out of order,
//! malformed, oversize or of the wrong kind close that one connection with a code and a reason;
//! the server and other devices carry on. Wrong secrets never get a connection.

use baton_proto::{
    agent::{ServerMessage, close},
    api::enrollment::EnrollResponse,
};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    agent::{self, Ws},
    support::{TestApp, raw, spawn_app},
};

async fn enrolled_device(app: &TestApp, serial: &str) -> EnrollResponse {
    agent::enroll(app, serial).await
}

async fn connect(
    app: &TestApp,
    device: &EnrollResponse,
    secret: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    agent::connect(app, &device.device_id, secret).await
}

fn too_many_samples() -> String {
    let sample = format!(r#"{{"ts":{},"metrics":{{"x":1.0}}}}"#, chrono::Utc::now().timestamp_millis());
    format!(r#"{{"type":"telemetry","seq":1,"samples":[{}]}}"#, vec![sample; 1001].join(","))
}

fn hello() -> Message {
    agent::hello(None)
}

/// Reads until the server closes; returns its close code and reason.
async fn closed_with(ws: &mut Ws) -> (u16, String) {
    while let Some(frame) = ws.next().await {
        match frame {
            Ok(Message::Close(Some(f))) => return (u16::from(f.code), f.reason.to_string()),
            Ok(Message::Close(None)) | Err(_) => return (0, String::new()),
            Ok(_) => {}
        }
    }
    (0, String::new())
}

async fn next_message(ws: &mut Ws) -> ServerMessage {
    loop {
        match ws.next().await.expect("a frame").expect("no error") {
            Message::Text(text) => return serde_json::from_str(&text).expect("server frames parse"),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn bad_frames_close_only_their_own_connection_with_a_reason() {
    let app = spawn_app().await;
    let good = enrolled_device(&app, "GOOD-1").await;
    let bad = enrolled_device(&app, "BAD-1").await;

    let mut bystander = connect(&app, &good, &good.secret).await.expect("good device connects");
    bystander.send(hello()).await.expect("hello");
    assert!(matches!(next_message(&mut bystander).await, ServerMessage::Welcome { .. }));

    let telemetry_first = r#"{"type":"telemetry","seq":1,"samples":[]}"#;
    let huge = format!(r#"{{"type":"inventory","inventory":{{"hostname":"{}"}}}}"#, "x".repeat(2 * 1024 * 1024));
    let cases: Vec<(&str, Vec<Message>, u16)> = vec![
        ("telemetry before hello", vec![Message::Text(telemetry_first.into())], close::PROTOCOL_VIOLATION),
        ("malformed JSON", vec![Message::Text("{not json".into())], close::INVALID_FRAME),
        (
            "an unsupported protocol",
            vec![Message::Text(r#"{"type":"hello","protocol":99,"agent_version":"x","inventory":{}}"#.into())],
            close::PROTOCOL_VIOLATION,
        ),
        ("a second hello", vec![hello(), hello()], close::PROTOCOL_VIOLATION),
        (
            "an unknown frame type",
            vec![hello(), Message::Text(r#"{"type":"reboot_server"}"#.into())],
            close::INVALID_FRAME,
        ),
        (
            "data for a stream never opened",
            vec![hello(), Message::Binary(vec![0, 0, 0, 1, 42].into())],
            close::PROTOCOL_VIOLATION,
        ),
        (
            "a binary frame without a stream number",
            vec![hello(), Message::Binary(vec![0, 1].into())],
            close::INVALID_FRAME,
        ),
        ("an oversize frame", vec![hello(), Message::Text(huge.into())], close::TOO_LARGE),
        ("a batch too large to be one", vec![hello(), Message::Text(too_many_samples().into())], close::INVALID_FRAME),
    ];
    for (what, frames, code) in cases {
        let mut ws = connect(&app, &bad, &bad.secret).await.unwrap_or_else(|e| panic!("{what}: connects: {e}"));
        for frame in frames {
            if ws.send(frame).await.is_err() {
                break;
            }
        }
        let (got, reason) = closed_with(&mut ws).await;
        assert_eq!(got, code, "{what}: closed with {got} ({reason})");
        assert!(!reason.is_empty(), "{what}: a reason is given");
    }

    // The bystander is still served: its telemetry is stored and acknowledged.
    let now = chrono::Utc::now().timestamp_millis();
    let batch =
        format!(r#"{{"type":"telemetry","seq":7,"samples":[{{"ts":{now},"metrics":{{"temp[cpu].celsius":41.5}}}}]}}"#);
    bystander.send(Message::Text(batch.into())).await.expect("telemetry");
    loop {
        match next_message(&mut bystander).await {
            ServerMessage::TelemetryAck { seq } => {
                assert_eq!(seq, 7);
                break;
            }
            ServerMessage::Heartbeat => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let latest = app.admin.latest_telemetry(&good.device_id).await.expect("latest");
    assert_eq!(latest.metrics["temp[cpu].celsius"], 41.5);
    assert!(app.admin.device(&good.device_id).await.expect("device").connectivity.online);
    assert_eq!(raw().get(format!("{}/readyz", app.url)).send().await.expect("readyz").status(), 200);
}

/// A client frame as raw bytes: `first` is FIN, RSV and opcode; masked with a fixed key unless
/// `masked` is false (which a client must never do).
fn raw_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads the server's frames from the raw stream until its close frame; returns the code.
async fn raw_close_code(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    loop {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.ok()?;
        let len = match head[1] & 0x7f {
            126 => u64::from(stream.read_u16().await.ok()?),
            127 => stream.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).ok()?];
        stream.read_exact(&mut payload).await.ok()?;
        if head[0] & 0x0f == 0x8 {
            return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        }
    }
}

#[tokio::test]
async fn frames_that_break_the_websocket_protocol_close_with_1007_or_1002() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let device = enrolled_device(&app, "RAW-1").await;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("text that is not UTF-8", raw_frame(0x81, &[0x7b, 0xff, 0xfe, 0x7d], true), close::INVALID_FRAME),
        ("an unmasked client frame", raw_frame(0x81, b"{}", false), close::WS_PROTOCOL_ERROR),
        ("RSV bits without an extension", raw_frame(0xc1, b"{}", true), close::WS_PROTOCOL_ERROR),
        ("a ping over 125 bytes", raw_frame(0x89, &[7; 200], true), close::WS_PROTOCOL_ERROR),
    ];
    for (what, frame, code) in cases {
        let mut ws = connect(&app, &device, &device.secret).await.expect("connects");
        ws.send(hello()).await.expect("hello");
        assert!(matches!(next_message(&mut ws).await, ServerMessage::Welcome { .. }), "{what}");
        let stream = ws.get_mut();
        stream.write_all(&frame).await.expect("the raw frame is written");
        let got = tokio::time::timeout(baton_testkit::PATIENCE, raw_close_code(stream)).await.expect("closed in time");
        assert_eq!(got, Some(code), "{what}");
    }
    assert_eq!(raw().get(format!("{}/readyz", app.url)).send().await.expect("readyz").status(), 200);
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_device_never_gets_a_connection() {
    let app = spawn_app().await;
    let device = enrolled_device(&app, "SEC-1").await;
    for secret in ["bd_wrong", "", &device.secret[..device.secret.len() - 1]] {
        let err = connect(&app, &device, secret).await.expect_err("refused");
        let tokio_tungstenite::tungstenite::Error::Http(response) = err else { panic!("an HTTP refusal") };
        assert_eq!(response.status(), 401);
    }
    let stranger = EnrollResponse { device_id: uuid::Uuid::new_v4().to_string(), ..device.clone() };
    assert!(connect(&app, &stranger, &device.secret).await.is_err());
}

#[tokio::test]
async fn a_resent_batch_is_acknowledged_but_stored_once() {
    let app = spawn_app().await;
    let device = enrolled_device(&app, "DUP-1").await;
    let mut ws = connect(&app, &device, &device.secret).await.expect("connects");
    ws.send(hello()).await.expect("hello");
    next_message(&mut ws).await;
    let ts = chrono::Utc::now().timestamp_millis();
    let batch = format!(r#"{{"type":"telemetry","seq":3,"samples":[{{"ts":{ts},"metrics":{{"x":1.0}}}}]}}"#);
    for _ in 0..2 {
        ws.send(Message::Text(batch.clone().into())).await.expect("send");
        loop {
            if let ServerMessage::TelemetryAck { seq } = next_message(&mut ws).await {
                assert_eq!(seq, 3);
                break;
            }
        }
    }
    let q = baton_proto::api::telemetry::TelemetryQuery {
        metric: "x".into(),
        bucket_secs: Some(3600),
        ..Default::default()
    };
    let series = app.admin.telemetry(&device.device_id, &q).await.expect("series");
    assert_eq!(series.points.iter().map(|p| p.count).sum::<u64>(), 1, "stored once");
}

#[tokio::test]
async fn implausible_values_are_dropped_and_the_rest_is_stored_and_acknowledged() {
    let app = spawn_app().await;
    let device = enrolled_device(&app, "ODD-1").await;
    let mut ws = connect(&app, &device, &device.secret).await.expect("connects");
    ws.send(hello()).await.expect("hello");
    next_message(&mut ws).await;
    let now = chrono::Utc::now().timestamp_millis();
    let long = "m".repeat(200);
    let batch = format!(
        r#"{{"type":"telemetry","seq":1,"samples":[{{"ts":{now},"metrics":{{"good":1.0,"{long}":2.0}}}},{{"ts":1,"metrics":{{"from_1970":3.0}}}}]}}"#
    );
    ws.send(Message::Text(batch.into())).await.expect("send");
    loop {
        if let ServerMessage::TelemetryAck { seq } = next_message(&mut ws).await {
            assert_eq!(seq, 1, "acknowledged: the device is not stuck resending it");
            break;
        }
    }
    let latest = app.admin.latest_telemetry(&device.device_id).await.expect("latest");
    assert_eq!(latest.metrics.keys().collect::<Vec<_>>(), ["good"]);
}
