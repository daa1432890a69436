-- Operator actions (DESIGN.md invariants 2 and 3).
--
-- A paused job: its slots are recorded `paused` (a ledger status, final like `skipped`) instead
-- of run, by every daemon that reads this table before it claims a fire, so every replica obeys
-- the pause at once. A reload does not unpause: only `tickler resume` (or the console) deletes
-- the row.
CREATE TABLE job_pauses (
    job_name    text PRIMARY KEY,
    reason      text NOT NULL,
    paused_by   text NOT NULL,
    paused_at   timestamptz NOT NULL
);

-- Every operator action, from the CLI or the console: who, from where, what, on what, when.
-- Rows are only ever inserted; `cleanup` does not touch them.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    who         text NOT NULL,
    origin      text NOT NULL,
    action      text NOT NULL,
    target      text NOT NULL,
    detail      text
);
CREATE INDEX audit_log_target ON audit_log (target, id);

ALTER TABLE job_execution_logs DROP CONSTRAINT job_execution_logs_status_check;
ALTER TABLE job_execution_logs ADD CONSTRAINT job_execution_logs_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'partial', 'failed', 'timed_out',
                      'skipped', 'missed', 'paused', 'abandoned', 'interrupted'));

-- Backfills (`tickler backfill`): a past slot run on request, recorded with
-- `trigger = 'backfill'` beside whatever the slot's own row says (a failed run stays failed,
-- its backfill is a row of its own). So backfill rows stay out of the slot key, as manual runs
-- do; two backfills cannot run one slot at once: an open backfill row holds it.
ALTER TABLE job_execution_logs DROP CONSTRAINT job_execution_logs_trigger_check;
ALTER TABLE job_execution_logs ADD CONSTRAINT job_execution_logs_trigger_check
    CHECK ("trigger" IN ('schedule', 'catch_up', 'manual', 'backfill'));
DROP INDEX job_execution_logs_slot;
CREATE UNIQUE INDEX job_execution_logs_slot
    ON job_execution_logs (job_name, scheduled_for) WHERE "trigger" NOT IN ('manual', 'backfill');
CREATE UNIQUE INDEX job_execution_logs_backfill
    ON job_execution_logs (job_name, scheduled_for)
 WHERE "trigger" = 'backfill' AND status IN ('pending', 'running');
