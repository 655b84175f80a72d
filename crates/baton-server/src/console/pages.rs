//! The console's pages and their live fragments. Each checks the permission it needs, like the
//! API route behind the same data.

use askama::Template;
use axum::{extract::State, response::Response};
use baton_proto::api::events::{Event, EventQuery};

use super::session::{Page, User, render};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::Permission, commands, devices, devices::summary::Summary, events};

/// An event as the overview lists it.
struct EventLine {
    at: String,
    kind: String,
    device: Option<String>,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    summary: Summary,
    commands_in_flight: u64,
    events: Vec<EventLine>,
}

#[derive(Template)]
#[template(path = "overview_live.html")]
struct OverviewLive {
    summary: Summary,
    commands_in_flight: u64,
    events: Vec<EventLine>,
}

async fn overview_data(app: &AppState, user: &User) -> Result<(Summary, u64, Vec<EventLine>), Error> {
    user.need(Permission::DevicesRead)?;
    let scope = &user.principal.scope;
    let summary = devices::summary::summarize(&app.db, scope).await?;
    let in_flight = commands::in_flight(&app.db, scope).await?;
    let query = EventQuery { limit: Some(10), ..EventQuery::default() };
    let events = events::list(&app.db, scope, &query)
        .await?
        .items
        .into_iter()
        .map(|e: Event| EventLine { at: e.at.to_rfc3339(), kind: e.kind, device: e.device_id })
        .collect();
    Ok((summary, in_flight, events))
}

/// `/`: the fleet at a glance, kept live by the event stream.
pub(super) async fn overview(
    Page(user, _): Page<perm::DevicesRead>,
    State(app): State<AppState>,
) -> Result<Response, Error> {
    let (summary, commands_in_flight, events) = overview_data(&app, &user).await?;
    let csrf = user.csrf.clone();
    Ok(render(OverviewPage {
        user: Some(&user),
        csrf: Some(&csrf),
        nav: "overview",
        summary,
        commands_in_flight,
        events,
    }))
}

/// The overview's live part, fetched again by htmx when something changed.
pub(super) async fn overview_live(
    Page(user, _): Page<perm::DevicesRead>,
    State(app): State<AppState>,
) -> Result<Response, Error> {
    let (summary, commands_in_flight, events) = overview_data(&app, &user).await?;
    Ok(render(OverviewLive { summary, commands_in_flight, events }))
}
