//! The new-rollout form: an artifact (chosen from the list, or brought from the artifacts page),
//! its devices by group and label selector, waves written as `10%, 50%, 100%`, the gates and how
//! it installs; made as a draft or started at once. The form's fields are read into the API's
//! [`RolloutCreate`] here, every field problem at once, and the rollouts module checks the rest;
//! either way a refusal names the field (its JSON pointer), and the page's script shows each
//! message next to its field.

use std::str::FromStr;

use askama::Template;
use axum::{
    body::Bytes,
    extract::{Query, State},
    http::HeaderMap,
    response::Response,
};
use baton_proto::api::{
    artifacts::{Artifact, ArtifactQuery},
    groups::GroupQuery,
    rollouts::{FailureGate, GateAction, InstallSpec, RolloutCreate, SuccessGate, Targets, Wave},
};
use serde::Deserialize;

use super::{
    groups::to,
    human,
    session::{Changing, Page, User, render},
};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::Permission, artifacts, error::Violations, groups, pagination, rollouts};

/// An artifact the form offers.
struct Choice {
    id: String,
    text: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "rollout_new.html")]
struct NewPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    artifacts: Vec<Choice>,
    /// Whether an artifact came with the link (else the choice starts empty).
    preselected: bool,
    /// The tenant's groups (id, name); empty when there are none or the user may not read them.
    groups: Vec<(String, String)>,
    /// Rows the group list shows at once.
    group_rows: usize,
    name: String,
    gate: FailureGate,
    success: SuccessGate,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct NewQuery {
    /// The artifact to preselect (the artifacts page's "Roll out").
    artifact: String,
}

/// `/rollouts/new`.
pub(super) async fn page(
    Page(user, _): Page<perm::RolloutsWrite>,
    State(app): State<AppState>,
    Query(q): Query<NewQuery>,
) -> Result<Response, Error> {
    user.need(Permission::ArtifactsRead)?;
    let scope = &user.principal.scope;
    let query = ArtifactQuery { limit: Some(pagination::MAX_LIMIT), ..ArtifactQuery::default() };
    let mut listed = artifacts::list(&app.db, scope, &query).await?.items;
    let chosen = match q.artifact.as_str() {
        "" => None,
        id => Some(artifacts::get(&app.db, scope, id).await?),
    };
    if let Some(a) = &chosen
        && !listed.iter().any(|l| l.id == a.id)
    {
        listed.insert(0, a.clone());
    }
    let groups = if user.principal.can(Permission::GroupsRead) {
        let query = GroupQuery { limit: Some(pagination::MAX_LIMIT), ..GroupQuery::default() };
        let mut all: Vec<_> =
            groups::list(&app.db, scope, &query).await?.items.into_iter().map(|g| (g.id, g.name)).collect();
        all.sort_by(|a, b| a.1.cmp(&b.1));
        all
    } else {
        Vec::new()
    };
    let csrf = user.csrf.clone();
    Ok(render(NewPage {
        user: Some(&user),
        csrf: Some(&csrf),
        nav: "rollouts",
        name: chosen.as_ref().map(|a| format!("{} {}", a.name, a.version)).unwrap_or_default(),
        preselected: chosen.is_some(),
        artifacts: listed.into_iter().map(|a| choice(a, chosen.as_ref())).collect(),
        group_rows: groups.len().clamp(3, 8),
        groups,
        gate: FailureGate::default(),
        success: SuccessGate::default(),
    }))
}

fn choice(a: Artifact, chosen: Option<&Artifact>) -> Choice {
    Choice {
        selected: chosen.is_some_and(|c| c.id == a.id),
        text: format!("{} {} ({}, {})", a.name, a.version, a.kind.as_str(), human::bytes(a.size)),
        id: a.id,
    }
}

/// `POST /rollouts`: makes the rollout and opens its page.
pub(super) async fn create(
    Changing(user, _): Changing<perm::RolloutsWrite>,
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let fields: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&body).map_err(|e| baton_core::Error::invalid("/", format!("not a form: {e}")))?;
    let req = request(&fields)?;
    let scope = &user.principal.scope;
    let rollout = rollouts::create(&app.db, &app.bus, &app.rollouts, scope, &user.principal, req).await?;
    Ok(to(&headers, &format!("/rollouts/{}", rollout.id)))
}

