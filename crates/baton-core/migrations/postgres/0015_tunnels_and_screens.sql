-- Remote sessions of kind `tunnel` (TCP to `tunnel_host`:`tunnel_port` as the device reaches
-- it) and `screen` (`screen_control` 1 when keyboard and mouse go through, 0 to view only).
ALTER TABLE remote_sessions ADD COLUMN tunnel_host TEXT;
ALTER TABLE remote_sessions ADD COLUMN tunnel_port BIGINT;
ALTER TABLE remote_sessions ADD COLUMN screen_control BIGINT NOT NULL DEFAULT 0;
-- Who opened it, by a stable id (`user:<id>`, `token:<id>`): names are not unique, and a
-- tunnel's connections must come from the very principal that opened it.
ALTER TABLE remote_sessions ADD COLUMN opener_id TEXT;
-- An API token narrowed to some of its role's permissions (space-separated); NULL: all of them.
ALTER TABLE api_tokens ADD COLUMN permissions TEXT;
