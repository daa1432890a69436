-- Claim ahead (issue 17): a second with many fires is claimed shortly before it comes, each
-- slot a `pending` row of one batch; when the second comes, one row here says the batch has
-- started, so their bodies start without rewriting every row first. The rows turn `running`
-- just after, and this row goes. Until then a `pending` row of a started batch is a run that
-- may have begun: were its daemon to die, it is abandoned like a `running` one, never adopted.
ALTER TABLE job_execution_logs ADD COLUMN batch_id uuid;
CREATE INDEX job_execution_logs_batch
    ON job_execution_logs (batch_id) WHERE status = 'pending' AND batch_id IS NOT NULL;
CREATE TABLE fire_batches (
    id uuid PRIMARY KEY,
    instance TEXT NOT NULL,
    started_at timestamptz NOT NULL
);
