-- Billing and collections (issue 3): customers, their subscriptions (leases, plans), the
-- invoices tickler creates or imports, and the log of every notification it sends.
-- Amounts are integers in minor units (cents).
CREATE TABLE customers (
    id                   uuid PRIMARY KEY,
    org_id               uuid,
    name                 text NOT NULL,
    email                text,
    phone                text,                          -- E.164, e.g. +27821234567
    timezone             text,                          -- IANA zone; NULL: the job's zone
    locale               text NOT NULL DEFAULT 'en',
    provider_customer_id text,                          -- the payment provider's customer code
    created_at           timestamptz NOT NULL
);
CREATE INDEX customers_email ON customers (email);

CREATE TABLE subscriptions (
    id                 uuid PRIMARY KEY,
    customer_id        uuid NOT NULL REFERENCES customers (id),
    description        text NOT NULL DEFAULT '',
    amount_minor       bigint NOT NULL CHECK (amount_minor >= 0),
    currency           text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    "interval"         text NOT NULL CHECK ("interval" IN ('monthly', 'weekly', 'yearly')),
    anchor_day         integer NOT NULL CHECK (anchor_day BETWEEN 1 AND 31),
    start_date         date NOT NULL,
    end_date           date,
    payment_terms_days integer NOT NULL DEFAULT 7 CHECK (payment_terms_days >= 0),
    auto_invoice       boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL
);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

CREATE TABLE invoices (
    id               uuid PRIMARY KEY,
    number           text NOT NULL UNIQUE,
    customer_id      uuid NOT NULL REFERENCES customers (id),
    subscription_id  uuid REFERENCES subscriptions (id),
    period_start     date,
    period_end       date,
    amount_minor     bigint NOT NULL CHECK (amount_minor >= 0),
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    issued_at        timestamptz NOT NULL,
    due_date         date NOT NULL,
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'void')),
    paid_at          timestamptz,
    provider_ref     text,                              -- e.g. Paystack's payment request code
    escalation_level integer NOT NULL DEFAULT 0,        -- the last overdue level sent (0: none)
    escalated_at     timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
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
    id                  uuid PRIMARY KEY,
    dedup_key           text NOT NULL UNIQUE,
    job_name            text,
    channel             text NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp', 'webhook')),
    recipient           text NOT NULL,
    template            text,
    invoice_id          uuid,
    status              text NOT NULL CHECK (status IN ('sending', 'sent', 'failed', 'skipped', 'unknown')),
    provider_message_id text,
    error               text,
    attempts            integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    sent_at             timestamptz
);
CREATE INDEX notification_log_created ON notification_log (created_at);
CREATE INDEX notification_log_invoice ON notification_log (invoice_id);

-- Named counters, e.g. the invoice number sequence.
CREATE TABLE tickler_counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
