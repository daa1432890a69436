-- A count of the changes that may make a task due sooner, which the daemon's watch reads when
-- the kernel reports a write to the WAL (store/sqlite.rs): an insert, or an update that makes
-- a pending task due sooner (`scheduled_for` moved earlier, a task set back to `pending`). It
-- is SQLite's counterpart of PostgreSQL's NOTIFY triggers (0003 and 0006 there), with the same
-- conditions, so the daemon's own other writes (heartbeats, the run ledger) do not wake its
-- task runner. Triggers live in the database file, so an application inserting tasks with
-- plain SQL bumps the count too.
INSERT INTO tickler_counters (name, value) VALUES ('queue_changes', 0);

CREATE TRIGGER scheduled_tasks_changes_insert AFTER INSERT ON scheduled_tasks
BEGIN
    UPDATE tickler_counters SET value = value + 1 WHERE name = 'queue_changes';
END;

CREATE TRIGGER scheduled_tasks_changes_sooner AFTER UPDATE OF scheduled_for, status ON scheduled_tasks
    WHEN NEW.status = 'pending'
         AND (OLD.status IS NOT 'pending' OR NEW.scheduled_for < OLD.scheduled_for)
BEGIN
    UPDATE tickler_counters SET value = value + 1 WHERE name = 'queue_changes';
END;
