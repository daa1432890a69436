-- The durable queue of one-off delayed tasks and the collection campaigns that feed it
-- (issue 4, seed 000). `scheduled_tasks` keeps every column of the seed's schema, so its
-- monitoring SQL runs unchanged, plus what a safe claim needs: a priority, the lease (owner and
-- expiry) of the daemon running the task, and the count of times it was started.
-- Types as in 0002: UUID text, RFC 3339 UTC timestamps, JSON text.
CREATE TABLE campaigns (
    id                  TEXT PRIMARY KEY NOT NULL,
    org_id              TEXT NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    name                TEXT NOT NULL,
    status              TEXT NOT NULL DEFAULT 'active', -- active, paused, completed
    days_between_emails INTEGER NOT NULL,
    max_attempts        INTEGER NOT NULL,
    stages              TEXT NOT NULL,                  -- JSON: the tone of each email, in order
    escalation_tone     TEXT,                           -- past the last stage; NULL: none
    send_hour           INTEGER NOT NULL,               -- 0-23, in each customer's zone
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    completed_at        TEXT
);
CREATE UNIQUE INDEX campaigns_name ON campaigns (org_id, name);

-- One row per invoice in a campaign: how far its emails got.
CREATE TABLE campaign_invoices (
    campaign_id  TEXT NOT NULL REFERENCES campaigns (id),
    invoice_id   TEXT NOT NULL REFERENCES invoices (id),
    status       TEXT NOT NULL DEFAULT 'active',        -- active, paid, exhausted, cancelled
    attempts     INTEGER NOT NULL DEFAULT 0,            -- emails sent
    tone         TEXT,                                  -- set by an escalation
    last_sent_at TEXT,
    ended_at     TEXT,
    PRIMARY KEY (campaign_id, invoice_id)
);
CREATE INDEX campaign_invoices_invoice ON campaign_invoices (invoice_id) WHERE status = 'active';

CREATE TABLE scheduled_tasks (
    id               TEXT PRIMARY KEY NOT NULL,
    org_id           TEXT NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    campaign_id      TEXT,
    invoice_id       TEXT,
    customer_id      TEXT,
    task_type        TEXT NOT NULL,
    task_data        TEXT,
    scheduled_for    TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',   -- pending, executing, completed, failed, cancelled
    executed_at      TEXT,                              -- when the last attempt started
    error_message    TEXT,
    retry_count      INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL DEFAULT 3,
    metadata         TEXT,                              -- the enqueuer's; the outcome is `result`
    created_at       TEXT,
    updated_at       TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,        -- higher first among due tasks
    attempts         INTEGER NOT NULL DEFAULT 0,        -- times started (a reclaim counts)
    lease_owner      TEXT,                              -- the daemon running it
    lease_expires_at TEXT,                              -- then it may be reclaimed
    completed_at     TEXT,
    result           TEXT
);
CREATE INDEX scheduled_tasks_claim ON scheduled_tasks (priority DESC, scheduled_for)
    WHERE status = 'pending';
CREATE INDEX scheduled_tasks_due ON scheduled_tasks (scheduled_for) WHERE status = 'pending';
CREATE INDEX scheduled_tasks_leases ON scheduled_tasks (lease_expires_at)
    WHERE status = 'executing';
CREATE INDEX scheduled_tasks_campaign ON scheduled_tasks (campaign_id)
    WHERE status = 'pending' AND campaign_id IS NOT NULL;
CREATE INDEX scheduled_tasks_invoice ON scheduled_tasks (invoice_id)
    WHERE status = 'pending' AND invoice_id IS NOT NULL;
