-- Payments in (issue 15): each provider event once. A payment names its invoice by number or by
-- the provider's reference (`invoices.provider_ref`, e.g. Paystack's payment request code); its
-- amount adds to the invoice's `paid_minor`, and the invoice becomes `paid` when that reaches
-- its amount, in the transaction that records the payment (which also cancels what was pending
-- for the invoice). An event naming no invoice, or one that cannot take it, is kept with its
-- `outcome`, so nothing a provider sent is lost. Invoices paid before this column existed count
-- as paid in full.
ALTER TABLE invoices ADD COLUMN paid_minor INTEGER NOT NULL DEFAULT 0;
UPDATE invoices SET paid_minor = amount_minor WHERE status = 'paid';

CREATE TABLE payments (
    id           TEXT PRIMARY KEY NOT NULL,
    provider     TEXT NOT NULL,                   -- paystack, stripe, api
    event_id     TEXT NOT NULL,                   -- the provider's id of the event
    invoice_ref  TEXT NOT NULL,                   -- what the event named: `number:INV-1`, `provider_ref:PRQ_...`
    invoice_id   TEXT,                            -- NULL: no such invoice
    amount_minor INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    paid_at      TEXT NOT NULL,
    reference    TEXT,
    outcome      TEXT NOT NULL,                   -- paid, partial, unknown_invoice, not_applied
    detail       TEXT,
    payload      TEXT,
    created_at   TEXT NOT NULL,
    UNIQUE (provider, event_id)
);
-- One payment is one row, whichever of its events arrives first: Stripe sends both
-- `checkout.session.completed` and `payment_intent.succeeded` for one payment, each with its
-- own event id and the same `pi_...` reference.
CREATE UNIQUE INDEX payments_reference ON payments (provider, reference) WHERE reference IS NOT NULL;
CREATE INDEX payments_invoice ON payments (invoice_id);
CREATE INDEX payments_created ON payments (created_at);
