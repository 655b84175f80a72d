//! Support bundles in the console: the device page's list and "Collect support bundle" button,
//! shown by role; the button asks and goes to the request's page, which follows the device
//! live until its bundle is stored (uploaded here with the device's credentials, as its agent
//! does) and then offers the download, which takes the console's cookie.

use baton_proto::api::access::UserCreate;
use reqwest::StatusCode;

use crate::{
    console_pages::{Console, device, header},
    support::{ADMIN_PASSWORD, TestApp, raw, spawn_app},
};

async fn signed_in_as(app: &TestApp, role: &str) -> Console {
    let username = format!("{role}-person");
    let req = UserCreate { username: username.clone(), password: ADMIN_PASSWORD.into(), role: Some(role.into()) };
    app.admin.create_user(&req).await.expect("user");
    Console::sign_in(app, "", &username).await
}

#[tokio::test]
async fn a_bundle_is_collected_from_the_device_page_followed_and_downloaded() {
    let app = spawn_app().await;
    let till = device(&app, "TILL-1", "till one", &[]).await;
    let page = format!("/devices/{}", till.id);
    let viewer = signed_in_as(&app, "viewer").await;
    assert!(!viewer.html(&page).await.contains(r#"id="support-bundles""#), "a viewer sees no bundles");
    let operator = signed_in_as(&app, "operator").await;
    let html = operator.html(&page).await;
    assert!(html.contains(r#"id="support-bundles""#) && html.contains("Collect support bundle"), "{html}");
    assert!(html.contains("No support bundles yet"));

    let asked = operator.post(&format!("/devices/{}/bundles", till.id), &[("since", "6h")]).await;
    assert_eq!(asked.status(), StatusCode::NO_CONTENT);
    let location = header(&asked, "hx-location");
    assert!(location.starts_with("/bundles/"), "{location}");
    let html = operator.html(&location).await;
    assert!(html.contains("till one") && html.contains("waiting for the device to come online"), "{html}");
    assert!(html.contains("about 6 h") && html.contains(r#"hx-trigger="baton:changed from:body""#), "live: {html}");
    assert!(html.contains(r#"data-state="requested""#), "{html}");

    // The device uploads it, as its agent does.
    let bundle = app.admin.bundles(&Default::default()).await.expect("bundles").items.remove(0);
    let secret = app.admin.issue_device_credential(&till.id).await.expect("credential").secret;
    let uploaded = raw()
        .put(format!("{}/api/v1/agent/support-bundles/{}", app.url, bundle.id))
        .header("x-baton-device-id", till.id.as_str())
        .bearer_auth(secret)
        .body(b"an archive".to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(uploaded.status(), StatusCode::OK);
    let html = operator.html(&location).await;
    let download = format!("/api/v1/support-bundles/{}/download", bundle.id);
    assert!(html.contains(r#"data-state="stored""#) && html.contains(&download), "{html}");
    assert!(!html.contains("hx-trigger"), "a finished request stops following: {html}");
    assert!(operator.html(&page).await.contains(&download), "the device page lists it");
    let archive = operator.get(&download).await;
    assert_eq!(archive.status(), StatusCode::OK);
    assert_eq!(header(&archive, "content-type"), "application/gzip");
    assert!(header(&archive, "content-disposition").contains("bundle-till_one-"));
    assert_eq!(archive.bytes().await.expect("bytes").as_ref(), b"an archive");

    // A viewer can neither ask nor follow; a window that is not one is refused.
    viewer.refused(&format!("/devices/{}/bundles", till.id), &[("since", "1h")], 403).await;
    assert_eq!(viewer.get(&location).await.status(), StatusCode::FORBIDDEN);
    let detail = operator.refused(&format!("/devices/{}/bundles", till.id), &[("since", "soon")], 422).await;
    assert!(detail.contains("since"), "{detail}");
}
