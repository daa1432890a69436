//! One `[[job]]` into a `JobSpec`: its identity (`name`, `kind`, `description`), its trigger
//! (`trigger.rs`: `schedule` or `every`, `timezone`, `calendar`, `on_holiday`), its run policy (`policy.rs`), its alerts (`alerts.rs`), and the rest of its
//! keys, which are its kind's parameters, built into a job by `jobs::build`. Then the check
//! that no two jobs share a name.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::policy::{self, POLICY_KEYS, PolicyRaw};
use super::problems::{Collector, Owner, quoted};
use super::read::{deser, sub_table, valid_name};
use super::trigger::{self, TriggerKeys};
use super::{DaemonConfig, JobSpec, alerts};
use crate::jobs::{self, BuildError, DynJob};
use crate::notify::Notifier;
use crate::notify::window::{SendWindow, WindowRaw};
use crate::schedule::NamedCalendar;
use crate::store::user::Databases;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityRaw {
    name: Spanned<String>,
    kind: Spanned<String>,
    description: Option<String>,
    schedule: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    send_window: Option<Spanned<WindowRaw>>,
    calendar: Option<Spanned<String>>,
    on_holiday: Option<Spanned<String>>,
}

const IDENTITY_KEYS: &[&str] = &[
    "name",
    "kind",
    "description",
    "schedule",
    "every",
    "timezone",
    "send_window",
    "calendar",
    "on_holiday",
];

impl IdentityRaw {
    fn trigger_keys(&self) -> TriggerKeys<'_> {
        TriggerKeys {
            schedule: self.schedule.as_ref(),
            every: self.every.as_ref(),
            timezone: self.timezone.as_ref(),
            calendar: self.calendar.as_ref(),
            on_holiday: self.on_holiday.as_ref(),
            name_at: self.name.span(),
        }
    }
}

/// What every job of a file is read against: `[defaults]`, `[calendars]`, `[daemon]`, the
/// notifier, `[databases]`, `[lanes]`, and the config file's directory (relative paths).
#[derive(Clone, Copy)]
pub(super) struct JobContext<'a> {
    pub(super) defaults: &'a PolicyRaw,
    pub(super) calendars: &'a BTreeMap<String, NamedCalendar>,
    pub(super) daemon: Option<&'a DaemonConfig>,
    pub(super) notifier: Option<&'a Arc<Notifier>>,
    pub(super) databases: &'a Arc<Databases>,
    pub(super) lanes: &'a BTreeMap<Arc<str>, usize>,
    pub(super) config_dir: &'a std::path::Path,
}

/// Fewer `[[job]]` tables than this are read on the calling thread.
const TABLES_PER_THREAD: usize = 5_000;

/// The valid jobs of `tables`, in order; the problems of the others are pushed to `c`, in the
/// order of the tables. A large file's tables are read on every core (each job's parse, cron
/// check and build are its own; 100,000 jobs took 0.4 s on one), then the names are checked.
pub(super) fn job_specs(
    tables: Vec<Spanned<DeValue<'_>>>,
    ctx: JobContext<'_>,
    c: &mut Collector<'_>,
) -> Vec<Arc<JobSpec>> {
    // Each table's job and its own problems, so that they merge in the tables' order.
    let read = crate::cores::in_order(&tables, TABLES_PER_THREAD, |part| {
        let mut mine = c.fresh();
        part.iter()
            .map(|table| {
                let job = job_spec(table, ctx, &mut mine);
                (job, std::mem::take(&mut mine.problems))
            })
            .collect()
    });
    let mut jobs = vec![];
    let mut seen: HashSet<Arc<str>> = HashSet::new();
    for (job, problems) in read {
        c.problems.extend(problems);
        if let Some((job, at)) = job {
            if !seen.insert(job.name.clone()) {
                c.push(
                    format!("duplicate job name `{}`", job.name),
                    Some(at),
                    "each `[[job]]` needs a unique `name`; rename or remove one of them",
                );
            }
            jobs.push(Arc::new(job));
        }
    }
    jobs
}

