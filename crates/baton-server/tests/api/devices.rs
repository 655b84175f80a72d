//! The device registry through the API: pre-registration, filters, label selectors, sorting,
//! cursor pagination that stays stable while devices are added, relabeling, and the
//! decommission-then-delete rule; sub-devices by their gateway.

use std::collections::{BTreeMap, BTreeSet};

use baton_proto::api::devices::{DeviceCreate, DeviceQuery, DeviceStatus, DeviceUpdate};

use crate::support::spawn_app;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn a_pre_registered_device_is_listed_and_found_by_its_attributes() {
    let app = spawn_app().await;
    let req = DeviceCreate {
        serial: "PX-1001".into(),
        name: Some("Till 3, Berlin".into()),
        manufacturer: Some("Verifone".into()),
        model: Some("MX915".into()),
        labels: labels(&[("store", "berlin-12"), ("tier", "prod")]),
        groups: vec![],
    };
    let created = app.admin.create_device(&req).await.expect("created");
    assert_eq!(created.status, DeviceStatus::Active);
    assert!(!created.connectivity.online);
    assert_eq!(created.connectivity.last_seen_at, None);
    assert_eq!(created.labels, req.labels);
    assert_eq!(app.admin.device(&created.id).await.expect("get"), created);

    let by_text = DeviceQuery { q: Some("berlin".into()), ..Default::default() };
    assert_eq!(app.admin.devices(&by_text).await.expect("list").items, vec![created.clone()]);
    let by_serial_text = DeviceQuery { q: Some("px-10".into()), ..Default::default() };
    assert_eq!(app.admin.devices(&by_serial_text).await.expect("list").items.len(), 1);
    let wildcard_is_literal = DeviceQuery { q: Some("%".into()), ..Default::default() };
    assert!(app.admin.devices(&wildcard_is_literal).await.expect("list").items.is_empty());
    let offline = DeviceQuery { online: Some(false), status: Some("active".into()), ..Default::default() };
    assert_eq!(app.admin.devices(&offline).await.expect("list").items.len(), 1);
    let online = DeviceQuery { online: Some(true), ..Default::default() };
    assert!(app.admin.devices(&online).await.expect("list").items.is_empty());
}

#[tokio::test]
async fn label_selectors_pick_exactly_the_matching_devices() {
    let app = spawn_app().await;
    let fleet = [
        ("A", &[("store", "berlin-12"), ("tier", "prod")][..]),
        ("B", &[("store", "berlin-12"), ("tier", "test")][..]),
        ("C", &[("store", "paris-1")][..]),
        ("D", &[][..]),
    ];
    for (serial, l) in fleet {
        app.admin
            .create_device(&DeviceCreate { serial: serial.into(), labels: labels(l), ..Default::default() })
            .await
            .expect("device");
    }
    for (selector, expected) in [
        ("store=berlin-12", vec!["A", "B"]),
        ("store=berlin-12,tier!=test", vec!["A"]),
        ("tier!=test", vec!["A", "C", "D"]),
        ("store in (berlin-12, paris-1)", vec!["A", "B", "C"]),
        ("store notin (berlin-12)", vec!["C", "D"]),
        ("tier", vec!["A", "B"]),
        ("!tier", vec!["C", "D"]),
        ("store==paris-1", vec!["C"]),
    ] {
        let q = DeviceQuery { labels: Some(selector.into()), ..Default::default() };
        let got: Vec<String> = app.admin.devices(&q).await.expect(selector).items.into_iter().map(|d| d.name).collect();
        assert_eq!(got, expected, "selector `{selector}`");
    }
}

#[tokio::test]
async fn pages_stay_stable_while_devices_are_added() {
    let app = spawn_app().await;
    for i in 0..25 {
        let req = DeviceCreate { serial: format!("SN-{i:03}"), ..Default::default() };
        app.admin.create_device(&req).await.expect("device");
    }
    let mut query = DeviceQuery { limit: Some(10), sort: Some("serial".into()), ..Default::default() };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = app.admin.devices(&query).await.expect("page");
        seen.extend(page.items.iter().map(|d| d.serial.clone().unwrap_or_default()));
        pages += 1;
        // Devices arrive while we page: one before the cursor, one after.
        if pages == 1 {
            for serial in ["SN-000a", "SN-999"] {
                app.admin
                    .create_device(&DeviceCreate { serial: serial.into(), ..Default::default() })
                    .await
                    .expect("device");
            }
        }
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no device seen twice");
    let mut expected: Vec<String> = (0..25).map(|i| format!("SN-{i:03}")).collect();
    expected.push("SN-999".into());
    assert_eq!(seen, expected, "every device after the cursor, in order, none skipped");
    assert_eq!(pages, 3);

    let desc = DeviceQuery { limit: Some(3), sort: Some("-serial".into()), ..Default::default() };
    let first = app.admin.devices(&desc).await.expect("desc");
    let names: Vec<_> = first.items.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["SN-999", "SN-024", "SN-023"]);
    let next = DeviceQuery { cursor: first.next_cursor, ..desc.clone() };
    assert_eq!(app.admin.devices(&next).await.expect("desc 2").items[0].name, "SN-022");
    let wrong_order = DeviceQuery { sort: Some("name".into()), ..next };
    assert_eq!(
        app.admin.devices(&wrong_order).await.expect_err("mixed cursor").status().map(|s| s.as_u16()),
        Some(422)
    );
}

