-- Foundation: tenants, access, device registry and groups.
-- Append-only: never edit this file once released; add a new migration instead.
-- Timestamps are milliseconds since the Unix epoch; flags are 0/1.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    platform_admin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, username)
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    platform_admin BIGINT NOT NULL DEFAULT 0,
    secret_hash TEXT NOT NULL UNIQUE,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id, created_at, id);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL UNIQUE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    serial TEXT,
    manufacturer TEXT,
    model TEXT,
    os_family TEXT,
    os_version TEXT,
    architecture TEXT,
    agent_version TEXT,
    status TEXT NOT NULL,
    online BIGINT NOT NULL DEFAULT 0,
    last_seen_at BIGINT,
    remote_addr TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    decommissioned_at BIGINT,
    UNIQUE (tenant_id, serial)
);
CREATE INDEX devices_by_name ON devices (tenant_id, name, id);
CREATE INDEX devices_by_created ON devices (tenant_id, created_at, id);
CREATE INDEX devices_by_status ON devices (tenant_id, status);

CREATE TABLE device_labels (
    tenant_id TEXT NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (device_id, key)
);
CREATE INDEX device_labels_by_key ON device_labels (tenant_id, key, value);

CREATE TABLE device_groups (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    description TEXT,
    parent_id TEXT REFERENCES device_groups(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX device_groups_by_parent ON device_groups (tenant_id, parent_id);

CREATE TABLE group_members (
    tenant_id TEXT NOT NULL,
    group_id TEXT NOT NULL REFERENCES device_groups(id) ON DELETE CASCADE,
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, device_id)
);
CREATE INDEX group_members_by_device ON group_members (device_id);
