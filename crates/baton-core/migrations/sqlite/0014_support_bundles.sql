-- Support bundles: an archive of a device's logs, inventory and diagnostics, asked for by an
-- operator (one request may name many devices: `request_id`, the command batch that carries it)
-- and delivered to the device as the command `command_id`. The archive lives in the artifact
-- store under `store_key` once the device uploaded it; `state` is requested, uploading, stored
-- or failed (`error` says why).
CREATE TABLE support_bundles (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    request_id TEXT NOT NULL,
    command_id TEXT NOT NULL,
    state TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    source_addr TEXT,
    since_secs BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    stored_at BIGINT,
    size_bytes BIGINT,
    sha256 TEXT,
    store_key TEXT,
    error TEXT
);
CREATE INDEX support_bundles_newest ON support_bundles (tenant_id, created_at, id);
CREATE INDEX support_bundles_by_device ON support_bundles (tenant_id, device_id, created_at, id);
CREATE INDEX support_bundles_by_request ON support_bundles (tenant_id, request_id);
CREATE INDEX support_bundles_by_command ON support_bundles (command_id);
CREATE INDEX support_bundles_kept ON support_bundles (stored_at) WHERE store_key IS NOT NULL;
CREATE INDEX support_bundles_open ON support_bundles (command_id) WHERE state IN ('requested', 'uploading');
