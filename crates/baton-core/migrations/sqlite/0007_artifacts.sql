-- Artifacts (what updates install) and the keys that sign them.

-- A key whose signatures the tenant's devices accept. `key_id` is the first 8 bytes of the
-- SHA-256 of the public key, in hex. `private_key` (base64 seed) is set only for a key the server
-- holds and signs with; a key kept offline has only its public half here.
CREATE TABLE signing_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    key_id TEXT NOT NULL,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    private_key TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    UNIQUE (tenant_id, key_id)
);

-- One row per artifact; the bytes are in the artifact store under `object_key` (or, for an
-- external artifact, at `url`). Compatibility and dependency are JSON.
CREATE TABLE artifacts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    signature_key_id TEXT,
    signature TEXT,
    compatibility TEXT NOT NULL,
    depends TEXT,
    storage TEXT NOT NULL,
    url TEXT,
    object_key TEXT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name, version)
);
CREATE INDEX artifacts_by_tenant ON artifacts (tenant_id, created_at, id);
