//! The shapes of values the server checks, named once for the OpenAPI document: a field says
//! `schema(value_type = formats::Serial)` and the document states the rule the server applies
//! (its length, characters, range), so a client learns from the contract what will be refused.
//! Rules that depend on stored data (an id that must exist, a cursor made by this list, a label
//! selector's grammar) are the server's alone and answer 422.

use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        ArrayBuilder, KnownFormat, ObjectBuilder, RefOr, Schema, SchemaFormat, Type,
        schema::{AdditionalProperties, SchemaType},
    },
};

/// Characters `char::is_control` refuses, as a regular expression class body.
const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).description(Some(description))
}

/// Text of at most `max` characters without control characters; `required`: not blank.
fn text(description: &str, max: usize, required: bool) -> ObjectBuilder {
    let pattern =
        if required { format!(r"^[^{CONTROL}]*[^\s{CONTROL}][^{CONTROL}]*$") } else { format!("^[^{CONTROL}]*$") };
    string(description).min_length(required.then_some(1)).max_length(Some(max)).pattern(Some(pattern))
}

fn id() -> ObjectBuilder {
    string("An id the server gave").format(Some(SchemaFormat::Custom("uuid".into())))
}

fn label_key() -> Schema {
    string("1 to 63 letters, digits, `.`, `_`, `-` and `/`, starting and ending with a letter or digit")
        .pattern(Some(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$"))
        .into()
}

fn label_value() -> ObjectBuilder {
    string("Up to 128 letters, digits and `.`, `_`, `-`, `/`, `:`, `@`, `+`")
        .pattern(Some(r"^[A-Za-z0-9._/:@+-]{0,128}$"))
}

fn labels(description: &str, value: Schema) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .property_names(Some(label_key()))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(value))))
        .max_properties(Some(64))
}

macro_rules! formats {
    ($($(#[doc = $doc:literal])* $name:ident => $schema:expr;)*) => {$(
        $(#[doc = $doc])*
        pub struct $name;
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                let schema: Schema = $schema.into();
                schema.into()
            }
        }
        impl ToSchema for $name {}
    )*};
}

formats! {
    /// A page size: 1 to 500; 50 when absent.
    PageLimit => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::UInt32)))
        .minimum(Some(1))
        .maximum(Some(500))
        .description(Some("1 to 500; defaults to 50"));
    /// `next_cursor` of the previous page of the same list and order; opaque.
    Cursor => string("`next_cursor` of the previous page of the same list and order").min_length(Some(1));
    /// An id the server gave (a UUID).
    Id => id();
    /// Ids of devices: 1 to 10,000.
    DeviceIds => ArrayBuilder::new()
        .items(RefOr::T(id().into()))
        .min_items(Some(1))
        .max_items(Some(10_000))
        .description(Some("1 to 10,000 device ids"));
    /// A hardware serial.
    Serial => string("1 to 64 letters, digits, `.`, `_`, `-`, `:` or `/`").pattern(Some(r"^[A-Za-z0-9._:/-]{1,64}$"));
    /// A name: 1 to 128 characters, not blank, without control characters.
    Name => text("1 to 128 characters, not blank, without control characters", 128, true);
    /// An API or enrollment token's name: 1 to 100 characters.
    TokenName => text("1 to 100 characters, not blank, without control characters", 100, true);
    /// Optional text: at most 128 characters, without control characters.
    Text => text("At most 128 characters, without control characters", 128, false);
    /// A description: at most 1,024 characters; tabs and line breaks allowed.
    Description => string("At most 1,024 characters, without control characters but tabs and line breaks")
        .max_length(Some(1024))
        .pattern(Some(r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"));
    /// A username.
    Username => string("1 to 64 letters, digits, `.`, `_`, `-` or `@`").pattern(Some(r"^[A-Za-z0-9._@-]{1,64}$"));
    /// A new password.
    Password => string("12 to 1,024 characters").min_length(Some(12)).max_length(Some(1024));
    /// A role given to a user or token.
    RoleName => string("`admin`, `operator` or `viewer`").enum_values(Some(["admin", "operator", "viewer"]));
    /// Desired attributes to change: a value sets one, `null` removes it.
    AttributeChanges => ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Attributes to set; `null` removes one. Names: 1 to 128 characters, without control characters"))
        .property_names(Some(text("An attribute name", 128, false).min_length(Some(1))));
    /// A tenant's name.
    TenantName => string("1 to 63 lowercase letters, digits and inner `-`")
        .pattern(Some(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"));
    /// Labels: at most 64, keys and values as their schemas say.
    Labels => labels("At most 64 labels", label_value().into());
    /// Labels to change: a value sets the label, `null` removes it.
    LabelChanges => labels(
        "Labels to set; `null` removes one",
        label_value().schema_type(SchemaType::from_iter([Type::String, Type::Null])).into(),
    );
}
