-- The run ledger (DESIGN.md "The run ledger"). The seed's columns come first, so the seed's
-- monitoring SQL runs unchanged; one row per fire, keyed by (job_name, scheduled_for).
CREATE TABLE job_execution_logs (
    id                TEXT PRIMARY KEY NOT NULL,
    job_name          TEXT NOT NULL,
    -- running, succeeded, partial, failed, timed_out, skipped, missed, abandoned, interrupted.
    -- (PostgreSQL checks the lists; on SQLite an IN-list CHECK costs more than the rest of
    -- an insert, and only tickler writes these columns.)
    status            TEXT NOT NULL,
    started_at        TEXT,
    completed_at      TEXT,
    duration_seconds  REAL,
    records_processed INTEGER,
    error_message     TEXT,
    metadata          TEXT,
    scheduled_for     TEXT NOT NULL,
    "trigger"         TEXT NOT NULL DEFAULT 'schedule', -- schedule, catch_up, manual
    attempt           INTEGER NOT NULL DEFAULT 1,
    instance          TEXT
);

-- A process runs a slot only if its own insert of this key succeeded (invariant 2). Manual runs
-- are keyed by their own start time and stay outside the slot key.
CREATE UNIQUE INDEX job_execution_logs_slot
    ON job_execution_logs (job_name, scheduled_for) WHERE "trigger" <> 'manual';
-- Few indexes, because each one is written by every claim: newest-first listings (the seed's
-- monitoring query, `tickler history`, pruning) and the rows still running.
CREATE INDEX job_execution_logs_started ON job_execution_logs (started_at);
CREATE INDEX job_execution_logs_running
    ON job_execution_logs (instance) WHERE status = 'running';

-- Live daemons and their heartbeats: a running row whose instance stopped beating is abandoned.
CREATE TABLE tickler_instances (
    id           TEXT PRIMARY KEY NOT NULL,
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
