-- The run ledger (DESIGN.md "The run ledger"). The seed's columns come first, so the seed's
-- monitoring SQL runs unchanged; one row per fire, keyed by (job_name, scheduled_for).
CREATE TABLE job_execution_logs (
    id                uuid PRIMARY KEY,
    job_name          text NOT NULL,
    status            text NOT NULL CHECK (status IN ('running', 'succeeded', 'partial', 'failed',
                          'timed_out', 'skipped', 'missed', 'abandoned', 'interrupted')),
    started_at        timestamptz,
    completed_at      timestamptz,
    duration_seconds  double precision,
    records_processed bigint,
    error_message     text,
    metadata          jsonb,
    scheduled_for     timestamptz NOT NULL,
    "trigger"         text NOT NULL DEFAULT 'schedule'
                          CHECK ("trigger" IN ('schedule', 'catch_up', 'manual')),
    attempt           integer NOT NULL DEFAULT 1,
    instance          text
);

-- Several replicas insert the same slot; exactly one insert succeeds and only that replica
-- runs the slot (invariant 2). Manual runs stay outside the slot key.
CREATE UNIQUE INDEX job_execution_logs_slot
    ON job_execution_logs (job_name, scheduled_for) WHERE "trigger" <> 'manual';
-- Few indexes, because each one is written by every claim: newest-first listings (the seed's
-- monitoring query, `tickler history`, pruning) and the rows still running.
CREATE INDEX job_execution_logs_started ON job_execution_logs (started_at);
CREATE INDEX job_execution_logs_running
    ON job_execution_logs (instance) WHERE status = 'running';

-- Live daemons and their heartbeats: a running row whose instance stopped beating is abandoned.
CREATE TABLE tickler_instances (
    id           text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    version      text NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);
