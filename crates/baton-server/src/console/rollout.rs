//! One rollout's page: its settings in words, progress per wave and overall, the failure gate's
//! count, the estimate and observed download speed, its devices' executions by state (paged),
//! and the buttons that start, pause, resume (approve the next wave) and cancel it — offered only
//! when the state allows and the user may. Live from the rollout stream, like the list.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::Response,
};
use baton_proto::api::rollouts::{
    Execution, ExecutionAction, ExecutionQuery, ExecutionState, GateAction, PauseReason, Rollout, RolloutState, Wave,
};
use serde::Deserialize;

use super::{
    human,
    rollouts::{Bar, Line},
    session::{Changing, Page, User, render},
};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::Permission, groups, rollouts};

/// A rollout's settings, in words.
struct Facts {
    line: Line,
    artifact_id: String,
    rollback: Option<String>,
    targets: Vec<String>,
    waves: String,
    success_gate: String,
    failure_gate: String,
    in_flight: String,
    install: String,
    by: String,
}

/// One wave's row.
struct WaveLine {
    wave: u32,
    devices: u64,
    current: bool,
    bar: Bar,
}

/// An execution as the table shows it.
struct ExecutionLine {
    device_id: String,
    device: String,
    wave: u32,
    action: &'static str,
    state: &'static str,
    attempt: u32,
    version: String,
    class: &'static str,
    detail: String,
    at: String,
}

impl From<Execution> for ExecutionLine {
    fn from(e: Execution) -> Self {
        ExecutionLine {
            device_id: e.device_id,
            device: e.device_name,
            wave: e.wave,
            action: match e.action {
                ExecutionAction::Install => "install",
                ExecutionAction::Rollback => "rollback",
            },
            state: e.state.as_str(),
            attempt: e.attempt,
            version: e.installed_version.unwrap_or_default(),
            class: e.failure_class.map(|c| c.as_str()).unwrap_or_default(),
            detail: e.detail.map(|d| d.chars().take(500).collect()).unwrap_or_default(),
            at: e.updated_at.to_rfc3339(),
        }
    }
}

/// A button that moves the rollout: the verb it posts and what it says.
struct Action {
    verb: &'static str,
    label: String,
    class: &'static str,
    confirm: Option<&'static str>,
}

/// What a person may do to a rollout in `state`.
fn actions(r: &Rollout) -> Vec<Action> {
    let action = |verb, label: &str, class, confirm| Action { verb, label: label.to_owned(), class, confirm };
    let cancel = action(
        "cancel",
        "Cancel",
        "danger",
        Some("Cancel this rollout? Devices not yet working on it are left out; those installing finish."),
    );
    match r.state {
        RolloutState::Draft => vec![action("start", "Start", "", None), cancel],
        RolloutState::Running => vec![action("pause", "Pause", "secondary", None), cancel],
        RolloutState::Paused if r.paused_reason == Some(PauseReason::Approval) => {
            vec![action("resume", &format!("Approve wave {}", r.current_wave + 1), "", None), cancel]
        }
        RolloutState::Paused => vec![action("resume", "Resume", "", None), cancel],
        RolloutState::RollingBack => vec![cancel],
        _ => Vec::new(),
    }
}

#[derive(Template)]
#[template(path = "rollout.html")]
struct RolloutPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    r: Facts,
    overall: Bar,
    waves: Vec<WaveLine>,
    rollback: Option<Bar>,
    /// Failed of finished, as the failure gate counts them.
    failed: String,
    bandwidth: Option<String>,
    /// What the estimate mostly waits for, in words.
    bound: Option<&'static str>,
    /// The server's aggregate serving rate the estimate used.
    serving: Option<String>,
    /// Until a device reports its speed: what the estimate needs of each device.
    speed_needed: Option<String>,
    actions: Vec<Action>,
    executions: Vec<ExecutionLine>,
    state: String,
    self_url: String,
    next_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct View {
    /// Only the executions in this state.
    state: String,
    cursor: String,
}

/// `/rollouts/{id}`: another tenant's rollout, or none, is a 404 like the API's.
pub(super) async fn page(
    Page(user, _): Page<perm::RolloutsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(view): Query<View>,
) -> Result<Response, Error> {
    show(&app, &user, &id, &view).await
}

/// `POST /rollouts/{id}/{start|pause|resume|cancel}`: answers with the rollout's page.
pub(super) async fn steer(
    Changing(user, _): Changing<perm::RolloutsWrite>,
    State(app): State<AppState>,
    Path((id, verb)): Path<(String, String)>,
) -> Result<Response, Error> {
    let (db, bus, engine, scope) = (&app.db, &app.bus, &app.rollouts, &user.principal.scope);
    match verb.as_str() {
        "start" => rollouts::start(db, bus, engine, scope, &id).await?,
        "pause" => rollouts::pause(db, bus, engine, scope, &id).await?,
        "resume" => rollouts::resume(db, bus, engine, scope, &id).await?,
        "cancel" => rollouts::cancel(db, bus, engine, scope, &id).await?,
        other => return Err(baton_core::Error::NotFound(format!("rollout action `{other}`")).into()),
    };
    show(&app, &user, &id, &View::default()).await
}

