-- The console's queue page lists the open tasks of one status due first (failed ones newest
-- first), 50 a page, a deep page by OFFSET. Ordered by (status, scheduled_for, id), with
-- task_type last for the type filter, this index hands a page its rows in order and skips the
-- rows before it without reading the table. `scheduled_tasks_open` (status, task_type,
-- scheduled_for) alone made every page sort all the open tasks of its status
-- (benches/console.rs, 40,000 pending tasks on SQLite: 120 ms for the first page, 307 ms for
-- page 800); it stays for the open-task counts, which it hands over grouped by type.
CREATE INDEX scheduled_tasks_open_due ON scheduled_tasks (status, scheduled_for, id, task_type)
    WHERE status IN ('pending', 'executing', 'failed');
