//! Reading pieces of the parsed TOML tree: a value into a section's raw (serde) form, the
//! chosen keys of a table (a job's identity, its policy, its kind's parameters), and the rule
//! for names of jobs and handlers. Shared by the rooms of `config/` that read sections.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::problems::{Collector, Owner};

pub(super) fn deser<'i, T: Deserialize<'i>>(
    value: Spanned<DeValue<'i>>,
) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(value))
}

pub(super) fn sub_table<'i>(
    table: &DeTable<'i>,
    keys: &[&str],
    span: Range<usize>,
) -> Spanned<DeValue<'i>> {
    let mut out = DeTable::new();
    for (k, v) in table.iter() {
        if keys.contains(&k.get_ref().as_ref()) {
            out.insert(k.clone(), v.clone());
        }
    }
    Spanned::new(span, DeValue::Table(out))
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The entries of a section of named tables (`[lanes.NAME]`, `[databases.NAME]`,
/// `[calendars.NAME]`), each read into `T`, with its name and where the name is written. A
/// section that does not read and an entry whose name is refused are reported to `c` (the
/// entry as a `noun`, e.g. "lane") and left out.
pub(super) fn named_entries<'i, T: Deserialize<'i>>(
    value: Option<Spanned<DeValue<'i>>>,
    section: &str,
    noun: &str,
    c: &mut Collector<'_>,
) -> Vec<(String, Range<usize>, T)> {
    let Some(value) = value else {
        return vec![];
    };
    let span = value.span();
    let raw = match deser::<BTreeMap<Spanned<String>, T>>(value) {
        Ok(raw) => raw,
        Err(e) => {
            let what = format!("invalid `[{section}]` section");
            c.toml_value(Owner::Section(&what), &e, span);
            return vec![];
        }
    };
    let mut out = vec![];
    for (name, raw) in raw {
        let at = name.span();
        let name = name.into_inner();
        if !valid_name(&name) {
            c.push(
                format!("invalid `[{section}.{name}]`"),
                Some(at),
                format!("a {noun} name is 1-64 of a-z, 0-9, `_` and `-`"),
            );
            continue;
        }
        out.push((name, at, raw));
    }
    out
}
