-- Opt-outs: an address that gets nothing on a channel (`*`: on every person channel: email,
-- SMS, WhatsApp). Checked before every send; a blocked message is recorded in
-- `notification_log` with status `suppressed` (final, like `skipped`), never sent. Addresses
-- are stored normalized: emails trimmed and lower-cased, phone numbers in E.164 (`+15551234567`).
-- `source` says who blocked it: `cli`, `import`.
CREATE TABLE contact_blocks (
    channel     TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp', '*')),
    address     TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (channel, address)
);
CREATE INDEX contact_blocks_address ON contact_blocks (address);
-- notification_log.status (no CHECK on SQLite) gains `suppressed`.
