//! The top level of a config file: which table is which section, each read into its raw form
//! (an unknown or malformed section is a problem), and `[channels]` with `[templates]` built
//! into the notifier that jobs, alerts and tasks send through. `parse` hands each raw section to
//! the room that checks it.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::daemon::DaemonRaw;
use super::policy::PolicyRaw;
use super::problems::{Collector, Owner};
use super::read::deser;
use crate::notify::{ChannelsRaw, Notifier, TemplatesRaw};

/// The sections of one file, as written; each absent one at its defaults.
#[derive(Default)]
pub(super) struct Sections<'i> {
    pub(super) daemon: DaemonRaw,
    /// `[defaults]`: the run policy of every job that does not set its own.
    pub(super) defaults: PolicyRaw,
    pub(super) notify: NotifyRaw,
    /// Each `[[job]]`, read by `job.rs`.
    pub(super) jobs: Vec<Spanned<DeValue<'i>>>,
    /// `[queue]` and `[http]`, read by `queue.rs` and `http.rs`.
    pub(super) queue: Option<Spanned<DeValue<'i>>>,
    pub(super) http: Option<Spanned<DeValue<'i>>>,
    /// `[databases]`, read by `databases.rs`.
    pub(super) databases: Option<Spanned<DeValue<'i>>>,
    /// `[lanes]`, read by `lanes.rs`.
    pub(super) lanes: Option<Spanned<DeValue<'i>>>,
    /// `[payments]`, read by `payments.rs`.
    pub(super) payments: Option<Spanned<DeValue<'i>>>,
    /// `[calendars]`, read by `calendars.rs`.
    pub(super) calendars: Option<Spanned<DeValue<'i>>>,
}

/// `[channels]` and `[templates]`, and where they are written, for their problems.
#[derive(Default)]
pub(super) struct NotifyRaw {
    channels: ChannelsRaw,
    channels_span: Range<usize>,
    templates: TemplatesRaw,
    templates_span: Option<Range<usize>>,
}

impl<'i> Sections<'i> {
    /// The sections of the document `root`; one that does not read is reported to `c` and
    /// left at its defaults, so that the rest are still checked.
    /// `root` is taken whole so that its sections move here, not copied (the `[[job]]`
    /// tables of 100,000 jobs took a tenth of `tickler check`'s time to copy).
    pub(super) fn read(root: DeTable<'i>, c: &mut Collector<'_>) -> Self {
        let mut s = Sections::default();
        for (key, value) in root {
            let span = value.span();
            match key.get_ref().as_ref() {
                "daemon" => match deser::<DaemonRaw>(value) {
                    Ok(d) => s.daemon = d,
                    Err(e) => c.toml_value(Owner::Section("invalid `[daemon]` section"), &e, span),
                },
                "channels" => match deser::<ChannelsRaw>(value) {
                    Ok(ch) => {
                        s.notify.channels = ch;
                        s.notify.channels_span = span;
                    }
                    Err(e) => {
                        c.toml_value(Owner::Section("invalid `[channels]` section"), &e, span)
                    }
                },
                "templates" => match deser::<TemplatesRaw>(value) {
                    Ok(t) => {
                        s.notify.templates = t;
                        s.notify.templates_span = Some(span);
                    }
                    Err(e) => {
                        c.toml_value(Owner::Section("invalid `[templates]` section"), &e, span)
                    }
                },
                "queue" => s.queue = Some(value),
                "http" => s.http = Some(value),
                "databases" => s.databases = Some(value),
                "lanes" => s.lanes = Some(value),
                "payments" => s.payments = Some(value),
                "calendars" => s.calendars = Some(value),
                "defaults" => match deser::<PolicyRaw>(value) {
                    Ok(d) => s.defaults = d,
                    Err(e) => {
                        c.toml_value(Owner::Section("invalid `[defaults]` section"), &e, span)
                    }
                },
                "job" => match value.into_inner() {
                    DeValue::Array(items) => s.jobs.extend(items),
                    _ => c.push(
                        "invalid `job`",
                        Some(key.span()),
                        "write each job as a `[[job]]` table",
                    ),
                },
                other => c.push(
                    format!("unknown section `{other}`"),
                    Some(key.span()),
                    "expected `[daemon]`, `[defaults]`, `[channels]`, `[templates]`, `[queue]`, \
                     `[http]`, `[payments]`, `[databases]`, `[lanes]`, `[calendars]` or `[[job]]`",
                ),
            }
        }
        s
    }
}

impl NotifyRaw {
    /// The notifier of these channels and templates (relative template paths are read from
    /// `config_dir`, the `file` transport writes under `state_dir`); `None` when refused.
    pub(super) fn notifier(
        self,
        config_dir: &Path,
        state_dir: &Path,
        c: &mut Collector<'_>,
    ) -> Option<Arc<Notifier>> {
        match Notifier::build(self.channels, self.templates, config_dir, state_dir) {
            Ok(n) => Some(Arc::new(n)),
            Err(problems) => {
                for (what, detail) in problems {
                    // A template's own file and line are in `detail`.
                    let at = if what == "invalid template" {
                        self.templates_span.clone()
                    } else {
                        Some(self.channels_span.clone())
                    };
                    c.push(what, at, detail);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;

    #[test]
    fn the_sms_provider_is_twilio_or_sns() {
        assert_eq!(
            errors("[channels.sms]\nprovider = \"pigeon\"\n"),
            "invalid `[channels]` section (config.toml line 1, column 1): `[channels.sms]`: \
             `provider` must be \"twilio\" or \"aws-sns\" (found \"pigeon\")"
        );
        assert_eq!(
            errors(
                "[channels.sms]\nprovider = \"aws-sns\"\nregion = \"af-south-1\"\nfrom = \"x\"\n"
            ),
            "invalid `[channels]` section (config.toml line 1, column 1): `[channels.sms]` \
             (provider \"aws-sns\"): unknown field `from`, expected one of `region`, \
             `access_key_id`, `access_key_id_env`, `secret_access_key_env`, \
             `secret_access_key_file`, `session_token_env`, `sms_type`, `sender_id`, \
             `origination_number`, `base_url`, `timeout`, `rate_limit`, `concurrency`, `send_window`"
        );
        assert_eq!(
            errors("[channels.sms]\nprovider = \"aws-sns\"\nregion = \"Cape Town\"\n"),
            "invalid `[channels.sms]` (config.toml line 1, column 2): `region` must be an AWS \
             region such as `af-south-1` (found `Cape Town`)"
        );
    }

    #[test]
    fn unknown_and_malformed_sections_are_named() {
        assert_eq!(
            errors("[deamon]\ntimezone = \"UTC\"\n"),
            "unknown section `deamon` (config.toml line 1, column 2): expected `[daemon]`, \
             `[defaults]`, `[channels]`, `[templates]`, `[queue]`, `[http]`, `[payments]`, \
             `[databases]`, `[lanes]`, `[calendars]` or `[[job]]`"
        );
        assert_eq!(
            errors("[job]\nname = \"x\"\n"),
            "invalid `job` (config.toml line 1, column 2): write each job as a `[[job]]` table"
        );
        assert_eq!(
            errors("[defaults]\ntimeout = \"10 mn\"\n"),
            "invalid `timeout` in `[defaults]` (config.toml line 2, column 11): invalid duration \
             `10 mn`: unknown time unit \"mn\", supported units: ns, us/µs, ms, sec, min, hours, \
             days, weeks, months, years (and few variations); write e.g. `30s`, `10m`, `1h30m`, \
             `7d`"
        );
    }
}
