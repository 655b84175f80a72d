//! Rollouts end to end with a simulated fleet of real agents: waves in a stable order, the
//! failure gate stopping a bad update before the last wave (PAUSE, and ROLLBACK giving the
//! previous version back), retries with backoff on the server's clock, a server restart in the
//! middle, and the checks every device makes before installing.

use std::collections::BTreeSet;

use baton_client::Client;
use baton_core::clock::Clock;
use baton_proto::api::rollouts::{
    ExecutionAction, ExecutionQuery, ExecutionState, FailureClass, FailureGate, GateAction, PauseReason, RetryPolicy,
    RolloutCreate, RolloutState, SuccessGate, Targets, Wave,
};

use crate::{
    fleet::{Fleet, artifact, eventually, rollout_in},
    support::{TestApp, spawn_app, spawn_with, test_settings},
};

/// A rollout of `artifact_id` to these devices, in one wave, without retries.
fn rollout(name: &str, artifact_id: &str, device_ids: Vec<String>) -> RolloutCreate {
    RolloutCreate {
        name: name.into(),
        artifact_id: artifact_id.into(),
        targets: Targets { device_ids, ..Targets::default() },
        failure_gate: FailureGate::default(),
        retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        install: baton_proto::api::rollouts::InstallSpec {
            path: Some("/opt/app/app.bin".into()),
            ..Default::default()
        },
        ..RolloutCreate::default()
    }
}

async fn busy_app() -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(dir.path());
    settings.device_connects_per_second = 10_000;
    settings.device_connect_burst = 10_000;
    spawn_with(settings, dir).await
}

