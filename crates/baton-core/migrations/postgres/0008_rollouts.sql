-- Rollouts: an artifact taken to a fixed set of devices in waves, and one execution per device.

-- `spec` is the rollout's JSON settings (targets, waves, gates, retry, rate, install, downgrade).
-- `wave_met_at` is when the current wave met its success gate; the next starts after the bake.
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    artifact_id TEXT NOT NULL REFERENCES artifacts(id),
    rollback_artifact_id TEXT REFERENCES artifacts(id),
    state TEXT NOT NULL,
    paused_reason TEXT,
    current_wave BIGINT NOT NULL,
    wave_met_at BIGINT,
    spec TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX rollouts_by_tenant ON rollouts (tenant_id, created_at, id);
CREATE INDEX rollouts_by_state ON rollouts (state);

-- One device's part. The members and their waves are fixed when the rollout is made; `position`
-- is the device's place in the rollout's stable order. `attempt` counts from 1; a retry is the
-- next attempt, due at `retry_at`. A rollback is a second row with action `rollback`.
CREATE TABLE rollout_executions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    rollout_id TEXT NOT NULL REFERENCES rollouts(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    wave BIGINT NOT NULL,
    position BIGINT NOT NULL,
    action TEXT NOT NULL,
    artifact_id TEXT NOT NULL REFERENCES artifacts(id),
    state TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    failure_class TEXT,
    detail TEXT,
    installed_version TEXT,
    bytes_per_sec BIGINT,
    retry_at BIGINT,
    updated_at BIGINT NOT NULL,
    UNIQUE (rollout_id, device_id, action)
);
CREATE INDEX executions_by_rollout ON rollout_executions (rollout_id, action, wave, state);
CREATE INDEX executions_by_device ON rollout_executions (device_id, state);

-- What each device reports it has installed, by artifact name.
CREATE TABLE device_software (
    device_id TEXT NOT NULL REFERENCES devices(id),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, name)
);
