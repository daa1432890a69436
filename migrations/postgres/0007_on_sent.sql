-- When a `notify` job's `on_sent` statements ran for the row a message belongs to (set on each
-- message of the row, after they committed in the application's database). A row whose
-- messages all went out gets `on_sent` until this is set: in the run that sent its last
-- message, or, when those statements failed or the daemon died before they committed, in the
-- next run that sees the row; and not again after. Messages sent before this column existed
-- had their `on_sent` run (at every run that saw them), so they count as done.
ALTER TABLE notification_log ADD COLUMN on_sent_at timestamptz;
UPDATE notification_log SET on_sent_at = updated_at WHERE status = 'sent';
