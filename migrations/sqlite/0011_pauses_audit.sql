-- Operator actions (DESIGN.md invariants 2 and 3).
--
-- A paused job: its slots are recorded `paused` (a ledger status, final like `skipped`) instead
-- of run, by every daemon that reads this table before it claims a fire, so every replica obeys
-- the pause at once. A reload does not unpause: only `tickler resume` (or the console) deletes
-- the row.
CREATE TABLE job_pauses (
    job_name    TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    paused_by   TEXT NOT NULL,
    paused_at   TEXT NOT NULL
);

-- Every operator action, from the CLI or the console: who, from where, what, on what, when.
-- Rows are only ever inserted; `cleanup` does not touch them.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    who         TEXT NOT NULL,
    origin      TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX audit_log_target ON audit_log (target, id);
-- job_execution_logs.status (no CHECK on SQLite) gains `paused`; job_execution_logs.trigger
-- gains `backfill`.

-- Backfills (`tickler backfill`): a past slot run on request, recorded with
-- `trigger = 'backfill'` beside whatever the slot's own row says (a failed run stays failed,
-- its backfill is a row of its own). So backfill rows stay out of the slot key, as manual runs
-- do; two backfills cannot run one slot at once: an open backfill row holds it.
DROP INDEX job_execution_logs_slot;
CREATE UNIQUE INDEX job_execution_logs_slot
    ON job_execution_logs (job_name, scheduled_for) WHERE "trigger" NOT IN ('manual', 'backfill');
CREATE UNIQUE INDEX job_execution_logs_backfill
    ON job_execution_logs (job_name, scheduled_for)
 WHERE "trigger" = 'backfill' AND status IN ('pending', 'running');