async fn show(app: &AppState, user: &User, id: &str, view: &View) -> Result<Response, Error> {
    user.need(Permission::RolloutsRead)?;
    let scope = &user.principal.scope;
    let r = rollouts::get(&app.db, scope, id).await?;
    let state = match view.state.as_str() {
        "" => None,
        s => Some(
            ExecutionState::parse(s)
                .ok_or_else(|| baton_core::Error::invalid("/state", format!("`{s}` is no state")))?,
        ),
    };
    let query = ExecutionQuery {
        state,
        limit: Some(50),
        cursor: Some(view.cursor.clone()).filter(|c| !c.is_empty()),
        ..ExecutionQuery::default()
    };
    let page = rollouts::executions(&app.db, scope, id, &query).await?;
    let p = &r.progress;
    let base = format!("/rollouts/{id}?state={}", view.state);
    let csrf = user.csrf.clone();
    Ok(render(RolloutPage {
        user: Some(user),
        csrf: Some(&csrf),
        nav: "rollouts",
        overall: Bar::of(&p.states),
        waves: p
            .waves
            .iter()
            .map(|w| WaveLine {
                wave: w.wave,
                devices: w.devices,
                current: w.wave == r.current_wave,
                bar: Bar::of(&w.states),
            })
            .collect(),
        rollback: (!p.rollback.is_empty()).then(|| Bar::of(&p.rollback)),
        failed: if p.executed == 0 {
            "none finished yet".into()
        } else {
            format!("{} of {} finished ({:.0}%)", p.failed, p.executed, p.failed as f64 * 100.0 / p.executed as f64)
        },
        bandwidth: p.bandwidth_bytes_per_sec.map(|b| format!("{}/s", human::bytes(b))),
        bound: p.eta_bound.map(|b| b.describe()),
        serving: p.serving_bytes_per_sec.map(|b| format!("{}/s", human::bytes(b))),
        speed_needed: p.eta_device_speed_needed.map(|b| format!("{}/s", human::bytes(b))),
        actions: if user.principal.can(Permission::RolloutsWrite) { actions(&r) } else { Vec::new() },
        executions: page.items.into_iter().map(ExecutionLine::from).collect(),
        state: view.state.clone(),
        next_url: page.next_cursor.map(|c| format!("{base}&cursor={c}")),
        self_url: if view.cursor.is_empty() { base } else { format!("{base}&cursor={}", view.cursor) },
        r: facts(app, user, &r).await?,
    }))
}

async fn facts(app: &AppState, user: &User, r: &Rollout) -> Result<Facts, Error> {
    let mut targets = Vec::new();
    for group in &r.targets.groups {
        let name = if user.principal.can(Permission::GroupsRead) {
            match groups::get(&app.db, &user.principal.scope, group).await {
                Ok(g) => g.name,
                Err(baton_core::Error::NotFound(_)) => format!("{group} (deleted since)"),
                Err(e) => return Err(e.into()),
            }
        } else {
            group.clone()
        };
        targets.push(format!("group {name}"));
    }
    if let Some(labels) = &r.targets.labels {
        targets.push(format!("labels {labels}"));
    }
    if !r.targets.device_ids.is_empty() {
        let n = r.targets.device_ids.len();
        targets.push(format!("{n} device{} by id", if n == 1 { "" } else { "s" }));
    }
    let waves = if r.waves.is_empty() {
        "one wave of every device".to_owned()
    } else {
        r.waves.iter().map(wave_text).collect::<Vec<_>>().join(", ")
    };
    let s = &r.success_gate;
    let mut success_gate = format!("next wave when {}% of a wave succeeded", s.percent);
    if s.bake_secs > 0 {
        let bake = if s.bake_secs.is_multiple_of(60) {
            format!("{} min", s.bake_secs / 60)
        } else {
            format!("{} s", s.bake_secs)
        };
        success_gate += &format!(", after baking {bake}");
    }
    if s.approval {
        success_gate += ", and someone approves";
    }
    let f = &r.failure_gate;
    let mut limits = Vec::new();
    if let Some(p) = f.failed_percent {
        limits.push(format!("{p}% of finished executions failed"));
    }
    if let Some(n) = f.failed_count {
        limits.push(format!("{n} failed"));
    }
    let act = match f.action {
        GateAction::Pause => "pauses",
        GateAction::Abort => "aborts",
        GateAction::Rollback => "rolls back",
    };
    let failure_gate = if limits.is_empty() {
        "never fires (no limit set)".to_owned()
    } else {
        format!("{act} when {}, once {} finished", limits.join(" or "), f.min_executed)
    };
    let i = &r.install;
    let mut install = i.path.clone().unwrap_or_else(|| "the device's installer".into());
    if let Some(mode) = &i.mode {
        install += &format!(", mode {mode}");
    }
    if let Some(secs) = i.verify_secs {
        install += &format!(", watched {secs} s");
    }
    if r.allow_downgrade {
        install += ", downgrades allowed";
    }
    Ok(Facts {
        line: Line::from(r),
        artifact_id: r.artifact.id.clone(),
        rollback: r.rollback_artifact.as_ref().map(|a| format!("{}@{}", a.name, a.version)),
        targets,
        waves,
        success_gate,
        failure_gate,
        in_flight: r.max_in_flight.map_or_else(|| "no limit".to_owned(), |n| n.to_string()),
        install,
        by: r.created_by.clone().unwrap_or_default(),
    })
}

/// A wave as the form and the page write it: `10%` or `25`.
fn wave_text(w: &Wave) -> String {
    match w {
        Wave::Percent(p) => format!("{p}%"),
        Wave::Count(n) => n.to_string(),
    }
}
