-- The keys of messages not yet final (`sending`, `unknown`, `deferred`), apart from
-- `notification_log`: the status of a message is no longer in any index of that table, so the
-- update that ends a message (`sending` -> `sent`) changes no indexed column and, with room on
-- its page (0016), is a HOT update that adds no entry to the table's five indexes. Before, the
-- partial indexes of open and deferred rows named `status`, and every end wrote a new entry in
-- each index.
--
-- A key is added here in the transaction that makes its message open (the claim), and removed
-- in the one that makes it final (the journal's end or cancellation), or just after (a
-- release, a cancelled deferral), or by the sweep that resolves the claims of a stopped
-- process. Readers join to `notification_log` and check the status there, so a key left here
-- after its message ended is harmless.
CREATE TABLE notification_open (
    dedup_key text PRIMARY KEY
);
INSERT INTO notification_open (dedup_key)
    SELECT dedup_key FROM notification_log WHERE status IN ('sending', 'unknown', 'deferred');
DROP INDEX notification_log_open;
DROP INDEX notification_log_deferred;
