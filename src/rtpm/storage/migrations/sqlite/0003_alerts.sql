-- Alerting: rules, alerts (active state and history in one table), evaluator leadership lease.
CREATE TABLE alert_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,                -- JSON: expr, for, labels, annotations, threshold form, ...
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    last_eval_ms INTEGER,
    last_eval_seconds REAL,
    last_error TEXT,
    UNIQUE (tenant, name)
);

-- One row per alert: pending/firing while active, then resolved (kept as history).
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    rule_id INTEGER NOT NULL,
    rule_name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    value REAL,
    active_ms INTEGER NOT NULL,
    fired_ms INTEGER,
    resolved_ms INTEGER,
    resolved_by TEXT,
    keep_firing_since_ms INTEGER,
    last_sent_ms INTEGER,
    updated_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX alerts_active_fp ON alerts (rule_id, fingerprint) WHERE resolved_ms IS NULL;
CREATE INDEX alerts_tenant_active_ms ON alerts (tenant, active_ms);

-- Who evaluates rules: one holder at a time, until its lease expires.
CREATE TABLE alert_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
