//! The console's artifacts and rollouts pages over plain HTTP, as a browser and htmx use them:
//! without a session every page and change sends the visitor to sign in; a change needs the
//! session's CSRF token and `rollouts:write`; a viewer reads everything and changes nothing;
//! another tenant's rollouts are not found; the form makes what the API then shows, and refuses
//! a bad field in place, naming it; the buttons move the rollout; and the rollout stream tells a
//! page when its rollout moved.

use std::time::Duration;

use baton_proto::api::{
    access::UserCreate,
    artifacts::{Artifact, ArtifactQuery, SigningKeyCreate},
    devices::Device,
    groups::Group,
    rollouts::{
        ExecutionQuery, ExecutionState, GateAction, InstallSpec, Rollout, RolloutCreate, RolloutQuery, RolloutState,
        Targets, Wave,
    },
};
use futures::StreamExt;
use reqwest::StatusCode;

use crate::{
    console::browser,
    console_pages::{Console, device, group, header},
    fleet::artifact,
    support::{ADMIN_PASSWORD, TestApp, expect_problem, spawn_app},
};

/// No field at all.
const NO_FIELDS: [(&str, &str); 0] = [];

/// Two devices in group `berlin`, an artifact `app` 2.0 and a draft rolling it out to the group.
struct World {
    devices: [Device; 2],
    group: Group,
    artifact: Artifact,
    draft: Rollout,
}

async fn world(app: &TestApp) -> World {
    let devices = [device(app, "R-0", "Till 0", &[("store", "berlin")]).await, device(app, "R-1", "Till 1", &[]).await];
    let group = group(app, "berlin").await;
    let ids = devices.iter().map(|d| d.id.clone()).collect();
    app.admin.add_group_members(&group.id, ids).await.expect("members");
    let artifact = artifact(app, "app", "2.0", b"version two").await;
    let req = RolloutCreate {
        name: "app 2.0 to berlin".into(),
        artifact_id: artifact.id.clone(),
        targets: Targets { groups: vec![group.id.clone()], ..Targets::default() },
        install: InstallSpec { path: Some("/opt/app/app.bin".into()), ..InstallSpec::default() },
        start: false,
        ..RolloutCreate::default()
    };
    let draft = app.admin.create_rollout(&req).await.expect("draft");
    World { devices, group, artifact, draft }
}

/// The new-rollout form as a person fills it in: `waves` as typed, made as a draft.
fn form(artifact: &str, group: &str, waves: &str) -> Vec<(&'static str, String)> {
    let s = |v: &str| v.to_owned();
    vec![
        ("name", s("app 2.0 in halves")),
        ("artifact", s(artifact)),
        ("groups", s(group)),
        ("labels", s("")),
        ("waves", s(waves)),
        ("success_percent", s("100")),
        ("bake_mins", s("0")),
        ("failed_percent", s("20")),
        ("failed_count", s("")),
        ("min_executed", s("5")),
        ("action", s("abort")),
        ("max_in_flight", s("")),
        ("path", s("/opt/app/app.bin")),
        ("mode", s("0755")),
        ("verify_secs", s("")),
        ("start", s("false")),
    ]
}

/// Every change the rollout pages make, each with a form that would change something.
fn changes(w: &World) -> Vec<(String, Vec<(&'static str, String)>)> {
    let id = &w.draft.id;
    let mut all = vec![("/rollouts".to_owned(), form(&w.artifact.id, &w.group.id, "50%, 100%"))];
    for verb in ["start", "pause", "resume", "cancel"] {
        all.push((format!("/rollouts/{id}/{verb}"), Vec::new()));
    }
    all
}

/// The tenant's rollouts as the API shows them: name and state.
async fn rollouts(app: &TestApp) -> Vec<(String, RolloutState)> {
    let query = RolloutQuery { limit: Some(500), ..RolloutQuery::default() };
    let page = app.admin.rollouts(&query).await.expect("rollouts");
    page.items.into_iter().map(|r| (r.name, r.state)).collect()
}

/// The HTML of one table row of `html`: the `<tr` carrying `marker` to its `</tr>`.
fn row<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html.find(marker).unwrap_or_else(|| panic!("no {marker} in {html}"));
    let start = html[..at].rfind("<tr").expect("row start");
    let end = at + html[at..].find("</tr>").expect("row end");
    &html[start..end]
}

