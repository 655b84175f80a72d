//! The administration page: the tenant's users (create, delete) and API tokens (create — the
//! secret shown once — and revoke), and, for platform administrators, the tenants (create with
//! a first administrator, enable, disable). Each part shows only to those whose role may read
//! it, and each change is checked against the role again on the server.

use askama::Template;
use axum::{
    extract::{Path, State},
    response::Response,
};
use baton_proto::api::{
    access::{ApiToken, TokenCreate, User as Account, UserCreate},
    tenants::{Tenant, TenantCreate, TenantUpdate},
};
use serde::Deserialize;

use super::form::Form;
use super::session::{Changing, Page, User, render};
use crate::web::extract::perm;
use crate::{Error, state::AppState};
use baton_core::{
    access::{Permission, tokens, users},
    pagination::MAX_LIMIT,
    tenants,
};

/// A token just created: its secret, this once.
struct NewSecret {
    name: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage<'a> {
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    nav: &'a str,
    notice: Option<String>,
    created: Option<NewSecret>,
    users: Option<Vec<Account>>,
    tokens: Option<Vec<ApiToken>>,
    tenants: Option<Vec<Tenant>>,
    /// Whether more exist than are shown (users, tokens, tenants).
    more: (bool, bool, bool),
    can_users: bool,
    can_tokens: bool,
    can_tenants: bool,
    roles: &'static [&'static str],
}

/// `/admin`.
pub(super) async fn page(
    Page(user, _): Page<perm::Authenticated>,
    State(app): State<AppState>,
) -> Result<Response, Error> {
    show(&app, &user, None, None).await
}

async fn show(
    app: &AppState,
    user: &User,
    notice: Option<String>,
    created: Option<NewSecret>,
) -> Result<Response, Error> {
    let can = |p| user.principal.can(p);
    if !(can(Permission::UsersRead) || can(Permission::TokensRead) || can(Permission::TenantsRead)) {
        user.need(Permission::UsersRead)?;
    }
    let scope = &user.principal.scope;
    let mut more = (false, false, false);
    let users = if can(Permission::UsersRead) {
        let page = users::list(&app.db, scope, Some(MAX_LIMIT), None).await?;
        more.0 = page.next_cursor.is_some();
        Some(page.items)
    } else {
        None
    };
    let tokens = if can(Permission::TokensRead) {
        let page = tokens::list(&app.db, scope, Some(MAX_LIMIT), None).await?;
        more.1 = page.next_cursor.is_some();
        Some(page.items)
    } else {
        None
    };
    let tenants = if can(Permission::TenantsRead) {
        let page = tenants::list(&app.db, Some(MAX_LIMIT), None).await?;
        more.2 = page.next_cursor.is_some();
        Some(page.items)
    } else {
        None
    };
    let csrf = user.csrf.clone();
    Ok(render(AdminPage {
        user: Some(user),
        csrf: Some(&csrf),
        nav: "admin",
        notice,
        created,
        users,
        tokens,
        tenants,
        more,
        can_users: can(Permission::UsersWrite),
        can_tokens: can(Permission::TokensWrite),
        can_tenants: can(Permission::TenantsWrite),
        roles: &["viewer", "operator", "admin"],
    }))
}

#[derive(Deserialize)]
pub(super) struct UserForm {
    username: String,
    password: String,
    role: String,
}

/// `POST /admin/users`.
pub(super) async fn create_user(
    Changing(user, _): Changing<perm::UsersWrite>,
    State(app): State<AppState>,
    Form(form): Form<UserForm>,
) -> Result<Response, Error> {
    let req = UserCreate { username: form.username.trim().to_owned(), password: form.password, role: Some(form.role) };
    let created = users::create(&app.db, &user.principal.scope, Some(&user.principal), &req, false).await?;
    show(&app, &user, Some(format!("User {} created as {}.", created.username, created.role)), None).await
}

/// `POST /admin/users/{id}/delete`.
pub(super) async fn delete_user(
    Changing(user, _): Changing<perm::UsersWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    users::delete(&app.db, &user.principal.scope, &user.principal, &id).await?;
    show(&app, &user, Some("User deleted; their sessions ended.".into()), None).await
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    name: String,
    role: String,
    #[serde(default)]
    expires_in_days: String,
}

/// `POST /admin/tokens`: the new secret is on the answer, and only there.
pub(super) async fn create_token(
    Changing(user, _): Changing<perm::TokensWrite>,
    State(app): State<AppState>,
    Form(form): Form<TokenForm>,
) -> Result<Response, Error> {
    let expires_in_days = match form.expires_in_days.trim() {
        "" => None,
        n => Some(
            n.parse::<u32>()
                .map_err(|_| baton_core::Error::invalid("/expires_in_days", "must be a whole number of days"))?,
        ),
    };
    let req =
        TokenCreate { name: form.name.trim().to_owned(), role: Some(form.role), expires_in_days, permissions: None };
    let created = tokens::create(&app.db, &user.principal.scope, &user.principal, req).await?;
    let secret = NewSecret { name: created.token.name, secret: created.secret };
    show(&app, &user, None, Some(secret)).await
}

/// `POST /admin/tokens/{id}/revoke`.
pub(super) async fn revoke_token(
    Changing(user, _): Changing<perm::TokensWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let token = tokens::revoke(&app.db, &user.principal.scope, &user.principal, &id).await?;
    show(&app, &user, Some(format!("Token {} revoked.", token.name)), None).await
}

#[derive(Deserialize)]
pub(super) struct TenantForm {
    name: String,
    #[serde(default)]
    display_name: String,
    admin_username: String,
    admin_password: String,
}

/// `POST /admin/tenants`: a tenant with its first administrator.
pub(super) async fn create_tenant(
    Changing(user, _): Changing<perm::TenantsWrite>,
    State(app): State<AppState>,
    Form(form): Form<TenantForm>,
) -> Result<Response, Error> {
    let req = TenantCreate {
        name: form.name.trim().to_owned(),
        display_name: Some(form.display_name.trim().to_owned()).filter(|d| !d.is_empty()),
        admin: Some(UserCreate {
            username: form.admin_username.trim().to_owned(),
            password: form.admin_password,
            role: Some("admin".into()),
        }),
    };
    let tenant = tenants::create(&app.db, &req).await?;
    show(&app, &user, Some(format!("Tenant {} created; its administrator can sign in now.", tenant.name)), None).await
}

#[derive(Deserialize)]
pub(super) struct TenantState {
    disabled: bool,
}

/// `POST /admin/tenants/{id}`: disables or enables a tenant.
pub(super) async fn set_tenant(
    Changing(user, _): Changing<perm::TenantsWrite>,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<TenantState>,
) -> Result<Response, Error> {
    let req = TenantUpdate { display_name: None, disabled: Some(form.disabled) };
    let tenant = tenants::update(&app.db, &id, &user.principal.scope, &req).await?;
    let state = if tenant.disabled { "disabled" } else { "enabled" };
    show(&app, &user, Some(format!("Tenant {} {state}.", tenant.name)), None).await
}
