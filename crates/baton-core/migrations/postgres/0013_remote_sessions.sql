-- Remote support. A session is one operator's terminal (later logs, files, tunnels, screen) on
-- one device: made pending with a short-lived attach token, open while its client is attached,
-- closed with a reason. The recording (asciicast v2) lives in the artifact store under
-- `recording_key` once the session has ended. Tokens are stored as SHA-256 hashes and attach
-- once; a watcher's token is read-only.
CREATE TABLE remote_sessions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    source_addr TEXT,
    command TEXT NOT NULL,
    term_cols BIGINT NOT NULL,
    term_rows BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    opened_at BIGINT,
    closed_at BIGINT,
    close_reason TEXT,
    exit_code BIGINT,
    recording_key TEXT,
    recording_bytes BIGINT,
    recording_ms BIGINT,
    input_recorded BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX remote_sessions_by_device ON remote_sessions (tenant_id, device_id, id);
CREATE INDEX remote_sessions_live ON remote_sessions (tenant_id, state);
CREATE INDEX remote_sessions_recorded ON remote_sessions (tenant_id, closed_at) WHERE recording_key IS NOT NULL;

CREATE TABLE remote_session_tokens (
    token_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    session_id TEXT NOT NULL REFERENCES remote_sessions(id) ON DELETE CASCADE,
    read_only BIGINT NOT NULL,
    issued_to TEXT NOT NULL,
    source_addr TEXT,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX remote_session_tokens_by_session ON remote_session_tokens (session_id);

CREATE TABLE remote_policies (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    enabled BIGINT NOT NULL,
    record_input BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
