-- Alerts read a job's last success and the failures since it (store/health.rs). Only ended
-- rows are indexed, so claiming a slot (a `running` row) writes no entry here.
CREATE INDEX job_execution_logs_ended
    ON job_execution_logs (job_name, completed_at) WHERE completed_at IS NOT NULL;
