//! `[lanes.NAME]`: pools of run slots of their own. A job with `lane = "NAME"` runs in its
//! lane's `concurrency` slots and takes none of `[daemon] max_concurrent`, which stays the pool
//! of the jobs with no lane; so a slow job in one lane never holds up a job in another (seed
//! 002's Celery queues `high_priority`, `analytics`, `low_priority`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::problems::{Collector, quoted};
use super::read::named_entries;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LaneRaw {
    concurrency: Spanned<i64>,
}

/// The most runs a lane holds at once, as for `[daemon] max_concurrent`.
const MAX_CONCURRENCY: i64 = 100_000;

/// The lanes of `[lanes]`, by name, each with its number of run slots; an entry that is
/// refused is reported to `c` and left out.
pub(super) fn lanes(
    value: Option<Spanned<DeValue<'_>>>,
    c: &mut Collector<'_>,
) -> BTreeMap<Arc<str>, usize> {
    let mut out = BTreeMap::new();
    for (name, _, raw) in named_entries::<LaneRaw>(value, "lanes", "lane", c) {
        let n = *raw.concurrency.get_ref();
        if !(1..=MAX_CONCURRENCY).contains(&n) {
            c.push(
                format!("invalid `concurrency` in `[lanes.{name}]`"),
                Some(raw.concurrency.span()),
                format!("must be 1-{MAX_CONCURRENCY} (found {n})"),
            );
            continue;
        }
        out.insert(Arc::from(name), n as usize);
    }
    out
}

/// What to do about a `lane` that names no `[lanes]` entry.
pub(super) fn unknown_lane(lanes: &BTreeMap<Arc<str>, usize>, name: &str) -> String {
    let known: Vec<&str> = lanes.keys().map(|k| &**k).collect();
    if known.is_empty() {
        format!(
            "add `[lanes.{name}]` with `concurrency = N`, or leave `lane` out to share `[daemon] \
             max_concurrent`"
        )
    } else {
        format!("add `[lanes.{name}]`, or use one of {}", quoted(&known))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse;
    use crate::config::tests::errors;

    #[test]
    fn lanes_and_the_jobs_in_them_are_checked() {
        let job = "[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"1m\"\n";
        #[rustfmt::skip]
        let table = [
            (format!("{job}lane = \"slow\"\n"),
             "unknown lane `slow` for job `x` (config.toml line 5, column 8): add \
              `[lanes.slow]` with `concurrency = N`, or leave `lane` out to share `[daemon] \
              max_concurrent`"),
            (format!("[lanes.high]\nconcurrency = 4\n{job}lane = \"slow\"\n"),
             "unknown lane `slow` for job `x` (config.toml line 7, column 8): add \
              `[lanes.slow]`, or use one of `high`"),
            (format!("[defaults]\nlane = \"slow\"\n{job}"),
             "unknown lane `slow` in `[defaults]` (config.toml line 2, column 8): add \
              `[lanes.slow]` with `concurrency = N`, or leave `lane` out to share `[daemon] \
              max_concurrent`"),
            ("[lanes.high]\nconcurrency = 0\n".to_string(),
             "invalid `concurrency` in `[lanes.high]` (config.toml line 2, column 15): must be \
              1-100000 (found 0)"),
            ("[lanes.high]\nconcurrency = 9223372036854775807\n".to_string(),
             "invalid `concurrency` in `[lanes.high]` (config.toml line 2, column 15): must be \
              1-100000 (found 9223372036854775807)"),
            ("[lanes.High]\nconcurrency = 1\n".to_string(),
             "invalid `[lanes.High]` (config.toml line 1, column 8): a lane name is 1-64 of \
              a-z, 0-9, `_` and `-`"),
            ("[lanes.high]\n".to_string(),
             "invalid `[lanes]` section (config.toml line 1, column 1): missing field \
              `concurrency`"),
            ("[lanes.high]\nconcurrency = 2\nweight = 3\n".to_string(),
             "invalid `[lanes]` section (config.toml line 3, column 1): unknown field \
              `weight`, expected `concurrency`"),
        ];
        for (text, message) in table {
            assert_eq!(errors(&text), message, "{text}");
        }
    }

    #[test]
    fn a_job_takes_its_lane_or_the_default_one() {
        let config = parse(
            Path::new("c.toml"),
            r#"
[lanes.high_priority]
concurrency = 2
[lanes.low_priority]
concurrency = 1
[defaults]
lane = "low_priority"
[[job]]
name = "a"
kind = "noop"
every = "10m"
lane = "high_priority"
[[job]]
name = "b"
kind = "noop"
every = "10m"
"#,
        )
        .unwrap();
        assert_eq!(config.lanes.len(), 2);
        assert_eq!(config.lanes["high_priority"], 2);
        assert_eq!(
            config.job("a").unwrap().lane.as_deref(),
            Some("high_priority")
        );
        assert_eq!(
            config.job("b").unwrap().lane.as_deref(),
            Some("low_priority")
        );
        let none = parse(
            Path::new("c.toml"),
            "[[job]]\nname = \"x\"\nkind = \"noop\"\nevery = \"1m\"\n",
        )
        .unwrap();
        assert_eq!(none.job("x").unwrap().lane, None);
    }
}
