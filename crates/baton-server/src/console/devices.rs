//! The devices page: the registry searched, filtered, sorted and paged by the server (never the
//! whole fleet in the browser), with the filters in the URL so a view can be shared and the
//! list refreshed live as devices come and go.

use askama::Template;
use axum::{
    extract::{Query, State},
    response::Response,
};
use baton_proto::api::devices::{Device, DeviceQuery};
use serde::{Deserialize, Serialize};

use super::session::{User, render};
use crate::{Error, access::Permission, devices, http::AppState};

/// The filters as an HTML form sends them: empty fields are "any".
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub(super) struct Filters {
    q: String,
    status: String,
    online: String,
    os: String,
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
            labels: some(&self.labels),
            sort: some(&self.sort),
            cursor: some(&self.cursor),
            limit: Some(50),
            ..DeviceQuery::default()
        }
    }

    fn filtered(&self) -> bool {
        [&self.q, &self.status, &self.online, &self.os, &self.labels].iter().any(|s| !s.trim().is_empty())
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
    self_url: String,
    next_url: Option<String>,
}

/// `/devices`: one page of the registry; a filter the server refuses (a bad label selector,
/// say) is answered on the page with the server's words.
pub(super) async fn page(
    user: User,
    State(app): State<AppState>,
    Query(filters): Query<Filters>,
) -> Result<Response, Error> {
    user.need(Permission::DevicesRead)?;
    let (devices, next, error) = match devices::list::list(&app.db, &user.principal.scope, &filters.query()).await {
        Ok(page) => (page.items.into_iter().map(Row::from).collect(), page.next_cursor, None),
        Err(Error::Invalid { detail, errors }) => {
            let words = errors.first().map(|e| format!("{}: {}", e.field, e.message)).unwrap_or(detail);
            (Vec::new(), None, Some(words))
        }
        Err(e) => return Err(e),
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
        self_url: filters.url(Some(&filters.cursor).filter(|c| !c.is_empty()).map(String::as_str)),
        next_url: next.map(|c| filters.url(Some(&c))),
    }))
}