#[tokio::test]
async fn relabel_rename_and_the_lifecycle_to_deletion() {
    let app = spawn_app().await;
    let device = app
        .admin
        .create_device(&DeviceCreate {
            serial: "K-1".into(),
            labels: labels(&[("a", "1"), ("b", "2")]),
            ..Default::default()
        })
        .await
        .expect("device");
    let mut change = BTreeMap::new();
    change.insert("a".to_owned(), Some("9".to_owned()));
    change.insert("b".to_owned(), None);
    change.insert("c".to_owned(), Some("3".to_owned()));
    let updated = app
        .admin
        .update_device(&device.id, &DeviceUpdate { name: Some("Kiosk lobby".into()), labels: change })
        .await
        .expect("updated");
    assert_eq!(updated.name, "Kiosk lobby");
    assert_eq!(updated.labels, labels(&[("a", "9"), ("c", "3")]));
    assert!(updated.updated_at >= device.updated_at);

    let operator = app.client_with_role("operator").await;
    let refused = operator.delete_device(&device.id).await.expect_err("active devices are not deleted");
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(409));
    let retired = operator.decommission_device(&device.id, false).await.expect("decommissioned");
    assert_eq!(retired.status, DeviceStatus::Decommissioned);
    let listed = DeviceQuery { status: Some("decommissioned".into()), ..Default::default() };
    assert_eq!(app.admin.devices(&listed).await.expect("list").items.len(), 1);
    operator.delete_device(&device.id).await.expect("deleted");
    assert_eq!(app.admin.device(&device.id).await.expect_err("gone").status().map(|s| s.as_u16()), Some(404));
}

#[tokio::test]
async fn search_ignores_case_beyond_ascii_on_every_engine() {
    let app = spawn_app().await;
    let req = DeviceCreate { serial: "OB-1".into(), name: Some("Ölberg Kiosk".into()), ..Default::default() };
    app.admin.create_device(&req).await.expect("device");
    for q in ["öl", "ÖL", "kiosk", "ob-1"] {
        let found = app.admin.devices(&DeviceQuery { q: Some(q.into()), ..Default::default() }).await.expect("search");
        assert_eq!(found.items.len(), 1, "`{q}` finds the device");
    }
    // Renaming keeps search current.
    let rename = DeviceUpdate { name: Some("Hafen".into()), ..Default::default() };
    let id = app.admin.devices(&DeviceQuery::default()).await.expect("list").items[0].id.clone();
    app.admin.update_device(&id, &rename).await.expect("renamed");
    let old = app.admin.devices(&DeviceQuery { q: Some("öl".into()), ..Default::default() }).await.expect("search");
    assert!(old.items.is_empty());
    let new = app.admin.devices(&DeviceQuery { q: Some("HAFEN".into()), ..Default::default() }).await.expect("search");
    assert_eq!(new.items.len(), 1);
}

#[tokio::test]
async fn names_sort_bytewise_on_every_engine() {
    let app = spawn_app().await;
    for (serial, name) in [("1", "b"), ("2", "B"), ("3", "a"), ("4", "A")] {
        let req = DeviceCreate { serial: serial.into(), name: Some(name.into()), ..Default::default() };
        app.admin.create_device(&req).await.expect("device");
    }
    let names: Vec<String> =
        app.admin.devices(&DeviceQuery::default()).await.expect("list").items.into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["A", "B", "a", "b"]);
}

#[tokio::test]
async fn sub_devices_are_listed_by_their_gateway_with_their_transport() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for serial in ["GW-1", "SENSOR-1", "SENSOR-2", "LONE-1"] {
        let req = DeviceCreate { serial: serial.into(), ..Default::default() };
        ids.push(app.admin.create_device(&req).await.expect("device").id);
    }
    let fresh = app.admin.device(&ids[0]).await.expect("device");
    assert_eq!((fresh.transport, fresh.gateway_id), (None, None), "unknown until it connects");
    // Staged: the MQTT front door records these when a gateway announces its sub-devices.
    app.stage_sql(&format!(
        "UPDATE devices SET transport = 'mqtt' WHERE id IN ('{}', '{}', '{}')",
        ids[0], ids[1], ids[2]
    ))
    .await;
    app.stage_sql(&format!("UPDATE devices SET gateway_id = '{}' WHERE id IN ('{}', '{}')", ids[0], ids[1], ids[2]))
        .await;

    let by_gateway = DeviceQuery { gateway_id: Some(ids[0].clone()), ..Default::default() };
    let subs = app.admin.devices(&by_gateway).await.expect("list").items;
    let serials: Vec<_> = subs.iter().filter_map(|d| d.serial.as_deref()).collect();
    assert_eq!(serials, ["SENSOR-1", "SENSOR-2"]);
    assert!(subs.iter().all(|d| d.transport.as_deref() == Some("mqtt") && d.gateway_id.as_deref() == Some(&*ids[0])));

    let nobody = DeviceQuery { gateway_id: Some(ids[3].clone()), ..Default::default() };
    assert!(app.admin.devices(&nobody).await.expect("list").items.is_empty());
    let bad = DeviceQuery { gateway_id: Some("not an id".into()), ..Default::default() };
    assert_eq!(app.admin.devices(&bad).await.expect_err("bad id").status().map(|s| s.as_u16()), Some(422));
}
