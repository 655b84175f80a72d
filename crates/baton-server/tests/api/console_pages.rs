//! The console's groups, commands, administration and import pages and its bulk and device
//! actions, over plain HTTP as a browser and htmx use them: every page sends a visitor without
//! a session to sign in, every change needs the session's CSRF token and the role's
//! permission, another tenant's things are not found, and what a page says it did is what the
//! API then shows. The command-batch API routes behind the commands page are tested here too.

use std::collections::BTreeMap;

use baton_proto::{
    agent::{AgentMessage, CommandProgress, CommandUpdate, ServerMessage},
    api::{
        Page,
        access::{PageQuery, TokenCreate, UserCreate},
        commands::{Command, CommandBatch, CommandCreate, CommandQuery, CommandSpec, CommandState, CommandTarget},
        devices::{Device, DeviceCreate, DeviceQuery},
        enrollment::DeviceImport,
        events::EventStreamQuery,
        groups::{Group, GroupCreate},
        tenants::{Tenant, TenantCreate},
    },
};
use futures::{SinkExt, StreamExt};
use reqwest::{Response, StatusCode};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    console::browser,
    support::{ADMIN_PASSWORD, TestApp, expect_problem, raw, spawn_app},
};

// ---------------------------------------------------------------------------------------------
// A browser on the console
// ---------------------------------------------------------------------------------------------

/// Signs in through the form; the session cookie (`name=value`), or `None` when refused.
async fn session(app: &TestApp, tenant: &str, username: &str, password: &str) -> Option<String> {
    let form = [("username", username), ("password", password), ("tenant", tenant)];
    let response = browser()
        .post(format!("{}/login", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).expect("form"))
        .send()
        .await
        .expect("login");
    let cookie = response.headers().get("set-cookie")?.to_str().expect("ascii").to_owned();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    Some(cookie.split(';').next().expect("pair").to_owned())
}

