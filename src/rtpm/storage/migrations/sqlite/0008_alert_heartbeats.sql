-- The alert evaluator's heartbeat: one row per kind of runner (embedded, celery), written by the
-- leader after every evaluation round, read by /health/detailed and /metrics in every process.
CREATE TABLE alert_heartbeats (
    runner           TEXT    PRIMARY KEY,
    holder           TEXT    NOT NULL,
    round_ms         INTEGER NOT NULL,
    rules            INTEGER NOT NULL,
    errors           INTEGER NOT NULL,
    duration_seconds REAL    NOT NULL,
    stall_seconds    REAL    NOT NULL
);