/// The state a rollout's page or row shows.
fn shown_state(html: &str) -> &str {
    let at = html.find(r#"data-testid="rollout-state">"#).expect("a state") + r#"data-testid="rollout-state">"#.len();
    &html[at..at + html[at..].find('<').expect("end")]
}

/// The steering buttons a page offers, by verb.
fn buttons(html: &str) -> Vec<&str> {
    html.split(r#"data-action=""#).skip(1).map(|rest| &rest[..rest.find('"').expect("end")]).collect()
}

#[tokio::test]
async fn every_rollout_page_and_change_sends_a_visitor_without_a_session_to_sign_in() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let id = &w.draft.id;
    let pages = [
        "/artifacts".to_owned(),
        "/rollouts".into(),
        "/rollouts/new".into(),
        format!("/rollouts/new?artifact={}", w.artifact.id),
        format!("/rollouts/{id}"),
        "/console/rollouts/stream".into(),
        format!("/console/rollouts/stream?rollout={id}"),
    ];
    let before = rollouts(&app).await;
    crate::console_pages::signed_out_goes_to_login(&app, &pages, &changes(&w)).await;
    // An API token is not a browser session.
    let response = browser().get(format!("{}/rollouts", app.url)).bearer_auth(&app.admin_token).send().await;
    assert_eq!(response.expect("page").status(), StatusCode::SEE_OTHER);
    assert_eq!(rollouts(&app).await, before, "nothing changed");
}

#[tokio::test]
async fn rollout_changes_without_the_sessions_csrf_token_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let olga = UserCreate { username: "olga".into(), password: ADMIN_PASSWORD.into(), role: Some("operator".into()) };
    app.admin.create_user(&olga).await.expect("operator");
    let other = Console::sign_in(&app, "", "olga").await;
    let before = rollouts(&app).await;
    for (path, fields) in changes(&w) {
        // None, a guess, and a real token of another session.
        for csrf in [None, Some("guessed"), Some(other.csrf.as_str())] {
            let problem = expect_problem(admin.send(&path, &fields, csrf, true).await, 403).await;
            assert!(problem["detail"].as_str().expect("detail").contains("CSRF"), "{path}: {problem}");
        }
    }
    assert_eq!(rollouts(&app).await, before, "nothing changed");
}

