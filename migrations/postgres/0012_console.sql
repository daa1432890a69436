-- The operator console and `tickler status` read a job's runs newest first (its page, its
-- chart, the overview's last run, last success and failure streak): by job and slot, manual
-- runs included, which the slot index (`job_execution_logs_slot`) leaves out.
CREATE INDEX job_execution_logs_job ON job_execution_logs (job_name, scheduled_for);

-- The console's queue page counts open tasks by type and lists them by status (and type), due
-- first: only the open rows are indexed, so completed history costs nothing.
CREATE INDEX scheduled_tasks_open ON scheduled_tasks (status, task_type, scheduled_for)
    WHERE status IN ('pending', 'executing', 'failed');
