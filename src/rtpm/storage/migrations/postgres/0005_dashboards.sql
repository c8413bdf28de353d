-- Dashboards of the web UI: one row per dashboard, its panels as JSON, per tenant.
CREATE TABLE dashboards (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
