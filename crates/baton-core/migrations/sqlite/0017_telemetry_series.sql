-- Telemetry as a narrow series table: integer keys for devices and metric names (dictionaries
-- below), one row per (device, metric, ts) clustered on that key. A WITHOUT ROWID table is its
-- own index, so a point is written once (was: a rowid row plus two secondary indexes with text
-- ids), a chart reads one contiguous range, and a sample resent with the same timestamp is
-- stored once (`ON CONFLICT DO NOTHING` in the writer).
CREATE TABLE telemetry_devices (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE
);
CREATE TABLE telemetry_metrics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO telemetry_devices (device_id) SELECT DISTINCT device_id FROM telemetry ORDER BY device_id;
INSERT INTO telemetry_metrics (name) SELECT DISTINCT metric FROM telemetry ORDER BY metric;
CREATE TABLE telemetry_series (
    device INTEGER NOT NULL,
    metric INTEGER NOT NULL,
    ts BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (device, metric, ts)
) WITHOUT ROWID;
-- Rows stored twice before (an MQTT redelivery) keep their first value.
INSERT INTO telemetry_series (device, metric, ts, value)
    SELECT d.id, m.id, t.ts, t.value
    FROM telemetry t
    JOIN telemetry_devices d ON d.device_id = t.device_id
    JOIN telemetry_metrics m ON m.name = t.metric
    WHERE true
    ORDER BY d.id, m.id, t.ts
    ON CONFLICT DO NOTHING;
DROP TABLE telemetry;
ALTER TABLE telemetry_series RENAME TO telemetry;
