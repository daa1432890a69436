//! `[daemon]`: the process-wide settings (zone, database, state directory, concurrency, grace
//! periods, retention) read and checked, with their defaults filled in. Read first: the
//! daemon's zone is every job's default zone, its state directory the notifier's.

use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use super::DaemonConfig;
use super::problems::Collector;
use crate::secret::DatabaseUrl;
use crate::time::duration;
use crate::time::zone::parse_timezone;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct DaemonRaw {
    timezone: Option<Spanned<String>>,
    database_url: Option<String>,
    state_dir: Option<PathBuf>,
    max_concurrent: Option<Spanned<i64>>,
    #[serde(default, with = "duration::option")]
    shutdown_grace: Option<Duration>,
    #[serde(default, with = "duration::option")]
    heartbeat_interval: Option<Duration>,
    #[serde(default, with = "duration::option")]
    history_retention: Option<Duration>,
    #[serde(default, with = "duration::option")]
    failure_retention: Option<Duration>,
}

/// `[daemon]` with its defaults filled in; `None` when a value is refused.
pub(super) fn daemon_config(raw: DaemonRaw, c: &mut Collector<'_>) -> Option<DaemonConfig> {
    let timezone = match &raw.timezone {
        None => Tz::UTC,
        Some(tz) => match parse_timezone(tz.get_ref()) {
            Ok(tz) => tz,
            Err(e) => {
                c.push("invalid `timezone` in `[daemon]`", Some(tz.span()), e);
                return None;
            }
        },
    };
    let max_concurrent = match raw.max_concurrent {
        None => 64,
        Some(n) if (1..=100_000).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            c.push(
                "invalid `max_concurrent` in `[daemon]`",
                Some(n.span()),
                format!("must be 1-100000 (found {})", n.get_ref()),
            );
            return None;
        }
    };
    let state_dir = raw.state_dir.unwrap_or_else(|| {
        std::env::var_os("STATE_DIRECTORY")
            .map(|d| PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or("var")))
            .unwrap_or_else(|| PathBuf::from("var"))
    });
    let database_url = raw
        .database_url
        .unwrap_or_else(|| format!("sqlite://{}/tickler.db", state_dir.display()));
    Some(DaemonConfig {
        timezone,
        database_url: DatabaseUrl::new(database_url),
        state_dir,
        max_concurrent,
        shutdown_grace: raw.shutdown_grace.unwrap_or(Duration::from_secs(30)),
        heartbeat_interval: raw.heartbeat_interval.unwrap_or(Duration::from_secs(30)),
        history_retention: raw
            .history_retention
            .unwrap_or(Duration::from_secs(90 * 86_400)),
        failure_retention: raw
            .failure_retention
            .unwrap_or(Duration::from_secs(365 * 86_400)),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::parse;
    use crate::config::tests::errors;

    #[test]
    fn daemon_settings_have_defaults() {
        let config = parse(Path::new("c.toml"), "[daemon]\nstate_dir = \"/srv/t\"\n").unwrap();
        let d = &config.daemon;
        assert_eq!(d.timezone, chrono_tz::UTC);
        assert_eq!(d.database_url.expose(), "sqlite:///srv/t/tickler.db");
        assert_eq!(d.max_concurrent, 64);
        assert_eq!(d.shutdown_grace, Duration::from_secs(30));
        assert_eq!(d.history_retention, Duration::from_secs(90 * 86_400));
    }

    #[test]
    fn daemon_values_are_checked() {
        assert_eq!(
            errors("[daemon]\nmax_concurrent = 0\n"),
            "invalid `max_concurrent` in `[daemon]` (config.toml line 2, column 18): must be \
             1-100000 (found 0)"
        );
    }
}
