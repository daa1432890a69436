-- The console's queue reads no longer cost the queue a third of its burn-down. The two indexes
-- of 0012 and 0014 held every `executing` task too, so each claim (pending -> executing) wrote
-- two more index entries, and each insert two more than before the console (`benches/queue.rs`,
-- 100,000 no-op tasks, three interleaved rounds without them: PostgreSQL 13,500-18,600 ->
-- 18,300-24,200 tasks/s, SQLite 14,500-15,800 -> 21,600-26,600).
-- One index now serves the pages and the counts of pending and failed tasks; the few
-- `executing` ones (at most each daemon's `[queue] concurrency`) are read through
-- `scheduled_tasks_leases`. The counts by type read this index whole, as they read
-- `scheduled_tasks_open` before, grouping by hash instead of by its order.
DROP INDEX scheduled_tasks_open;
DROP INDEX scheduled_tasks_open_due;
CREATE INDEX scheduled_tasks_waiting ON scheduled_tasks (status, scheduled_for, id, task_type)
    WHERE status IN ('pending', 'failed');