/// The form's fields as the API's request; field problems use the API's JSON pointers.
fn request(fields: &[(String, String)]) -> Result<RolloutCreate, Error> {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.trim());
    let ticked = |name: &str| matches!(field(name), "on" | "true" | "1");
    let mut v = Violations::default();
    if field("artifact").is_empty() {
        v.add("/artifact_id", "choose an artifact");
    }
    let mut waves = Vec::new();
    for text in field("waves").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match Wave::parse(text) {
            Ok(w) => waves.push(w),
            Err(e) => v.add("/waves", e),
        }
    }
    let success_gate = SuccessGate {
        percent: number(&mut v, "/success_gate/percent", field("success_percent"), "a share").unwrap_or(100.0),
        bake_secs: number::<u64>(&mut v, "/success_gate/bake_secs", field("bake_mins"), "whole minutes")
            .map_or(0, |m| m.saturating_mul(60)),
        approval: ticked("approval"),
    };
    let action = match field("action") {
        "" | "pause" => GateAction::Pause,
        "abort" => GateAction::Abort,
        "rollback" => GateAction::Rollback,
        other => {
            v.add("/failure_gate/action", format!("`{other}` is none of pause, abort, rollback"));
            GateAction::Pause
        }
    };
    let failure_gate = FailureGate {
        failed_percent: number(&mut v, "/failure_gate/failed_percent", field("failed_percent"), "a share"),
        failed_count: number(&mut v, "/failure_gate/failed_count", field("failed_count"), "a count"),
        min_executed: number(&mut v, "/failure_gate/min_executed", field("min_executed"), "a count").unwrap_or(1),
        action,
    };
    let some = |name: &str| Some(field(name).to_owned()).filter(|s| !s.is_empty());
    let install = InstallSpec {
        path: some("path"),
        mode: some("mode"),
        verify_secs: number(&mut v, "/install/verify_secs", field("verify_secs"), "whole seconds"),
        ..InstallSpec::default()
    };
    let max_in_flight = number(&mut v, "/max_in_flight", field("max_in_flight"), "a count");
    v.finish()?;
    let groups = fields.iter().filter(|(k, g)| k == "groups" && !g.is_empty()).map(|(_, g)| g.clone()).collect();
    Ok(RolloutCreate {
        name: field("name").to_owned(),
        artifact_id: field("artifact").to_owned(),
        targets: Targets { groups, labels: some("labels"), device_ids: Vec::new() },
        waves,
        success_gate,
        failure_gate,
        max_in_flight,
        install,
        allow_downgrade: ticked("allow_downgrade"),
        start: field("start") == "true",
        ..RolloutCreate::default()
    })
}

/// A number field: empty is `None`, anything else must read as `what`.
fn number<T: FromStr>(v: &mut Violations, pointer: &str, text: &str, what: &str) -> Option<T> {
    if text.is_empty() {
        return None;
    }
    let parsed = text.parse().ok();
    if parsed.is_none() {
        v.add(pointer, format!("`{text}` is not {what}"));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_filled_form_reads_as_the_apis_request() {
        let req = request(&form(&[
            ("name", " app 2.0 "),
            ("artifact", "a1"),
            ("groups", "g1"),
            ("groups", "g2"),
            ("labels", "tier=prod"),
            ("waves", "10%, 50% ,100%"),
            ("success_percent", "90"),
            ("bake_mins", "15"),
            ("approval", "on"),
            ("failed_percent", "20"),
            ("failed_count", ""),
            ("min_executed", "5"),
            ("action", "rollback"),
            ("max_in_flight", "50"),
            ("path", "/opt/app.bin"),
            ("verify_secs", "30"),
            ("start", "false"),
        ]))
        .expect("read");
        assert_eq!((req.name.as_str(), req.artifact_id.as_str()), ("app 2.0", "a1"));
        assert_eq!(req.targets.groups, ["g1", "g2"]);
        assert_eq!(req.waves, [Wave::Percent(10.0), Wave::Percent(50.0), Wave::Percent(100.0)]);
        assert_eq!(req.success_gate, SuccessGate { percent: 90.0, bake_secs: 900, approval: true });
        assert_eq!((req.failure_gate.failed_percent, req.failure_gate.failed_count), (Some(20.0), None));
        assert_eq!(req.failure_gate.action, GateAction::Rollback);
        assert_eq!((req.max_in_flight, req.install.verify_secs), (Some(50), Some(30)));
        assert!(!req.start && !req.allow_downgrade);
    }

    #[test]
    fn every_unreadable_field_is_named_at_once() {
        let refused =
            request(&form(&[("artifact", "a1"), ("waves", "10%, ten"), ("bake_mins", "soon"), ("action", "panic")]));
        let Err(crate::Error(baton_core::Error::Invalid { errors, .. })) = refused else {
            panic!("refused: {refused:?}")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["/waves", "/success_gate/bake_secs", "/failure_gate/action"]);
        assert!(errors[0].message.contains("`ten` is not a wave"), "{errors:?}");
    }
}
