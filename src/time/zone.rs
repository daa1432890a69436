//! IANA time zones as `config.toml`, the CSV importer and the CLI name them.

use std::str::FromStr;

use chrono_tz::Tz;

/// Parses an IANA zone name, suggesting the nearest known name on a typo.
pub fn parse_timezone(name: &str) -> Result<Tz, UnknownZone> {
    if let Ok(tz) = Tz::from_str(name) {
        return Ok(tz);
    }
    let suggestion = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| {
            (
                edit_distance(&name.to_ascii_lowercase(), &tz.name().to_ascii_lowercase()),
                tz,
            )
        })
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= 3)
        .map(|(_, tz)| format!("did you mean `{}`? ", tz.name()))
        .unwrap_or_default();
    Err(UnknownZone {
        name: name.to_string(),
        suggestion,
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A zone name that is not in the IANA database, with the nearest known name when one is close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown time zone `{name}`; {suggestion}use an IANA name such as `Africa/Johannesburg` or \
     `UTC` (`timedatectl list-timezones` lists them)"
)]
pub struct UnknownZone {
    name: String,
    /// ``did you mean `X`? `` or nothing.
    suggestion: String,
}

impl From<UnknownZone> for String {
    fn from(e: UnknownZone) -> String {
        e.to_string()
    }
}
