-- Send windows: a message due outside its recipient's window is recorded `deferred` with the
-- instant its window opens; a `deliver_message` task (inserted in the same transaction) sends it
-- then. A deferred row may be claimed again once that instant has passed, by the task or by a
-- later run of its job, whichever comes first; the claim makes it go out once.
ALTER TABLE notification_log ADD COLUMN deferred_until TEXT;
CREATE INDEX notification_log_deferred ON notification_log (deferred_until) WHERE status = 'deferred';
