//! Groups: nesting, members with and without subgroups, many groups per device, bulk
//! membership, cycles refused, and deleting only leaves.

use baton_proto::api::{
    devices::{DeviceCreate, DeviceQuery},
    groups::{GroupCreate, GroupQuery, GroupUpdate},
};

use crate::support::spawn_app;

fn group(name: &str, parent: Option<&str>) -> GroupCreate {
    GroupCreate { name: name.into(), description: None, parent_id: parent.map(str::to_owned), ..Default::default() }
}

fn code(e: baton_client::ClientError) -> u16 {
    e.status().map(|s| s.as_u16()).unwrap_or_default()
}

#[tokio::test]
async fn nested_groups_list_members_with_and_without_subgroups() {
    let app = spawn_app().await;
    let a = &app.admin;
    let europe = a.create_group(&group("europe", None)).await.expect("europe");
    let germany = a.create_group(&group("germany", Some(&europe.id))).await.expect("germany");
    let berlin = a.create_group(&group("berlin", Some(&germany.id))).await.expect("berlin");
    let kiosks = a.create_group(&group("kiosks", None)).await.expect("kiosks");

    let mut ids = Vec::new();
    for serial in ["EU-1", "DE-1", "BER-1", "BER-2"] {
        ids.push(
            a.create_device(&DeviceCreate { serial: serial.into(), ..Default::default() }).await.expect("device").id,
        );
    }
    assert_eq!(a.add_group_members(&europe.id, vec![ids[0].clone()]).await.expect("add").changed, 1);
    assert_eq!(a.add_group_members(&germany.id, vec![ids[1].clone()]).await.expect("add").changed, 1);
    assert_eq!(a.add_group_members(&berlin.id, vec![ids[2].clone(), ids[3].clone()]).await.expect("add").changed, 2);
    // A device may be in several groups, and adding twice changes nothing.
    assert_eq!(a.add_group_members(&kiosks.id, vec![ids[2].clone()]).await.expect("add").changed, 1);
    assert_eq!(a.add_group_members(&kiosks.id, vec![ids[2].clone()]).await.expect("again").changed, 0);
    let ber1 = a.device(&ids[2]).await.expect("device");
    let mut expected_groups = vec![berlin.id.clone(), kiosks.id.clone()];
    expected_groups.sort();
    assert_eq!(ber1.groups, expected_groups);

    let names = |page: baton_proto::api::Page<baton_proto::api::devices::Device>| -> Vec<String> {
        page.items.into_iter().map(|d| d.name).collect()
    };
    let all = a.group_members(&europe.id, &DeviceQuery::default()).await.expect("members");
    assert_eq!(names(all), ["BER-1", "BER-2", "DE-1", "EU-1"]);
    let direct = DeviceQuery { recursive: Some(false), ..Default::default() };
    assert_eq!(names(a.group_members(&europe.id, &direct).await.expect("direct")), ["EU-1"]);
    let germany_all = DeviceQuery { group: Some(germany.id.clone()), ..Default::default() };
    assert_eq!(names(a.devices(&germany_all).await.expect("by group")), ["BER-1", "BER-2", "DE-1"]);

    let top = GroupQuery { parent: Some("root".into()), ..Default::default() };
    let tops: Vec<_> = a.groups(&top).await.expect("roots").items.into_iter().map(|g| g.name).collect();
    assert_eq!(tops, ["europe", "kiosks"]);
    assert_eq!(a.group(&berlin.id).await.expect("berlin").device_count, 2);

    assert_eq!(a.remove_group_members(&berlin.id, vec![ids[2].clone()]).await.expect("remove").changed, 1);
    assert_eq!(names(a.group_members(&berlin.id, &DeviceQuery::default()).await.expect("left")), ["BER-2"]);
}

#[tokio::test]
async fn a_move_that_would_make_a_cycle_is_refused() {
    let app = spawn_app().await;
    let a = &app.admin;
    let top = a.create_group(&group("top", None)).await.expect("top");
    let mid = a.create_group(&group("mid", Some(&top.id))).await.expect("mid");
    let leaf = a.create_group(&group("leaf", Some(&mid.id))).await.expect("leaf");

    let under_leaf = GroupUpdate { parent_id: Some(Some(leaf.id.clone())), ..Default::default() };
    assert_eq!(code(a.update_group(&top.id, &under_leaf).await.expect_err("cycle")), 409);
    let under_itself = GroupUpdate { parent_id: Some(Some(top.id.clone())), ..Default::default() };
    assert_eq!(code(a.update_group(&top.id, &under_itself).await.expect_err("self")), 409);
    assert_eq!(a.group(&top.id).await.expect("top").parent_id, None, "unchanged");

    // Moving to the top level and back under another group works.
    let to_root = GroupUpdate { parent_id: Some(None), ..Default::default() };
    assert_eq!(a.update_group(&leaf.id, &to_root).await.expect("to root").parent_id, None);
    let under_top = GroupUpdate { parent_id: Some(Some(top.id.clone())), ..Default::default() };
    assert_eq!(a.update_group(&leaf.id, &under_top).await.expect("moved").parent_id, Some(top.id.clone()));
}

#[tokio::test]
async fn only_groups_without_subgroups_are_deleted_and_their_devices_stay() {
    let app = spawn_app().await;
    let a = &app.admin;
    let parent = a.create_group(&group("parent", None)).await.expect("parent");
    let child = a.create_group(&group("child", Some(&parent.id))).await.expect("child");
    let device = a
        .create_device(&DeviceCreate { serial: "X".into(), groups: vec![child.id.clone()], ..Default::default() })
        .await
        .expect("device");
    assert_eq!(device.groups, vec![child.id.clone()]);

    assert_eq!(code(a.delete_group(&parent.id).await.expect_err("has children")), 409);
    a.delete_group(&child.id).await.expect("leaf deleted");
    assert!(a.device(&device.id).await.expect("device stays").groups.is_empty());
    a.delete_group(&parent.id).await.expect("now a leaf");
    assert_eq!(code(a.group(&parent.id).await.expect_err("gone")), 404);
}

#[tokio::test]
async fn concurrent_moves_never_make_a_cycle() {
    let app = spawn_app().await;
    let a = &app.admin;
    for round in 0..5 {
        let x = a.create_group(&group(&format!("x{round}"), None)).await.expect("x");
        let y = a.create_group(&group(&format!("y{round}"), None)).await.expect("y");
        let x_under_y = GroupUpdate { parent_id: Some(Some(y.id.clone())), ..Default::default() };
        let y_under_x = GroupUpdate { parent_id: Some(Some(x.id.clone())), ..Default::default() };
        let (r1, r2) = tokio::join!(a.update_group(&x.id, &x_under_y), a.update_group(&y.id, &y_under_x));
        assert!(r1.is_ok() != r2.is_ok(), "exactly one move wins (round {round})");
        let (x, y) = (a.group(&x.id).await.expect("x"), a.group(&y.id).await.expect("y"));
        assert!(x.parent_id.is_none() || y.parent_id.is_none(), "no cycle (round {round})");
    }
}
