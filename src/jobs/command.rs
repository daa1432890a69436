//! `command`: runs a program (`command = ["program", "arg"]`, no shell unless `shell = true`)
//! in its own process group, with its environment and working directory. Exit 0 succeeds; the
//! tails of stdout and stderr go into the run's metadata; on timeout or shutdown the whole
//! process group is killed. A last stdout line that is a JSON object is read as a report
//! (counts and `errors`), as for `http`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Job, JobError, Outcome, RunContext, report_from_json, tail};

const TAIL: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandJob {
    /// The program and its arguments; with `shell = true`, a single shell command line.
    pub command: Vec<String>,
    #[serde(default)]
    pub shell: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

impl Job for CommandJob {
    fn validate(&self) -> Result<(), String> {
        match (self.command.first(), self.shell) {
            (None, _) => {
                Err("`command` must name a program, e.g. `[\"/usr/bin/env\", \"true\"]`".into())
            }
            (Some(_), true) if self.command.len() != 1 => Err(
                "with `shell = true`, `command` is one shell command line, e.g. `[\"a | b\"]`"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    async fn run(&self, ctx: &RunContext) -> Result<Outcome, JobError> {
        if ctx.dry_run {
            return Ok(super::dry_run_only(
                "would_run",
                serde_json::json!(self.command),
            ));
        }
        let mut cmd = if self.shell {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(&self.command[0]);
            c
        } else {
            let mut c = tokio::process::Command::new(&self.command[0]);
            c.args(&self.command[1..]);
            c
        };
        // A job's process never speaks to systemd in the daemon's name.
        for var in crate::daemon::systemd::VARIABLES {
            cmd.env_remove(var);
        }
        cmd.envs(&self.env)
            .env("TICKLER_JOB", &*ctx.job_name)
            .env("TICKLER_SCHEDULED_FOR", ctx.scheduled_for.to_rfc3339())
            .env("TICKLER_ATTEMPT", ctx.attempt.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if let Some(task) = &ctx.task {
            cmd.env("TICKLER_TASK_ID", &task.id)
                .env("TICKLER_TASK_TYPE", &task.task_type)
                .env("TICKLER_TASK_DATA", task.data.to_string());
        }
        // The program dies with the daemon (a kill -9 included), so a task reclaimed by
        // another daemon never runs twice at once.
        // SAFETY: prctl is async-signal-safe and only sets this child's own death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| JobError::fatal(format!("cannot start `{}`: {e}", self.command[0])))?;
        // Dropping this guard (timeout, shutdown) kills the whole group, grandchildren included.
        let _group = child.id().map(ProcessGroup);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (status, out, err) = tokio::join!(child.wait(), read_tail(stdout), read_tail(stderr));
        let status =
            status.map_err(|e| JobError::retryable(format!("waiting for the command: {e}")))?;
        let mut meta = Map::new();
        meta.insert(
            "exit_code".into(),
            status.code().map(Value::from).unwrap_or(Value::Null),
        );
        meta.insert("stdout_tail".into(), tail(&out, TAIL).into());
        meta.insert("stderr_tail".into(), tail(&err, TAIL).into());
        if !status.success() {
            let how = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_string(),
            };
            let last = err
                .lines()
                .last()
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            return Err(
                JobError::retryable(format!("`{}` {how}{last}", self.command[0]))
                    .with_metadata(meta),
            );
        }
        let mut outcome = out
            .lines()
            .last()
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
            .and_then(|v| report_from_json(&v))
            .unwrap_or_default();
        outcome.metadata.extend(meta);
        Ok(outcome)
    }
}

/// Kills a process group when dropped.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: killpg only sends a signal; a group that already exited yields ESRCH.
        unsafe {
            libc::killpg(self.0 as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// Reads a pipe to its end, keeping at most the last 2 × TAIL bytes in memory.
async fn read_tail<R: AsyncRead + Unpin>(pipe: Option<R>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * TAIL {
                    kept.drain(..kept.len() - TAIL);
                }
            }
        }
    }
    super::without_nul(String::from_utf8_lossy(&kept).into_owned())
}
