//! `command`: runs a program (`command = ["program", "arg"]`, no shell unless `shell = true`)
//! in its own process group, with its environment and working directory. Exit 0 succeeds; the
//! tails of stdout and stderr go into the run's metadata; on timeout or shutdown the whole
//! process group is killed. A last stdout line that is a JSON object is read as a report
//! (counts and `errors`), as for `http`.
//!
//! The program's direct child dies with the daemon (`PR_SET_PDEATHSIG`), but what it started
//! (`sh -c "sleep 30; ..."` leaves `sleep`) would live on. So each group is recorded where the
//! run or task is (a [`GroupRecord`]), and whoever finds the run abandoned or reclaims the task
//! on the same host ends what is left of the group ([`end_leftover`]) before the work is done
//! again. Every process of the group carries `TICKLER_CLAIM` in its environment, which tells
//! it apart from an unrelated group that reuses the number.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Job, JobError, Outcome, RunContext, report_from_json};
use crate::net::tail;

const TAIL: usize = 4096;

/// The variables of systemd's notify protocol, which the daemon keeps and a job never sees: a
/// job's process must not speak to systemd for the daemon.
const SERVICE_MANAGER_VARIABLES: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

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

/// What is wrong with the `command` of a `command` job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("`command` must name a program, e.g. `[\"/usr/bin/env\", \"true\"]`")]
    NoProgram,
    /// With `shell = true`, more than one string.
    #[error("with `shell = true`, `command` is one shell command line, e.g. `[\"a | b\"]`")]
    NotOneShellLine,
}

impl Job for CommandJob {
    type Invalid = CommandError;

