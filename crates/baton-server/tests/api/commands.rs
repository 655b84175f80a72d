//! The command outbox through the API, with a raw WebSocket client as the device: targets by
//! id, group and selector; delivery to a connected device and its reports; idempotency; cancel;
//! TTL expiry; batch progress; and the live event stream.

use std::collections::BTreeMap;

use baton_proto::{
    agent::{AgentMessage, CommandProgress, CommandUpdate, ServerMessage},
    api::{
        commands::{CommandCreate, CommandQuery, CommandResult, CommandSpec, CommandState, CommandTarget},
        devices::DeviceCreate,
        groups::GroupCreate,
    },
};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use baton_testkit::eventually;

use crate::support::{TestApp, spawn_app};

fn to(ids: &[&str]) -> CommandTarget {
    CommandTarget { device_ids: ids.iter().map(|s| s.to_string()).collect(), ..Default::default() }
}

fn create(target: CommandTarget, command: CommandSpec) -> CommandCreate {
    CommandCreate { target, command, ttl_secs: None, idempotency_key: None }
}

fn code(e: baton_client::ClientError) -> u16 {
    e.status().map(|s| s.as_u16()).unwrap_or_default()
}

async fn device(app: &TestApp, serial: &str, labels: &[(&str, &str)]) -> String {
    let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    app.admin
        .create_device(&DeviceCreate { serial: serial.into(), labels, ..Default::default() })
        .await
        .expect("device")
        .id
}

#[tokio::test]
async fn targets_pick_active_devices_by_id_group_and_selector() {
    let app = spawn_app().await;
    let a = device(&app, "A", &[("tier", "prod")]).await;
    let b = device(&app, "B", &[("tier", "test")]).await;
    let c = device(&app, "C", &[("tier", "prod")]).await;
    let group = app.admin.create_group(&GroupCreate { name: "g".into(), ..Default::default() }).await.expect("group");
    app.admin.add_group_members(&group.id, vec![a.clone(), b.clone()]).await.expect("members");
    app.admin.decommission_device(&c, false).await.expect("retired");

    let by_labels = CommandTarget { labels: Some("tier=prod".into()), ..Default::default() };
    let batch = app.admin.create_commands(&create(by_labels, CommandSpec::Ping)).await.expect("batch");
    assert_eq!((batch.total, batch.states.get("QUEUED").copied()), (1, Some(1)), "C is decommissioned: skipped");
    let both = CommandTarget { group: Some(group.id.clone()), labels: Some("tier=test".into()), ..Default::default() };
    let batch = app.admin.create_commands(&create(both, CommandSpec::Ping)).await.expect("batch");
    let listed = app.admin.commands(&CommandQuery { batch: Some(batch.id), ..Default::default() }).await.expect("list");
    assert_eq!(listed.items.iter().map(|c| c.device_id.as_str()).collect::<Vec<_>>(), [b.as_str()]);

    assert_eq!(code(app.admin.create_commands(&create(to(&[&c]), CommandSpec::Ping)).await.expect_err("retired")), 409);
    let nobody = CommandTarget { labels: Some("tier=none".into()), ..Default::default() };
    assert_eq!(code(app.admin.create_commands(&create(nobody, CommandSpec::Ping)).await.expect_err("empty")), 422);
    let viewer = app.client_with_role("viewer").await;
    assert_eq!(code(viewer.create_commands(&create(to(&[&a]), CommandSpec::Ping)).await.expect_err("viewer")), 403);
    let bad_exec = CommandSpec::Exec { program: None, args: vec![], shell: None, timeout_secs: None };
    assert_eq!(code(app.admin.create_commands(&create(to(&[&a]), bad_exec)).await.expect_err("no program")), 422);
}

#[tokio::test]
async fn idempotency_cancel_and_expiry() {
    let app = spawn_app().await;
    let a = device(&app, "A", &[]).await;
    let keyed = CommandCreate { idempotency_key: Some("deploy-42".into()), ..create(to(&[&a]), CommandSpec::Reboot) };
    let first = app.admin.create_commands(&keyed).await.expect("first");
    let again = app.admin.create_commands(&keyed).await.expect("again");
    assert_eq!(first.id, again.id, "the same batch, not a second reboot");
    let all = app.admin.commands(&CommandQuery { device: Some(a.clone()), ..Default::default() }).await.expect("list");
    assert_eq!(all.items.len(), 1);

    let id = &all.items[0].id;
    let canceled = app.admin.cancel_command(id).await.expect("canceled");
    assert_eq!(canceled.state, CommandState::Canceled);
    assert!(canceled.finished_at.is_some());
    assert_eq!(code(app.admin.cancel_command(id).await.expect_err("finished")), 409);

    let short = CommandCreate { ttl_secs: Some(60), ..create(to(&[&a]), CommandSpec::Ping) };
    let batch = app.admin.create_commands(&short).await.expect("batch");
    app.stage_sql(&format!("UPDATE commands SET expires_at = 1 WHERE batch_id = '{}'", batch.id)).await;
    let b = eventually("the command expires", || async {
        let b = app.admin.command_batch(&batch.id).await.expect("batch");
        (b.states.get("EXPIRED") == Some(&1)).then_some(b)
    })
    .await;
    assert_eq!(b.finished(), 1);
}

