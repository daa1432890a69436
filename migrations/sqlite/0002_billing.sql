-- Billing and collections (issue 3): customers, their subscriptions (leases, plans), the
-- invoices tickler creates or imports, and the log of every notification it sends.
-- Ids are UUID text, dates `YYYY-MM-DD`, timestamps RFC 3339 text in UTC, amounts integers
-- in minor units (cents), booleans 0/1. PostgreSQL's copy of this schema checks the value
-- lists; here `tickler import` and the jobs check them.
CREATE TABLE customers (
    id                   TEXT PRIMARY KEY NOT NULL,
    org_id               TEXT,
    name                 TEXT NOT NULL,
    email                TEXT,
    phone                TEXT,                          -- E.164, e.g. +27821234567
    timezone             TEXT,                          -- IANA zone; NULL: the job's zone
    locale               TEXT NOT NULL DEFAULT 'en',
    provider_customer_id TEXT,                          -- the payment provider's customer code
    created_at           TEXT NOT NULL
);
CREATE INDEX customers_email ON customers (email);

CREATE TABLE subscriptions (
    id                 TEXT PRIMARY KEY NOT NULL,
    customer_id        TEXT NOT NULL REFERENCES customers (id),
    description        TEXT NOT NULL DEFAULT '',
    amount_minor       INTEGER NOT NULL,
    currency           TEXT NOT NULL,                   -- ISO 4217, e.g. ZAR
    "interval"         TEXT NOT NULL,                   -- monthly, weekly, yearly
    anchor_day         INTEGER NOT NULL,                -- day of month (1-31) or ISO weekday (1-7)
    start_date         TEXT NOT NULL,
    end_date           TEXT,
    payment_terms_days INTEGER NOT NULL DEFAULT 7,      -- due date = period start + this
    auto_invoice       INTEGER NOT NULL DEFAULT 1,
    created_at         TEXT NOT NULL
);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

CREATE TABLE invoices (
    id               TEXT PRIMARY KEY NOT NULL,
    number           TEXT NOT NULL UNIQUE,
    customer_id      TEXT NOT NULL REFERENCES customers (id),
    subscription_id  TEXT REFERENCES subscriptions (id),
    period_start     TEXT,
    period_end       TEXT,
    amount_minor     INTEGER NOT NULL,
    currency         TEXT NOT NULL,
    issued_at        TEXT NOT NULL,
    due_date         TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'open',      -- open, paid, void
    paid_at          TEXT,
    provider_ref     TEXT,                              -- e.g. Paystack's payment request code
    escalation_level INTEGER NOT NULL DEFAULT 0,        -- the last overdue level sent (0: none)
    escalated_at     TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
-- Invariant 4: one invoice per (subscription, billing period), so re-runs create nothing twice.
CREATE UNIQUE INDEX invoices_period ON invoices (subscription_id, period_start)
    WHERE subscription_id IS NOT NULL;
-- Reminder windows and escalation levels read open invoices by due date, in pages ordered
-- by (due_date, id): the index gives that order, so no page sorts.
CREATE INDEX invoices_open_due ON invoices (due_date, id) WHERE status = 'open';
CREATE INDEX invoices_customer ON invoices (customer_id);
CREATE INDEX invoices_issued ON invoices (issued_at);

-- Every message tickler sends or tried to send. `dedup_key` is unique: a message is claimed by
-- inserting its key (status `sending`), so retries and re-runs never send it twice; a failed
-- one is claimed again by the next run. `unknown`: the provider timed out after the request
-- left, so it may have been sent; it is not sent again.
CREATE TABLE notification_log (
    id                  TEXT PRIMARY KEY NOT NULL,
    dedup_key           TEXT NOT NULL UNIQUE,
    job_name            TEXT,
    channel             TEXT NOT NULL,                  -- email, sms, whatsapp, webhook
    recipient           TEXT NOT NULL,
    template            TEXT,
    invoice_id          TEXT,
    status              TEXT NOT NULL,                  -- sending, sent, failed, skipped, unknown
    provider_message_id TEXT,
    error               TEXT,
    attempts            INTEGER NOT NULL DEFAULT 1,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    sent_at             TEXT
);
CREATE INDEX notification_log_created ON notification_log (created_at);
CREATE INDEX notification_log_invoice ON notification_log (invoice_id);

-- Named counters, e.g. the invoice number sequence.
CREATE TABLE tickler_counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
