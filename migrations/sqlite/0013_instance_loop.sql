-- Each daemon's heartbeat also records when its timer loop last turned, so `tickler status`
-- (another process) and every replica's console can tell a daemon that is alive but stuck from
-- a healthy one. NULL for `run-job` and `backfill` processes, which have no timer loop.
ALTER TABLE tickler_instances ADD COLUMN loop_tick_at TEXT;
