//! The error half of the OpenAPI contract, added to every documented operation once all routes
//! are merged (a `Modify` on the `#[openapi]` struct would run before the routes exist). The
//! statuses follow from how a request reaches a handler, so a handler documents only its own
//! (409, 429, a 401 of its own, a 422 from a query it checks):
//!
//! - credentials (`Authz`): 401, and 403 unless the operation needs no permission and changes
//!   nothing (a cookie session's change without its CSRF token is refused with 403 too);
//! - a path parameter: 400 when it does not decode, 404 when nothing has that id in the tenant;
//! - a query: 400 when a parameter does not parse or is unknown; 422 when a value other than a
//!   flag fails its check (a page size, a cursor, a selector, an id);
//! - a change by a caller with a permission: 409 when it conflicts with what is stored (a name
//!   taken, a state that does not allow it, a row it refers to removed meanwhile);
//! - a JSON body: 400 (malformed), 413 (past `max_body_bytes`), 415 (not JSON) and 422 (a field
//!   of the wrong type or value). An artifact's streamed bytes are checked by its handler.
//!
//! Every 4xx and 5xx answer is problem+json; a response without a description gets its
//! status's reason, as OpenAPI requires one. Unsigned integers (`uint32`, `uint64`, …) get the
//! bounds of their type where a field states none: a `format` alone bounds nothing in JSON
//! Schema, and a client should learn from the document that `-1` or 2^64 is refused.

