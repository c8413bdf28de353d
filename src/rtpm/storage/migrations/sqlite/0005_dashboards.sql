-- Dashboards of the web UI: one row per dashboard, its panels as JSON, per tenant.
CREATE TABLE dashboards (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    spec TEXT NOT NULL,                -- JSON: {"panels": [...], "range": ...}
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
