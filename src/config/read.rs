//! Reading pieces of the parsed TOML tree: a value into a section's raw (serde) form, the
//! chosen keys of a table (a job's identity, its policy, its kind's parameters), and the rule
//! for names of jobs and handlers. Shared by the rooms of `config/` that read sections.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

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