/// The gate scenario: 200 devices, waves of 10 %, 50 % and 100 %; 30 % of the second wave's
/// devices fail. Returns the app, fleet, rollout id, and the serials of each wave.
async fn failing_second_wave(action: GateAction) -> (TestApp, Fleet, String, Vec<BTreeSet<String>>) {
    let app = busy_app().await;
    let fleet = Fleet::start(&app, 200, "gate").await;
    let serials = Fleet::serials(&app, "gate").await;
    let v1 = artifact(&app, "app", "1.0", b"version one").await;
    let v2 = artifact(&app, "app", "2.0", b"version two").await;
    let mut req = rollout("app 2.0", &v2.id, serials.keys().cloned().collect());
    req.waves = vec![Wave::Percent(10.0), Wave::Percent(50.0), Wave::Percent(100.0)];
    req.failure_gate = FailureGate { failed_percent: Some(10.0), failed_count: None, min_executed: 20, action };
    req.start = false;
    let draft = app.admin.create_rollout(&req).await.expect("draft made");
    assert_eq!(draft.state, RolloutState::Draft);
    assert_eq!(draft.rollback_artifact.as_ref().map(|a| a.id.as_str()), Some(v1.id.as_str()), "the previous version");
    let sizes: Vec<u64> = draft.progress.waves.iter().map(|w| w.devices).collect();
    assert_eq!(sizes, vec![20, 80, 100]);
    // No device has reported its speed: none is invented, and the estimate says what it needs
    // of each device (the server's rate shared by the largest wave).
    let p = &draft.progress;
    let rate = p.serving_bytes_per_sec.expect("the server serves this artifact");
    assert_eq!(p.bandwidth_bytes_per_sec, None);
    assert_eq!(p.eta_device_speed_needed, Some(rate.div_ceil(100)), "{p:?}");
    assert!(p.eta_download_secs.is_some(), "{p:?}");

    let executions = app.admin.all_rollout_executions(&draft.id, &ExecutionQuery::default()).await.expect("executions");
    let mut waves = vec![BTreeSet::new(); 3];
    for e in &executions {
        waves[e.wave as usize - 1].insert(serials[&e.device_id].clone());
    }
    // 30 % of the second wave fail, whichever devices the stable order put there.
    let failing: Vec<String> = waves[1].iter().step_by(3).take(24).cloned().collect();
    fleet.failing.lock().expect("lock").extend(failing);
    app.admin.steer_rollout(&draft.id, "start").await.expect("started");
    (app, fleet, draft.id, waves)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_second_wave_pauses_the_rollout_and_the_third_wave_is_untouched() {
    let (app, fleet, id, waves) = failing_second_wave(GateAction::Pause).await;
    let paused = rollout_in(&app, &id, RolloutState::Paused).await;
    assert_eq!(paused.paused_reason, Some(PauseReason::FailureGate));
    assert_eq!(paused.current_wave, 2);
    let p = &paused.progress;
    assert!(p.failed * 10 >= p.executed && p.executed >= 20, "the gate fired on its own terms: {p:?}");
    assert_eq!(p.waves[0].states.get(&ExecutionState::Succeeded), Some(&20), "the first wave succeeded: {p:?}");
    assert_eq!(p.waves[2].states.get(&ExecutionState::Queued), Some(&100), "the third wave is untouched: {p:?}");
    for serial in &waves[2] {
        assert!(fleet.installed(serial).is_empty(), "{serial} of the third wave installed something");
    }
    // Nothing moves while paused, however long the server looks.
    app.clock.advance(std::time::Duration::from_secs(3600));
    let later = app.admin.rollout(&id).await.expect("rollout");
    assert_eq!(later.progress.waves[2].states.get(&ExecutionState::Queued), Some(&100));
    let query =
        baton_proto::api::events::EventQuery { kind: Some("rollout.state_changed".into()), ..Default::default() };
    eventually("the pause in the event log", || async {
        let events = app.admin.events(&query).await.map_err(|e| e.to_string())?;
        let found = events.items.iter().any(|e| e.data["state"] == "PAUSED" && e.data["rollout_id"] == id.as_str());
        if found { Ok(()) } else { Err(format!("{:?}", events.items)) }
    })
    .await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_second_wave_with_rollback_gives_the_previous_version_back() {
    let (app, fleet, id, waves) = failing_second_wave(GateAction::Rollback).await;
    let done = rollout_in(&app, &id, RolloutState::RolledBack).await;
    let executions = app.admin.all_rollout_executions(&id, &ExecutionQuery::default()).await.expect("executions");
    let serials = Fleet::serials(&app, "gate").await;
    let rolled: BTreeSet<String> = executions
        .iter()
        .filter(|e| e.action == ExecutionAction::Rollback)
        .inspect(|e| assert_eq!(e.state, ExecutionState::Succeeded, "{e:?}"))
        .map(|e| serials[&e.device_id].clone())
        .collect();
    let succeeded: BTreeSet<String> = executions
        .iter()
        .filter(|e| e.action == ExecutionAction::Install && e.state == ExecutionState::Succeeded)
        .map(|e| serials[&e.device_id].clone())
        .collect();
    assert_eq!(rolled, succeeded, "every device that had 2.0 is rolled back, and no other");
    assert!(waves[0].iter().all(|s| rolled.contains(s)), "the first wave is rolled back");
    for serial in &rolled {
        assert_eq!(fleet.installed(serial), vec!["2.0", "1.0"], "{serial} got 1.0 back");
    }
    for serial in &waves[2] {
        assert!(fleet.installed(serial).is_empty(), "{serial} of the third wave installed something");
    }
    assert_eq!(done.progress.rollback.get(&ExecutionState::Succeeded).copied(), Some(rolled.len() as u64));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_install_is_retried_after_its_backoff_on_the_servers_clock() {
    let app = spawn_app().await;
    let fleet = Fleet::start(&app, 1, "retry").await;
    let device = Fleet::serials(&app, "retry").await.into_keys().collect::<Vec<_>>();
    fleet.failing.lock().expect("lock").insert("retry-000".into());
    let v1 = artifact(&app, "app", "1.0", b"one").await;
    let mut req = rollout("retry", &v1.id, device);
    req.retry = RetryPolicy { max_attempts: 3, backoff_secs: 60, max_backoff_secs: 600 };
    let made = app.admin.create_rollout(&req).await.expect("rollout");

    let waiting = eventually("a retry scheduled", || async {
        let e =
            app.admin.all_rollout_executions(&made.id, &ExecutionQuery::default()).await.map_err(|e| e.to_string())?;
        match e.first() {
            Some(e) if e.attempt == 2 && e.state == ExecutionState::Queued => Ok(e.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(waiting.failure_class, Some(FailureClass::Install));
    assert!(waiting.detail.as_deref().unwrap_or_default().contains("attempt 1 failed"), "{waiting:?}");
    let retry_at = waiting.retry_at.expect("a retry time");
    assert!(retry_at.timestamp_millis() > app.clock.now_ms() - 1, "the retry waits");
    // The failure is gone; the retry goes out only once the server's clock passes its time.
    fleet.failing.lock().expect("lock").clear();
    let still = app.admin.rollout(&made.id).await.expect("rollout");
    assert_eq!(still.state, RolloutState::Running, "a failure with retries left does not count against the gate");
    assert!(fleet.installed("retry-000").is_empty());
    app.clock.advance(std::time::Duration::from_secs(601));
    let done = rollout_in(&app, &made.id, RolloutState::Completed).await;
    assert_eq!(done.progress.states.get(&ExecutionState::Succeeded), Some(&1));
    assert_eq!(fleet.installed("retry-000"), vec!["1.0"]);
    let e = app.admin.all_rollout_executions(&made.id, &ExecutionQuery::default()).await.expect("executions");
    assert_eq!((e[0].attempt, e[0].installed_version.as_deref()), (2, Some("1.0")));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_continues_after_a_server_restart_and_no_device_installs_twice() {
    let mut app = busy_app().await;
    let fleet = Fleet::start(&app, 30, "restart").await;
    let serials = Fleet::serials(&app, "restart").await;
    let v1 = artifact(&app, "app", "1.0", b"one").await;
    let mut req = rollout("restart", &v1.id, serials.keys().cloned().collect());
    req.waves = vec![Wave::Count(10), Wave::Percent(100.0)];
    req.success_gate = SuccessGate { percent: 100.0, bake_secs: 3600, approval: false };
    let made = app.admin.create_rollout(&req).await.expect("rollout");
    // The first wave finishes and bakes; the server stops in the middle of the rollout.
    eventually("the first wave done", || async {
        let r = app.admin.rollout(&made.id).await.map_err(|e| e.to_string())?;
        let ok = r.progress.waves[0].states.get(&ExecutionState::Succeeded).copied().unwrap_or(0);
        if ok == 10 { Ok(()) } else { Err(format!("{:?}", r.progress.waves[0])) }
    })
    .await;
    let addr = app.addr;
    app.restart(|s| s.http_addr = addr).await;
    let r = app.admin.rollout(&made.id).await.expect("rollout after restart");
    assert_eq!((r.state, r.current_wave), (RolloutState::Running, 1), "still baking the first wave");
    assert_eq!(r.progress.waves[1].states.get(&ExecutionState::Queued), Some(&20));
    eventually("the fleet back online", || async {
        let page = app
            .admin
            .devices(&baton_proto::api::devices::DeviceQuery {
                online: Some(true),
                limit: Some(100),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        if page.items.len() == 30 { Ok(()) } else { Err(format!("{} online", page.items.len())) }
    })
    .await;
    app.clock.advance(std::time::Duration::from_secs(3601));
    let done = rollout_in(&app, &made.id, RolloutState::Completed).await;
    assert_eq!(done.progress.states.get(&ExecutionState::Succeeded), Some(&30));
    for serial in serials.values() {
        assert_eq!(fleet.installed(serial), vec!["1.0"], "{serial} installed once");
    }
    let executions = app.admin.all_rollout_executions(&made.id, &ExecutionQuery::default()).await.expect("executions");
    assert!(executions.iter().all(|e| e.attempt == 1), "no execution ran twice");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approval_holds_the_next_wave_until_someone_resumes() {
    let app = spawn_app().await;
    let fleet = Fleet::start(&app, 4, "approve").await;
    let serials = Fleet::serials(&app, "approve").await;
    let v1 = artifact(&app, "app", "1.0", b"one").await;
    let mut req = rollout("approve", &v1.id, serials.keys().cloned().collect());
    req.waves = vec![Wave::Count(1), Wave::Percent(100.0)];
    req.success_gate = SuccessGate { percent: 100.0, bake_secs: 0, approval: true };
    let made = app.admin.create_rollout(&req).await.expect("rollout");
    let held = rollout_in(&app, &made.id, RolloutState::Paused).await;
    assert_eq!(held.paused_reason, Some(PauseReason::Approval));
    assert_eq!(held.progress.waves[1].states.get(&ExecutionState::Queued), Some(&3));
    let viewer: Client = app.client_with_role("viewer").await;
    let refused = viewer.steer_rollout(&made.id, "resume").await.expect_err("a viewer cannot approve");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(403));
    app.admin.steer_rollout(&made.id, "resume").await.expect("approved");
    let done = rollout_in(&app, &made.id, RolloutState::Completed).await;
    assert_eq!(done.progress.states.get(&ExecutionState::Succeeded), Some(&4));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_rollouts_are_refused_with_the_field_at_fault() {
    let app = spawn_app().await;
    let v1 = artifact(&app, "app", "1.0", b"one").await;
    let device = app
        .admin
        .create_device(&baton_proto::api::devices::DeviceCreate { serial: "x-1".into(), ..Default::default() })
        .await
        .expect("device");
    type Change = Box<dyn Fn(&mut RolloutCreate)>;
    let cases: Vec<(&str, Change)> = vec![
        ("/name", Box::new(|r| r.name = " ".into())),
        ("/artifact_id", Box::new(|r| r.artifact_id = "0190d1b8-0000-7000-8000-000000000000".into())),
        ("/targets", Box::new(|r| r.targets = Targets::default())),
        (
            "/targets/device_ids/0",
            Box::new(|r| r.targets.device_ids = vec!["0190d1b8-0000-7000-8000-000000000001".into()]),
        ),
        ("/waves/0", Box::new(|r| r.waves = vec![Wave::Percent(0.0)])),
        ("/failure_gate/failed_percent", Box::new(|r| r.failure_gate.failed_percent = Some(150.0))),
        ("/retry/max_attempts", Box::new(|r| r.retry.max_attempts = 0)),
        ("/install/path", Box::new(|r| r.install.path = None)),
        ("/install/mode", Box::new(|r| r.install.mode = Some("rwx".into()))),
        // What every agent would refuse is refused here, before any device sees it.
        ("/install/path", Box::new(|r| r.install.path = Some("/opt/app/../../etc/shadow".into()))),
        ("/install/path", Box::new(|r| r.install.path = Some("/".into()))),
        ("/install/path", Box::new(|r| r.install.path = Some("/opt/app/".into()))),
        ("/install/mode", Box::new(|r| r.install.mode = Some("7777".into()))),
        ("/install/mode", Box::new(|r| r.install.mode = Some("4755".into()))),
    ];
    for (field, change) in cases {
        let mut req = rollout("bad", &v1.id, vec![device.id.clone()]);
        change(&mut req);
        crate::support::refused_naming(&app, "/api/v1/rollouts", &req, field).await;
    }
    let page = app.admin.rollouts(&Default::default()).await.expect("rollouts");
    assert!(page.items.is_empty(), "nothing was made");
}

#[tokio::test]
async fn a_rule_naming_what_its_tenant_lacks_is_refused_with_the_field_named() {
    use baton_proto::api::{
        groups::GroupCreate,
        rollouts::{InstallSpec, RolloutRuleCreate},
    };
    let app = spawn_app().await;
    let other = app.tenant_admin("other").await;
    let theirs = other.create_group(&GroupCreate { name: "theirs".into(), ..Default::default() }).await.expect("group");
    let ours = app.admin.create_group(&GroupCreate { name: "ours".into(), ..Default::default() }).await.expect("group");
    let missing = "0190d1b8-0000-7000-8000-00000000abcd".to_owned();
    let rule = |targets: Targets, rollback: Option<String>| RolloutRuleCreate {
        name: "nightly".into(),
        artifact_name: "pos-app*".into(),
        kind: None,
        template: RolloutCreate {
            targets,
            install: InstallSpec { path: Some("/opt/pos/app.bin".into()), ..Default::default() },
            rollback_artifact_id: rollback,
            ..RolloutCreate::default()
        },
    };
    let groups = |ids: Vec<String>| Targets { groups: ids, ..Targets::default() };
    let cases = [
        ("/template/targets/groups/1", rule(groups(vec![ours.id.clone(), theirs.id.clone()]), None)),
        ("/template/targets/groups/0", rule(groups(vec![missing.clone()]), None)),
        (
            "/template/targets/device_ids/0",
            rule(Targets { device_ids: vec![missing.clone()], ..Targets::default() }, None),
        ),
        ("/template/rollback_artifact_id", rule(groups(vec![ours.id.clone()]), Some(missing.clone()))),
    ];
    for (field, req) in cases {
        crate::support::refused_naming(&app, "/api/v1/rollout-rules", &req, field).await;
    }
    assert!(app.admin.rollout_rules().await.expect("rules").is_empty(), "no rule was made");
    // Naming the tenant's own group is fine.
    app.admin.create_rollout_rule(&rule(groups(vec![ours.id.clone()]), None)).await.expect("a good rule");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_install_waits_for_the_groups_maintenance_window_on_the_servers_clock() {
    use baton_proto::api::{groups::GroupCreate, rollouts::MaintenanceWindow};
    let app = spawn_app().await;
    let fleet = Fleet::start(&app, 1, "window").await;
    let device: Vec<String> = Fleet::serials(&app, "window").await.into_keys().collect();
    // A nightly window that opens two hours from the server's now (UTC, to the minute).
    let opens = chrono::DateTime::from_timestamp_millis(app.clock.now_ms() + 2 * 3600 * 1000).expect("time");
    let window = MaintenanceWindow {
        start: opens.format("%H:%M").to_string(),
        duration_mins: 60,
        time_zone: "UTC".into(),
        days: Vec::new(),
    };
    let req =
        GroupCreate { name: "stores".into(), maintenance_windows: vec![window.clone()], ..GroupCreate::default() };
    let group = app.admin.create_group(&req).await.expect("group");
    assert_eq!(group.maintenance_windows, vec![window]);
    app.admin.add_group_members(&group.id, device.clone()).await.expect("member");

    // A rollout may override its devices' windows: this one installs at once.
    let urgent = artifact(&app, "hotfix", "1.0", b"now").await;
    let mut now = rollout("hotfix", &urgent.id, device.clone());
    now.windows = Some(Vec::new());
    let now = app.admin.create_rollout(&now).await.expect("rollout");
    rollout_in(&app, &now.id, RolloutState::Completed).await;

    let v1 = artifact(&app, "app", "1.0", b"one").await;
    let mut req = rollout("nightly", &v1.id, Vec::new());
    req.targets = Targets { groups: vec![group.id.clone()], ..Targets::default() };
    let made = app.admin.create_rollout(&req).await.expect("rollout");
    let waiting = eventually("the download done and the install held", || async {
        let e =
            app.admin.all_rollout_executions(&made.id, &ExecutionQuery::default()).await.map_err(|e| e.to_string())?;
        match e.first() {
            Some(e) if e.state == ExecutionState::AwaitingWindow => Ok(e.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(waiting.attempt, 1);
    assert_eq!(fleet.installed("window-000"), vec!["1.0"], "only the hotfix so far");

    app.clock.advance(std::time::Duration::from_secs(2 * 3600 + 10 * 60));
    rollout_in(&app, &made.id, RolloutState::Completed).await;
    assert_eq!(fleet.installed("window-000"), vec!["1.0", "1.0"], "the hotfix, then the app inside its window");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_artifact_dropped_into_the_watched_directory_starts_a_rollout_by_its_rule() {
    use baton_proto::api::rollouts::{RolloutQuery, RolloutRuleCreate};
    let dir = tempfile::tempdir().expect("tempdir");
    let drop = tempfile::tempdir().expect("drop dir");
    let mut settings = test_settings(dir.path());
    settings.artifact_watch_dir = Some(drop.path().to_path_buf());
    settings.artifact_watch_secs = 1;
    let app = spawn_with(settings, dir).await;
    let fleet = Fleet::start(&app, 2, "drop").await;
    let devices: Vec<String> = Fleet::serials(&app, "drop").await.into_keys().collect();
    let template = RolloutCreate {
        targets: Targets { device_ids: devices, ..Targets::default() },
        install: baton_proto::api::rollouts::InstallSpec {
            path: Some("/opt/pos/app.bin".into()),
            ..Default::default()
        },
        ..RolloutCreate::default()
    };
    let rule = RolloutRuleCreate { name: "pos nightly".into(), artifact_name: "pos-app*".into(), kind: None, template };
    let rule = app.admin.create_rollout_rule(&rule).await.expect("rule");
    assert_eq!(app.admin.rollout_rules().await.expect("rules").len(), 1);

    // The pipeline writes the file, then its manifest.
    let tenant_dir = drop.path().join("default");
    std::fs::create_dir_all(&tenant_dir).expect("tenant dir");
    std::fs::write(tenant_dir.join("pos-app-2.0.bin"), b"point of sale, 2.0").expect("file");
    std::fs::write(tenant_dir.join("pos-app-2.0.bin.json"), br#"{"name": "pos-app", "version": "2.0"}"#)
        .expect("manifest");
    std::fs::write(tenant_dir.join("junk.bin"), b"?").expect("file");
    std::fs::write(tenant_dir.join("junk.bin.json"), b"{not a manifest").expect("manifest");

    let made = eventually("a rollout made by the rule", || async {
        let page = app.admin.rollouts(&RolloutQuery::default()).await.map_err(|e| e.to_string())?;
        page.items.into_iter().next().ok_or_else(|| "none yet".to_owned())
    })
    .await;
    assert_eq!(made.name, "pos nightly: pos-app 2.0");
    assert_eq!((made.artifact.name.as_str(), made.artifact.version.as_str()), ("pos-app", "2.0"));
    assert_eq!(made.created_by.as_deref(), Some("system:rule pos nightly"));
    let done = rollout_in(&app, &made.id, RolloutState::Completed).await;
    assert_eq!(done.progress.states.get(&ExecutionState::Succeeded), Some(&2));
    assert_eq!(fleet.installed("drop-000"), vec!["2.0"]);
    eventually("the files moved", || async {
        let imported = tenant_dir.join("imported/pos-app-2.0.bin").exists()
            && tenant_dir.join("imported/pos-app-2.0.bin.json").exists();
        let refused = std::fs::read_to_string(tenant_dir.join("failed/junk.bin.error.txt")).unwrap_or_default();
        if imported && refused.contains("manifest") {
            Ok(())
        } else {
            Err(format!("imported {imported}, refused: {refused:?}"))
        }
    })
    .await;
    assert!(!tenant_dir.join("pos-app-2.0.bin").exists(), "nothing is imported twice");

    // An upload through the API matches the same rule; another name does not.
    artifact(&app, "pos-app", "2.1", b"point of sale, 2.1").await;
    artifact(&app, "kiosk-ui", "1.0", b"not for this rule").await;
    let names: Vec<String> = eventually("the second rollout", || async {
        let page = app.admin.rollouts(&RolloutQuery::default()).await.map_err(|e| e.to_string())?;
        if page.items.len() == 2 {
            Ok(page.items.into_iter().map(|r| r.name).collect())
        } else {
            Err(format!("{}", page.items.len()))
        }
    })
    .await;
    assert_eq!(names, vec!["pos nightly: pos-app 2.1", "pos nightly: pos-app 2.0"]);
    app.admin.delete_rollout_rule(&rule.id).await.expect("deleted");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_are_told_no_faster_than_the_notify_rate_on_the_servers_clock() {
    let app = busy_app().await;
    let fleet = Fleet::start(&app, 10, "rate").await;
    let serials = Fleet::serials(&app, "rate").await;
    let v1 = artifact(&app, "app", "1.0", b"one").await;
    let mut req = rollout("rated", &v1.id, serials.keys().cloned().collect());
    req.notify_per_minute = Some(4);
    let made = app.admin.create_rollout(&req).await.expect("rollout");
    for (minute, told) in [(0, 4), (1, 8), (2, 10)] {
        if minute > 0 {
            app.clock.advance(std::time::Duration::from_secs(60));
        }
        let r = eventually(&format!("{told} devices done in minute {minute}"), || async {
            let r = app.admin.rollout(&made.id).await.map_err(|e| e.to_string())?;
            let done = r.progress.states.get(&ExecutionState::Succeeded).copied().unwrap_or(0);
            if done == told { Ok(r) } else { Err(format!("{:?}", r.progress.states)) }
        })
        .await;
        // The clock has not moved: nobody else was told.
        assert_eq!(r.progress.states.get(&ExecutionState::Queued).copied().unwrap_or(0), 10 - told);
    }
    rollout_in(&app, &made.id, RolloutState::Completed).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_the_artifact_is_not_for_are_left_out_not_failed() {
    use baton_proto::api::artifacts::ArtifactUpload;
    let app = spawn_app().await;
    let fleet = Fleet::start(&app, 3, "fit").await;
    let mut devices: Vec<String> = Fleet::serials(&app, "fit").await.into_keys().collect();
    // A device the registry knows nothing about yet: left to check for itself.
    let unknown = baton_proto::api::devices::DeviceCreate { serial: "fit-unknown".into(), ..Default::default() };
    devices.push(app.admin.create_device(&unknown).await.expect("device").id);
    let facts = ArtifactUpload {
        name: "driver".into(),
        version: "1.0".into(),
        os: Some("windows".into()),
        ..Default::default()
    };
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(b"win".to_vec())]);
    let windows = app.admin.upload_artifact(&facts, 3, stream).await.expect("artifact");

    let made = app.admin.create_rollout(&rollout("driver", &windows.id, devices.clone())).await.expect("rollout");
    assert_eq!((made.left_out, made.progress.devices), (3, 1), "the three Linux devices are left out");
    let only_linux = app.admin.create_rollout(&rollout("driver", &windows.id, devices[..3].to_vec())).await;
    let refused = only_linux.expect_err("nobody fits");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(422));
    assert!(refused.to_string().contains("none of the 3 devices"), "{refused}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_stuck_in_a_step_times_out_instead_of_holding_the_rollout() {
    let app = spawn_app().await;
    let fleet = Fleet::start(&app, 2, "stuck").await;
    let serials = Fleet::serials(&app, "stuck").await;
    fleet.hanging.lock().expect("lock").insert("stuck-001".into());
    let v1 = artifact(&app, "app", "1.0", b"one").await;
    let mut req = rollout("stuck", &v1.id, serials.keys().cloned().collect());
    req.step_timeout_secs = Some(600);
    let made = app.admin.create_rollout(&req).await.expect("rollout");
    eventually("one done, one stuck installing", || async {
        let r = app.admin.rollout(&made.id).await.map_err(|e| e.to_string())?;
        let s = &r.progress.states;
        let ok = s.get(&ExecutionState::Succeeded) == Some(&1) && s.get(&ExecutionState::Installing) == Some(&1);
        if ok { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    assert_eq!(app.admin.rollout(&made.id).await.expect("rollout").state, RolloutState::Running);
    app.clock.advance(std::time::Duration::from_secs(601));
    // The wave is finished, one short of its 100 % success gate: a person decides.
    let done = rollout_in(&app, &made.id, RolloutState::Paused).await;
    assert_eq!(done.paused_reason, Some(PauseReason::FailureGate));
    assert_eq!(done.progress.states.get(&ExecutionState::TimedOut), Some(&1));
    assert_eq!((done.progress.failed, done.progress.executed), (1, 2));
    let e = app
        .admin
        .all_rollout_executions(
            &made.id,
            &ExecutionQuery { state: Some(ExecutionState::TimedOut), ..Default::default() },
        )
        .await
        .expect("executions");
    assert!(e[0].detail.as_deref().unwrap_or_default().contains("no word from the device"), "{e:?}");
    fleet.stop().await;
}
