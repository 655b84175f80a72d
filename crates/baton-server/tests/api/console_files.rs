//! File transfer in the console: the device page's way to the files page, shown to whom the
//! role allows; the files page, which transfers nothing by loading and hands its script the
//! device; a viewer refused it and another tenant's device not found. (The transfers themselves
//! are the API's, tested end to end with real processes in `crates/baton/tests/remote_files.rs`.)

use baton_proto::api::access::UserCreate;

use crate::{
    console_pages::{Console, device},
    support::{ADMIN_PASSWORD, expect_problem, spawn_app},
};

#[tokio::test]
async fn the_device_page_offers_the_files_page_to_whom_the_role_allows() {
    let app = spawn_app().await;
    let kiosk = device(&app, "KIOSK-F1", "kiosk files", &[]).await;
    let page = format!("/devices/{}", kiosk.id);
    let files = format!("/devices/{}/files", kiosk.id);
    let link = format!(r#"href="{files}""#);
    for (role, allowed) in [("admin", true), ("operator", true), ("viewer", false)] {
        let username = format!("{role}-files");
        let req = UserCreate { username: username.clone(), password: ADMIN_PASSWORD.into(), role: Some(role.into()) };
        app.admin.create_user(&req).await.expect("user");
        let console = Console::sign_in(&app, "", &username).await;
        assert_eq!(console.html(&page).await.contains(&link), allowed, "{role}: Files link");
        if allowed {
            let html = console.html(&files).await;
            assert!(html.contains(&format!(r#"data-device="{}""#, kiosk.id)), "{html}");
            assert!(html.contains("/assets/files.js") && html.contains(r#"name="csrf-token""#), "{html}");
        } else {
            expect_problem(console.get(&files).await, 403).await;
        }
    }
    let admin = Console::sign_in(&app, "", "admin").await;
    let js = admin.get("/assets/files.js").await;
    assert_eq!(js.status().as_u16(), 200);
    expect_problem(admin.get(&format!("/devices/{}/files", uuid::Uuid::new_v4())).await, 404).await;
    app.admin.decommission_device(&kiosk.id, false).await.expect("decommissioned");
    assert!(!admin.html(&page).await.contains(&link), "no files for a decommissioned device");
    assert!(admin.html(&files).await.contains("file transfer needs an active device"));
}
