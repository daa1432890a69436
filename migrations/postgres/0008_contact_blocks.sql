-- Opt-outs: an address that gets nothing on a channel (`*`: on every person channel: email,
-- SMS, WhatsApp). Checked before every send; a blocked message is recorded in
-- `notification_log` with status `suppressed` (final, like `skipped`), never sent. Addresses
-- are stored normalized: emails trimmed and lower-cased, phone numbers in E.164 (`+15551234567`).
-- `source` says who blocked it: `cli`, `import`.
CREATE TABLE contact_blocks (
    channel     text NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp', '*')),
    address     text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    source      text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (channel, address)
);
CREATE INDEX contact_blocks_address ON contact_blocks (address);

ALTER TABLE notification_log DROP CONSTRAINT notification_log_status_check;
ALTER TABLE notification_log ADD CONSTRAINT notification_log_status_check
    CHECK (status IN ('sending', 'sent', 'failed', 'skipped', 'suppressed', 'unknown'));
