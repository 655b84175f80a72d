//! Access: who the caller is ([`Principal`]), which tenant every query is scoped to
//! ([`TenantScope`]), and what the caller may do ([`permissions`]).
//!
//! Authentication accepts API tokens and login sessions, both as `Authorization: Bearer …`;
//! sessions also as the `baton_session` cookie (with a CSRF header for changes). Secrets are
//! random 256-bit values stored only as SHA-256; user passwords use argon2.

pub mod login_limit;
pub mod permissions;
pub mod secrets;
pub mod sessions;
pub mod tokens;
pub mod users;

pub use permissions::{Permission, Role};

/// The tenant a query runs for. Domain functions take one, and the only ways to get one are an
/// authenticated [`Principal`] or server-internal code: so no query can forget its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    id: String,
}

impl TenantScope {
    /// For server-internal work (bootstrap, background jobs) that acts for a known tenant.
    pub fn internal(id: impl Into<String>) -> Self {
        Self { id: id.into() }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    User {
        id: String,
        username: String,
    },
    Token {
        id: String,
        name: String,
    },
    /// The server acting by a rule on a tenant's behalf (an automatic rollout, a watched directory).
    System {
        name: String,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub scope: TenantScope,
    pub tenant_name: String,
    pub subject: Subject,
    pub role: Role,
    pub platform_admin: bool,
    /// Set when the caller authenticated with the session cookie: changes must echo it.
    pub csrf_token: Option<String>,
    /// An API token narrowed to some of its role's permissions holds only these.
    pub only: Option<Vec<Permission>>,
}

impl Principal {
    /// Whether this caller holds `permission`.
    pub fn can(&self, permission: Permission) -> bool {
        if permission.is_platform() {
            return self.platform_admin;
        }
        self.role.grants(permission) && self.only.as_ref().is_none_or(|only| only.contains(&permission))
    }

    /// Whether this caller holds every permission of `role` (so may hand it out).
    pub fn holds_all(&self, role: &Role) -> bool {
        role.permissions.iter().all(|p| self.can(*p))
    }

    pub fn permissions(&self) -> Vec<Permission> {
        Permission::ALL.iter().copied().filter(|p| self.can(*p)).collect()
    }

    /// `user:<id>`, `token:<id>` or `system:<name>`: who this is, unlike the label, unique.
    pub fn subject_id(&self) -> String {
        match &self.subject {
            Subject::User { id, .. } => format!("user:{id}"),
            Subject::Token { id, .. } => format!("token:{id}"),
            Subject::System { name } => format!("system:{name}"),
        }
    }

    /// `user:<name>` or `token:<name>`, for audit fields and `/me`.
    pub fn subject_label(&self) -> String {
        match &self.subject {
            Subject::User { username, .. } => format!("user:{username}"),
            Subject::Token { name, .. } => format!("token:{name}"),
            Subject::System { name } => format!("system:{name}"),
        }
    }

    /// The server itself, acting for a tenant by one of its rules.
    pub fn system(scope: TenantScope, name: impl Into<String>) -> Self {
        Self {
            scope,
            tenant_name: String::new(),
            subject: Subject::System { name: name.into() },
            role: Role::NONE,
            platform_admin: false,
            csrf_token: None,
            only: None,
        }
    }
}
