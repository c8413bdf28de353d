CREATE TABLE series (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    fingerprint INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    labels      TEXT    NOT NULL,  -- JSON object of every label, __name__ included
    created_ms  INTEGER NOT NULL,
    UNIQUE (tenant, fingerprint)
);
CREATE INDEX series_tenant_name ON series (tenant, name);

-- value is NULL when the sample is a NaN (SQLite turns NaN into NULL); nan_bits then keeps its
-- exact bit pattern, so Prometheus' staleness marker survives the round trip.
CREATE TABLE samples (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    value     REAL,
    nan_bits  INTEGER,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

CREATE TABLE metric_metadata (
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    type       TEXT NOT NULL,
    unit       TEXT NOT NULL,
    help       TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
