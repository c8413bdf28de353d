-- Alerting: rules, alerts (active state and history in one table). Evaluator leadership is a
-- session-level advisory lock, so no table is needed for it here.
CREATE TABLE alert_rules (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    last_eval_ms BIGINT,
    last_eval_seconds DOUBLE PRECISION,
    last_error TEXT,
    UNIQUE (tenant, name)
);

CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    rule_id BIGINT NOT NULL,
    rule_name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    value DOUBLE PRECISION,
    active_ms BIGINT NOT NULL,
    fired_ms BIGINT,
    resolved_ms BIGINT,
    resolved_by TEXT,
    keep_firing_since_ms BIGINT,
    last_sent_ms BIGINT,
    updated_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX alerts_active_fp ON alerts (rule_id, fingerprint) WHERE resolved_ms IS NULL;
CREATE INDEX alerts_tenant_active_ms ON alerts (tenant, active_ms);
