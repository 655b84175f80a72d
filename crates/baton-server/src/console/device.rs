//! A device's page: what it is and reports (status, connection, inventory, latest telemetry and
//! a chart of any metric over an hour, a day or a week), its commands and its events — live
//! from the event and telemetry streams — and what an operator changes from it: labels,
//! groups, a command, decommissioning; ways to its terminal, its screen (viewed or controlled)
//! and its web page, its latest recorded sessions and its support bundles for those allowed them.

use std::collections::BTreeMap;

use askama::Template;
use axum::{
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use baton_proto::api::{
    commands::{CommandCreate, CommandQuery, CommandResult, CommandSpec, CommandTarget},
    devices::{DeviceStatus, DeviceUpdate},
    events::EventQuery,
    groups::GroupQuery,
    remote::SessionState,
};
use serde::Deserialize;

use super::form::Form;
use super::session::{Changing, Page, User, render};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::Permission, commands, devices, events, groups, remote, telemetry};

/// The device as the page's header shows it.
struct Facts {
    id: String,
    name: String,
    serial: String,
    status: &'static str,
    online: bool,
    last_seen: Option<String>,
    transport: String,
    gateway: Option<String>,
    labels: Vec<(String, String)>,
    /// The groups it is directly in: id and name.
    groups: Vec<(String, String)>,
}

/// A command as the history lists it.
struct CommandLine {
    what: String,
    state: &'static str,
    at: String,
    /// What it printed or answered, once finished (cut to a screenful).
    output: Option<String>,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    device: Facts,
    can_command: bool,
    /// The way to the device's terminal.
    can_terminal: bool,
    /// The ways to the device's screen: viewing it, controlling it.
    can_screen_view: bool,
    can_screen_control: bool,
    can_logs: bool,
    /// The way to the device's files.
    can_files: bool,
    /// The form that opens a web page on the device in a new tab.
    can_web: bool,
    /// Labels, groups and decommissioning.
    can_edit: bool,
    /// Groups it could join (id, name), for the "add to group" choice.
    other_groups: Vec<(String, String)>,
    inventory: Vec<(String, String)>,
    telemetry: Vec<(String, f64)>,
    commands: Vec<CommandLine>,
    events: Vec<(String, String)>,
    /// Its latest recorded sessions, for those who may replay them.
    recordings: Option<Vec<super::recordings::Line>>,
    /// Sessions open on the device now, for whom may watch them: (id, who, since).
    open_sessions: Option<Vec<OpenSession>>,
    /// Its latest support bundles and the button for a new one, for those with `remote:logs`.
    bundles: Option<super::bundles::OnDevice>,
}

/// `/devices/{id}`: another tenant's device, or none, is a 404 like the API's.
pub(super) async fn page(
    Page(user, _): Page<perm::DevicesRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    show(&app, &user, &id).await
}

/// The command form a device page shows to those who may send commands.
#[derive(Deserialize)]
pub(super) struct CommandForm {
    kind: String,
    #[serde(default)]
    shell: String,
    #[serde(default)]
    name: String,
}

/// `POST /devices/{id}/commands`: queues a command from the page's form and answers with the
/// page, whose command list then follows the command live to its output.
pub(super) async fn send_command(
    Changing(user, _): Changing<perm::CommandsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<CommandForm>,
) -> Result<Response, Error> {
    let command = command_from_form(&form.kind, form.shell, form.name)?;
    let target = CommandTarget { device_ids: vec![id.clone()], ..CommandTarget::default() };
    let req = CommandCreate { target, command, ttl_secs: None, idempotency_key: None };
    commands::create(&app.db, &app.bus, &user.principal.scope, &user.principal, req).await?;
    show(&app, &user, &id).await
}

/// The commands the console's forms offer, from their fields.
pub(super) fn command_from_form(kind: &str, shell: String, name: String) -> Result<CommandSpec, Error> {
    Ok(match kind {
        "ping" => CommandSpec::Ping,
        "reboot" => CommandSpec::Reboot,
        "refresh-inventory" => CommandSpec::RefreshInventory,
        "exec" if shell.trim().is_empty() => {
            return Err(baton_core::Error::invalid("/shell", "give the shell line to run").into());
        }
        "exec" => CommandSpec::Exec { program: None, args: Vec::new(), shell: Some(shell), timeout_secs: None },
        "custom" => CommandSpec::Custom { name, params: serde_json::Value::Null },
        other => {
            return Err(
                baton_core::Error::invalid("/kind", format!("`{other}` is not a command this form sends")).into()
            );
        }
    })
}

