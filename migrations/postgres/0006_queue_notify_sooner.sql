-- An update that makes a pending task due sooner wakes the daemons listening, as an insert
-- does (0003): an application or operator moving `scheduled_for` earlier, a failed or
-- cancelled task set back to `pending`, a task released or reclaimed. Without it a daemon
-- noticed such a task only at its next scheduled look (up to 30 s late). Row-level, so only
-- the rows that match pay for it; notifications with the same payload are folded into one per
-- transaction. Claims (pending -> executing) and finishes (executing -> completed/failed)
-- match nothing and notify nobody.
CREATE TRIGGER scheduled_tasks_notify_sooner
    AFTER UPDATE OF scheduled_for, status ON scheduled_tasks
    FOR EACH ROW
    WHEN (NEW.status = 'pending'
          AND (OLD.status IS DISTINCT FROM 'pending' OR NEW.scheduled_for < OLD.scheduled_for))
    EXECUTE FUNCTION tickler_tasks_notify();