/// A signed-in browser: its session cookie and the CSRF token its pages carry.
pub(crate) struct Console {
    url: String,
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

impl Console {
    /// Signs `username` (password [`ADMIN_PASSWORD`]) in to `tenant` (empty: `default`).
    pub(crate) async fn sign_in(app: &TestApp, tenant: &str, username: &str) -> Console {
        let cookie = session(app, tenant, username, ADMIN_PASSWORD).await.expect("signed in");
        let mut console = Console { url: app.url.clone(), cookie, csrf: String::new() };
        let html = console.html("/").await;
        console.csrf = html
            .split(r#"<meta name="csrf-token" content=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page carries its CSRF token")
            .to_owned();
        console
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        browser().get(format!("{}{path}", self.url)).header("cookie", &self.cookie).send().await.expect("page")
    }

    /// A page that must open.
    pub(crate) async fn html(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.text().await.expect("html")
    }

    /// A change as the page's htmx controls send it: form body, CSRF header, `hx-request`.
    pub(crate) async fn post(&self, path: &str, fields: &impl Serialize) -> Response {
        self.send(path, fields, Some(&self.csrf), true).await
    }

    /// A change that must succeed; its HTML.
    pub(crate) async fn done(&self, path: &str, fields: &impl Serialize) -> String {
        let response = self.post(path, fields).await;
        let status = response.status();
        let body = response.text().await.expect("body");
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    /// A change that must be refused with `status`; the problem's detail.
    pub(crate) async fn refused(&self, path: &str, fields: &impl Serialize, status: u16) -> String {
        let problem = expect_problem(self.post(path, fields).await, status).await;
        problem["detail"].as_str().expect("detail").to_owned()
    }

    pub(crate) async fn send(&self, path: &str, fields: &impl Serialize, csrf: Option<&str>, htmx: bool) -> Response {
        let mut request = browser()
            .post(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).expect("form"));
        if let Some(token) = csrf {
            request = request.header("x-csrf-token", token);
        }
        if htmx {
            request = request.header("hx-request", "true");
        }
        request.send().await.expect("post")
    }
}

/// Where a redirect or an `HX-Location` sends the browser.
pub(crate) fn header(response: &Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().expect("ascii").to_owned()).unwrap_or_default()
}

/// No field at all.
const NO_FIELDS: [(&str, &str); 0] = [];

// ---------------------------------------------------------------------------------------------
// Things to act on, made through the API
// ---------------------------------------------------------------------------------------------

pub(crate) async fn device(app: &TestApp, serial: &str, name: &str, labels: &[(&str, &str)]) -> Device {
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let req = DeviceCreate { serial: serial.into(), name: Some(name.into()), labels, ..Default::default() };
    app.admin.create_device(&req).await.expect("device")
}

pub(crate) async fn group(app: &TestApp, name: &str) -> Group {
    app.admin.create_group(&GroupCreate { name: name.into(), ..Default::default() }).await.expect("group")
}

fn to_devices(ids: &[&str], command: CommandSpec) -> CommandCreate {
    let target = CommandTarget { device_ids: ids.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    CommandCreate { target, command, ttl_secs: None, idempotency_key: None }
}

/// The commands of a batch, by device id.
async fn commands_of(app: &TestApp, batch: &str) -> BTreeMap<String, Command> {
    let query = CommandQuery { batch: Some(batch.into()), ..Default::default() };
    let page = app.admin.commands(&query).await.expect("commands");
    page.items.into_iter().map(|c| (c.device_id.clone(), c)).collect()
}

/// `GET /api/v1/command-batches` with a bearer token (the client has no method for it).
async fn list_batches(app: &TestApp, token: &str, query: &str) -> Response {
    let url = format!("{}/api/v1/command-batches{query}", app.url);
    raw().get(url).bearer_auth(token).send().await.expect("batches")
}

/// The secret of a new API token with `role` in tenant `default`.
async fn bearer(app: &TestApp, role: &str) -> String {
    let req = TokenCreate {
        name: format!("{role}-token"),
        role: Some(role.into()),
        expires_in_days: None,
        permissions: None,
    };
    app.admin.create_token(&req).await.expect("token").secret
}

/// A session secret of the administrator of a new tenant `acme`.
async fn acme_session(app: &TestApp) -> String {
    app.tenant_admin("acme").await;
    app.anon.login(Some("acme"), "boss", ADMIN_PASSWORD).await.expect("signs in").token
}

async fn batches(app: &TestApp) -> Vec<CommandBatch> {
    let response = list_batches(app, &app.admin_token, "?limit=500").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Page<CommandBatch>>().await.expect("page").items
}

async fn members(app: &TestApp, group: &str) -> Vec<String> {
    let query = DeviceQuery { recursive: Some(false), sort: Some("serial".into()), ..Default::default() };
    let page = app.admin.group_members(group, &query).await.expect("members");
    page.items.into_iter().map(|d| d.serial.unwrap_or_default()).collect()
}

/// What the API shows of the default tenant (and the tenant list), to prove that a refused
/// change changed nothing.
async fn snapshot(app: &TestApp) -> Vec<String> {
    let mut lines = Vec::new();
    let devices = app.admin.devices(&DeviceQuery { limit: Some(500), ..Default::default() }).await.expect("devices");
    for d in devices.items {
        let (serial, status) = (d.serial.unwrap_or_default(), d.status.as_str());
        lines.push(format!("device {serial} {} {status} {:?} {:?}", d.name, d.labels, d.groups));
    }
    let groups = app.admin.groups(&Default::default()).await.expect("groups");
    for g in groups.items {
        lines.push(format!("group {} {:?} {:?} {}", g.name, g.parent_id, g.description, g.device_count));
    }
    for b in batches(app).await {
        lines.push(format!("batch {} {:?}", b.id, b.states));
    }
    for u in app.admin.users(&PageQuery::default()).await.expect("users").items {
        lines.push(format!("user {} {}", u.username, u.role));
    }
    for t in app.admin.tokens(&PageQuery::default()).await.expect("tokens").items {
        lines.push(format!("token {} {} revoked: {}", t.name, t.role, t.revoked_at.is_some()));
    }
    for t in app.admin.tenants(&PageQuery::default()).await.expect("tenants").items {
        lines.push(format!("tenant {} disabled: {}", t.name, t.disabled));
    }
    lines
}

/// One of each thing the console's new routes change, in tenant `default`, plus tenant `acme`
/// (its administrator is `boss`).
struct World {
    /// In `group`, labelled `store=berlin`.
    d0: Device,
    d1: Device,
    group: Group,
    spare: Group,
    batch: CommandBatch,
    command: String,
    olga: String,
    token: String,
    acme: Tenant,
}

async fn world(app: &TestApp) -> World {
    let d0 = device(app, "W-0", "Till 0", &[("store", "berlin")]).await;
    let d1 = device(app, "W-1", "Till 1", &[]).await;
    let group = group(app, "berlin").await;
    app.admin.add_group_members(&group.id, vec![d0.id.clone()]).await.expect("member");
    let spare = self::group(app, "spare").await;
    let batch = app.admin.create_commands(&to_devices(&[&d0.id, &d1.id], CommandSpec::Ping)).await.expect("batch");
    let command = commands_of(app, &batch.id).await[&d0.id].id.clone();
    let olga = UserCreate { username: "olga".into(), password: ADMIN_PASSWORD.into(), role: Some("operator".into()) };
    let olga = app.admin.create_user(&olga).await.expect("user").id;
    let token =
        TokenCreate { name: "ci".into(), role: Some("viewer".into()), expires_in_days: None, permissions: None };
    let token = app.admin.create_token(&token).await.expect("token").token.id;
    let boss = UserCreate { username: "boss".into(), password: ADMIN_PASSWORD.into(), role: None };
    let acme = TenantCreate { name: "acme".into(), display_name: None, admin: Some(boss) };
    let acme = app.admin.create_tenant(&acme).await.expect("tenant");
    World { d0, d1, group, spare, batch, command, olga, token, acme }
}

/// Every state-changing route the console added, each with a form that would change something.
fn changes(w: &World) -> Vec<(String, Vec<(&'static str, String)>)> {
    let (d0, d1, g, b) = (&w.d0.id, &w.d1.id, &w.group.id, &w.batch.id);
    let s = |v: &str| v.to_owned();
    let password = s(ADMIN_PASSWORD);
    vec![
        (s("/groups"), vec![("name", s("fresh")), ("parent", s("")), ("description", s(""))]),
        (format!("/groups/{g}"), vec![("name", s("renamed")), ("parent", w.spare.id.clone()), ("description", s("x"))]),
        (format!("/groups/{g}/delete"), vec![]),
        (format!("/groups/{g}/members"), vec![("add", s("W-1"))]),
        (format!("/groups/{g}/members"), vec![("remove", d0.clone())]),
        (format!("/commands/{b}/cancel"), vec![]),
        (format!("/commands/{b}/cancel"), vec![("command", w.command.clone())]),
        (s("/admin/users"), vec![("username", s("mallory")), ("password", password.clone()), ("role", s("admin"))]),
        (format!("/admin/users/{}/delete", w.olga), vec![]),
        (s("/admin/tokens"), vec![("name", s("sneaky")), ("role", s("viewer")), ("expires_in_days", s(""))]),
        (format!("/admin/tokens/{}/revoke", w.token), vec![]),
        (s("/admin/tenants"), vec![("name", s("evil")), ("admin_username", s("root")), ("admin_password", password)]),
        (format!("/admin/tenants/{}", w.acme.id), vec![("disabled", s("true"))]),
        (
            s("/devices/bulk"),
            vec![("device", d0.clone()), ("device", d1.clone()), ("action", s("group")), ("group", w.spare.id.clone())],
        ),
        (s("/devices/bulk"), vec![("device", d0.clone()), ("action", s("command")), ("kind", s("ping"))]),
        (s("/devices/bulk"), vec![("device", d1.clone()), ("action", s("decommission"))]),
        (format!("/devices/{d0}/labels"), vec![("set", s("tier=prod"))]),
        (format!("/devices/{d0}/labels"), vec![("remove", s("store"))]),
        (format!("/devices/{d1}/groups"), vec![("group", g.clone()), ("action", s("add"))]),
        (format!("/devices/{d0}/decommission"), vec![]),
        (s("/enrollment/import"), vec![("csv", s("serial\nNEW-1\n"))]),
    ]
}

// ---------------------------------------------------------------------------------------------
// Sessions, CSRF, roles and tenants
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_new_page_and_change_sends_a_visitor_without_a_session_to_sign_in() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let pages = [
        "/groups".to_owned(),
        format!("/groups/{}", w.group.id),
        "/commands".into(),
        format!("/commands/{}", w.batch.id),
        "/admin".into(),
    ];
    let before = snapshot(&app).await;
    signed_out_goes_to_login(&app, &pages, &changes(&w)).await;
    // An API token is not a browser session.
    let response = browser().get(format!("{}/groups", app.url)).bearer_auth(&app.admin_token).send().await;
    assert_eq!(response.expect("page").status(), StatusCode::SEE_OTHER);
    assert_eq!(snapshot(&app).await, before, "nothing changed");
}

#[tokio::test]
async fn every_new_change_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let other = Console::sign_in(&app, "", "olga").await;
    let before = snapshot(&app).await;
    for (path, fields) in changes(&w) {
        // None, a guess, and a real token of another session.
        for csrf in [None, Some("guessed"), Some(other.csrf.as_str())] {
            let response = admin.send(&path, &fields, csrf, true).await;
            let problem = expect_problem(response, 403).await;
            assert!(problem["detail"].as_str().expect("detail").contains("CSRF"), "{path}: {problem}");
        }
    }
    assert_eq!(snapshot(&app).await, before, "nothing changed");
}

#[tokio::test]
async fn a_viewer_reads_groups_and_commands_without_controls_and_changes_nothing() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let vic = UserCreate { username: "vic".into(), password: ADMIN_PASSWORD.into(), role: Some("viewer".into()) };
    app.admin.create_user(&vic).await.expect("viewer");
    let vic = Console::sign_in(&app, "", "vic").await;
    let before = snapshot(&app).await;
    for (path, fields) in changes(&w) {
        let detail = vic.refused(&path, &fields, 403).await;
        assert!(detail.contains("viewer") || detail.contains("platform"), "{path}: {detail}");
    }
    assert_eq!(snapshot(&app).await, before, "nothing changed");