/// One job and the position of its name; `None` when anything about it is refused.
fn job_spec(
    table: &Spanned<DeValue<'_>>,
    ctx: JobContext<'_>,
    c: &mut Collector<'_>,
) -> Option<(JobSpec, Range<usize>)> {
    let JobContext {
        defaults,
        calendars,
        daemon,
        notifier,
        databases,
        lanes,
        config_dir,
    } = ctx;
    let span = table.span();
    let (t, identity, policy) = read_table(table, c)?;
    let before = c.problems.len();
    let name = identity.name.get_ref().clone();
    if !valid_name(&name) {
        c.push(
            format!("invalid job name `{name}`"),
            Some(identity.name.span()),
            "use 1-64 characters of a-z, 0-9, `_` and `-`",
        );
    }
    let label = format!("job `{name}`");
    let job = build(
        t,
        &identity.kind,
        &label,
        span.clone(),
        notifier,
        databases,
        c,
    );
    let (trigger, timezone) = trigger::when(
        &identity.trigger_keys(),
        daemon.map(|d| d.timezone),
        calendars,
        &label,
        c,
    );
    let alerts = alerts::job_alerts(
        policy.alert_keys(defaults),
        &name,
        &label,
        span.clone(),
        trigger.as_ref().zip(timezone),
        notifier.map(|n| &**n),
        c,
    );
    let run = policy::run_policy(&policy, defaults, lanes, &label, span, c);
    let send_window = identity.send_window.as_ref().and_then(|w| {
        match SendWindow::build(w.get_ref(), |p| std::fs::read_to_string(config_dir.join(p))) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                c.push(
                    format!("invalid `send_window` for {label}"),
                    Some(w.span()),
                    e.to_string(),
                );
                None
            }
        }
    });
    if c.problems.len() > before {
        return None;
    }
    let run = run?;
    let spec = JobSpec {
        name: Arc::from(name.as_str()),
        kind: identity.kind.get_ref().clone(),
        description: identity.description,
        trigger: trigger?,
        timezone: timezone?,
        enabled: run.enabled,
        timeout: run.timeout,
        retry: run.retry,
        overlap: run.overlap,
        catch_up: run.catch_up,
        misfire_grace: run.misfire_grace,
        jitter: run.jitter,
        lane: run.lane,
        job: job?,
        notifier: notifier?.clone(),
        databases: databases.clone(),
        alerts,
        send_window,
    };
    Some((spec, identity.name.span()))
}

/// The table of a `[[job]]` with its identity and policy keys read; `None` when it is no table
/// or its identity does not read. Policy keys that do not read are reported and left at their
/// defaults, so that the job's other keys are still checked.
fn read_table<'t, 'i>(
    table: &'t Spanned<DeValue<'i>>,
    c: &mut Collector<'_>,
) -> Option<(&'t DeTable<'i>, IdentityRaw, PolicyRaw)> {
    let span = table.span();
    let DeValue::Table(t) = table.get_ref() else {
        c.push("invalid `[[job]]`", Some(span), "each job must be a table");
        return None;
    };
    // Name the job in every message, when it has a usable name.
    let label = match t.get("name").and_then(|v| v.get_ref().as_str()) {
        Some(n) => format!("job `{n}`"),
        None => format!("the job at line {}", c.source.at(span.start).0),
    };
    let owner = Owner::Entry {
        label: &label,
        depth: 1,
    };
    let identity: IdentityRaw = match deser(sub_table(t, IDENTITY_KEYS, span.clone())) {
        Ok(i) => i,
        Err(e) => {
            c.toml_value(owner, &e, span.clone());
            return None;
        }
    };
    let policy: PolicyRaw = match deser(sub_table(t, POLICY_KEYS, span.clone())) {
        Ok(p) => p,
        Err(e) => {
            c.toml_value(owner, &e, span.clone());
            PolicyRaw::default()
        }
    };
    Some((t, identity, policy))
}

/// The job of `kind` (written at `kind_at`) built from the keys of `t` that are neither identity
/// nor policy (its parameters), then checked against the notifier; `None` when refused.
fn build(
    t: &DeTable<'_>,
    kind: &Spanned<String>,
    label: &str,
    span: Range<usize>,
    notifier: Option<&Arc<Notifier>>,
    databases: &Databases,
    c: &mut Collector<'_>,
) -> Option<Arc<dyn DynJob>> {
    let kind_at = kind.span();
    let kind = kind.get_ref();
    let params_keys: Vec<&str> = t
        .iter()
        .map(|(k, _)| k.get_ref().as_ref())
        .filter(|k| !IDENTITY_KEYS.contains(k) && !POLICY_KEYS.contains(k))
        .collect();
    let params = sub_table(t, &params_keys, span.clone());
    let job = match jobs::build(kind, ValueDeserializer::from(params)) {
        Ok(job) => Some(job),
        Err(BuildError::UnknownKind) => {
            c.push(
                format!("unknown kind `{kind}` for {label}"),
                Some(kind_at),
                format!("expected one of {}", quoted(&jobs::kind_names())),
            );
            None
        }
        Err(BuildError::Params(e)) => {
            let mut detail = e.message().trim().to_string();
            if detail.starts_with("unknown field") {
                detail = format!(
                    "{detail} for kind `{kind}`; every job also takes {}",
                    quoted(&[IDENTITY_KEYS, POLICY_KEYS].concat())
                );
            }
            let at = e.span().unwrap_or(span.clone());
            let what = c.what(Owner::Entry { label, depth: 1 }, at.start);
            c.push(what, Some(at), detail);
            None
        }
        Err(BuildError::Invalid(detail)) => {
            c.push(format!("invalid {label}"), Some(span.clone()), detail);
            None
        }
    };
    if let (Some(job), Some(notifier)) = (&job, notifier)
        && let Err(detail) = job.check(notifier)
    {
        c.push(format!("invalid {label}"), Some(span.clone()), detail);
    }
    if let Some(name) = job.as_ref().and_then(|j| j.database())
        && !databases.contains(name)
    {
        let at = t.get("database").map(|v| v.span()).unwrap_or(span);
        c.push(
            format!("unknown database `{name}` for {label}"),
            Some(at),
            unknown_database(databases, name),
        );
    }
    job
}

