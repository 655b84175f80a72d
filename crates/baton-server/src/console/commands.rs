//! The commands page: every command request (a batch: one command for one or many devices),
//! newest first, with its progress by state, live, and cancel; and one batch's page: each
//! device's command with its state and output, cancel one or all that have not finished.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};
use baton_proto::api::{
    access::PageQuery,
    commands::{CommandBatch, CommandQuery, CommandSpec, CommandState},
};
use serde::Deserialize;

use super::form::Form;
use super::session::{Changing, Page, User, render};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::Permission, commands, devices};

/// The states in the order a progress bar shows them.
const ORDER: [CommandState; 7] = [
    CommandState::Succeeded,
    CommandState::Failed,
    CommandState::Expired,
    CommandState::Canceled,
    CommandState::Acked,
    CommandState::Sent,
    CommandState::Queued,
];

/// A batch as the list shows it.
struct BatchLine {
    id: String,
    what: String,
    total: u64,
    /// (state, count, percent of the total) for the states present, in [`ORDER`].
    parts: Vec<(&'static str, u64, f64)>,
    finished: u64,
    open: bool,
    by: String,
    at: String,
}

impl From<CommandBatch> for BatchLine {
    fn from(b: CommandBatch) -> Self {
        let total = b.total.max(1) as f64;
        let parts = ORDER
            .iter()
            .filter_map(|s| {
                let n = *b.states.get(s.as_str())?;
                (n > 0).then(|| (s.as_str(), n, (n as f64 * 1000.0 / total).round() / 10.0))
            })
            .collect();
        let finished = b.finished();
        BatchLine {
            id: b.id,
            what: describe(&b.command),
            total: b.total,
            parts,
            finished,
            open: finished < b.total,
            by: b.created_by.unwrap_or_default(),
            at: b.created_at.to_rfc3339(),
        }
    }
}

/// A command in a few words: its kind and what it runs.
fn describe(command: &CommandSpec) -> String {
    match command {
        CommandSpec::Exec { shell: Some(line), .. } => format!("exec: {line}"),
        CommandSpec::Exec { program: Some(p), args, .. } => format!("exec: {p} {}", args.join(" ")),
        CommandSpec::Custom { name, .. } => format!("custom: {name}"),
        other => other.kind().to_owned(),
    }
}

#[derive(Template)]
#[template(path = "commands.html")]
struct CommandsPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    batches: Vec<BatchLine>,
    next_url: Option<String>,
    self_url: String,
    can_cancel: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Paging {
    cursor: String,
}

/// `/commands`.
pub(super) async fn page(
    Page(user, _): Page<perm::CommandsRead>,
    State(app): State<AppState>,
    Query(paging): Query<Paging>,
) -> Result<Response, Error> {
    let cursor = Some(paging.cursor.clone()).filter(|c| !c.is_empty());
    let query = PageQuery { limit: Some(25), cursor };
    let page = commands::batches(&app.db, &user.principal.scope, &query).await?;
    let csrf = user.csrf.clone();
    Ok(render(CommandsPage {
        user: Some(&user),
        csrf: Some(&csrf),
        nav: "commands",
        batches: page.items.into_iter().map(BatchLine::from).collect(),
        next_url: page.next_cursor.map(|c| format!("/commands?cursor={c}")),
        self_url: if paging.cursor.is_empty() {
            "/commands".into()
        } else {
            format!("/commands?cursor={}", paging.cursor)
        },
        can_cancel: user.principal.can(Permission::CommandsWrite),
    }))
}

/// A device's command as the batch's page lists it.
struct Line {
    id: String,
    device_id: String,
    device: String,
    state: &'static str,
    open: bool,
    output: Option<String>,
    at: String,
}

#[derive(Template)]
#[template(path = "batch.html")]
struct BatchPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    batch: BatchLine,
    lines: Vec<Line>,
    state: String,
    next_url: Option<String>,
    self_url: String,
    can_cancel: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct BatchView {
    /// Only the commands in this state.
    state: String,
    cursor: String,
}

/// `/commands/{batch}`.
pub(super) async fn batch_page(
    Page(user, _): Page<perm::CommandsRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(view): Query<BatchView>,
) -> Result<Response, Error> {
    show_batch(&app, &user, &id, &view).await
}

async fn show_batch(app: &AppState, user: &User, id: &str, view: &BatchView) -> Result<Response, Error> {
    user.need(Permission::CommandsRead)?;
    let scope = &user.principal.scope;
    let batch = commands::batch(&app.db, scope, id).await?;
    let query = CommandQuery {
        batch: Some(id.to_owned()),
        state: Some(view.state.clone()).filter(|s| !s.is_empty()),
        cursor: Some(view.cursor.clone()).filter(|c| !c.is_empty()),
        limit: Some(50),
        ..CommandQuery::default()
    };
    let page = commands::list(&app.db, scope, &query).await?;
    let ids: Vec<String> = page.items.iter().map(|c| c.device_id.clone()).collect();
    let names = devices::names(&app.db, scope, &ids).await?;
    let lines = page
        .items
        .into_iter()
        .map(|c| Line {
            device: names.get(&c.device_id).cloned().unwrap_or_else(|| c.device_id.clone()),
            device_id: c.device_id,
            id: c.id,
            state: c.state.as_str(),
            open: !c.state.is_final(),
            output: c.result.as_ref().and_then(|r| super::device::output_text(r, 2000)),
            at: c.finished_at.unwrap_or(c.created_at).to_rfc3339(),
        })
        .collect();
    let base = format!("/commands/{id}?state={}", view.state);
    let csrf = user.csrf.clone();
    Ok(render(BatchPage {
        user: Some(user),
        csrf: Some(&csrf),
        nav: "commands",
        batch: BatchLine::from(batch),
        lines,
        state: view.state.clone(),
        next_url: page.next_cursor.map(|c| format!("{base}&cursor={c}")),
        self_url: if view.cursor.is_empty() { base } else { format!("{base}&cursor={}", view.cursor) },
        can_cancel: user.principal.can(Permission::CommandsWrite),
    }))
}

#[derive(Deserialize)]
pub(super) struct CancelForm {
    /// One command of the batch; empty: all of them that have not finished.
    #[serde(default)]
    command: String,
}

/// `POST /commands/{batch}/cancel`: answers with the batch's page.
pub(super) async fn cancel(
    Changing(user, _): Changing<perm::CommandsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Result<Response, Error> {
    let scope = &user.principal.scope;
    if form.command.is_empty() {
        commands::cancel_batch(&app.db, scope, &id).await?;
    } else {
        let command = commands::get(&app.db, scope, &form.command).await?;
        if command.batch_id != id {
            return Err(baton_core::Error::NotFound(format!("command {} in batch {id}", form.command)).into());
        }
        commands::cancel(&app.db, scope, &form.command).await?;
    }
    let page = show_batch(&app, &user, &id, &BatchView::default()).await?;
    Ok(([("hx-trigger", "baton:changed")], page).into_response())
}