/// Adds (`set` = `key=value`) or removes (`remove` = `key`) one label.
#[derive(Deserialize)]
pub(super) struct LabelForm {
    #[serde(default)]
    set: String,
    #[serde(default)]
    remove: String,
}

/// `POST /devices/{id}/labels`.
pub(super) async fn edit_labels(
    Changing(user, _): Changing<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<LabelForm>,
) -> Result<Response, Error> {
    let mut labels = BTreeMap::new();
    if !form.remove.is_empty() {
        labels.insert(form.remove, None);
    } else {
        let (key, value) = form.set.split_once('=').ok_or_else(|| {
            baton_core::Error::invalid("/labels", "write the label as key=value, e.g. store=berlin-12")
        })?;
        labels.insert(key.trim().to_owned(), Some(value.trim().to_owned()));
    }
    devices::update(&app.db, &user.principal.scope, &id, DeviceUpdate { name: None, labels }).await?;
    show(&app, &user, &id).await
}

/// Puts the device in a group or takes it out.
#[derive(Deserialize)]
pub(super) struct GroupForm {
    group: String,
    action: String,
}

/// `POST /devices/{id}/groups`.
pub(super) async fn edit_groups(
    Changing(user, _): Changing<perm::GroupsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<GroupForm>,
) -> Result<Response, Error> {
    let scope = &user.principal.scope;
    if form.group.is_empty() {
        return Err(baton_core::Error::invalid("/group", "choose a group").into());
    }
    let ids = [id.clone()];
    match form.action.as_str() {
        "add" => groups::add_members(&app.db, scope, &form.group, &ids).await?,
        "remove" => groups::remove_members(&app.db, scope, &form.group, &ids).await?,
        other => {
            return Err(baton_core::Error::invalid("/action", format!("`{other}` is neither add nor remove")).into());
        }
    };
    show(&app, &user, &id).await
}

/// `POST /devices/{id}/decommission`: retires the device, then the page is loaded again (its
/// controls change with its status).
pub(super) async fn decommission(
    Changing(user, _): Changing<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    baton_core::lifecycle::decommission(&app.db, &app.bus, &user.principal.scope, &id, false).await?;
    Ok(([("hx-refresh", "true")], show(&app, &user, &id).await?).into_response())
}