#[tokio::test]
async fn a_viewer_reads_artifacts_and_rollouts_without_controls_and_is_refused_every_change() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let vic = UserCreate { username: "vic".into(), password: ADMIN_PASSWORD.into(), role: Some("viewer".into()) };
    app.admin.create_user(&vic).await.expect("viewer");
    let vic = Console::sign_in(&app, "", "vic").await;
    let before = rollouts(&app).await;
    for (path, fields) in changes(&w) {
        let detail = vic.refused(&path, &fields, 403).await;
        assert!(detail.contains("viewer") && detail.contains("rollouts:write"), "{path}: {detail}");
    }
    assert_eq!(rollouts(&app).await, before, "nothing changed");

    let (a, r) = (&w.artifact.id, &w.draft.id);
    for (path, shows) in [
        ("/artifacts".to_owned(), format!(r#"data-artifact="{a}""#)),
        ("/rollouts".into(), format!(r#"data-rollout="{r}""#)),
        (format!("/rollouts/{r}"), format!(r#"data-device="{}""#, w.devices[0].id)),
    ] {
        let html = vic.html(&path).await;
        assert!(html.contains(&shows), "{path} shows {shows}: {html}");
        assert!(
            !html.contains("data-mutating") && buttons(&html).is_empty(),
            "{path} offers a viewer no change: {html}"
        );
        assert!(!html.contains(r#"href="/rollouts/new"#), "{path}: no way to the form for a viewer");
        assert!(html.contains(r#"href="/artifacts""#) && html.contains(r#"href="/rollouts""#), "the menu has both");
    }
    assert_eq!(shown_state(&vic.html(&format!("/rollouts/{r}")).await), "DRAFT");
    // The form itself is refused: as an HTML page for a navigation, as problem+json for htmx.
    let page = browser()
        .get(format!("{}/rollouts/new?artifact={a}", app.url))
        .header("cookie", &vic.cookie)
        .header("accept", "text/html")
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let html = page.text().await.expect("html");
    assert!(html.contains("<h1>Not allowed</h1>") && html.contains("rollouts:write"), "{html}");
    expect_problem(vic.get("/rollouts/new").await, 403).await;
}

#[tokio::test]
async fn a_draft_made_with_the_form_is_listed_and_its_buttons_start_pause_resume_and_cancel_it() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let admin = Console::sign_in(&app, "", "admin").await;

    // The artifacts page's "Roll out" opens the form with the artifact chosen.
    let list = admin.html("/artifacts").await;
    let roll_out = format!(r#"href="/rollouts/new?artifact={}""#, w.artifact.id);
    assert!(row(&list, &format!(r#"data-artifact="{}""#, w.artifact.id)).contains(&roll_out), "{list}");
    let new = admin.html(&format!("/rollouts/new?artifact={}", w.artifact.id)).await;
    assert!(new.contains(&format!(r#"<option value="{}" selected>"#, w.artifact.id)), "{new}");
    assert!(new.contains(r#"value="app 2.0""#), "named after the artifact: {new}");
    assert!(new.contains(&format!(r#"<option value="{}">berlin</option>"#, w.group.id)), "{new}");

    let created = admin.post("/rollouts", &form(&w.artifact.id, &w.group.id, "50%, 100%")).await;
    assert_eq!(created.status(), StatusCode::NO_CONTENT);
    let page = header(&created, "hx-location");
    let id = page.strip_prefix("/rollouts/").expect("the rollout's page").to_owned();
    let stored = app.admin.rollout(&id).await.expect("rollout");
    assert_eq!((stored.name.as_str(), stored.state), ("app 2.0 in halves", RolloutState::Draft));
    assert_eq!(stored.waves, [Wave::Percent(50.0), Wave::Percent(100.0)]);
    assert_eq!(
        (stored.targets.groups.as_slice(), stored.failure_gate.action),
        (&[w.group.id.clone()][..], GateAction::Abort)
    );
    assert_eq!(stored.install.mode.as_deref(), Some("0755"));

    let listed = admin.html("/rollouts").await;
    let line = row(&listed, &format!(r#"data-rollout="{id}""#));
    assert!(line.contains("app@2.0") && line.contains("1 of 2"), "{line}");
    assert_eq!(shown_state(line), "DRAFT");

    let html = admin.html(&page).await;
    assert_eq!(shown_state(&html), "DRAFT");
    for wave in ["1", "2"] {
        let bar = row(&html, &format!(r#"data-wave="{wave}""#));
        assert!(bar.contains(r#"data-state="QUEUED">1 QUEUED"#), "wave {wave}: {bar}");
    }
    assert_eq!(buttons(&html), ["start", "cancel"]);

    let steps = [
        ("start", "RUNNING", vec!["pause", "cancel"], RolloutState::Running),
        ("pause", "PAUSED", vec!["resume", "cancel"], RolloutState::Paused),
        ("resume", "RUNNING", vec!["pause", "cancel"], RolloutState::Running),
        ("cancel", "CANCELED", vec![], RolloutState::Canceled),
    ];
    for (verb, shows, offers, state) in steps {
        let html = admin.done(&format!("/rollouts/{id}/{verb}"), &NO_FIELDS).await;
        assert_eq!(shown_state(&html), shows, "after {verb}");
        assert_eq!(buttons(&html), offers, "after {verb}");
        if verb == "pause" {
            assert!(html.contains("paused by a person"), "{html}");
        }
        assert_eq!(app.admin.rollout(&id).await.expect("rollout").state, state, "after {verb}");
    }
    let executions = app.admin.all_rollout_executions(&id, &ExecutionQuery::default()).await.expect("executions");
    assert!(executions.iter().all(|e| e.state == ExecutionState::Canceled), "{executions:?}");
    let again = admin.refused(&format!("/rollouts/{id}/start"), &NO_FIELDS, 409).await;
    assert!(again.contains("only a draft starts"), "{again}");

    // Filtered by state.
    let canceled = admin.html("/rollouts?state=CANCELED").await;
    assert!(canceled.contains(&format!(r#"data-rollout="{id}""#)) && !canceled.contains(&w.draft.id), "{canceled}");
    let drafts = admin.html("/rollouts?state=DRAFT").await;
    assert!(drafts.contains(&w.draft.id) && !drafts.contains(&format!(r#"data-rollout="{id}""#)), "{drafts}");
    expect_problem(admin.get("/rollouts?state=SOMEHOW").await, 422).await;
    // And its devices by state.
    let shown = admin.html(&format!("/rollouts/{id}?state=CANCELED")).await;
    assert!(shown.contains(&format!(r#"data-device="{}""#, w.devices[1].id)), "{shown}");
    let none = admin.html(&format!("/rollouts/{id}?state=SUCCEEDED")).await;
    assert!(none.contains("No device in this state."), "{none}");
}

#[tokio::test]
async fn a_bad_field_is_answered_in_place_and_creates_nothing() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let before = rollouts(&app).await;
    // Each message has a place beside its field on the form.
    let new = admin.html("/rollouts/new").await;
    for pointer in ["/name", "/artifact_id", "/targets", "/waves", "/install/path", "/failure_gate/min_executed"] {
        assert!(new.contains(&format!(r#"data-error-for="{pointer}""#)), "{pointer}: {new}");
    }

    let bad_wave = admin.post("/rollouts", &form(&w.artifact.id, &w.group.id, "10%, ten, 100%")).await;
    let problem = expect_problem(bad_wave, 422).await;
    assert_eq!(problem["errors"][0]["field"], "/waves", "{problem}");
    let message = problem["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("`ten` is not a wave"), "{problem}");
    assert!(problem["detail"].as_str().expect("detail").contains("`ten` is not a wave"), "{problem}");

    // What the rollouts module refuses is named the same way.
    let mut no_path = form(&w.artifact.id, &w.group.id, "");
    no_path.retain(|(k, _)| *k != "path");
    let mut nobody = form(&w.artifact.id, "", "");
    nobody.retain(|(k, _)| *k != "groups");
    for (fields, pointer) in
        [(no_path, "/install/path"), (nobody, "/targets"), (form("", &w.group.id, ""), "/artifact_id")]
    {
        let problem = expect_problem(admin.post("/rollouts", &fields).await, 422).await;
        assert_eq!(problem["errors"][0]["field"], pointer, "{problem}");
    }
    assert_eq!(rollouts(&app).await, before, "nothing was made");
}

#[tokio::test]
async fn another_tenants_rollouts_and_artifacts_are_not_found() {
    let app = spawn_app().await;
    let w = world(&app).await;
    app.tenant_admin("acme").await;
    let boss = Console::sign_in(&app, "acme", "boss").await;
    let (r, a) = (&w.draft.id, &w.artifact.id);
    for path in [
        format!("/rollouts/{r}"),
        format!("/rollouts/new?artifact={a}"),
        format!("/console/rollouts/stream?rollout={r}"),
    ] {
        expect_problem(boss.get(&path).await, 404).await;
    }
    for verb in ["start", "pause", "resume", "cancel"] {
        boss.refused(&format!("/rollouts/{r}/{verb}"), &NO_FIELDS, 404).await;
    }
    let detail = boss.refused("/rollouts", &form(a, &w.group.id, ""), 422).await;
    assert!(detail.contains("/artifact_id"), "our artifact is none of theirs: {detail}");
    let theirs = boss.html("/rollouts").await + &boss.html("/artifacts").await;
    assert!(!theirs.contains(r.as_str()) && !theirs.contains(a.as_str()), "their lists do not show ours");
    assert!(theirs.contains("baton artifacts push FILE --name"), "they have none yet: {theirs}");
    assert_eq!(app.admin.rollout(r).await.expect("ours").state, RolloutState::Draft);
}

#[tokio::test]
async fn the_artifacts_page_lists_them_newest_first_with_size_hash_and_signer_a_page_at_a_time() {
    let app = spawn_app().await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let empty = admin.html("/artifacts").await;
    assert!(empty.contains("No artifacts yet") && empty.contains("baton artifacts push FILE --name"), "{empty}");

    // The first before the tenant has a key the server holds (it stays unsigned), the rest after.
    let mut uploaded = vec![artifact(&app, "fw", "1.0.0", b"first").await];
    let key = SigningKeyCreate { name: "release".into(), public_key: None };
    let key = app.admin.create_signing_key(&key).await.expect("key").id;
    for n in 1..26 {
        uploaded.push(artifact(&app, "fw", &format!("1.0.{n}"), &vec![b'x'; 1500 + n]).await);
    }
    let first = admin.html("/artifacts").await;
    let versions: Vec<&str> =
        first.split(r#"<tr data-artifact=""#).skip(1).map(|r| r.split("<td>").nth(2).expect("version")).collect();
    let versions: Vec<&str> = versions.iter().map(|v| &v[..v.find('<').expect("end")]).collect();
    let newest: Vec<String> = (1..=25).rev().map(|n| format!("1.0.{n}")).collect();
    assert_eq!(versions, newest, "newest first, 25 to a page");
    let last = &uploaded[25];
    let line = row(&first, &format!(r#"data-artifact="{}""#, last.id));
    assert_eq!(last.signature.as_ref().map(|s| s.key_id.as_str()), Some(key.as_str()));
    for shows in ["1.5 kB", "file", &last.sha256[..12], key.as_str(), r#"<time datetime=""#] {
        assert!(line.contains(shows), "{shows}: {line}");
    }
    let older = first.split(r#"<a href="/artifacts?cursor="#).nth(1).expect("a link to older ones");
    let older = format!("/artifacts?cursor={}", &older[..older.find('"').expect("end")]);
    let second = admin.html(&older).await;
    let oldest = row(&second, &format!(r#"data-artifact="{}""#, uploaded[0].id));
    assert!(oldest.contains("unsigned") && oldest.contains("5 B"), "{oldest}");
    assert_eq!(second.matches("<tr data-artifact=").count(), 1, "{second}");
    let api = app.admin.artifacts(&ArtifactQuery::default()).await.expect("artifacts");
    assert_eq!(api.items[0].id, last.id, "the API agrees on the newest");
}

/// Reads a Server-Sent Events response until its next event named `name`; its data.
async fn next_event<B: AsRef<[u8]>>(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<B>> + Unpin),
    name: &str,
) -> String {
    let mut text = String::new();
    let read = async {
        loop {
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let field = |f: &str| block.lines().find_map(|l| l.strip_prefix(f).map(|v| v.trim().to_owned()));
                if field("event:").as_deref() == Some(name) {
                    return field("data:").unwrap_or_default();
                }
            }
            let chunk = stream.next().await.expect("the stream goes on").expect("bytes");
            text.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        }
    };
    // A guard, not a wait: the event is sent as the change commits.
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("an event within 30 s")
}

#[tokio::test]
async fn the_rollout_stream_tells_a_page_its_rollout_moved_and_nothing_of_others() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let admin = Console::sign_in(&app, "", "admin").await;
    let created = admin.post("/rollouts", &form(&w.artifact.id, &w.group.id, "")).await;
    let other = header(&created, "hx-location").trim_start_matches("/rollouts/").to_owned();

    let open = |query: String| {
        let request =
            browser().get(format!("{}/console/rollouts/stream{query}", app.url)).header("cookie", &admin.cookie);
        async move {
            let response = request.send().await.expect("stream");
            assert_eq!(response.status(), StatusCode::OK);
            assert!(header(&response, "content-type").starts_with("text/event-stream"));
            response.bytes_stream()
        }
    };
    // The server subscribed before answering, so nothing after this is missed.
    let mut ours = Box::pin(open(format!("?rollout={}", w.draft.id)).await);
    let mut all = Box::pin(open(String::new()).await);
    admin.done(&format!("/rollouts/{other}/start"), &NO_FIELDS).await;
    assert_eq!(next_event(&mut all, "rollout").await, other, "the list hears of every rollout");
    admin.done(&format!("/rollouts/{}/start", w.draft.id), &NO_FIELDS).await;
    assert_eq!(next_event(&mut ours, "rollout").await, w.draft.id, "the page hears only of its own");
}
