-- Automatic rollouts: a new artifact whose name matches `artifact_name` (exact, or a prefix
-- ending in `*`) becomes a rollout made from `template` (a RolloutCreate, JSON).
CREATE TABLE rollout_rules (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    artifact_name TEXT NOT NULL,
    kind TEXT,
    template TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
