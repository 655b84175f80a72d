//! Telemetry routes: a device's series and latest values, and the live stream.

use std::collections::HashSet;

use axum::{extract::State, response::IntoResponse};
use baton_proto::api::telemetry::{Latest, Series, TelemetryEvent, TelemetryQuery, TelemetryStreamQuery};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    Error,
    state::AppState,
    web::extract::{Authz, Json, Path, Query, perm},
    web::sse,
};
use baton_core::{bus::Message, devices, telemetry};

/// Most devices one fleet stream follows by group or selector.
const MAX_STREAMED_DEVICES: usize = 100_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(series)).routes(routes!(latest)).routes(routes!(stream))
}

/// A metric of a device over time, in buckets (avg, min, max or last).
#[utoipa::path(get, path = "/api/v1/devices/{id}/telemetry", tag = "telemetry",
    params(("id" = String, Path), TelemetryQuery), responses((status = 200, body = Series)))]
async fn series(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<TelemetryQuery>,
) -> Result<Json<Series>, Error> {
    Ok(telemetry::series(&app.db, auth.scope(), &id, &q).await.map(Json)?)
}

/// The newest value of every metric of a device.
#[utoipa::path(get, path = "/api/v1/devices/{id}/telemetry/latest", tag = "telemetry",
    params(("id" = String, Path)), responses((status = 200, body = Latest)))]
async fn latest(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Latest>, Error> {
    Ok(telemetry::latest(&app.db, auth.scope(), &id).await.map(Json)?)
}

/// Live telemetry as Server-Sent Events (event `telemetry`), for one device, a group, a label
/// selector, or the whole tenant.
#[utoipa::path(get, path = "/api/v1/telemetry/stream", tag = "telemetry", params(TelemetryStreamQuery),
    responses((status = 200, description = "Server-sent events, each a TelemetryEvent", body = TelemetryEvent, content_type = "text/event-stream"),
        (status = 404, description = "The device or group named in the query is not in the tenant")))]
async fn stream(
    auth: Authz<perm::DevicesRead>,
    State(app): State<AppState>,
    Query(q): Query<TelemetryStreamQuery>,
) -> Result<impl IntoResponse, Error> {
    let scope = auth.scope().clone();
    if let Some(device) = &q.device {
        devices::get(&app.db, &scope, device).await?;
    }
    let selected: Option<HashSet<String>> = if q.group.is_some() || q.labels.is_some() {
        let ids =
            devices::list::active_ids(&app.db, &scope, q.group.as_deref(), q.labels.as_deref(), MAX_STREAMED_DEVICES)
                .await?;
        Some(ids.into_iter().collect())
    } else {
        None
    };
    let tenant = scope.id().to_owned();
    let device = q.device;
    Ok(sse::from_bus(app.bus.subscribe(), app.shutdown.subscribe(), move |m| match m {
        Message::Telemetry { tenant: t, event }
            if *t == tenant
                && device.as_ref().is_none_or(|d| *d == event.device_id)
                && selected.as_ref().is_none_or(|s| s.contains(&event.device_id)) =>
        {
            sse::json_event("telemetry", event)
        }
        _ => None,
    }))
}
