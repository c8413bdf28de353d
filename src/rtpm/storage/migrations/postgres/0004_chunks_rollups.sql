-- Compressed chunks: one series' samples of one time window (timestamps and values as pcodec columns).
CREATE TABLE chunks (
    series_id    BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    min_ts       BIGINT NOT NULL,
    max_ts       BIGINT NOT NULL,
    count        INTEGER NOT NULL,
    ts_data      BYTEA  NOT NULL,
    value_data   BYTEA  NOT NULL,
    PRIMARY KEY (series_id, window_start)
);
ALTER TABLE chunks ALTER COLUMN ts_data SET STORAGE EXTERNAL;
ALTER TABLE chunks ALTER COLUMN value_data SET STORAGE EXTERNAL;

-- Rollups of closed buckets per resolution (bucket width in ms). NaN samples are not values.
CREATE TABLE rollups (
    resolution_ms BIGINT NOT NULL,
    series_id     BIGINT NOT NULL,
    bucket        BIGINT NOT NULL,
    count         INTEGER NOT NULL,
    sum           DOUBLE PRECISION,
    min           DOUBLE PRECISION,
    max           DOUBLE PRECISION,
    first_ts      BIGINT NOT NULL,
    first_value   DOUBLE PRECISION,
    last_ts       BIGINT NOT NULL,
    last_value    DOUBLE PRECISION,
    increase      DOUBLE PRECISION,
    PRIMARY KEY (resolution_ms, series_id, bucket)
);

-- Watermarks of the background jobs. Rollups start just before this schema existed.
CREATE TABLE maintenance_state (
    name  TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO maintenance_state (name, value) VALUES ('created_ms', (extract(epoch FROM now()) * 1000)::bigint);

-- Samples written late (older than the grace period when written): their windows and buckets must
-- be compacted or rolled up again. kind is 'rollup' (bucket = hour start) or 'compact' (window start).
CREATE TABLE late_writes (
    kind      TEXT    NOT NULL,
    series_id BIGINT  NOT NULL,
    bucket    BIGINT  NOT NULL,
    seq       INTEGER NOT NULL DEFAULT 0,  -- bumped by every late write; a job clears a mark only if unchanged
    PRIMARY KEY (kind, series_id, bucket)
);

-- Leases for leader election among processes sharing the database (background jobs).
CREATE TABLE leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_ms BIGINT NOT NULL
);
