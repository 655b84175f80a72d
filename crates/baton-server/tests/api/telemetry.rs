//! Telemetry through the API, fed by a raw agent connection: bucketed series with each
//! aggregate, the live stream with its filters, and retention pruning old samples.

use baton_proto::{
    agent::ServerMessage,
    api::{
        enrollment::EnrollResponse,
        telemetry::{Aggregate, TelemetryQuery, TelemetryStreamQuery},
    },
};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    agent::{self, Ws},
    support::{TestApp, spawn_app},
};

async fn device(app: &TestApp, serial: &str) -> (EnrollResponse, Ws) {
    let enrolled = agent::enroll(app, serial).await;
    let mut ws = agent::connect(app, &enrolled.device_id, &enrolled.secret).await.expect("connects");
    ws.send(agent::hello(Some(1))).await.expect("hello");
    (enrolled, ws)
}

/// Sends one batch of `(ts, value)` samples of metric `m` and waits for its acknowledgement.
pub async fn send(ws: &mut Ws, seq: u64, samples: &[(i64, f64)]) {
    let samples: Vec<String> =
        samples.iter().map(|(ts, v)| format!(r#"{{"ts":{ts},"metrics":{{"m":{v}}}}}"#)).collect();
    let batch = format!(r#"{{"type":"telemetry","seq":{seq},"samples":[{}]}}"#, samples.join(","));
    ws.send(Message::Text(batch.into())).await.expect("send");
    loop {
        let Some(Ok(Message::Text(text))) = ws.next().await else { panic!("connection ended") };
        if let Ok(ServerMessage::TelemetryAck { seq: acked }) = serde_json::from_str(&text) {
            assert_eq!(acked, seq);
            return;
        }
    }
}

#[tokio::test]
async fn series_aggregate_each_bucket_as_asked() {
    let app = spawn_app().await;
    let (dev, mut ws) = device(&app, "SERIES-1").await;
    let t0 = (chrono::Utc::now().timestamp_millis() / 60_000 - 10) * 60_000; // a whole minute, ten minutes ago
    send(&mut ws, 1, &[(t0, 1.0), (t0 + 10_000, 5.0), (t0 + 20_000, 3.0), (t0 + 60_000, 10.0)]).await;
    let from = chrono::DateTime::from_timestamp_millis(t0).expect("time");
    for (agg, first, second) in [
        (Aggregate::Avg, 3.0, 10.0),
        (Aggregate::Min, 1.0, 10.0),
        (Aggregate::Max, 5.0, 10.0),
        (Aggregate::Last, 3.0, 10.0),
    ] {
        let q =
            TelemetryQuery { metric: "m".into(), from: Some(from), to: None, bucket_secs: Some(60), agg: Some(agg) };
        let series = app.admin.telemetry(&dev.device_id, &q).await.expect("series");
        let values: Vec<(f64, u64)> = series.points.iter().map(|p| (p.value, p.count)).collect();
        assert_eq!(values, [(first, 3), (second, 1)], "{agg:?}");
        assert_eq!(series.points[0].ts, from);
    }
    let unknown = TelemetryQuery { metric: "nothing".into(), ..Default::default() };
    assert!(app.admin.telemetry(&dev.device_id, &unknown).await.expect("empty").points.is_empty());
    let backwards =
        TelemetryQuery { metric: "m".into(), from: Some(chrono::Utc::now()), to: Some(from), ..Default::default() };
    assert_eq!(
        app.admin.telemetry(&dev.device_id, &backwards).await.expect_err("422").status().map(|s| s.as_u16()),
        Some(422)
    );
}

#[tokio::test]
async fn the_live_stream_follows_the_devices_asked_for() {
    let app = spawn_app().await;
    let (watched, mut ws_watched) = device(&app, "LIVE-1").await;
    let (_other, mut ws_other) = device(&app, "LIVE-2").await;
    let query = TelemetryStreamQuery { device: Some(watched.device_id.clone()), ..Default::default() };
    let mut stream = app.admin.telemetry_stream(&query).await.expect("stream");
    let now = chrono::Utc::now().timestamp_millis();
    send(&mut ws_other, 1, &[(now, 99.0)]).await;
    send(&mut ws_watched, 1, &[(now, 42.0)]).await;
    let event =
        tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await.expect("an event").expect("open");
    let baton_client::Live::Item(event) = event.expect("parses") else { panic!("an item") };
    assert_eq!(
        (event.device_id.as_str(), event.metrics["m"]),
        (watched.device_id.as_str(), 42.0),
        "only the watched device"
    );
}

#[tokio::test]
async fn samples_past_the_retention_period_are_pruned() {
    // Ten years at first, so the pruning pass at start cannot race the old sample in.
    let dir = tempfile::tempdir().expect("tempdir");
    let settings =
        baton_server::Settings { telemetry_retention_days: 3650, ..crate::support::test_settings(dir.path()) };
    let mut app = crate::support::spawn_with(settings, dir).await;
    let (dev, mut ws) = device(&app, "OLD-1").await;
    let day = 86_400_000;
    let now = chrono::Utc::now().timestamp_millis();
    send(&mut ws, 1, &[(now - 40 * day, 1.0), (now - day, 2.0)]).await;
    drop(ws);
    let all = TelemetryQuery {
        metric: "m".into(),
        from: chrono::DateTime::from_timestamp_millis(now - 41 * day),
        to: None,
        bucket_secs: Some(86_400),
        agg: None,
    };
    assert_eq!(app.admin.telemetry(&dev.device_id, &all).await.expect("series").points.len(), 2);
    // Pruning runs when the server starts, and hourly after.
    app.restart(|s| s.telemetry_retention_days = 30).await;
    let points = baton_testkit::eventually("the old sample is pruned", || async {
        let points = app.admin.telemetry(&dev.device_id, &all).await.expect("series").points;
        (points.len() == 1).then_some(points)
    })
    .await;
    assert_eq!(points[0].value, 2.0, "the recent sample stays");
}

#[tokio::test]
async fn samples_stored_before_the_series_table_are_moved_into_it_once() {
    let mut app = spawn_app().await;
    let (dev, ws) = device(&app, "MOVED-1").await;
    drop(ws);
    // The table as migrations 3 and 6 left it, with a message an MQTT redelivery stored twice;
    // migration 17 runs again on it at the restart.
    let t0 = (chrono::Utc::now().timestamp_millis() / 60_000 - 10) * 60_000;
    let id = &dev.device_id;
    for statement in [
        "DROP TABLE telemetry".to_owned(),
        "DROP TABLE telemetry_devices".to_owned(),
        "DROP TABLE telemetry_metrics".to_owned(),
        "CREATE TABLE telemetry (tenant_id TEXT NOT NULL, device_id TEXT NOT NULL, ts BIGINT NOT NULL, \
         metric TEXT NOT NULL, value DOUBLE PRECISION NOT NULL)"
            .to_owned(),
        "CREATE INDEX telemetry_by_time ON telemetry (ts)".to_owned(),
        "CREATE INDEX telemetry_series_values ON telemetry (device_id, metric, ts, value)".to_owned(),
        format!(
            "INSERT INTO telemetry (tenant_id, device_id, ts, metric, value) VALUES \
             ('t', '{id}', {t0}, 'm', 1.0), ('t', '{id}', {t1}, 'm', 2.0), ('t', '{id}', {t1}, 'm', 2.0), \
             ('t', '{id}', {t0}, 'other', 5.0), ('t', 'another-device', {t0}, 'm', 7.0)",
            t1 = t0 + 60_000
        ),
        "DELETE FROM baton_migrations WHERE version = 17".to_owned(),
    ] {
        app.stage_sql(&statement).await;
    }
    app.restart(|_| {}).await;
    let from = chrono::DateTime::from_timestamp_millis(t0);
    let series = |metric: &str| TelemetryQuery {
        metric: metric.into(),
        from,
        to: None,
        bucket_secs: Some(60),
        agg: Some(Aggregate::Avg),
    };
    let moved = app.admin.telemetry(id, &series("m")).await.expect("series").points;
    let values: Vec<(f64, u64)> = moved.iter().map(|p| (p.value, p.count)).collect();
    assert_eq!(values, [(1.0, 1), (2.0, 1)], "each sample once");
    let other = app.admin.telemetry(id, &series("other")).await.expect("series").points;
    assert_eq!(other.iter().map(|p| (p.value, p.count)).collect::<Vec<_>>(), [(5.0, 1)]);
}
