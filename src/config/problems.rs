//! What is wrong with a config file, and where: every room of `config/` pushes what it finds
//! into one `Collector`, which turns byte offsets into line and column and names the key at
//! fault; `parse` then hands all of them back at once as one `ConfigError`.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One thing wrong with a config file, with its position when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What was being read, e.g. ``invalid cron expression `0 25 * * *` for job `x` ``.
    pub what: String,
    /// 1-based line and column of the offending value.
    pub at: Option<(usize, usize)>,
    /// Why, and what would be accepted.
    pub detail: String,
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.at {
                Some((line, col)) => write!(
                    f,
                    "{} ({file} line {line}, column {col}): {}",
                    p.what, p.detail
                )?,
                None => write!(f, "{} ({file}): {}", p.what, p.detail)?,
            }
        }
        Ok(())
    }
}

/// Maps byte offsets of the source to 1-based line and column.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    text: &'a str,
}

impl Source<'_> {
    pub(super) fn at(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        (line, before[line_start..].chars().count() + 1)
    }
}

pub(super) struct Collector<'a> {
    pub(super) source: Source<'a>,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Collector<'a> {
    /// No problems yet, for the config text `text`.
    pub(super) fn new(text: &'a str) -> Self {
        Collector {
            source: Source { text },
            problems: vec![],
        }
    }

    /// An empty collector for the same text: one thread's own, its problems merged after.
    pub(super) fn fresh(&self) -> Self {
        Collector {
            source: self.source,
            problems: vec![],
        }
    }
}

impl Collector<'_> {
    pub(super) fn push(
        &mut self,
        what: impl Into<String>,
        span: Option<Range<usize>>,
        detail: impl Into<String>,
    ) {
        let at = span.map(|s| self.source.at(s.start));
        self.problems.push(Problem {
            what: what.into(),
            at,
            detail: detail.into(),
        });
    }

    pub(super) fn toml(
        &mut self,
        what: impl Into<String>,
        err: &toml::de::Error,
        fallback: Range<usize>,
    ) {
        let detail = err.message().trim().to_string();
        self.push(what, Some(err.span().unwrap_or(fallback)), detail);
    }

    /// A value of `owner` that did not deserialize, named by its key when the error points at
    /// a value (a bad duration, a wrong type): the message then says which key of which table
    /// is wrong, as invariant 10 asks, not just which section.
    pub(super) fn toml_value(
        &mut self,
        owner: Owner<'_>,
        err: &toml::de::Error,
        fallback: Range<usize>,
    ) {
        let span = err.span().unwrap_or(fallback);
        let what = self.what(owner, span.start);
        self.push(what, Some(span), err.message().trim().to_string());
    }

    /// "invalid `KEY` for job `x`" or "invalid `KEY` in `[SECTION]`" for the value at
    /// `offset`; the owner's own phrase when no value of the file lies there.
    pub(super) fn what(&self, owner: Owner<'_>, offset: usize) -> String {
        let path = key_at(self.source.text, offset);
        match owner {
            Owner::Section(what) => match path.split_last() {
                Some((key, table)) if !table.is_empty() => {
                    format!("invalid `{key}` in `[{}]`", table.join("."))
                }
                _ => what.to_string(),
            },
            Owner::Entry { label, depth } if path.len() > depth => {
                format!("invalid `{}` for {label}", path[depth..].join("."))
            }
            Owner::Entry { label, .. } => format!("invalid {label}"),
        }
    }
}

/// Whose keys a bad value belongs to, for `Collector::toml_value`.
#[derive(Clone, Copy)]
pub(super) enum Owner<'a> {
    /// A section (`[daemon]`, `[channels]`, ...): its phrase when no key is found.
    Section(&'a str),
    /// One entry of a list (a `[[job]]`, a `[queue.handlers.NAME]`), named `label`, whose own
    /// keys start `depth` segments down the document (a job's: 1, a handler's: 3).
    Entry { label: &'a str, depth: usize },
}

/// The keys leading to the value (a string, number, date, or an item of an array of them)
/// that holds byte `offset` of the document, e.g. `job`, `retry`, `initial`; empty when the
/// offset is on no value (a key, a table header) or the text does not parse.
fn key_at(text: &str, offset: usize) -> Vec<String> {
    fn walk(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
        let on = |v: &Spanned<DeValue<'_>>| v.span().contains(&offset);
        for (key, value) in table.iter() {
            path.push(key.get_ref().to_string());
            let found = match value.get_ref() {
                DeValue::Table(t) => walk(t, offset, path),
                DeValue::Array(items) => items.iter().any(|item| match item.get_ref() {
                    DeValue::Table(t) => walk(t, offset, path),
                    _ => on(item),
                }),
                _ => on(value),
            };
            if found {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![];
    match DeTable::parse(text) {
        Ok(root) if walk(root.get_ref(), offset, &mut path) => path,
        _ => vec![],
    }
}

/// `items` in backticks, comma-separated: the "expected one of ..." part of a message.
pub(super) fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::errors;

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text = r#"[daemon]
timezone = "UTC"

[[job]]
name = "daily-invoices"
kind = "noop"
schedule = "0 25 * * *"

[[job]]
name = "b"
kind = "noop"
every = "10m"
timezone = "Europe/Berln"
"#;
        assert_eq!(
            errors(text),
            "invalid cron expression `0 25 * * *` for job `daily-invoices` (config.toml line 7, \
             column 12): hour must be 0-23 (found 25)\n\
             invalid `timezone` for job `b` (config.toml line 13, column 12): unknown time zone \
             `Europe/Berln`; did you mean `Europe/Berlin`? use an IANA name such as \
             `Africa/Johannesburg` or `UTC` (`timedatectl list-timezones` lists them)"
        );
    }

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let source = Source {
            text: "a = 1\nb = \"été\"\n",
        };
        assert_eq!(source.at(0), (1, 1));
        assert_eq!(source.at(6), (2, 1));
        // `é` is two bytes but one column: the closing quote is in column 9.
        assert_eq!(source.at("a = 1\nb = \"été".len()), (2, 9));
        // An offset past the end is the end.
        assert_eq!(source.at(10_000), (3, 1));
    }

    #[test]
    fn the_key_of_a_value_is_found_through_tables_and_arrays() {
        let text = "[daemon]\ntimezone = \"UTC\"\n[[job]]\nname = \"x\"\n\
                    retry = { initial = \"soon\" }\ntags = [\"a\", \"b\"]\n";
        let at = |needle: &str| key_at(text, text.find(needle).unwrap());
        assert_eq!(at("\"UTC\""), ["daemon", "timezone"]);
        assert_eq!(at("\"soon\""), ["job", "retry", "initial"]);
        assert_eq!(at("\"b\""), ["job", "tags"]);
        assert!(at("name").is_empty(), "a key is not a value");
        assert!(key_at("= broken", 0).is_empty(), "text that does not parse");
    }
}
