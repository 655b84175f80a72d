//! The devices page: the registry searched, filtered, sorted and paged by the server (never the
//! whole fleet in the browser), with the filters in the URL so a view can be shared and the
//! list refreshed live as devices come and go. Devices picked on the page can be added to a
//! group, sent a command or decommissioned together.

use askama::Template;
use axum::{
    body::Bytes,
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use baton_proto::api::{
    commands::{CommandCreate, CommandTarget},
    devices::{Device, DeviceQuery},
    groups::GroupQuery,
};
use serde::{Deserialize, Serialize};

use super::session::{Changing, Page, User, render};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::Permission, commands, devices, groups};

/// Most devices one bulk action takes (a page holds 50).
const MAX_BULK: usize = 500;

/// The filters as an HTML form sends them: empty fields are "any".
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub(super) struct Filters {
    q: String,
    status: String,
    online: String,
    os: String,
    group: String,
    labels: String,
    sort: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    cursor: String,
}

impl Filters {
    fn query(&self) -> DeviceQuery {
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        DeviceQuery {
            q: some(&self.q),
            status: some(&self.status),
            online: match self.online.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            os: some(&self.os),
            group: some(&self.group),
            labels: some(&self.labels),
            sort: some(&self.sort),
            cursor: some(&self.cursor),
            limit: Some(50),
            ..DeviceQuery::default()
        }
    }

    fn filtered(&self) -> bool {
        [&self.q, &self.status, &self.online, &self.os, &self.group, &self.labels].iter().any(|s| !s.trim().is_empty())
    }

