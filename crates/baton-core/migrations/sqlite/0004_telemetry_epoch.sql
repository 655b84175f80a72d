-- The agent's telemetry numbering (see the agent protocol's backlog_epoch): when it changes, the
-- stored sequence number starts over, so a device that lost its backlog is not ignored.
ALTER TABLE devices ADD COLUMN telemetry_epoch BIGINT;
