CREATE TABLE series (
    id          BIGSERIAL PRIMARY KEY,
    tenant      TEXT   NOT NULL,
    fingerprint BIGINT NOT NULL,
    name        TEXT   NOT NULL,
    labels      JSONB  NOT NULL,  -- every label, __name__ included
    created_ms  BIGINT NOT NULL,
    UNIQUE (tenant, fingerprint)
);
CREATE INDEX series_tenant_name ON series (tenant, name);

-- Partitioned by day on ts (epoch ms); partitions are made ahead of need by the application,
-- so retention can drop whole partitions.
CREATE TABLE samples (
    series_id BIGINT           NOT NULL,
    ts        BIGINT           NOT NULL,
    value     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE metric_metadata (
    tenant     TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    type       TEXT   NOT NULL,
    unit       TEXT   NOT NULL,
    help       TEXT   NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