#[tokio::test]
async fn a_connected_device_gets_its_commands_and_its_reports_complete_them() {
    let app = spawn_app().await;
    let dev = crate::agent::enroll(&app, "WS-1").await;
    // A command queued before the device connects…
    let early = app.admin.create_commands(&create(to(&[&dev.device_id]), CommandSpec::Ping)).await.expect("queued");
    let mut events = app.admin.event_stream(&Default::default()).await.expect("event stream");

    let mut ws = crate::agent::connect(&app, &dev.device_id, &dev.secret).await.expect("connects");
    ws.send(crate::agent::hello(None)).await.expect("hello");

    let mut next = async || loop {
        if let Message::Text(t) = ws.next().await.expect("frame").expect("ok") {
            match serde_json::from_str::<ServerMessage>(&t).expect("parses") {
                ServerMessage::Heartbeat => {}
                m => return m,
            }
        }
    };
    assert!(matches!(next().await, ServerMessage::Welcome { .. }));
    // …arrives on connect, and one queued while connected arrives at once.
    let ServerMessage::Command(first) = next().await else { panic!("a command") };
    assert_eq!(first.command, CommandSpec::Ping);
    let later =
        app.admin.create_commands(&create(to(&[&dev.device_id]), CommandSpec::RefreshInventory)).await.expect("queued");
    let ServerMessage::Command(second) = next().await else { panic!("a command") };
    assert_eq!(second.command, CommandSpec::RefreshInventory);
    assert_eq!(app.admin.command(&first.id).await.expect("cmd").state, CommandState::Sent);

    let report = |id: &str, state, result| {
        let update = AgentMessage::CommandUpdate(CommandUpdate { command_id: id.into(), state, result });
        Message::Text(serde_json::to_string(&update).expect("json").into())
    };
    // A report for another device's command changes nothing.
    let other =
        app.admin.create_device(&DeviceCreate { serial: "OTHER".into(), ..Default::default() }).await.expect("other");
    let theirs = app.admin.create_commands(&create(to(&[&other.id]), CommandSpec::Ping)).await.expect("queued");
    let theirs =
        app.admin.commands(&CommandQuery { batch: Some(theirs.id), ..Default::default() }).await.expect("list").items;
    ws.send(report(&theirs[0].id, CommandProgress::Succeeded, None)).await.expect("stray");
    ws.send(report(&first.id, CommandProgress::Acked, None)).await.expect("ack");
    let output = CommandResult { stdout: "pong".into(), exit_code: Some(0), ..Default::default() };
    ws.send(report(&first.id, CommandProgress::Succeeded, Some(output))).await.expect("result");
    ws.send(report(&second.id, CommandProgress::Failed, None)).await.expect("result");

    let done = eventually("the report lands", || async {
        let c = app.admin.command(&first.id).await.expect("cmd");
        c.state.is_final().then_some(c)
    })
    .await;
    assert_eq!(done.state, CommandState::Succeeded);
    assert_eq!(done.result.expect("result").stdout, "pong");
    assert!(done.sent_at.is_some() && done.acked_at.is_some() && done.finished_at.is_some());
    assert_eq!(app.admin.command_batch(&early.id).await.expect("batch").states.get("SUCCEEDED"), Some(&1));
    // The stray report came before the reports just seen on the same connection: it was
    // handled, and left the other device's command alone.
    assert_eq!(app.admin.command(&theirs[0].id).await.expect("theirs").state, CommandState::Queued);
    eventually("the failure lands", || async {
        let b = app.admin.command_batch(&later.id).await.expect("batch");
        (b.states.get("FAILED") == Some(&1)).then_some(())
    })
    .await;

    // The live event stream saw the device come online and the commands finish.
    let mut kinds = Vec::new();
    while kinds.iter().filter(|k: &&String| *k == "command.finished").count() < 2 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
            .await
            .expect("an event")
            .expect("stream open");
        if let baton_client::Live::Item(event) = event.expect("parses") {
            kinds.push(event.kind);
        }
    }
    assert!(kinds.contains(&"device.online".to_owned()), "{kinds:?}");
}
