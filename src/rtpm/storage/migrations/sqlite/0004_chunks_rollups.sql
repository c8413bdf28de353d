-- Compressed chunks: one series' samples of one time window (timestamps and values as pcodec columns).
CREATE TABLE chunks (
    series_id    INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    min_ts       INTEGER NOT NULL,
    max_ts       INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    ts_data      BLOB    NOT NULL,
    value_data   BLOB    NOT NULL,
    PRIMARY KEY (series_id, window_start)
) WITHOUT ROWID;

-- Rollups of closed buckets per resolution (bucket width in ms). NaN samples are not values.
CREATE TABLE rollups (
    resolution_ms INTEGER NOT NULL,
    series_id     INTEGER NOT NULL,
    bucket        INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    sum           REAL,
    min           REAL,
    max           REAL,
    first_ts      INTEGER NOT NULL,
    first_value   REAL,
    last_ts       INTEGER NOT NULL,
    last_value    REAL,
    increase      REAL,
    PRIMARY KEY (resolution_ms, series_id, bucket)
) WITHOUT ROWID;

-- Watermarks of the background jobs. Rollups start just before this schema existed.
CREATE TABLE maintenance_state (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO maintenance_state (name, value)
VALUES ('created_ms', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));

-- Samples written late (older than the grace period when written): their windows and buckets must
-- be compacted or rolled up again. kind is 'rollup' (bucket = hour start) or 'compact' (window start).
CREATE TABLE late_writes (
    kind      TEXT    NOT NULL,
    series_id INTEGER NOT NULL,
    bucket    INTEGER NOT NULL,
    seq       INTEGER NOT NULL DEFAULT 0,  -- bumped by every late write; a job clears a mark only if unchanged
    PRIMARY KEY (kind, series_id, bucket)
) WITHOUT ROWID;

-- Leases for leader election among processes sharing the database (background jobs).
CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
