//! Permissions are data: each route asks for one [`Permission`], and a [`Role`] is a named set of
//! them. Custom and group-scoped roles can later be rows in a table without touching handlers.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    DevicesRead,
    DevicesWrite,
    GroupsRead,
    GroupsWrite,
    TokensRead,
    TokensWrite,
    UsersRead,
    UsersWrite,
    CommandsRead,
    CommandsWrite,
    EnrollmentRead,
    EnrollmentWrite,
    ArtifactsRead,
    ArtifactsWrite,
    /// Making, registering and revoking the keys that sign artifacts.
    SigningKeysWrite,
    RolloutsRead,
    /// Making, starting, pausing, resuming, canceling and deleting rollouts.
    RolloutsWrite,
    /// Opening a remote terminal (and closing sessions).
    RemoteTerminal,
    /// Listing sessions and joining one read-only.
    RemoteWatch,
    /// Reading a device's logs live, and requesting and downloading its support bundles.
    RemoteLogs,
    /// Copying files to and from a device.
    RemoteFiles,
    /// Opening tunnels to TCP ports on or behind a device (`baton port-forward`, its web UI).
    RemoteTunnel,
    /// Seeing a device's screen, without keyboard or mouse.
    RemoteScreenView,
    /// Seeing a device's screen with keyboard and mouse.
    RemoteScreenControl,
    /// Listing, replaying and downloading session recordings.
    RemoteRecordings,
    /// Switching remote access on or off for the tenant, and input recording.
    RemotePolicy,
    /// Platform-wide: only platform administrators, whatever their role.
    TenantsRead,
    TenantsWrite,
}

impl Permission {
    pub const ALL: [Permission; 28] = [
        Self::DevicesRead,
        Self::DevicesWrite,
        Self::GroupsRead,
        Self::GroupsWrite,
        Self::TokensRead,
        Self::TokensWrite,
        Self::UsersRead,
        Self::UsersWrite,
        Self::CommandsRead,
        Self::CommandsWrite,
        Self::EnrollmentRead,
        Self::EnrollmentWrite,
        Self::ArtifactsRead,
        Self::ArtifactsWrite,
        Self::SigningKeysWrite,
        Self::RolloutsRead,
        Self::RolloutsWrite,
        Self::RemoteTerminal,
        Self::RemoteWatch,
        Self::RemoteLogs,
        Self::RemoteFiles,
        Self::RemoteTunnel,
        Self::RemoteScreenView,
        Self::RemoteScreenControl,
        Self::RemoteRecordings,
        Self::RemotePolicy,
        Self::TenantsRead,
        Self::TenantsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DevicesRead => "devices:read",
            Self::DevicesWrite => "devices:write",
            Self::GroupsRead => "groups:read",
            Self::GroupsWrite => "groups:write",
            Self::TokensRead => "tokens:read",
            Self::TokensWrite => "tokens:write",
            Self::UsersRead => "users:read",
            Self::UsersWrite => "users:write",
            Self::CommandsRead => "commands:read",
            Self::CommandsWrite => "commands:write",
            Self::EnrollmentRead => "enrollment:read",
            Self::EnrollmentWrite => "enrollment:write",
            Self::ArtifactsRead => "artifacts:read",
            Self::ArtifactsWrite => "artifacts:write",
            Self::SigningKeysWrite => "signing-keys:write",
            Self::RolloutsRead => "rollouts:read",
            Self::RolloutsWrite => "rollouts:write",
            Self::RemoteTerminal => "remote:terminal",
            Self::RemoteWatch => "remote:watch",
            Self::RemoteLogs => "remote:logs",
            Self::RemoteFiles => "remote:files",
            Self::RemoteTunnel => "remote:tunnel",
            Self::RemoteScreenView => "remote:screen-view",
            Self::RemoteScreenControl => "remote:screen-control",
            Self::RemoteRecordings => "remote:recordings",
            Self::RemotePolicy => "remote:policy",
            Self::TenantsRead => "tenants:read",
            Self::TenantsWrite => "tenants:write",
        }
    }

    /// The permission named `name` (as [`Permission::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Platform permissions cross tenants and come from the platform-admin flag, not a role.
    pub fn is_platform(self) -> bool {
        matches!(self, Self::TenantsRead | Self::TenantsWrite)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named set of permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: &'static str,
    pub description: &'static str,
    pub permissions: &'static [Permission],
}

use Permission::*;

/// The built-in roles, from most to least powerful.
pub const BUILTIN_ROLES: &[Role] = &[
    Role {
        name: "admin",
        description: "Everything in the tenant, including users, API tokens, enrollment tokens, signing keys, remote-access policy and session recordings.",
        permissions: &[
            DevicesRead,
            DevicesWrite,
            GroupsRead,
            GroupsWrite,
            CommandsRead,
            CommandsWrite,
            EnrollmentRead,
            EnrollmentWrite,
            TokensRead,
            TokensWrite,
            UsersRead,
            UsersWrite,
            ArtifactsRead,
            ArtifactsWrite,
            SigningKeysWrite,
            RolloutsRead,
            RolloutsWrite,
            RemoteTerminal,
            RemoteWatch,
            RemoteLogs,
            RemoteFiles,
            RemoteTunnel,
            RemoteScreenView,
            RemoteScreenControl,
            RemoteRecordings,
            RemotePolicy,
        ],
    },
    Role {
        name: "operator",
        description: "Reads everything but access; acts on devices and groups, sends commands, approves devices, uploads artifacts, runs rollouts, opens or watches remote terminals, reads device logs, takes support bundles, copies files, opens tunnels and sees or controls screens.",
        permissions: &[
            DevicesRead,
            DevicesWrite,
            GroupsRead,
            GroupsWrite,
            CommandsRead,
            CommandsWrite,
            EnrollmentRead,
            ArtifactsRead,
            ArtifactsWrite,
            RolloutsRead,
            RolloutsWrite,
            RemoteTerminal,
            RemoteWatch,
            RemoteLogs,
            RemoteFiles,
            RemoteTunnel,
            RemoteScreenView,
            RemoteScreenControl,
        ],
    },
    Role {
        name: "viewer",
        description: "Reads devices, groups, telemetry, events, commands, artifacts and rollouts; changes nothing.",
        permissions: &[DevicesRead, GroupsRead, CommandsRead, ArtifactsRead, RolloutsRead],
    },
];

impl Role {
    /// A role that grants nothing: what an unknown stored role name resolves to.
    pub const NONE: Role = Role { name: "none", description: "Grants nothing.", permissions: &[] };

    /// The role called `name`, if there is one.
    pub fn find(name: &str) -> Option<Role> {
        BUILTIN_ROLES.iter().find(|r| r.name == name).cloned()
    }

    pub fn grants(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// Whether every permission of `other` is also one of this role's.
    pub fn covers(&self, other: &Role) -> bool {
        other.permissions.iter().all(|p| self.grants(*p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_viewer_changes_nothing() {
        let viewer = Role::find("viewer").expect("built in");
        assert!(viewer.permissions.iter().all(|p| p.as_str().ends_with(":read")));
    }

    #[test]
    fn roles_are_ordered_by_power() {
        let [admin, operator, viewer] = [&BUILTIN_ROLES[0], &BUILTIN_ROLES[1], &BUILTIN_ROLES[2]];
        assert!(admin.covers(operator) && operator.covers(viewer) && !viewer.covers(operator));
    }
}
