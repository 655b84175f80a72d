//! `/api/v1/events`: the device event log, listed and live.

use axum::{extract::State, response::IntoResponse};
use baton_proto::api::{
    Page,
    events::{Event, EventQuery, EventStreamQuery},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Query, perm},
    web::sse,
};
use baton_core::{bus::Message, events};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events)).routes(routes!(stream_events))
}

/// Events, newest first, by device or kind.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventQuery), responses((status = 200, body = Page<Event>)))]
async fn list_events(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
    Query(q): Query<EventQuery>,
) -> Result<Json<Page<Event>>, Error> {
    Ok(events::list(&app.db, auth.scope(), &q).await.map(Json)?)
}

/// Events as they happen, as Server-Sent Events (event `event`).
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", params(EventStreamQuery),
    responses((status = 200, description = "Server-sent events, each an Event", body = Event, content_type = "text/event-stream"),
        (status = 404, description = "The device named by `device` is not in the tenant")))]
async fn stream_events(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
    Query(q): Query<EventStreamQuery>,
) -> Result<impl IntoResponse, Error> {
    if let Some(kind) = &q.kind {
        events::check_kind(kind)?;
    }
    if let Some(device) = &q.device {
        baton_core::devices::get(&app.db, auth.scope(), device).await?;
    }
    let tenant = auth.scope().id().to_owned();
    Ok(sse::from_bus(app.bus.subscribe(), app.shutdown.subscribe(), move |m| match m {
        Message::Event { tenant: t, event }
            if *t == tenant
                && q.device.as_ref().is_none_or(|d| event.device_id.as_ref() == Some(d))
                && q.kind.as_ref().is_none_or(|k| events::kind_matches(k, &event.kind)) =>
        {
            sse::json_event("event", event)
        }
        _ => None,
    }))
}