async fn show(app: &AppState, user: &User, id: &str) -> Result<Response, Error> {
    let id = id.to_owned();
    user.need(Permission::DevicesRead)?;
    let scope = &user.principal.scope;
    let d = devices::get(&app.db, scope, &id).await?;
    let inventory = devices::presence::inventory(&app.db, scope, &id).await?;
    let inventory = match inventory.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::Object(fields))) => fields
            .into_iter()
            .filter(|(_, v)| !(v.is_null() || v.as_array().is_some_and(Vec::is_empty)))
            .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect(),
        _ => Vec::new(),
    };
    let telemetry = telemetry::latest(&app.db, scope, &id).await?.metrics.into_iter().collect();
    let query = CommandQuery { device: Some(id.clone()), limit: Some(20), ..CommandQuery::default() };
    let commands = commands::list(&app.db, scope, &query).await?.items.into_iter().map(command_line).collect();
    let query = EventQuery { device: Some(id.clone()), limit: Some(20), ..EventQuery::default() };
    let events =
        events::list(&app.db, scope, &query).await?.items.into_iter().map(|e| (e.at.to_rfc3339(), e.kind)).collect();
    let mut member_of = Vec::new();
    for group in &d.groups {
        member_of.push((group.clone(), groups::get(&app.db, scope, group).await?.name));
    }
    let can_edit = user.principal.can(Permission::DevicesWrite) && d.status != DeviceStatus::Decommissioned;
    let can_command = user.principal.can(Permission::CommandsWrite) && d.status == DeviceStatus::Active;
    let can_terminal = user.principal.can(Permission::RemoteTerminal) && d.status == DeviceStatus::Active;
    let can_screen_view = user.principal.can(Permission::RemoteScreenView) && d.status == DeviceStatus::Active;
    let can_screen_control = user.principal.can(Permission::RemoteScreenControl) && d.status == DeviceStatus::Active;
    let can_logs = user.principal.can(Permission::RemoteLogs) && d.status == DeviceStatus::Active;
    let can_files = user.principal.can(Permission::RemoteFiles) && d.status == DeviceStatus::Active;
    let can_web = user.principal.can(Permission::RemoteTunnel) && d.status == DeviceStatus::Active;
    let recordings = if user.principal.can(Permission::RemoteRecordings) {
        Some(super::recordings::of_device(app, scope, &id).await?)
    } else {
        None
    };
    let open_sessions = if user.principal.can(Permission::RemoteWatch) {
        let page = remote::list(&app.db, scope, &id, None, None).await?;
        let open = page.items.into_iter().filter(|s| s.state == SessionState::Open);
        Some(open.map(OpenSession::of).collect())
    } else {
        None
    };
    let bundles = super::bundles::of_device(app, user, &id, d.status).await?;
    let other_groups = if can_edit && user.principal.can(Permission::GroupsWrite) {
        let query = GroupQuery { limit: Some(baton_core::pagination::MAX_LIMIT), ..GroupQuery::default() };
        groups::list(&app.db, scope, &query)
            .await?
            .items
            .into_iter()
            .filter(|g| !d.groups.contains(&g.id))
            .map(|g| (g.id, g.name))
            .collect()
    } else {
        Vec::new()
    };
    let facts = Facts {
        id: d.id,
        name: d.name,
        serial: d.serial.unwrap_or_else(|| "–".into()),
        status: d.status.as_str(),
        online: d.connectivity.online,
        last_seen: d.connectivity.last_seen_at.map(|t| t.to_rfc3339()),
        transport: d.transport.unwrap_or_else(|| "not connected yet".into()),
        gateway: d.gateway_id,
        labels: d.labels.into_iter().collect(),
        groups: member_of,
    };
    let csrf = user.csrf.clone();
    Ok(render(DevicePage {
        user: Some(user),
        csrf: Some(&csrf),
        nav: "devices",
        can_command,
        can_terminal,
        can_screen_view,
        can_screen_control,
        can_logs,
        can_files,
        can_web,
        can_edit,
        other_groups,
        device: facts,
        inventory,
        telemetry,
        commands,
        events,
        recordings,
        open_sessions,
        bundles,
    }))
}

fn command_line(c: baton_proto::api::commands::Command) -> CommandLine {
    CommandLine {
        what: match &c.command {
            CommandSpec::Custom { name, .. } => format!("custom {name}"),
            other => other.kind().to_owned(),
        },
        state: c.state.as_str(),
        at: c.created_at.to_rfc3339(),
        output: c.result.as_ref().and_then(|r| output_text(r, 4000)),
    }
}

/// What a finished command printed or answered, cut to `max_chars`: its error, else its
/// output streams, else its structured answer.
pub(super) fn output_text(r: &CommandResult, max_chars: usize) -> Option<String> {
    let text = match &r.error {
        Some(e) => e.clone(),
        None if !r.stdout.is_empty() || !r.stderr.is_empty() => format!("{}{}", r.stdout, r.stderr),
        None => r.output.as_ref().map(ToString::to_string)?,
    };
    Some(text.chars().take(max_chars).collect())
}

/// An open remote session as the device page lists it; only a terminal can be watched.
struct OpenSession {
    id: String,
    what: String,
    opened_by: String,
    since: String,
    watchable: bool,
}

impl OpenSession {
    fn of(s: baton_proto::api::remote::RemoteSession) -> Self {
        OpenSession {
            what: s.what(),
            watchable: s.kind == baton_proto::api::remote::SessionKind::Terminal,
            since: s.opened_at.unwrap_or(s.created_at).to_rfc3339(),
            id: s.id,
            opened_by: s.opened_by,
        }
    }
}
