//! A device's page: what it is and reports (status, connection, inventory, latest telemetry),
//! its commands and its events — refreshed live from the event stream.

use askama::Template;
use axum::{
    Form,
    extract::{Path, State},
    http::HeaderMap,
    response::Response,
};
use baton_proto::api::{
    commands::{CommandCreate, CommandQuery, CommandSpec, CommandTarget},
    events::EventQuery,
};
use serde::Deserialize;

use super::session::{User, render};
use crate::{Error, access::Permission, commands, devices, events, http::AppState, telemetry};

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
    labels: Vec<String>,
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
    inventory: Vec<(String, String)>,
    telemetry: Vec<(String, f64)>,
    commands: Vec<CommandLine>,
    events: Vec<(String, String)>,
}

/// `/devices/{id}`: another tenant's device, or none, is a 404 like the API's.
pub(super) async fn page(user: User, State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, Error> {
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
    user: User,
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<CommandForm>,
) -> Result<Response, Error> {
    user.check_csrf(&headers)?;
    user.need(Permission::CommandsWrite)?;
    let command = match form.kind.as_str() {
        "ping" => CommandSpec::Ping,
        "reboot" => CommandSpec::Reboot,
        "refresh-inventory" => CommandSpec::RefreshInventory,
        "exec" => CommandSpec::Exec { program: None, args: Vec::new(), shell: Some(form.shell), timeout_secs: None },
        "custom" => CommandSpec::Custom { name: form.name, params: serde_json::Value::Null },
        other => return Err(Error::invalid("/kind", format!("`{other}` is not a command this form sends"))),
    };
    let target = CommandTarget { device_ids: vec![id.clone()], ..CommandTarget::default() };
    let req = CommandCreate { target, command, ttl_secs: None, idempotency_key: None };
    commands::create(&app.db, &app.bus, &user.principal.scope, &user.principal, req).await?;
    show(&app, &user, &id).await
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
    let commands = commands::list(&app.db, scope, &query)
        .await?
        .items
        .into_iter()
        .map(|c| CommandLine {
            what: match &c.command {
                baton_proto::api::commands::CommandSpec::Custom { name, .. } => format!("custom {name}"),
                other => other.kind().to_owned(),
            },
            state: c.state.as_str(),
            at: c.created_at.to_rfc3339(),
            output: c.result.as_ref().and_then(|r| {
                let text = if let Some(e) = &r.error {
                    e.clone()
                } else if !r.stdout.is_empty() || !r.stderr.is_empty() {
                    format!("{}{}", r.stdout, r.stderr)
                } else {
                    r.output.as_ref().map(ToString::to_string)?
                };
                Some(text.chars().take(4000).collect())
            }),
        })
        .collect();
    let query = EventQuery { device: Some(id.clone()), limit: Some(20), ..EventQuery::default() };
    let events =
        events::list(&app.db, scope, &query).await?.items.into_iter().map(|e| (e.at.to_rfc3339(), e.kind)).collect();
    let facts = Facts {
        id: d.id,
        name: d.name,
        serial: d.serial.unwrap_or_else(|| "–".into()),
        status: d.status.as_str(),
        online: d.connectivity.online,
        last_seen: d.connectivity.last_seen_at.map(|t| t.to_rfc3339()),
        transport: d.transport.unwrap_or_else(|| "not connected yet".into()),
        gateway: d.gateway_id,
        labels: d.labels.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
    };
    let csrf = user.csrf.clone();
    Ok(render(DevicePage {
        user: Some(user),
        csrf: Some(&csrf),
        nav: "devices",
        can_command: user.principal.can(Permission::CommandsWrite) && facts.status == "active",
        device: facts,
        inventory,
        telemetry,
        commands,
        events,
    }))
}
