-- The alert evaluator's heartbeat: one row per kind of runner (embedded, celery), written by the
-- leader after every evaluation round, read by /health/detailed and /metrics in every process.
-- Leadership itself is the `leases` row named 'alert-evaluator' (a lease that expires).
CREATE TABLE alert_heartbeats (
    runner           TEXT             PRIMARY KEY,
    holder           TEXT             NOT NULL,
    round_ms         BIGINT           NOT NULL,
    rules            INTEGER          NOT NULL,
    errors           INTEGER          NOT NULL,
    duration_seconds DOUBLE PRECISION NOT NULL,
    stall_seconds    DOUBLE PRECISION NOT NULL
);
