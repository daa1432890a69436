-- The durable queue of one-off delayed tasks and the collection campaigns that feed it
-- (issue 4, seed 000). `scheduled_tasks` keeps every column of the seed's schema, so its
-- monitoring SQL runs unchanged, plus what a safe claim needs: a priority, the lease (owner and
-- expiry) of the daemon running the task, and the count of times it was started.
CREATE TABLE campaigns (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    name                text NOT NULL,
    status              text NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'paused', 'completed')),
    days_between_emails integer NOT NULL CHECK (days_between_emails BETWEEN 1 AND 365),
    max_attempts        integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    stages              jsonb NOT NULL,                 -- the tone of each email, in order
    escalation_tone     text,                           -- past the last stage; NULL: none
    send_hour           integer NOT NULL CHECK (send_hour BETWEEN 0 AND 23),
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    completed_at        timestamptz
);
CREATE UNIQUE INDEX campaigns_name ON campaigns (org_id, name);

-- One row per invoice in a campaign: how far its emails got.
CREATE TABLE campaign_invoices (
    campaign_id  uuid NOT NULL REFERENCES campaigns (id),
    invoice_id   uuid NOT NULL REFERENCES invoices (id),
    status       text NOT NULL DEFAULT 'active'
                 CHECK (status IN ('active', 'paid', 'exhausted', 'cancelled')),
    attempts     integer NOT NULL DEFAULT 0,            -- emails sent
    tone         text,                                  -- set by an escalation
    last_sent_at timestamptz,
    ended_at     timestamptz,
    PRIMARY KEY (campaign_id, invoice_id)
);
CREATE INDEX campaign_invoices_invoice ON campaign_invoices (invoice_id) WHERE status = 'active';

CREATE TABLE scheduled_tasks (
    id               uuid PRIMARY KEY,
    org_id           uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    campaign_id      uuid,
    invoice_id       uuid,
    customer_id      uuid,
    task_type        text NOT NULL,
    task_data        jsonb,
    scheduled_for    timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'executing', 'completed', 'failed', 'cancelled')),
    executed_at      timestamptz,                       -- when the last attempt started
    error_message    text,
    retry_count      integer NOT NULL DEFAULT 0,
    max_retries      integer NOT NULL DEFAULT 3,
    metadata         jsonb,                             -- the enqueuer's; the outcome is `result`
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    priority         integer NOT NULL DEFAULT 0,        -- higher first among due tasks
    attempts         integer NOT NULL DEFAULT 0,        -- times started (a reclaim counts)
    lease_owner      text,                              -- the daemon running it
    lease_expires_at timestamptz,                       -- then another daemon may reclaim it
    completed_at     timestamptz,
    result           jsonb
);
-- Claims read due tasks in priority order; the runner's sleep reads the earliest one.
CREATE INDEX scheduled_tasks_claim ON scheduled_tasks (priority DESC, scheduled_for)
    WHERE status = 'pending';
CREATE INDEX scheduled_tasks_due ON scheduled_tasks (scheduled_for) WHERE status = 'pending';
CREATE INDEX scheduled_tasks_leases ON scheduled_tasks (lease_expires_at)
    WHERE status = 'executing';
CREATE INDEX scheduled_tasks_campaign ON scheduled_tasks (campaign_id)
    WHERE status = 'pending' AND campaign_id IS NOT NULL;
CREATE INDEX scheduled_tasks_invoice ON scheduled_tasks (invoice_id)
    WHERE status = 'pending' AND invoice_id IS NOT NULL;

-- Every insert wakes the daemons listening, whoever wrote it (tickler, or an application
-- inserting tasks with plain SQL). Notifications are sent at commit, one per transaction.
CREATE FUNCTION tickler_tasks_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tickler_tasks', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER scheduled_tasks_notify AFTER INSERT ON scheduled_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION tickler_tasks_notify();
