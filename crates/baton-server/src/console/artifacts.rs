//! The artifacts page: what updates can install, newest first and paged like every list, each
//! with its size, hash and signing key, and a way to roll it out. Artifacts arrive through the
//! API or `baton artifacts push` (they may be large, and are streamed); the page says so when
//! there are none yet.

use askama::Template;
use axum::{
    extract::{Query, State},
    response::Response,
};
use baton_proto::api::artifacts::{Artifact, ArtifactQuery};

use serde::Deserialize;

use super::{
    human,
    session::{Page, User, render},
};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{access::Permission, artifacts};

/// Artifacts one page shows.
const PAGE: u32 = 25;

/// An artifact as the list shows it.
struct Line {
    id: String,
    name: String,
    version: String,
    kind: &'static str,
    size: String,
    sha256: String,
    /// Enough of the hash to tell artifacts apart at a glance.
    sha256_short: String,
    key_id: Option<String>,
    at: String,
}

impl From<Artifact> for Line {
    fn from(a: Artifact) -> Self {
        Line {
            id: a.id,
            name: a.name,
            version: a.version,
            kind: a.kind.as_str(),
            size: human::bytes(a.size),
            sha256_short: a.sha256.chars().take(12).collect(),
            sha256: a.sha256,
            key_id: a.signature.map(|s| s.key_id),
            at: a.created_at.to_rfc3339(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Paging {
    cursor: String,
}

#[derive(Template)]
#[template(path = "artifacts.html")]
struct ArtifactsPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    artifacts: Vec<Line>,
    next_url: Option<String>,
    can_roll_out: bool,
}

/// `/artifacts`.
pub(super) async fn page(
    Page(user, _): Page<perm::ArtifactsRead>,
    State(app): State<AppState>,
    Query(paging): Query<Paging>,
) -> Result<Response, Error> {
    let query = ArtifactQuery {
        limit: Some(PAGE),
        cursor: Some(paging.cursor).filter(|c| !c.is_empty()),
        ..ArtifactQuery::default()
    };
    let page = artifacts::list(&app.db, &user.principal.scope, &query).await?;
    let csrf = user.csrf.clone();
    Ok(render(ArtifactsPage {
        user: Some(&user),
        csrf: Some(&csrf),
        nav: "artifacts",
        artifacts: page.items.into_iter().map(Line::from).collect(),
        next_url: page.next_cursor.map(|c| format!("/artifacts?cursor={c}")),
        can_roll_out: user.principal.can(Permission::RolloutsWrite),
    }))
}