use axum::http::StatusCode;
use baton_proto::api::problem::PROBLEM_CONTENT_TYPE;
use utoipa::{
    Number,
    openapi::{
        Content, ContentBuilder, KnownFormat, OpenApi, Ref, RefOr, ResponseBuilder, Schema, SchemaFormat, Type,
        path::{Operation, ParameterIn},
        schema::{AdditionalProperties, ArrayItems},
        security::{Http, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

/// Operations any signed-in caller may use whatever the role: no 403 for a read, no 409.
const ANY_CALLER: &[&str] = &["me", "roles", "logout"];

/// Adds the security schemes and every operation's error responses to the merged document.
pub fn apply(doc: &mut OpenApi) {
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme(
            "device",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The device secret, with the device id in `x-baton-device-id`"))
                    .build(),
            ),
        );
    }
    for item in doc.paths.paths.values_mut() {
        let reads = [&mut item.get, &mut item.head].into_iter().flatten().map(|op| (op, true));
        let changes = [&mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten();
        for (op, read) in reads.chain(changes.map(|op| (op, false))) {
            errors(op, read);
            describe(op);
        }
    }
    bound_unsigned(doc);
}

/// Gives every unsigned integer schema the range of its type where it states none of its own.
fn bound_unsigned(doc: &mut OpenApi) {
    if let Some(components) = doc.components.as_mut() {
        components.schemas.values_mut().for_each(bound);
    }
    for op in doc.paths.paths.values_mut().flat_map(|item| {
        [&mut item.get, &mut item.head, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete]
    }) {
        let Some(op) = op.as_mut() else { continue };
        for parameter in op.parameters.iter_mut().flatten() {
            if let RefOr::T(parameter) = parameter {
                parameter.schema.iter_mut().for_each(bound);
            }
        }
        if let Some(RefOr::T(body)) = op.request_body.as_mut() {
            body.content.values_mut().for_each(content);
        }
        for response in op.responses.responses.values_mut() {
            if let RefOr::T(response) = response {
                response.content.values_mut().for_each(content);
            }
        }
    }
    fn content(c: &mut RefOr<Content>) {
        if let RefOr::T(c) = c {
            c.schema.iter_mut().for_each(bound);
        }
    }
}

fn bound(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else { return };
    match schema {
        Schema::Object(object) => {
            let unsigned: Option<(&str, usize)> = match &object.format {
                Some(SchemaFormat::KnownFormat(KnownFormat::UInt8)) => Some(("uint8", u8::MAX.into())),
                Some(SchemaFormat::KnownFormat(KnownFormat::UInt16)) => Some(("uint16", u16::MAX.into())),
                Some(SchemaFormat::KnownFormat(KnownFormat::UInt32)) => Some(("uint32", u32::MAX as usize)),
                Some(SchemaFormat::KnownFormat(KnownFormat::UInt64)) => Some(("uint64", u64::MAX as usize)),
                _ => None,
            };
            if let Some((name, max)) = unsigned {
                // utoipa writes `u-int32`; the OpenAPI format registry's name is `uint32`.
                object.format = Some(SchemaFormat::Custom(name.into()));
                object.minimum.get_or_insert(Number::UInt(0));
                object.maximum.get_or_insert(Number::UInt(max));
            }
            object.properties.values_mut().for_each(bound);
            if let Some(AdditionalProperties::RefOr(values)) = object.additional_properties.as_deref_mut() {
                bound(values);
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                bound(items);
            }
        }
        Schema::OneOf(one) => one.items.iter_mut().for_each(bound),
        Schema::AllOf(all) => all.items.iter_mut().for_each(bound),
        Schema::AnyOf(any) => any.items.iter_mut().for_each(bound),
        _ => {}
    }
}

/// The statuses an operation can answer with before or around its handler.
fn errors(op: &mut Operation, read: bool) {
    let params: Vec<_> = op
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some(p),
            RefOr::Ref(_) => None,
        })
        .collect();
    let in_path = params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let in_query = params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Query));
    // A flag either parses (400 if not) or not; any other query value is checked (422).
    let checked_query = params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Query) && !is_flag(p));
    let json = op.request_body.as_ref().is_some_and(|b| match b {
        RefOr::T(b) => b.content.contains_key("application/json"),
        RefOr::Ref(_) => false,
    });
    let secured = op.security.as_ref().is_none_or(|s| !s.is_empty());
    let any_caller = op.operation_id.as_deref().is_some_and(|id| ANY_CALLER.contains(&id));
    let mut add = |status: StatusCode, when: bool, description: &str| {
        if when {
            op.responses
                .responses
                .entry(status.as_str().into())
                .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(description).build()));
        }
    };
    add(
        StatusCode::BAD_REQUEST,
        json || in_path || in_query,
        "Malformed JSON, or a query or path parameter that does not parse",
    );
    add(StatusCode::UNAUTHORIZED, secured, "Missing, expired or revoked credentials");
    add(
        StatusCode::FORBIDDEN,
        secured && !any_caller,
        "The caller's role lacks the permission, or a cookie session's change lacks its CSRF token",
    );
    add(StatusCode::NOT_FOUND, in_path, "Not found in the caller's tenant");
    add(
        StatusCode::CONFLICT,
        secured && !read && !any_caller,
        "Conflicts with what is stored: a name or serial taken, a state that does not allow this, or a row this change refers to removed meanwhile",
    );
    add(StatusCode::PAYLOAD_TOO_LARGE, json, "The body is larger than `max_body_bytes`");
    add(StatusCode::UNSUPPORTED_MEDIA_TYPE, json, "The body is not sent as `application/json`");
    add(StatusCode::UNPROCESSABLE_ENTITY, json || checked_query, "Invalid input, with field-level errors");
}

/// A boolean query parameter.
fn is_flag(parameter: &utoipa::openapi::path::Parameter) -> bool {
    matches!(&parameter.schema, Some(RefOr::T(Schema::Object(o))) if o.schema_type == Type::Boolean.into())
}

/// Problem+json content for every error, and a description for every response.
fn describe(op: &mut Operation) {
    for (status, response) in &mut op.responses.responses {
        let RefOr::T(response) = response else { continue };
        let code = status.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok());
        if response.description.is_empty() {
            response.description = code.and_then(|c| c.canonical_reason()).unwrap_or("Success").to_owned();
        }
        if code.is_some_and(|c| c.is_client_error() || c.is_server_error()) && response.content.is_empty() {
            let problem = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
            response.content.insert(PROBLEM_CONTENT_TYPE.into(), RefOr::T(problem));
        }
    }
}
