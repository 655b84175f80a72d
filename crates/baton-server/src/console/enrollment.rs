//! The enrollment page: enrollment tokens (create — the secret and the agent's install line shown
//! once — and revoke), the devices waiting for approval (approve, reject), and serials
//! pre-registered from a CSV file (the same file `baton devices import` reads).

use std::collections::HashMap;

use askama::Template;
use axum::{
    extract::{Path, State},
    http::HeaderMap,
    response::Response,
};
use baton_proto::api::{
    devices::{DeviceQuery, DeviceStatus},
    enrollment::EnrollmentTokenCreate,
};
use serde::Deserialize;

use super::form::Form;
use super::session::{Changing, Page, User, render};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::Permission, devices, enrollment, groups};

struct TokenLine {
    id: String,
    name: String,
    uses: String,
    requires_approval: bool,
    state: &'static str,
}

struct PendingLine {
    id: String,
    name: String,
    serial: String,
    since: String,
}

/// A token just created: its secret, this once.
struct Created {
    name: String,
    install: String,
}

#[derive(Template)]
#[template(path = "enrollment.html")]
struct EnrollmentPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    created: Option<Created>,
    /// What the last import did.
    notice: Option<String>,
    can_import: bool,
    can_enroll: bool,
    can_approve: bool,
    tokens: Vec<TokenLine>,
    pending: Vec<PendingLine>,
}

pub(super) async fn page(
    Page(user, _): Page<perm::EnrollmentRead>,
    State(app): State<AppState>,
) -> Result<Response, Error> {
    show(&app, &user, None, None).await
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    name: String,
    #[serde(default)]
    max_uses: String,
    #[serde(default)]
    requires_approval: Option<String>,
}

pub(super) async fn create_token(
    Changing(user, _): Changing<perm::EnrollmentWrite>,
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, Error> {
    let max_uses = match form.max_uses.trim() {
        "" => None,
        n => Some(n.parse::<u32>().map_err(|_| baton_core::Error::invalid("/max_uses", "must be a whole number"))?),
    };
    let req = EnrollmentTokenCreate {
        name: form.name,
        requires_approval: form.requires_approval.is_some(),
        max_uses,
        ..EnrollmentTokenCreate::default()
    };
    let created = enrollment::create_token(&app.db, &user.principal.scope, &user.principal, req).await?;
    let server = server_url(&app, &headers);
    let install = format!("baton-agent run --server {server} --token {}", created.secret);
    show(&app, &user, Some(Created { name: created.token.name, install }), None).await
}

pub(super) async fn revoke_token(
    Changing(user, _): Changing<perm::EnrollmentWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    enrollment::revoke_token(&app.db, &user.principal.scope, &id).await?;
    show(&app, &user, None, None).await
}

pub(super) async fn approve(
    Changing(user, _): Changing<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    decide(&app, &user, &id, true).await
}

pub(super) async fn reject(
    Changing(user, _): Changing<perm::DevicesWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    decide(&app, &user, &id, false).await
}

/// Approves or rejects a pending device, then shows the page again.
async fn decide(app: &AppState, user: &User, id: &str, approve: bool) -> Result<Response, Error> {
    user.need(Permission::DevicesWrite)?;
    if approve {
        devices::approve(&app.db, &app.bus, &user.principal.scope, id).await?;
    } else {
        baton_core::lifecycle::reject(&app.db, &app.bus, &user.principal.scope, id).await?;
    }
    show(app, user, None, None).await
}

#[derive(Deserialize)]
pub(super) struct ImportForm {
    csv: String,
}

/// `POST /enrollment/import`: pre-registers the devices of a CSV file (serial, name, groups by
/// name, labels), all or nothing; an error names the file's line.
pub(super) async fn import(
    Changing(user, _): Changing<perm::DevicesWrite>,
    State(app): State<AppState>,
    Form(form): Form<ImportForm>,
) -> Result<Response, Error> {
    let scope = &user.principal.scope;
    let rows = baton_proto::import::read(&form.csv).map_err(|e| baton_core::Error::invalid("/csv", e))?;
    let mut group_ids: HashMap<String, String> = HashMap::new();
    let mut lines = Vec::with_capacity(rows.len());
    let mut devices = Vec::with_capacity(rows.len());
    for mut row in rows {
        for name in &row.group_names {
            if !group_ids.contains_key(name) {
                let id = groups::find_by_name(&app.db, scope, name).await?.ok_or_else(|| {
                    baton_core::Error::invalid("/csv", format!("line {}: no group is named `{name}`", row.line))
                })?;
                group_ids.insert(name.clone(), id.id);
            }
            row.device.groups.push(group_ids[name].clone());
        }
        lines.push(row.line);
        devices.push(row.device);
    }
    let created = devices::import(&app.db, &app.bus, scope, devices).await.map_err(|e| match e {
        baton_core::Error::Invalid { detail, errors } => {
            let located: Vec<String> =
                errors.iter().filter_map(|f| baton_proto::import::locate(&f.field, &f.message, &lines)).collect();
            let words = if located.is_empty() { detail } else { located.join("; ") };
            baton_core::Error::invalid("/csv", words)
        }
        other => other,
    })?;
    let n = created.len();
    let notice = format!("Imported {n} device{}; they wait for their first connection.", if n == 1 { "" } else { "s" });
    show(&app, &user, None, Some(notice)).await
}

/// Where devices reach this server: the configured public URL, else the address the browser used.
fn server_url(app: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &app.settings.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let scheme = if app.settings.tls_enabled() { "https" } else { "http" };
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("{scheme}://{host}")
}

async fn show(
    app: &AppState,
    user: &User,
    created: Option<Created>,
    notice: Option<String>,
) -> Result<Response, Error> {
    user.need(Permission::EnrollmentRead)?;
    let scope = &user.principal.scope;
    let page = enrollment::list_tokens(&app.db, scope, Some(100), None).await?;
    let now = chrono::Utc::now();
    let tokens = page
        .items
        .into_iter()
        .map(|t| TokenLine {
            state: if t.revoked_at.is_some() {
                "revoked"
            } else if t.expires_at.is_some_and(|e| e <= now) {
                "expired"
            } else if t.max_uses.is_some_and(|m| t.uses >= m) {
                "used up"
            } else {
                "usable"
            },
            uses: match t.max_uses {
                Some(m) => format!("{} of {m}", t.uses),
                None => t.uses.to_string(),
            },
            id: t.id,
            name: t.name,
            requires_approval: t.requires_approval,
        })
        .collect();
    let query = DeviceQuery {
        status: Some(DeviceStatus::Pending.as_str().into()),
        sort: Some("-created_at".into()),
        limit: Some(100),
        ..DeviceQuery::default()
    };
    let pending = devices::list::list(&app.db, scope, &query)
        .await?
        .items
        .into_iter()
        .map(|d| PendingLine {
            id: d.id,
            name: d.name,
            serial: d.serial.unwrap_or_default(),
            since: d.created_at.to_rfc3339(),
        })
        .collect();
    let csrf = user.csrf.clone();
    Ok(render(EnrollmentPage {
        user: Some(user),
        csrf: Some(&csrf),
        nav: "enrollment",
        created,
        notice,
        can_import: user.principal.can(Permission::DevicesWrite),
        can_enroll: user.principal.can(Permission::EnrollmentWrite),
        can_approve: user.principal.can(Permission::DevicesWrite),
        tokens,
        pending,
    }))
}
