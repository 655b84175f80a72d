//! Tenant isolation: another tenant's admin cannot read, change or delete this tenant's
//! devices, groups, tokens or users by id (404, as if they did not exist), and lists never
//! show them.

use baton_proto::api::{
    access::{PageQuery, TokenCreate},
    devices::{DeviceCreate, DeviceQuery, DeviceUpdate},
    groups::{GroupCreate, GroupQuery, GroupUpdate},
};

use crate::support::spawn_app;

fn status(e: baton_client::ClientError) -> u16 {
    e.status().map(|s| s.as_u16()).unwrap_or_default()
}

#[tokio::test]
async fn another_tenant_cannot_see_or_touch_this_tenants_things() {
    let app = spawn_app().await;
    let ours = &app.admin;
    let device =
        ours.create_device(&DeviceCreate { serial: "POS-0001".into(), ..Default::default() }).await.expect("device");
    let group = ours.create_group(&GroupCreate { name: "berlin".into(), ..Default::default() }).await.expect("group");
    let token = ours
        .create_token(&TokenCreate { name: "automation".into(), role: None, expires_in_days: None, permissions: None })
        .await
        .expect("token");
    let users = ours.users(&PageQuery::default()).await.expect("users");
    let admin_user = &users.items[0];

    let theirs = app.tenant_admin("acme").await;

    // By id: every verb answers 404.
    assert_eq!(status(theirs.device(&device.id).await.expect_err("get")), 404);
    let rename = DeviceUpdate { name: Some("stolen".into()), ..Default::default() };
    assert_eq!(status(theirs.update_device(&device.id, &rename).await.expect_err("patch")), 404);
    assert_eq!(status(theirs.decommission_device(&device.id, false).await.expect_err("decommission")), 404);
    assert_eq!(status(theirs.delete_device(&device.id).await.expect_err("delete")), 404);
    assert_eq!(status(theirs.group(&group.id).await.expect_err("get group")), 404);
    let move_it = GroupUpdate { name: Some("x".into()), ..Default::default() };
    assert_eq!(status(theirs.update_group(&group.id, &move_it).await.expect_err("patch group")), 404);
    assert_eq!(status(theirs.group_members(&group.id, &DeviceQuery::default()).await.expect_err("members")), 404);
    assert_eq!(status(theirs.add_group_members(&group.id, vec![device.id.clone()]).await.expect_err("add")), 404);
    assert_eq!(status(theirs.delete_group(&group.id).await.expect_err("delete group")), 404);
    assert_eq!(status(theirs.revoke_token(&token.token.id).await.expect_err("revoke")), 404);
    assert_eq!(status(theirs.delete_user(&admin_user.id).await.expect_err("delete user")), 404);

    // Their own group cannot take our device, and filtering by our group is a 404.
    let their_group = theirs
        .create_group(&GroupCreate { name: "berlin".into(), ..Default::default() })
        .await
        .expect("same name, other tenant");
    assert_eq!(
        status(theirs.add_group_members(&their_group.id, vec![device.id.clone()]).await.expect_err("foreign device")),
        422
    );
    let by_group = DeviceQuery { group: Some(group.id.clone()), ..Default::default() };
    assert_eq!(status(theirs.devices(&by_group).await.expect_err("foreign group filter")), 404);

    // Lists never show them; the same serial is free in their tenant.
    assert!(theirs.devices(&DeviceQuery::default()).await.expect("list").items.is_empty());
    assert_eq!(theirs.groups(&GroupQuery::default()).await.expect("groups").items.len(), 1);
    let their_tokens = theirs.tokens(&PageQuery::default()).await.expect("tokens");
    assert!(their_tokens.items.iter().all(|t| t.id != token.token.id));
    let their_users = theirs.users(&PageQuery::default()).await.expect("users");
    assert_eq!(their_users.items.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["boss"]);
    theirs
        .create_device(&DeviceCreate { serial: "POS-0001".into(), ..Default::default() })
        .await
        .expect("serials are unique per tenant");

    // And nothing of ours changed.
    let after = ours.device(&device.id).await.expect("still there");
    assert_eq!(after, device);
    assert_eq!(ours.group(&group.id).await.expect("group").device_count, 0);
    assert!(ours.with_token(token.secret).me().await.is_ok(), "our token still works");
}

#[tokio::test]
async fn a_tenant_admin_is_not_a_platform_admin() {
    let app = spawn_app().await;
    let theirs = app.tenant_admin("acme").await;
    assert_eq!(status(theirs.tenants(&PageQuery::default()).await.expect_err("tenants")), 403);
    let me = theirs.me().await.expect("me");
    assert_eq!((me.tenant_name.as_str(), me.role.as_str(), me.platform_admin), ("acme", "admin", false));
}

#[tokio::test]
async fn a_disabled_tenant_is_refused_until_enabled() {
    let app = spawn_app().await;
    let theirs = app.tenant_admin("acme").await;
    let tenant_id = theirs.me().await.expect("me").tenant_id;
    let disable = baton_proto::api::tenants::TenantUpdate { disabled: Some(true), ..Default::default() };
    app.admin.update_tenant(&tenant_id, &disable).await.expect("disabled");
    assert_eq!(status(theirs.me().await.expect_err("refused")), 401);
    let login = app.anon.login(Some("acme"), "boss", crate::support::ADMIN_PASSWORD).await;
    assert_eq!(status(login.expect_err("login refused")), 401);
    let enable = baton_proto::api::tenants::TenantUpdate { disabled: Some(false), ..Default::default() };
    app.admin.update_tenant(&tenant_id, &enable).await.expect("enabled");
    assert!(theirs.me().await.is_ok());
    // Nobody disables their own tenant by mistake.
    let own = app.admin.me().await.expect("me").tenant_id;
    assert_eq!(status(app.admin.update_tenant(&own, &disable).await.expect_err("own tenant")), 409);
}
