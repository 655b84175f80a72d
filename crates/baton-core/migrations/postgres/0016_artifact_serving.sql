-- The best aggregate rate at which this server served artifact bytes to many devices at once
-- (`artifacts::serving`), for rollout estimates. One row; a measure older than 30 days gives way
-- to the next one.
CREATE TABLE artifact_serving (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bytes_per_sec BIGINT NOT NULL,
    downloads BIGINT NOT NULL,
    measured_at BIGINT NOT NULL
);