    /// This view's URL, with another cursor.
    fn url(&self, cursor: Option<&str>) -> String {
        let mut copy = Filters { cursor: cursor.unwrap_or_default().to_owned(), ..self.clone_fields() };
        if copy.sort.is_empty() {
            copy.sort = "name".into();
        }
        let pairs: Vec<String> = [
            ("q", &copy.q),
            ("status", &copy.status),
            ("online", &copy.online),
            ("os", &copy.os),
            ("group", &copy.group),
            ("labels", &copy.labels),
            ("sort", &copy.sort),
            ("cursor", &copy.cursor),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
        format!("/devices?{}", pairs.join("&"))
    }

    fn clone_fields(&self) -> Filters {
        Filters {
            q: self.q.clone(),
            status: self.status.clone(),
            online: self.online.clone(),
            os: self.os.clone(),
            group: self.group.clone(),
            labels: self.labels.clone(),
            sort: self.sort.clone(),
            cursor: String::new(),
        }
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A device as a row shows it.
struct Row {
    id: String,
    name: String,
    serial: String,
    status: &'static str,
    online: bool,
    last_seen: Option<String>,
    os: String,
    transport: String,
    labels: Vec<String>,
}

impl From<Device> for Row {
    fn from(d: Device) -> Self {
        Row {
            id: d.id,
            name: d.name,
            serial: d.serial.unwrap_or_default(),
            status: d.status.as_str(),
            online: d.connectivity.online,
            last_seen: d.connectivity.last_seen_at.map(|t| t.to_rfc3339()),
            os: d.os_family.unwrap_or_else(|| "–".into()),
            transport: d.transport.unwrap_or_else(|| "–".into()),
            labels: d.labels.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    form: &'a Filters,
    devices: Vec<Row>,
    error: Option<String>,
    filtered: bool,
    /// The tenant's groups for the filter (id, name); empty when the user may not read groups.
    groups: Vec<(String, String)>,
    self_url: String,
    next_url: Option<String>,
    bulk: Bulk,
}

/// What the user may do to many devices at once; the page offers only that.
struct Bulk {
    group: bool,
    command: bool,
    decommission: bool,
    /// The groups devices can be added to (id, name).
    groups: Vec<(String, String)>,
}

impl Bulk {
    fn any(&self) -> bool {
        self.group || self.command || self.decommission
    }
}

/// `/devices`: one page of the registry; a filter the server refuses (a bad label selector,
/// say) is answered on the page with the server's words.
pub(super) async fn page(
    Page(user, _): Page<perm::DevicesRead>,
    State(app): State<AppState>,
    Query(filters): Query<Filters>,
) -> Result<Response, Error> {
    let (devices, next, error) = match devices::list::list(&app.db, &user.principal.scope, &filters.query()).await {
        Ok(page) => (page.items.into_iter().map(Row::from).collect(), page.next_cursor, None),
        Err(baton_core::Error::Invalid { detail, errors }) => {
            let words = errors.first().map(|e| format!("{}: {}", e.field, e.message)).unwrap_or(detail);
            (Vec::new(), None, Some(words))
        }
        Err(e) => return Err(e.into()),
    };
    let can = |p| user.principal.can(p);
    let groups: Vec<(String, String)> = if can(Permission::GroupsRead) {
        let query = GroupQuery { limit: Some(baton_core::pagination::MAX_LIMIT), ..GroupQuery::default() };
        groups::list(&app.db, &user.principal.scope, &query).await?.items.into_iter().map(|g| (g.id, g.name)).collect()
    } else {
        Vec::new()
    };
    let bulk = Bulk {
        group: can(Permission::GroupsWrite) && !groups.is_empty(),
        command: can(Permission::CommandsWrite),
        decommission: can(Permission::DevicesWrite),
        groups: if can(Permission::GroupsWrite) { groups.clone() } else { Vec::new() },
    };
    let csrf = user.csrf.clone();
    Ok(render(DevicesPage {
        user: Some(&user),
        csrf: Some(&csrf),
        nav: "devices",
        form: &filters,
        devices,
        error,
        filtered: filters.filtered(),
        groups,
        self_url: filters.url(Some(&filters.cursor).filter(|c| !c.is_empty()).map(String::as_str)),
        next_url: next.map(|c| filters.url(Some(&c))),
        bulk,
    }))
}

#[derive(Template)]
#[template(
    source = r#"<p id="bulk-status" role="status" class="notice">{{ text }}{% if let Some(link) = link %} <a href="{{ link.0 }}">{{ link.1 }}</a>{% endif %}</p>"#,
    ext = "html"
)]
struct BulkDone {
    text: String,
    link: Option<(String, String)>,
}

/// `POST /devices/bulk`: the checked devices (`device`, repeated) and the action — `group`
/// (with `group`), `command` (with `kind` and `shell`) or `decommission`. Answers with a line
/// saying what was done, and asks the page's list to refresh.
pub(super) async fn bulk(
    Changing(user, _): Changing<perm::DevicesRead>,
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Response, Error> {
    let fields: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&body).map_err(|e| baton_core::Error::invalid("/", format!("not a form: {e}")))?;
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let mut ids: Vec<String> = fields.iter().filter(|(k, _)| k == "device").map(|(_, v)| v.clone()).collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Err(baton_core::Error::invalid("/device", "select at least one device").into());
    }
    if ids.len() > MAX_BULK {
        return Err(baton_core::Error::invalid("/device", format!("at most {MAX_BULK} devices at once")).into());
    }
    let scope = &user.principal.scope;
    let n = ids.len();
    let plural = if n == 1 { "device" } else { "devices" };
    let done = match field("action").as_str() {
        "group" => {
            user.need(Permission::GroupsWrite)?;
            let group = groups::get(&app.db, scope, &field("group")).await?;
            let added = groups::add_members(&app.db, scope, &group.id, &ids).await?;
            BulkDone {
                text: format!("Added {added} of {n} {plural} to {} (the others were in it already).", group.name),
                link: Some((format!("/groups/{}", group.id), "Open the group".into())),
            }
        }
        "command" => {
            user.need(Permission::CommandsWrite)?;
            let command = super::device::command_from_form(&field("kind"), field("shell"), String::new())?;
            let target = CommandTarget { device_ids: ids, ..CommandTarget::default() };
            let req = CommandCreate { target, command, ttl_secs: None, idempotency_key: None };
            let batch = commands::create(&app.db, &app.bus, scope, &user.principal, req).await?;
            BulkDone {
                text: format!("{} sent to {} {plural}.", batch.command.kind(), batch.total),
                link: Some((format!("/commands/{}", batch.id), "Follow its progress".into())),
            }
        }
        "decommission" => {
            user.need(Permission::DevicesWrite)?;
            // All or none: every device is checked before any is retired.
            let found = devices::names(&app.db, scope, &ids).await?;
            if let Some(missing) = ids.iter().find(|id| !found.contains_key(*id)) {
                return Err(baton_core::Error::NotFound(format!("device {missing}; nothing was decommissioned")).into());
            }
            for id in &ids {
                baton_core::lifecycle::decommission(&app.db, &app.bus, scope, id, false).await?;
            }
            BulkDone { text: format!("Decommissioned {n} {plural}."), link: None }
        }
        other => {
            return Err(
                baton_core::Error::invalid("/action", format!("`{other}` is not an action on many devices")).into()
            );
        }
    };
    Ok(([("hx-trigger", "baton:changed")], render(done)).into_response())
}
