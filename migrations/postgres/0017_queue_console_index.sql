-- The console's queue reads no longer cost the queue a third of its burn-down. The two indexes
-- of 0012 and 0014 held every `executing` task too, so each claim (pending -> executing) wrote
-- two more index entries (`benches/queue.rs`, 100,000 no-op tasks, three interleaved rounds
-- without them: PostgreSQL 13,500-18,600 -> 18,300-24,200 tasks/s, SQLite 14,500-15,800 ->
-- 21,600-26,600). Both now hold pending and failed tasks alone: a claim writes no entry to
-- them. The few `executing` tasks (at most each daemon's `[queue] concurrency`) are paged and
-- counted through `scheduled_tasks_leases`.
DROP INDEX scheduled_tasks_open;
DROP INDEX scheduled_tasks_open_due;
-- The pages of pending and failed tasks, in due order, however deep.
CREATE INDEX scheduled_tasks_waiting ON scheduled_tasks (status, scheduled_for, id, task_type)
    WHERE status IN ('pending', 'failed');
-- Their counts by status and type, read in that order (without it, SQLite sorted every entry
-- of the index above: 23-28 ms at 50,000 open tasks instead of 7).
CREATE INDEX scheduled_tasks_waiting_types ON scheduled_tasks (status, task_type)
    WHERE status IN ('pending', 'failed');
