//! Human durations in `config.toml` (`30s`, `10m`, `1h30m`, `90d`), read with humantime. An
//! error carries the value's position, because toml attaches it to any error raised while
//! deserializing that value, and the config's collector adds the key from that position.
//!
//! Every duration of the config (and of the CLI's `--in`) is read by `parse`, which refuses
//! anything longer than `MAX` (100 years): past that, `now + d` or `d * factor` could overflow
//! where the duration is used, long after `tickler check` said the file was fine.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The longest span tickler computes with: an `every` interval, and any duration of
/// `config.toml` (`parse` enforces the same bound), is at most 100 years
/// (humantime's `100y`, years of 365.25 days). Large enough for any schedule, retention or
/// timeout; small enough that `instant + d` stays far inside chrono's range (±262,000 years),
/// that `TimeDelta::from_std(d)` always succeeds, and that `d * 3` or a retry factor applied to
/// it cannot overflow a `Duration`.
pub const LONGEST: Duration = Duration::from_secs(LONGEST_SECS);

/// `LONGEST` in seconds: 100 × 365.25 days.
pub const LONGEST_SECS: u64 = 100 * 31_557_600;

/// `LONGEST` as a person writes it in `config.toml`.
pub const LONGEST_TEXT: &str = "100y";

/// The longest duration accepted anywhere: the same bound as an `every` interval, so one
/// figure covers every key (see `LONGEST` for why 100 years).
pub const MAX: Duration = LONGEST;

/// Why a duration was refused; shown to the user after the key and position of the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration humantime reads.
    #[error("invalid duration `{text}`: {reason}; write e.g. `30s`, `10m`, `1h30m`, `7d`")]
    Invalid { text: String, reason: String },
    /// A duration longer than `MAX` (or too long to be counted at all).
    #[error(
        "invalid duration `{text}`: larger than the largest accepted, `{}` ({}s)",
        LONGEST_TEXT,
        LONGEST_SECS
    )]
    TooLarge { text: String },
}

/// Reads a duration such as `30s`, `1h30m` or `7d`, at most `MAX`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let too_large = || DurationError::TooLarge {
        text: text.to_string(),
    };
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d > MAX => Err(too_large()),
        Ok(d) => Ok(d),
        Err(humantime::DurationError::NumberOverflow) => Err(too_large()),
        Err(e) => Err(DurationError::Invalid {
            text: text.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// A duration as a person writes it in `config.toml`: `26h`, `30m`, `90s` (whole seconds).
pub fn short(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// The same for an optional field (`#[serde(default, with = "duration::option")]`).
pub mod option {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_up_to_100_years() {
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("100y"), Ok(MAX));
        assert_eq!(MAX.as_secs(), 3_155_760_000);
        let refused = |text: &str| parse(text).unwrap_err().to_string();
        for text in [
            "101y",
            "3155760001s",
            "18446744073709551615s",
            "99999999999999d",
        ] {
            assert_eq!(
                refused(text),
                format!(
                    "invalid duration `{text}`: larger than the largest accepted, `100y` \
                     (3155760000s)"
                )
            );
        }
        // Too large for humantime to count at all: the same answer, not "number is too large".
        assert_eq!(
            refused("99999999999999999999s"),
            "invalid duration `99999999999999999999s`: larger than the largest accepted, `100y` \
             (3155760000s)"
        );
        assert_eq!(
            refused("10 mn"),
            "invalid duration `10 mn`: unknown time unit \"mn\", supported units: ns, us/µs, ms, \
             sec, min, hours, days, weeks, months, years (and few variations); write e.g. `30s`, \
             `10m`, `1h30m`, `7d`"
        );
    }

    #[test]
    fn the_largest_duration_fits_every_use() {
        // What the daemon does with durations: add them to an instant, turn them into a
        // `TimeDelta`, triple a heartbeat interval, apply a retry factor.
        let far = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
            .unwrap()
            .to_utc();
        let delta = chrono::TimeDelta::from_std(MAX).unwrap();
        assert!(far.checked_add_signed(delta).is_some());
        assert!(far.checked_sub_signed(delta).is_some());
        assert!(MAX.checked_mul(3).is_some());
        assert!(Duration::try_from_secs_f64(MAX.as_secs_f64() * 1000.0).is_ok());
    }
}