    fn validate(&self) -> Result<(), CommandError> {
        match (self.command.first(), self.shell) {
            (None, _) => Err(CommandError::NoProgram),
            (Some(_), true) if self.command.len() != 1 => Err(CommandError::NotOneShellLine),
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
        for var in SERVICE_MANAGER_VARIABLES {
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
        let claim = uuid::Uuid::new_v4().simple().to_string();
        cmd.env(CLAIM_VAR, &claim);
        // The program dies with the daemon (a kill -9 included), so a task reclaimed by
        // another daemon never runs twice at once.
        // SAFETY: prctl is async-signal-safe and only sets this child's own death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                restore_file_limit();
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| JobError::fatal(format!("cannot start `{}`: {e}", self.command[0])))?;
        // Dropping this guard (timeout, shutdown) kills the whole group, grandchildren included.
        let _group = child.id().map(ProcessGroup);
        if let Some(pid) = child.id() {
            record_group(ctx, pid, claim).await;
        }
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

/// The soft open-file limit the daemon was started with, before it raised its own (0: not
/// raised). Programs inherit it back: some still use `select` or walk every descriptor.
static CHILD_FILE_LIMIT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Called by the daemon when it raised its soft open-file limit from `soft`.
pub fn set_child_file_limit(soft: u64) {
    CHILD_FILE_LIMIT.store(soft, std::sync::atomic::Ordering::Relaxed);
}

/// In the child, between fork and exec: only async-signal-safe calls (an atomic load,
/// getrlimit, setrlimit).
fn restore_file_limit() {
    let soft = CHILD_FILE_LIMIT.load(std::sync::atomic::Ordering::Relaxed);
    if soft == 0 {
        return;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on structs we own, in the child only.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && soft < lim.rlim_cur {
            lim.rlim_cur = soft;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The variable that marks every process of a command's group.
const CLAIM_VAR: &str = "TICKLER_CLAIM";

/// Where a command's process group can be found after its daemon died: kept in the run's
/// metadata (`process_group`) or the task's `process_group` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The process that started it (a `tickler_instances` id, which begins with its host).
    pub instance: String,
    /// The group's id: the pid of the program tickler started.
    pub pgid: i32,
    /// That program's start time, in clock ticks after boot (`/proc/PID/stat`, field 22).
    pub start: u64,
    /// The value of `TICKLER_CLAIM` in the environment of each process of the group.
    pub claim: String,
}

/// Records the group just started, so it can be ended if this process dies. A failure to
/// record is logged and the run goes on: the group still dies with a clean shutdown.
async fn record_group(ctx: &RunContext, pid: u32, claim: String) {
    let Ok(pgid) = i32::try_from(pid) else {
        return;
    };
    let Some(start) = read_stat(pgid).map(|s| s.start) else {
        return;
    };
    let record = GroupRecord {
        instance: ctx.instance.to_string(),
        pgid,
        start,
        claim,
    };
    let Ok(value) = serde_json::to_value(&record) else {
        return;
    };
    let written = match (&ctx.task, ctx.run_id) {
        (Some(task), _) => {
            ctx.store
                .record_task_group(&task.id, &ctx.instance, &value)
                .await
        }
        (None, Some(run)) => ctx.store.record_run_group(run, &value).await,
        (None, None) => Ok(()),
    };
    if let Err(e) = written {
        tracing::warn!(job = %ctx.job_name, pgid, error = %e, "could not record the command's process group");
    }
}

/// What `/proc/PID/stat` says of a process that matters here.
struct Stat {
    pgrp: i32,
    start: u64,
    zombie: bool,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is at index N - 3.
    Some(Stat {
        zombie: fields.first()? == &"Z",
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Whether process `pid` carries `TICKLER_CLAIM=claim` in its environment.
fn carries(pid: i32, claim: &str) -> bool {
    let wanted = format!("{CLAIM_VAR}={claim}");
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
        .unwrap_or(false)
}

/// The live (not zombie) processes of group `pgid`, with their start times.
fn members(pgid: i32) -> Vec<(i32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, read_stat(pid)?)))
        .filter(|(_, st)| st.pgrp == pgid && !st.zombie)
        .map(|(pid, st)| (pid, st.start))
        .collect()
}

/// Ends what is left of a recorded group on this host: SIGKILL to the group, if it is still
/// the same group (its leader alive with the recorded start time, or, the leader gone, a
/// member carrying the group's `TICKLER_CLAIM`). Returns how many processes it ended; a group
/// number now used by something else is left alone. Blocking: reads `/proc`.
pub fn end_leftover(record: &GroupRecord) -> usize {
    let mut ended = 0;
    // A few rounds: a process may fork while the group is being ended.
    for _ in 0..5 {
        let found = members(record.pgid);
        if found.is_empty() {
            break;
        }
        let leader = found.iter().find(|(pid, _)| *pid == record.pgid);
        let ours = match leader {
            Some((_, start)) => *start == record.start,
            None => found.iter().any(|(pid, _)| carries(*pid, &record.claim)),
        };
        if !ours {
            break;
        }
        // SAFETY: killpg only sends a signal to the group just checked to be ours.
        unsafe {
            libc::killpg(record.pgid, libc::SIGKILL);
        }
        ended += found.len();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ended
}

/// Ends each recorded group of this host (blocking work, off the runtime's threads) unless
/// the process that started it is still alive (a stalled daemon ends its own); logs what it
/// ended.
pub async fn end_recorded_groups(groups: Vec<GroupRecord>) {
    let groups: Vec<GroupRecord> = groups
        .into_iter()
        .filter(|g| !crate::store::Instance::pid_of(&g.instance).is_some_and(process_alive))
        .collect();
    if groups.is_empty() {
        return;
    }
    let ended = tokio::task::spawn_blocking(move || {
        groups
            .into_iter()
            .map(|g| (end_leftover(&g), g))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (n, g) in ended.into_iter().filter(|(n, _)| *n > 0) {
        tracing::warn!(pgid = g.pgid, processes = n, instance = %g.instance, "ended the processes a stopped tickler process left running");
    }
}

/// Whether a process of this host with this pid exists (a pid of another host means nothing).
pub fn process_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
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
    crate::net::without_nul(String::from_utf8_lossy(&kept).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tests::assert_refused;

    #[test]
    fn a_command_names_one_program_or_one_shell_line() {
        #[rustfmt::skip]
        let table = [
            ("command = []",
             "`command` must name a program, e.g. `[\"/usr/bin/env\", \"true\"]`"),
            ("command = [\"a\", \"b\"]\nshell = true",
             "with `shell = true`, `command` is one shell command line, e.g. `[\"a | b\"]`"),
        ];
        assert_refused::<CommandJob>(&table);
    }
}
