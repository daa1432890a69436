//! Human durations in `config.toml` (`30s`, `10m`, `1h30m`, `90d`), read with humantime. An
//! error carries the value's position, because toml attaches it to any error raised while
//! deserializing that value.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration `{text}`: {e}; write e.g. `30s`, `10m`, `1h30m`, `7d`")
    })
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