/// What to do about a `database` that names no `[databases]` entry.
pub(super) fn unknown_database(databases: &Databases, name: &str) -> String {
    let known: Vec<&str> = databases.names().collect();
    if known.is_empty() {
        format!(
            "add `[databases.{name}]` with `url` (or `url_env` / `url_file`), or leave `database` \
             out to use tickler's own"
        )
    } else {
        format!("add `[databases.{name}]`, or use one of {}", quoted(&known))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use crate::config::tests::errors;
    use crate::config::{EXAMPLE, parse};
    use crate::jobs;

    #[test]
    fn names_and_kinds_are_checked() {
        assert_eq!(
            errors("[[job]]\nname = \"Daily Invoices\"\nkind = \"noop\"\nevery = \"1m\"\n"),
            "invalid job name `Daily Invoices` (config.toml line 2, column 8): use 1-64 \
             characters of a-z, 0-9, `_` and `-`"
        );
        assert_eq!(
            errors("[[job]]\nname = \"x\"\nkind = \"shell\"\nevery = \"1m\"\n"),
            "unknown kind `shell` for job `x` (config.toml line 3, column 8): expected one of \
             `cleanup`, `command`, `create_invoices`, `http`, `invoice_reminders`, `noop`, \
             `notify`, `overdue_escalation`, `sql`, `stats_report`"
        );
    }

    /// A bad `send_window`, on a job, a channel or the campaigns, is refused where it is
    /// written, saying what to write.
    #[test]
    fn bad_send_windows_are_refused_where_written() {
        let job = "[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"1m\"\n";
        #[rustfmt::skip]
        let table = [
            (format!("{job}send_window = {{ hours = \"20:00-08:00\" }}\n"),
             "invalid `send_window` for job `x` (config.toml line 5, column 15): invalid \
              `hours` `20:00-08:00`: write the opening and closing local times as \
              `08:00-20:00` (closing after opening, `24:00` for midnight)"),
            (format!("{job}send_window = {{ days = \"weekdays\" }}\n"),
             "invalid `send_window` for job `x` (config.toml line 5, column 15): invalid \
              weekdays `weekdays`: write days as `mon-fri`, `mon,wed,fri` or `sat-sun` (mon \
              tue wed thu fri sat sun)"),
            (format!("{job}send_window = {{ holidays = \"no-such-file.toml\" }}\n"),
             "invalid `send_window` for job `x` (config.toml line 5, column 15): cannot read \
              the holiday file `no-such-file.toml`: No such file or directory (os error 2)"),
            (format!("{job}send_window = {{}}\n"),
             "invalid `send_window` for job `x` (config.toml line 5, column 15): a \
              `send_window` needs at least one of `hours`, `days` and `holidays`"),
            ("[channels.email]\nfrom = \"a@b.example\"\nsend_window = { hours = \"8-20\" }\n"
                .to_string(),
             "invalid `send_window` in `[channels.email]` (config.toml line 1, column 2): \
              invalid `hours` `8-20`: write the opening and closing local times as \
              `08:00-20:00` (closing after opening, `24:00` for midnight)"),
            ("[queue.campaigns]\nsend_window = { days = \"mon-\" }\n".to_string(),
             "invalid `send_window` in `[queue.campaigns]` (config.toml line 2, column 15): \
              invalid weekdays `mon-`: write days as `mon-fri`, `mon,wed,fri` or `sat-sun` \
              (mon tue wed thu fri sat sun)"),
        ];
        for (text, expected) in table {
            assert_eq!(errors(&text), expected, "{text}");
        }
    }

    /// The shipped config documents every option, so it shows every job kind; each of its jobs
    /// was built by its kind's builder when it was parsed.
    #[test]
    fn every_job_kind_builds_from_the_shipped_example() {
        let config = parse(Path::new("config.toml"), EXAMPLE).unwrap();
        let shown: HashSet<&str> = config.jobs.iter().map(|j| j.kind.as_str()).collect();
        for kind in jobs::kind_names() {
            assert!(shown.contains(kind), "no `{kind}` job in config.toml");
        }
        assert_eq!(shown.len(), jobs::KINDS.len(), "every job's kind is listed");
    }
}
