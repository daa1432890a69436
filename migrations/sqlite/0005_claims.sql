-- Every claim has an owner whose liveness is known (DESIGN.md invariants 3 and 4).
--
-- Slots: a fire that has to wait (a catch-up backlog, `overlap = "queue"`, jitter, the
-- concurrency bound) is recorded `pending` the moment it is due, owned by its daemon
-- (`instance`). It becomes `running` when it starts. When its daemon dies or stops, another
-- daemon adopts the `pending` rows and runs or records them, so no slot is lost.
CREATE INDEX job_execution_logs_pending
    ON job_execution_logs (instance) WHERE status = 'pending';

-- Messages: `owner` is the process (a `tickler_instances` id) that claimed the row;
-- `attempted_at` is set, by the owner, just before the message is handed to the provider. A
-- `sending` row whose owner died is released (`failed`, sent by a later run) when it was never
-- attempted, and becomes `unknown` (never resent) when it may have reached the provider.
-- `run_id` links a job's messages to its run in `job_execution_logs`.
ALTER TABLE notification_log ADD COLUMN owner TEXT;
ALTER TABLE notification_log ADD COLUMN attempted_at TEXT;
ALTER TABLE notification_log ADD COLUMN run_id TEXT;
CREATE INDEX notification_log_open ON notification_log (status) WHERE status IN ('sending', 'unknown');
CREATE INDEX notification_log_run ON notification_log (run_id) WHERE run_id IS NOT NULL;
-- Rows claimed before owners were recorded may have been handed over: unknown, not resent.
UPDATE notification_log
   SET status = 'unknown', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
       error = 'claimed before tickler recorded message owners; it may have been sent'
 WHERE status = 'sending';

-- Tasks: the process group of a `command` handler's attempt (`host pgid start-ticks`), so the
-- daemon that reclaims the task on that host first ends what is left of it.
ALTER TABLE scheduled_tasks ADD COLUMN process_group TEXT;
