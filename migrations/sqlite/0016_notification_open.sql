-- The keys of messages not yet final (`sending`, `unknown`, `deferred`), apart from
-- `notification_log`, as on PostgreSQL (where it lets the update that ends a message be a HOT
-- update): the status of a message is in no index of `notification_log`, so ending a message
-- writes its row alone, not also the partial indexes of open and deferred rows.
--
-- A key is added here in the transaction that makes its message open (the claim), and removed
-- in the one that makes it final (the journal's end or cancellation), or just after (a
-- release, a cancelled deferral), or by the sweep that resolves the claims of a stopped
-- process. Readers join to `notification_log` and check the status there, so a key left here
-- after its message ended is harmless.
CREATE TABLE notification_open (
    dedup_key TEXT PRIMARY KEY
) WITHOUT ROWID;
INSERT INTO notification_open (dedup_key)
    SELECT dedup_key FROM notification_log WHERE status IN ('sending', 'unknown', 'deferred');
DROP INDEX notification_log_open;
DROP INDEX notification_log_deferred;
