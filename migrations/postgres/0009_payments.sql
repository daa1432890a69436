-- Payments in (issue 15): each provider event once. A payment names its invoice by number or by
-- the provider's reference (`invoices.provider_ref`, e.g. Paystack's payment request code); its
-- amount adds to the invoice's `paid_minor`, and the invoice becomes `paid` when that reaches
-- its amount, in the transaction that records the payment (which also cancels what was pending
-- for the invoice). An event naming no invoice, or one that cannot take it, is kept with its
-- `outcome`, so nothing a provider sent is lost. Invoices paid before this column existed count
-- as paid in full.
ALTER TABLE invoices ADD COLUMN paid_minor bigint NOT NULL DEFAULT 0 CHECK (paid_minor >= 0);
UPDATE invoices SET paid_minor = amount_minor WHERE status = 'paid';

CREATE TABLE payments (
    id           uuid PRIMARY KEY,
    provider     text NOT NULL,
    event_id     text NOT NULL,
    invoice_ref  text NOT NULL,
    invoice_id   uuid REFERENCES invoices (id),
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency     text NOT NULL,
    paid_at      timestamptz NOT NULL,
    reference    text,
    outcome      text NOT NULL CHECK (outcome IN ('paid', 'partial', 'unknown_invoice', 'not_applied')),
    detail       text,
    payload      jsonb,
    created_at   timestamptz NOT NULL,
    UNIQUE (provider, event_id)
);
-- One payment is one row, whichever of its events arrives first: Stripe sends both
-- `checkout.session.completed` and `payment_intent.succeeded` for one payment, each with its
-- own event id and the same `pi_...` reference.
CREATE UNIQUE INDEX payments_reference ON payments (provider, reference) WHERE reference IS NOT NULL;
CREATE INDEX payments_invoice ON payments (invoice_id);
CREATE INDEX payments_created ON payments (created_at);
