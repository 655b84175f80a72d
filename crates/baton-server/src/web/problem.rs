//! The one place errors become HTTP responses: RFC 9457 problem details, with the status, a
//! stable `type` URI per kind, and field-level errors. Internal errors are logged with their
//! cause and reported to the client without it.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use baton_proto::api::problem::{FieldError, PROBLEM_CONTENT_TYPE, Problem};

use baton_core::Error as CoreError;

use crate::Error;

/// Base of every problem `type` URI.
const TYPE_BASE: &str = "https://baton.dev/problems/";

/// A problem response with no field errors.
pub fn problem(status: StatusCode, kind: &str, detail: impl Into<String>) -> Response {
    respond(status, kind, Some(detail.into()), Vec::new())
}

fn respond(status: StatusCode, kind: &str, detail: Option<String>, errors: Vec<FieldError>) -> Response {
    let body = Problem {
        kind: format!("{TYPE_BASE}{kind}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        errors,
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
    response
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self.0 {
            CoreError::NotFound(what) => problem(StatusCode::NOT_FOUND, "not-found", format!("{what} not found")),
            CoreError::Conflict(detail) => problem(StatusCode::CONFLICT, "conflict", detail),
            CoreError::Invalid { detail, errors } => {
                respond(StatusCode::UNPROCESSABLE_ENTITY, "invalid", Some(detail), errors)
            }
            CoreError::Unauthorized(detail) => {
                let mut r = problem(StatusCode::UNAUTHORIZED, "unauthorized", detail);
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
            CoreError::Forbidden(detail) => problem(StatusCode::FORBIDDEN, "forbidden", detail),
            CoreError::RateLimited(seconds) => {
                let mut r = problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    format!("too many attempts; try again in {seconds} s"),
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                r
            }
            // Two requests raced (a row referenced by this change was removed meanwhile).
            CoreError::Database(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => problem(
                StatusCode::CONFLICT,
                "conflict",
                "something this change refers to was changed or removed meanwhile; reload and try again",
            ),
            e @ (CoreError::Config(_) | CoreError::Database(_) | CoreError::Internal(_)) => {
                tracing::error!(error = %e, "request failed");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server failed to handle this request; it is logged on the server",
                )
            }
        }
    }
}