    let (g, b, d) = (&w.group.id, &w.batch.id, &w.d0.id);
    for (path, shows) in [
        ("/groups".to_owned(), format!(r#"<a href="/groups/{g}">berlin</a>"#)),
        (format!("/groups/{g}"), format!(r#"data-device="{d}""#)),
        ("/commands".into(), format!(r#"data-batch="{b}""#)),
        (format!("/commands/{b}"), format!(r#"data-command="{}""#, w.command)),
        ("/devices".into(), format!(r#"href="/devices/{d}""#)),
        (format!("/devices/{d}"), "store=berlin".into()),
    ] {
        let html = vic.html(&path).await;
        assert!(html.contains(&shows), "{path} shows {shows}: {html}");
        assert!(!html.contains("data-mutating"), "{path} offers a viewer no change: {html}");
        assert!(html.contains(r#"href="/groups""#) && html.contains(r#"href="/commands""#), "the menu has both");
        assert!(!html.contains(r#"href="/admin""#), "{path}: no administration in a viewer's menu");
    }
    // A viewer has none of users:read, tokens:read or tenants: the administration page is refused,
    // as an HTML page for a navigation and as problem+json for htmx.
    let page = browser()
        .get(format!("{}/admin", app.url))
        .header("cookie", &vic.cookie)
        .header("accept", "text/html")
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let html = page.text().await.expect("html");
    assert!(html.contains("<h1>Not allowed</h1>") && html.contains("users:read"), "{html}");
    let fragment =
        browser().get(format!("{}/admin", app.url)).header("cookie", &vic.cookie).header("hx-request", "true");
    expect_problem(fragment.send().await.expect("fragment"), 403).await;
}

#[tokio::test]
async fn another_tenants_groups_batches_and_devices_are_not_found() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let boss = Console::sign_in(&app, "acme", "boss").await;
    let before = snapshot(&app).await;
    let (g, b, d0, d1) = (&w.group.id, &w.batch.id, &w.d0.id, &w.d1.id);
    for path in [format!("/groups/{g}"), format!("/commands/{b}")] {
        expect_problem(boss.get(&path).await, 404).await;
    }
    let theirs = boss.html("/groups").await + &boss.html("/commands").await;
    assert!(!theirs.contains(g.as_str()) && !theirs.contains(b.as_str()), "their lists do not show ours");

    // Their own group, to try our devices with.
    let created = boss.post("/groups", &[("name", "acme-stores")]).await;
    let their_group = header(&created, "hx-location");
    let their_group = their_group.strip_prefix("/groups/").expect("their group");
    let s = |v: &str| v.to_owned();
    for (path, fields, status) in [
        (format!("/devices/{d0}/labels"), vec![("set", s("stolen=yes"))], 404),
        (format!("/devices/{d0}/labels"), vec![("remove", s("store"))], 404),
        (format!("/devices/{d0}/groups"), vec![("group", s(their_group)), ("action", s("add"))], 422),
        (format!("/devices/{d0}/decommission"), vec![], 404),
        (format!("/groups/{g}"), vec![("name", s("stolen"))], 404),
        (format!("/groups/{g}/delete"), vec![], 404),
        (format!("/groups/{g}/members"), vec![("remove", d0.clone())], 404),
        // Our group is none of theirs; in their own group, our device is no device of theirs.
        (format!("/groups/{g}/members"), vec![("add", d1.clone())], 404),
        (format!("/groups/{their_group}/members"), vec![("add", d1.clone())], 422),
        (format!("/groups/{their_group}/members"), vec![("add", s("W-1"))], 422),
        (format!("/commands/{b}/cancel"), vec![], 404),
        (format!("/commands/{b}/cancel"), vec![("command", w.command.clone())], 404),
        (format!("/admin/users/{}/delete", w.olga), vec![], 404),
        (format!("/admin/tokens/{}/revoke", w.token), vec![], 404),
        (format!("/admin/tenants/{}", w.acme.id), vec![("disabled", s("true"))], 403),
        (s("/devices/bulk"), vec![("device", d0.clone()), ("action", s("group")), ("group", s(their_group))], 422),
        (s("/devices/bulk"), vec![("device", d0.clone()), ("action", s("group")), ("group", g.clone())], 404),
        (s("/devices/bulk"), vec![("device", d0.clone()), ("action", s("command")), ("kind", s("ping"))], 422),
        (s("/devices/bulk"), vec![("device", d0.clone()), ("action", s("decommission"))], 404),
    ] {
        boss.refused(&path, &fields, status).await;
    }
    assert_eq!(snapshot(&app).await, before, "nothing of ours changed");
}

// ---------------------------------------------------------------------------------------------
// Devices: bulk actions, labels, groups
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn devices_picked_together_join_a_group_get_one_command_and_are_decommissioned() {
    let app = spawn_app().await;
    let [a, b, c] = [
        device(&app, "B-1", "Till 1", &[]).await,
        device(&app, "B-2", "Till 2", &[]).await,
        device(&app, "B-3", "Till 3", &[]).await,
    ];
    let tills = group(&app, "tills").await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let picked = |devices: &[&Device], rest: &[(&'static str, &str)]| {
        let mut fields: Vec<(&str, String)> = devices.iter().map(|d| ("device", d.id.clone())).collect();
        fields.extend(rest.iter().map(|(k, v)| (*k, v.to_string())));
        fields
    };

    let response =
        admin.post("/devices/bulk", &picked(&[&a, &b], &[("action", "group"), ("group", tills.id.as_str())])).await;
    assert_eq!(header(&response, "hx-trigger"), "baton:changed", "the list refreshes");
    let html = response.text().await.expect("html");
    assert!(
        html.contains("Added 2 of 2 devices to tills") && html.contains(&format!("/groups/{}", tills.id)),
        "{html}"
    );
    let all = picked(&[&a, &b, &c, &a], &[("action", "group"), ("group", tills.id.as_str())]);
    assert!(admin.done("/devices/bulk", &all).await.contains("Added 1 of 3 devices"), "B-1 twice counts once");
    assert_eq!(members(&app, &tills.id).await, ["B-1", "B-2", "B-3"]);

    let exec = picked(&[&a, &b, &c], &[("action", "command"), ("kind", "exec"), ("shell", "uptime")]);
    let html = admin.done("/devices/bulk", &exec).await;
    let sent = batches(&app).await;
    assert_eq!(sent.len(), 1, "one request, one batch");
    assert_eq!((sent[0].total, sent[0].states.get("QUEUED")), (3, Some(&3)));
    assert!(matches!(&sent[0].command, CommandSpec::Exec { shell: Some(s), .. } if s == "uptime"));
    assert!(html.contains("exec sent to 3 devices") && html.contains(&format!("/commands/{}", sent[0].id)), "{html}");
    let targets: Vec<String> = commands_of(&app, &sent[0].id).await.into_keys().collect();
    let mut expected = vec![a.id.clone(), b.id.clone(), c.id.clone()];
    expected.sort();
    assert_eq!(targets, expected);

    let html = admin.done("/devices/bulk", &picked(&[&b, &c], &[("action", "decommission")])).await;
    assert!(html.contains("Decommissioned 2 devices."), "{html}");
    for (d, status) in [(&a, "active"), (&b, "decommissioned"), (&c, "decommissioned")] {
        assert_eq!(app.admin.device(&d.id).await.expect("device").status.as_str(), status);
    }
    let canceled = commands_of(&app, &sent[0].id).await;
    assert_eq!(canceled[&b.id].state, CommandState::Canceled, "a retired device's commands are canceled");

    // Refused, in words naming the problem, and nothing is sent.
    let before = snapshot(&app).await;
    let detail = admin.refused("/devices/bulk", &picked(&[], &[("action", "decommission")]), 422).await;
    assert!(detail.contains("select at least one device"), "{detail}");
    let detail = admin.refused("/devices/bulk", &picked(&[&a], &[("action", "explode")]), 422).await;
    assert!(detail.contains("`explode`"), "{detail}");
    let detail = admin.refused("/devices/bulk", &picked(&[&a], &[("action", "command"), ("kind", "exec")]), 422).await;
    assert!(detail.contains("shell"), "{detail}");
    let retired = picked(&[&a, &b], &[("action", "command"), ("kind", "ping")]);
    assert!(admin.refused("/devices/bulk", &retired, 409).await.contains(&b.id), "B-2 is retired");
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_bulk_decommission_that_fails_for_one_device_retires_none() {
    let app = spawn_app().await;
    let a = device(&app, "R-1", "Till 1", &[]).await;
    let b = device(&app, "R-2", "Till 2", &[]).await;
    // Deleted by someone else after the page was loaded; its id sorts after the others'.
    let gone = device(&app, "R-3", "Till 3", &[]).await;
    app.admin.decommission_device(&gone.id, false).await.expect("retired");
    app.admin.delete_device(&gone.id).await.expect("deleted");
    let admin = Console::sign_in(&app, "", "admin").await;
    let fields = [
        ("device", a.id.as_str()),
        ("device", b.id.as_str()),
        ("device", gone.id.as_str()),
        ("action", "decommission"),
    ];
    let detail = admin.refused("/devices/bulk", &fields, 404).await;
    assert!(detail.contains(&gone.id), "{detail}");
    for d in [&a, &b] {
        let status = app.admin.device(&d.id).await.expect("device").status;
        assert_eq!(status.as_str(), "active", "the error said it failed, so {} must not be retired", d.name);
    }
}

#[tokio::test]
async fn a_devices_labels_and_groups_are_changed_from_its_page() {
    let app = spawn_app().await;
    let d = device(&app, "L-1", "Till 1", &[]).await;
    let tills = group(&app, "tills").await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let labels = format!("/devices/{}/labels", d.id);
    let labels_now = async || app.admin.device(&d.id).await.expect("device").labels;

    let html = admin.done(&labels, &[("set", " store = hamburg-3 ")]).await;
    assert!(html.contains("store=hamburg-3"), "the page shows the new label: {html}");
    admin.done(&labels, &[("set", "tier=prod")]).await;
    admin.done(&labels, &[("set", "tier=test")]).await;
    let expected =
        BTreeMap::from([("store".to_owned(), "hamburg-3".to_owned()), ("tier".to_owned(), "test".to_owned())]);
    assert_eq!(labels_now().await, expected);
    assert!(admin.refused(&labels, &[("set", "no-equals-sign")], 422).await.contains("key=value"));
    assert!(admin.refused(&labels, &[("set", "bad key=x")], 422).await.contains("bad key"));
    let html = admin.done(&labels, &[("remove", "store")]).await;
    assert!(!html.contains("store=hamburg-3"), "{html}");
    assert_eq!(labels_now().await, BTreeMap::from([("tier".to_owned(), "test".to_owned())]));

    let groups = format!("/devices/{}/groups", d.id);
    let html = admin.done(&groups, &[("group", tills.id.as_str()), ("action", "add")]).await;
    assert!(html.contains(&format!(r#"<a href="/groups/{}">tills</a>"#, tills.id)), "{html}");
    assert_eq!(app.admin.device(&d.id).await.expect("device").groups, std::slice::from_ref(&tills.id));
    assert!(admin.refused(&groups, &[("group", tills.id.as_str()), ("action", "steal")], 422).await.contains("steal"));
    admin.done(&groups, &[("group", tills.id.as_str()), ("action", "remove")]).await;
    assert!(app.admin.device(&d.id).await.expect("device").groups.is_empty());

    let response = admin.post(&format!("/devices/{}/decommission", d.id), &NO_FIELDS).await;
    assert_eq!((response.status(), header(&response, "hx-refresh")), (StatusCode::OK, "true".into()));
    assert_eq!(app.admin.device(&d.id).await.expect("device").status.as_str(), "decommissioned");
}

// ---------------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_group_is_created_renamed_moved_and_deleted_from_its_pages() {
    let app = spawn_app().await;
    let admin = Console::sign_in(&app, "", "admin").await;

    // A plain form is redirected to the new group's page; htmx is told where to go.
    let response = admin
        .send(
            "/groups",
            &[("name", " berlin "), ("parent", ""), ("description", "Stores <in> Berlin")],
            Some(&admin.csrf),
            false,
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let berlin = header(&response, "location").strip_prefix("/groups/").expect("to the group").to_owned();
    let stored = app.admin.group(&berlin).await.expect("group");
    assert_eq!((stored.name.as_str(), stored.description.as_deref()), ("berlin", Some("Stores <in> Berlin")));
    let response =
        admin.post("/groups", &[("name", "tills & co"), ("parent", berlin.as_str()), ("description", "")]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let tills = header(&response, "hx-location").strip_prefix("/groups/").expect("to the group").to_owned();
    let stored = app.admin.group(&tills).await.expect("group");
    assert_eq!((stored.parent_id.as_deref(), stored.description), (Some(berlin.as_str()), None));
    assert!(admin.refused("/groups", &[("name", "berlin")], 409).await.contains("berlin"), "names are unique");
    assert!(admin.refused("/groups", &[("name", "  ")], 422).await.contains("name"));

    // The tree: each group under its parent, names escaped.
    let tree = admin.html("/groups").await;
    let at = |needle: &str| tree.find(needle).unwrap_or_else(|| panic!("{needle} in {tree}"));
    let (top, nested) = (
        at(&format!(r#"--depth: 0"><a href="/groups/{berlin}">berlin</a>"#)),
        at(&format!(r#"--depth: 1"><a href="/groups/{tills}">tills &"#)),
    );
    assert!(top < nested);
    assert!(!tree.contains("tills & co"), "{tree}");
    let page = admin.html(&format!("/groups/{berlin}")).await;
    assert!(page.contains("Stores &") && !page.contains("<in>"), "{page}");

    // Renamed and moved to the top; then berlin moves under it; a cycle is refused.
    let html = admin
        .done(&format!("/groups/{tills}"), &[("name", "tills"), ("parent", ""), ("description", "All tills")])
        .await;
    assert!(html.contains("Saved.") && html.contains("<h1>tills</h1>"), "{html}");
    let stored = app.admin.group(&tills).await.expect("group");
    assert_eq!(
        (stored.name.as_str(), stored.parent_id, stored.description.as_deref()),
        ("tills", None, Some("All tills"))
    );
    admin
        .done(&format!("/groups/{berlin}"), &[("name", "berlin"), ("parent", tills.as_str()), ("description", "")])
        .await;
    assert_eq!(app.admin.group(&berlin).await.expect("group").parent_id.as_deref(), Some(tills.as_str()));
    let crumbs = admin.html(&format!("/groups/{berlin}")).await;
    assert!(crumbs.contains(&format!(r#"<a href="/groups/{tills}">tills</a> › berlin"#)), "{crumbs}");
    let before = snapshot(&app).await;
    let detail =
        admin.refused(&format!("/groups/{tills}"), &[("name", "tills"), ("parent", berlin.as_str())], 409).await;
    assert!(detail.contains("cycle"), "{detail}");
    let detail = admin.refused(&format!("/groups/{tills}/delete"), &NO_FIELDS, 409).await;
    assert!(detail.contains("subgroups"), "{detail}");
    assert_eq!(snapshot(&app).await, before, "refused changes change nothing");

    // Deleted: a form goes back to the tree, htmx is told to.
    let response = admin.send(&format!("/groups/{berlin}/delete"), &NO_FIELDS, Some(&admin.csrf), false).await;
    assert_eq!((response.status(), header(&response, "location")), (StatusCode::SEE_OTHER, "/groups".into()));
    let response = admin.post(&format!("/groups/{tills}/delete"), &NO_FIELDS).await;
    assert_eq!((response.status(), header(&response, "hx-location")), (StatusCode::NO_CONTENT, "/groups".into()));
    assert!(app.admin.groups(&Default::default()).await.expect("groups").items.is_empty());
    expect_problem(admin.get(&format!("/groups/{tills}")).await, 404).await;
    assert!(admin.html("/groups").await.contains("No groups yet."));
}

#[tokio::test]
async fn devices_are_added_to_a_group_by_serial_name_or_id_and_a_doubtful_name_adds_nothing() {
    let app = spawn_app().await;
    let one = device(&app, "POS-1", "Till 1", &[]).await;
    device(&app, "POS-2", "Till 2", &[]).await;
    device(&app, "POS-3", "Till 2", &[]).await;
    let four = device(&app, "POS-4", "Till 4", &[]).await;
    let g = group(&app, "berlin").await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let path = format!("/groups/{}/members", g.id);

    let html = admin.done(&path, &[("add", "POS-1")]).await;
    assert!(html.contains("Added 1 device.") && html.contains(&format!(r#"data-device="{}""#, one.id)), "{html}");
    let html = admin.done(&path, &[("add", &format!("Till 1, POS-2\n\n {} \n", four.id))]).await;
    assert!(html.contains("Added 2 devices."), "Till 1 is POS-1, already in: {html}");
    assert_eq!(members(&app, &g.id).await, ["POS-1", "POS-2", "POS-4"]);

    for (add, named, says) in [
        ("POS-3\nTill 2", "`Till 2`", "several devices"),
        ("POS-3\nNOPE-9", "`NOPE-9`", "no device"),
        ("POS-3\n01a21b00-0000-7000-8000-000000000000", "`01a21b00-0000-7000-8000-000000000000`", "no device"),
    ] {
        let detail = admin.refused(&path, &[("add", add)], 422).await;
        assert!(detail.contains(named) && detail.contains(says), "{add:?}: {detail}");
    }
    assert!(admin.refused(&path, &[("add", " \n , ")], 422).await.contains("at least one device"));
    assert_eq!(members(&app, &g.id).await, ["POS-1", "POS-2", "POS-4"], "POS-3 was not added");

    let html = admin.done(&path, &[("remove", one.id.as_str())]).await;
    assert!(html.contains("Removed.") && !html.contains(&format!(r#"data-device="{}""#, one.id)), "{html}");
    assert_eq!(members(&app, &g.id).await, ["POS-2", "POS-4"]);
}

#[tokio::test]
async fn a_device_is_added_by_serial_however_many_other_serials_contain_it() {
    let app = spawn_app().await;
    // 500 kiosks with serials SN-1000…SN-1499: each contains `SN-1`, and `Kiosk` sorts before `Till`.
    let kiosks = (0..500)
        .map(|i| DeviceCreate {
            serial: format!("SN-1{i:03}"),
            name: Some(format!("Kiosk {i:03}")),
            ..Default::default()
        })
        .collect();
    app.admin.import_devices(&DeviceImport { devices: kiosks }).await.expect("imported");
    device(&app, "SN-1", "Till 1", &[]).await;
    let g = group(&app, "tills").await;
    let admin = Console::sign_in(&app, "", "admin").await;
    admin.done(&format!("/groups/{}/members", g.id), &[("add", "SN-1")]).await;
    assert_eq!(members(&app, &g.id).await, ["SN-1"]);
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// Enrolls an agent, queues a reboot for it and two devices that never connect, and lets the
/// agent finish its command; returns the batch and the agent's device id.
async fn batch_with_one_finished(app: &TestApp) -> (CommandBatch, String, [Device; 2]) {
    let agent = crate::agent::enroll(app, "AG-1").await;
    let queued = [device(app, "Q-1", "Quiet 1", &[]).await, device(app, "Q-2", "Quiet 2", &[]).await];
    let ids = [agent.device_id.as_str(), &queued[0].id, &queued[1].id];
    let batch = app.admin.create_commands(&to_devices(&ids, CommandSpec::Reboot)).await.expect("batch");
    let finished = EventStreamQuery { kind: Some("command.finished".into()), ..Default::default() };
    let mut finished = app.admin.event_stream(&finished).await.expect("event stream");

    let mut ws = crate::agent::connect(app, &agent.device_id, &agent.secret).await.expect("connects");
    ws.send(crate::agent::hello(None)).await.expect("hello");
    let command = loop {
        let Message::Text(text) = ws.next().await.expect("frame").expect("ok") else { continue };
        if let ServerMessage::Command(envelope) = serde_json::from_str(&text).expect("parses") {
            break envelope.id;
        }
    };
    let update = CommandUpdate { command_id: command, state: CommandProgress::Succeeded, result: None };
    let update = serde_json::to_string(&AgentMessage::CommandUpdate(update)).expect("json");
    ws.send(Message::Text(update.into())).await.expect("report");
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), finished.next()).await;
    match event.expect("the command finishes").expect("stream open").expect("parses") {
        baton_client::Live::Item(e) => assert_eq!(e.device_id.as_deref(), Some(agent.device_id.as_str())),
        baton_client::Live::Lagged(n) => panic!("lagged {n}"),
    }
    (batch, agent.device_id, queued)
}

#[tokio::test]
async fn the_commands_page_shows_each_batchs_progress_and_cancel_stops_only_what_has_not_finished() {
    let app = spawn_app().await;
    let (batch, agent, [q1, q2]) = batch_with_one_finished(&app).await;
    let elsewhere = app.admin.create_commands(&to_devices(&[&q1.id], CommandSpec::Ping)).await.expect("batch");
    let admin = Console::sign_in(&app, "", "admin").await;
    let cancel = format!("/commands/{}/cancel", batch.id);

    let list = admin.html("/commands").await;
    assert!(list.contains(&format!(r#"data-batch="{}""#, batch.id)), "{list}");
    let (newer, older) = (list.find(&elsewhere.id).expect("the newer batch"), list.find(&batch.id).expect("the batch"));
    assert!(newer < older, "newest first");
    assert!(list.contains(r#"aria-label="1 of 3 finished, 1 SUCCEEDED, 2 QUEUED""#), "{list}");
    assert!(list.contains(&format!(r#"hx-post="{cancel}""#)), "an open batch can be canceled");
    let page = admin.html(&format!("/commands/{}", batch.id)).await;
    assert_eq!(page.matches("<tr data-command=").count(), 3, "{page}");
    assert!(page.contains("Quiet 1") && page.contains("Quiet 2") && page.contains("Cancel the rest"), "{page}");

    // One device's command, then the rest.
    let before = commands_of(&app, &batch.id).await;
    let response = admin.post(&cancel, &[("command", before[&q1.id].id.as_str())]).await;
    assert_eq!((response.status(), header(&response, "hx-trigger")), (StatusCode::OK, "baton:changed".into()));
    let one = commands_of(&app, &batch.id).await;
    assert_eq!([one[&q1.id].state, one[&q2.id].state], [CommandState::Canceled, CommandState::Queued]);
    assert!(admin.refused(&cancel, &[("command", before[&q1.id].id.as_str())], 409).await.contains("finished"));
    let theirs = commands_of(&app, &elsewhere.id).await[&q1.id].id.clone();
    admin.refused(&cancel, &[("command", theirs.as_str())], 404).await;
    assert_eq!(commands_of(&app, &elsewhere.id).await[&q1.id].state, CommandState::Queued, "another batch's");

    let html = admin.done(&cancel, &NO_FIELDS).await;
    assert!(html.contains(r#"aria-label="3 of 3 finished, 1 SUCCEEDED, 2 CANCELED""#), "{html}");
    assert!(!html.contains("Cancel the rest"), "{html}");
    let after = commands_of(&app, &batch.id).await;
    assert_eq!(after[&agent].state, CommandState::Succeeded, "a finished command stays as it finished");
    assert_eq!(after[&q2.id].state, CommandState::Canceled);
    assert_eq!(after[&q1.id].finished_at, one[&q1.id].finished_at, "the earlier cancel is kept");
    let stored = app.admin.command_batch(&batch.id).await.expect("batch");
    assert_eq!(stored.states, BTreeMap::from([("CANCELED".into(), 2), ("SUCCEEDED".into(), 1)]));
    let list = admin.html("/commands").await;
    assert!(!list.contains(&format!(r#"hx-post="{cancel}""#)), "a finished batch offers no cancel: {list}");
    assert!(list.contains(&format!(r#"hx-post="/commands/{}/cancel""#, elsewhere.id)), "the other still does");
}

#[tokio::test]
async fn command_batches_are_listed_newest_first_one_page_at_a_time() {
    let app = spawn_app().await;
    let d = device(&app, "P-1", "Till 1", &[]).await;
    let mut made = Vec::new();
    for command in [CommandSpec::Ping, CommandSpec::Reboot, CommandSpec::RefreshInventory] {
        made.push(app.admin.create_commands(&to_devices(&[&d.id], command)).await.expect("batch").id);
    }
    made.reverse();
    let viewer_token = bearer(&app, "viewer").await;

    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let response = list_batches(&app, &viewer_token, &query).await;
        assert_eq!(response.status(), StatusCode::OK, "a viewer reads commands");
        let page: Page<CommandBatch> = response.json().await.expect("page");
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|b| b.id));
        match page.next_cursor {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, made, "each batch once, newest first");
    let first = batches(&app).await;
    assert_eq!(first[0].id, made[0]);
    assert_eq!((first[0].total, first[0].states.get("QUEUED")), (1, Some(&1)));

    expect_problem(list_batches(&app, &app.admin_token, "?cursor=nonsense").await, 422).await;
    expect_problem(list_batches(&app, &app.admin_token, "?limit=0").await, 422).await;
    let response = raw().get(format!("{}/api/v1/command-batches", app.url)).send().await.expect("anonymous");
    expect_problem(response, 401).await;
    let response = list_batches(&app, &acme_session(&app).await, "").await;
    assert!(response.json::<Page<CommandBatch>>().await.expect("page").items.is_empty(), "another tenant sees none");
}

#[tokio::test]
async fn a_batch_is_canceled_through_the_api_by_its_own_tenant_only() {
    let app = spawn_app().await;
    let [a, b] = [device(&app, "C-1", "Till 1", &[]).await, device(&app, "C-2", "Till 2", &[]).await];
    let batch = app.admin.create_commands(&to_devices(&[&a.id, &b.id], CommandSpec::Ping)).await.expect("batch");
    let cancel = |token: String| {
        let url = format!("{}/api/v1/command-batches/{}/cancel", app.url, batch.id);
        async move { raw().post(url).bearer_auth(token).send().await.expect("cancel") }
    };
    expect_problem(cancel(acme_session(&app).await).await, 404).await;
    expect_problem(cancel(bearer(&app, "viewer").await).await, 403).await;
    let untouched = app.admin.command_batch(&batch.id).await.expect("batch");
    assert_eq!(untouched.states, BTreeMap::from([("QUEUED".into(), 2)]), "refused cancels change nothing");

    let response = cancel(app.admin_token.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let canceled: CommandBatch = response.json().await.expect("batch");
    assert_eq!((canceled.id.as_str(), canceled.finished()), (batch.id.as_str(), 2));
    assert_eq!(canceled.states, BTreeMap::from([("CANCELED".into(), 2)]));
    let again = cancel(app.admin_token.clone()).await;
    assert_eq!(again.status(), StatusCode::OK, "canceling a finished batch again is harmless");
    let unknown = format!("{}/api/v1/command-batches/01a21b00-0000-7000-8000-000000000000/cancel", app.url);
    expect_problem(raw().post(unknown).bearer_auth(&app.admin_token).send().await.expect("cancel"), 404).await;
}

// ---------------------------------------------------------------------------------------------
// Administration
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_admin_adds_a_user_who_signs_in_and_deletes_them_again() {
    let app = spawn_app().await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let form = [("username", "olga"), ("password", ADMIN_PASSWORD), ("role", "operator")];
    let html = admin.done("/admin/users", &form).await;
    assert!(html.contains("User olga created as operator.") && html.contains(r#"data-user="olga""#), "{html}");
    let olga = Console::sign_in(&app, "", "olga").await;
    assert!(olga.html("/").await.contains("olga · operator"));
    let users = app.admin.users(&PageQuery::default()).await.expect("users").items;
    let stored = users.iter().find(|u| u.username == "olga").expect("olga is stored");
    assert_eq!(stored.role, "operator");

    let before = snapshot(&app).await;
    let short = [("username", "pat"), ("password", "short"), ("role", "viewer")];
    assert!(admin.refused("/admin/users", &short, 422).await.contains("12 characters"));
    let taken = [("username", "olga"), ("password", ADMIN_PASSWORD), ("role", "viewer")];
    assert!(admin.refused("/admin/users", &taken, 409).await.contains("olga"));
    let me = users.iter().find(|u| u.username == "admin").expect("admin");
    assert!(admin.refused(&format!("/admin/users/{}/delete", me.id), &NO_FIELDS, 409).await.contains("your own"));
    assert_eq!(snapshot(&app).await, before);

    let html = admin.done(&format!("/admin/users/{}/delete", stored.id), &NO_FIELDS).await;
    assert!(html.contains("User deleted") && !html.contains(r#"data-user="olga""#), "{html}");
    assert!(app.admin.users(&PageQuery::default()).await.expect("users").items.iter().all(|u| u.username != "olga"));
    let ended = olga.get("/").await;
    assert_eq!((ended.status(), header(&ended, "location")), (StatusCode::SEE_OTHER, "/login".into()));
    assert_eq!(session(&app, "", "olga", ADMIN_PASSWORD).await, None, "she cannot sign in again");
}

#[tokio::test]
async fn an_api_token_made_on_the_admin_page_is_shown_once_and_works_until_revoked() {
    let app = spawn_app().await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let html =
        admin.done("/admin/tokens", &[("name", "ci-deploy"), ("role", "viewer"), ("expires_in_days", "30")]).await;
    let secret = html
        .split(r#"data-testid="token-secret">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the secret is on the answer")
        .to_owned();
    assert!(!admin.html("/admin").await.contains(&secret), "and only there");
    let me = |secret: String| {
        let url = format!("{}/api/v1/me", app.url);
        async move { raw().get(url).bearer_auth(secret).send().await.expect("me") }
    };
    let response = me(secret.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let who: serde_json::Value = response.json().await.expect("json");
    assert_eq!((who["subject"].as_str(), who["role"].as_str()), (Some("token:ci-deploy"), Some("viewer")));

    let before = snapshot(&app).await;
    let bad = [("name", "x"), ("role", "viewer"), ("expires_in_days", "soon")];
    assert!(admin.refused("/admin/tokens", &bad, 422).await.contains("expires_in_days"));
    let unknown = [("name", "x"), ("role", "overlord"), ("expires_in_days", "")];
    assert!(admin.refused("/admin/tokens", &unknown, 422).await.contains("overlord"));
    assert_eq!(snapshot(&app).await, before);

    let tokens = app.admin.tokens(&PageQuery::default()).await.expect("tokens").items;
    let token = tokens.iter().find(|t| t.name == "ci-deploy").expect("stored");
    assert!(token.expires_at.is_some());
    let html = admin.done(&format!("/admin/tokens/{}/revoke", token.id), &NO_FIELDS).await;
    assert!(html.contains("Token ci-deploy revoked."), "{html}");
    assert_eq!(me(secret).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_platform_admin_creates_a_tenant_whose_admin_signs_in_until_it_is_disabled() {
    let app = spawn_app().await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let form = [
        ("name", "acme"),
        ("display_name", "Acme Corp"),
        ("admin_username", "root"),
        ("admin_password", ADMIN_PASSWORD),
    ];
    let html = admin.done("/admin/tenants", &form).await;
    assert!(html.contains("Tenant acme created") && html.contains(r#"data-tenant="acme""#), "{html}");
    let tenants = app.admin.tenants(&PageQuery::default()).await.expect("tenants").items;
    let acme = tenants.iter().find(|t| t.name == "acme").expect("stored").clone();
    assert_eq!((acme.display_name.as_deref(), acme.disabled), (Some("Acme Corp"), false));
    let default = tenants.iter().find(|t| t.name == "default").expect("default");

    // Its administrator runs their tenant but not the platform.
    let root = Console::sign_in(&app, "acme", "root").await;
    let page = root.html("/admin").await;
    assert!(page.contains(r#"id="users""#) && page.contains(r#"data-user="root""#), "{page}");
    assert!(!page.contains(r#"id="tenants""#) && !page.contains("data-tenant="), "no tenant list: {page}");
    let evil = [("name", "evil"), ("admin_username", "x"), ("admin_password", ADMIN_PASSWORD)];
    assert!(root.refused("/admin/tenants", &evil, 403).await.contains("tenants:write"));

    let before = snapshot(&app).await;
    let detail = admin.refused(&format!("/admin/tenants/{}", default.id), &[("disabled", "true")], 409).await;
    assert!(detail.contains("signed in to"), "{detail}");
    assert!(admin.refused("/admin/tenants", &form, 409).await.contains("acme"), "names are unique");
    assert_eq!(snapshot(&app).await, before);

    let html = admin.done(&format!("/admin/tenants/{}", acme.id), &[("disabled", "true")]).await;
    assert!(html.contains("Tenant acme disabled."), "{html}");
    assert!(app.admin.tenant(&acme.id).await.expect("tenant").disabled);
    assert_eq!(session(&app, "acme", "root", ADMIN_PASSWORD).await, None, "sign-in is refused");
    let out = root.get("/admin").await;
    assert_eq!(header(&out, "location"), "/login", "and a session already open ends");

    let html = admin.done(&format!("/admin/tenants/{}", acme.id), &[("disabled", "false")]).await;
    assert!(html.contains("Tenant acme enabled."), "{html}");
    assert!(session(&app, "acme", "root", ADMIN_PASSWORD).await.is_some(), "enabled again");
}

// ---------------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_csv_import_creates_devices_with_their_names_groups_and_labels() {
    let app = spawn_app().await;
    let berlin = group(&app, "Berlin").await;
    let tills = group(&app, "Tills").await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let csv = "serial,name,groups,labels\r\nSN-1,\"Till 1, front\",Berlin; Tills ,store=b12;tier=prod\r\nSN-2,,,\r\n";
    let html = admin.done("/enrollment/import", &[("csv", csv)]).await;
    assert!(html.contains("Imported 2 devices"), "{html}");

    let all = app.admin.devices(&DeviceQuery { sort: Some("serial".into()), ..Default::default() }).await;
    let all = all.expect("devices").items;
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].serial.as_deref(), all[0].name.as_str()), (Some("SN-1"), "Till 1, front"));
    let mut groups = all[0].groups.clone();
    groups.sort();
    let mut expected = vec![berlin.id.clone(), tills.id.clone()];
    expected.sort();
    assert_eq!(groups, expected);
    let labels = BTreeMap::from([("store".to_owned(), "b12".to_owned()), ("tier".to_owned(), "prod".to_owned())]);
    assert_eq!(all[0].labels, labels);
    assert_eq!((all[1].name.as_str(), all[1].groups.len(), all[1].labels.len()), ("SN-2", 0, 0), "name: the serial");
}

#[tokio::test]
async fn a_csv_names_a_group_however_many_other_groups_contain_its_name() {
    let app = spawn_app().await;
    // 500 store groups whose names contain `tills` and sort before `Tills`.
    for i in 0..500 {
        group(&app, &format!("Berlin tills {i:03}")).await;
    }
    let tills = group(&app, "Tills").await;
    let admin = Console::sign_in(&app, "", "admin").await;
    admin.done("/enrollment/import", &[("csv", "serial,groups\nSN-1,Tills\n")]).await;
    let imported = app.admin.devices(&DeviceQuery::default()).await.expect("devices").items;
    assert_eq!(imported.iter().map(|d| d.groups.clone()).collect::<Vec<_>>(), [vec![tills.id]]);
}

#[tokio::test]
async fn a_bad_csv_is_refused_with_its_line_and_imports_nothing() {
    let app = spawn_app().await;
    group(&app, "Berlin").await;
    device(&app, "TAKEN", "Taken", &[]).await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let before = snapshot(&app).await;
    for (csv, says) in [
        ("serial,colour\nS1,red\n", "line 1: unknown column `colour`"),
        ("serial,labels\nS1,a=1\nS2,tier\n", "line 3: label `tier` must look like key=value"),
        ("serial,groups\nS1,Berlin\nS2,Nowhere\n", "line 3: no group is named `Nowhere`"),
        ("serial,labels\nS1,a=1\n\nS2,bad key=x\n", "line 4: labels: label key `bad key`"),
        ("serial\nS1\nTAKEN\n", "line 3: serial: a device with serial `TAKEN` already exists"),
        ("serial\nS1\nS1\n", "line 3: serial: a device with serial `S1` already exists"),
        ("serial,name\n", "no devices below the header"),
    ] {
        let detail = admin.refused("/enrollment/import", &[("csv", csv)], 422).await;
        assert!(detail.contains(says), "{csv:?}: {detail}");
    }
    assert_eq!(snapshot(&app).await, before, "all or nothing: nothing");

    // A plain form post is answered with an HTML page in the same words.
    let response = browser()
        .post(format!("{}/enrollment/import", app.url))
        .header("cookie", &admin.cookie)
        .header("x-csrf-token", &admin.csrf)
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("csv", "serial,colour\nS1,red\n")]).expect("form"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.expect("html");
    assert!(html.contains("line 1: unknown column `colour`") && html.contains(r#"role="alert""#), "{html}");
}

/// Every page and every change sends a visitor without a (valid) session to `/login` — no
/// cookie, a forged one, an empty one — and no change happens.
pub(crate) async fn signed_out_goes_to_login(
    app: &TestApp,
    pages: &[String],
    changes: &[(String, Vec<(&'static str, String)>)],
) {
    for cookie in [None, Some("baton_session=bs_forged"), Some("baton_session=")] {
        let with = |request: reqwest::RequestBuilder| match cookie {
            Some(c) => request.header("cookie", c),
            None => request,
        };
        for path in pages {
            let response = with(browser().get(format!("{}{path}", app.url))).send().await.expect("page");
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path} with {cookie:?}");
            assert_eq!(header(&response, "location"), "/login", "{path} with {cookie:?}");
        }
        for (path, fields) in changes {
            let request = with(browser().post(format!("{}{path}", app.url)))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-csrf-token", "whatever")
                .body(serde_urlencoded::to_string(fields).expect("form"));
            let response = request.send().await.expect("post");
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "POST {path} with {cookie:?}");
            assert_eq!(header(&response, "location"), "/login", "POST {path}");
        }
    }
}
