-- The run ledger (DESIGN.md "The run ledger"). The seed's columns come first, so the seed's
-- monitoring SQL runs unchanged; one row per fire, keyed by (job_name, scheduled_for).
CREATE TABLE job_execution_logs (
    id                TEXT PRIMARY KEY NOT NULL,
    job_name          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'partial', 'failed',
                          'timed_out', 'skipped', 'missed', 'abandoned', 'interrupted')),
    started_at        TEXT,
    completed_at      TEXT,
    duration_seconds  REAL,
    records_processed INTEGER,
    error_message     TEXT,
    metadata          TEXT,
    scheduled_for     TEXT NOT NULL,
    "trigger"         TEXT NOT NULL DEFAULT 'schedule'
                          CHECK ("trigger" IN ('schedule', 'catch_up', 'manual')),
    attempt           INTEGER NOT NULL DEFAULT 1,
    instance          TEXT
);

-- A process runs a slot only if its own insert of this key succeeded (invariant 2). Manual runs
-- are keyed by their own start time and stay outside the slot key.
CREATE UNIQUE INDEX job_execution_logs_slot
    ON job_execution_logs (job_name, scheduled_for) WHERE "trigger" <> 'manual';
CREATE INDEX idx_job_logs_name_date ON job_execution_logs (job_name, started_at DESC);
CREATE INDEX idx_job_logs_status ON job_execution_logs (status);
CREATE INDEX job_execution_logs_running
    ON job_execution_logs (instance) WHERE status = 'running';
CREATE INDEX job_execution_logs_completed ON job_execution_logs (completed_at);

-- Live daemons and their heartbeats: a running row whose instance stopped beating is abandoned.
CREATE TABLE tickler_instances (
    id           TEXT PRIMARY KEY NOT NULL,
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
