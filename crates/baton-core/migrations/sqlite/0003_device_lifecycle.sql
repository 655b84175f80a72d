-- Device lifecycle: credentials, enrollment tokens, inventory, telemetry, the event log and the
-- durable command outbox.

ALTER TABLE devices ADD COLUMN credential_hash TEXT;
ALTER TABLE devices ADD COLUMN enrolled_at BIGINT;
ALTER TABLE devices ADD COLUMN inventory TEXT;
ALTER TABLE devices ADD COLUMN telemetry_interval_secs BIGINT;
ALTER TABLE devices ADD COLUMN latest_telemetry TEXT;
ALTER TABLE devices ADD COLUMN latest_at BIGINT;
ALTER TABLE devices ADD COLUMN wipe_requested BIGINT NOT NULL DEFAULT 0;
-- The newest telemetry batch stored, so a batch resent after a lost acknowledgement is not stored twice.
ALTER TABLE devices ADD COLUMN telemetry_seq BIGINT;

CREATE TABLE enrollment_tokens (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    groups TEXT NOT NULL,
    labels TEXT NOT NULL,
    requires_approval BIGINT NOT NULL,
    max_uses BIGINT,
    uses BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT,
    revoked_at BIGINT,
    created_by TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX enrollment_tokens_tenant ON enrollment_tokens (tenant_id, created_at, id);

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    device_id TEXT,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX events_by_tenant ON events (tenant_id, at, id);
CREATE INDEX events_by_device ON events (device_id, at);

CREATE TABLE telemetry (
    tenant_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    metric TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL
);
CREATE INDEX telemetry_by_series ON telemetry (device_id, metric, ts);
CREATE INDEX telemetry_by_time ON telemetry (ts);

CREATE TABLE command_batches (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    spec TEXT NOT NULL,
    total BIGINT NOT NULL,
    idempotency_key TEXT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX command_batches_by_tenant ON command_batches (tenant_id, created_at, id);

CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    batch_id TEXT NOT NULL REFERENCES command_batches(id),
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    acked_at BIGINT,
    finished_at BIGINT,
    expires_at BIGINT NOT NULL,
    result TEXT
);
CREATE INDEX commands_by_device ON commands (device_id, state, created_at);
CREATE INDEX commands_by_batch ON commands (batch_id, state);
CREATE INDEX commands_by_tenant ON commands (tenant_id, created_at, id);
CREATE INDEX commands_by_expiry ON commands (state, expires_at);
