//! `:now` compared as text on SQLite. A `notify` query's `:now` is bound there as the text
//! `YYYY-MM-DD HH:MM:SS` (UTC), which is what SQLite's `datetime()` writes; SQLite compares
//! text with text by its characters and puts every number before every text. A column holding
//! RFC 3339 (`…T…Z`: `T` sorts after ` `) or unix seconds, compared bare with `:now`, picks
//! rows by text order and not by time: a reminder goes out a day early, or never.
//!
//! Before such a query runs (and in `tickler check`), a light reading of its SQL finds the
//! columns compared bare with `:now` (`col < :now`, `datetime(:now, '+1 day') >= a.col`,
//! `col BETWEEN datetime(:now, …) AND …`, `:now BETWEEN a.x AND a.y`), resolves them to the
//! tables the query names, and looks at a bounded sample of each (the oldest and newest rows);
//! a value in another form refuses the query, naming the value and the comparison to write
//! instead. This is a reader of common shapes, not a parser: what it cannot see it lets
//! through, so it never refuses a query it did not understand.

use sqlx::SqlitePool;

use super::{Doing, Result, StoreError};

/// The rows sampled at each end of a column's table (by `rowid`): the check costs at most
/// twice this many rows per compared column, whatever the table's size.
const SAMPLE: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A name or keyword.
    Word,
    /// A quoted identifier: `"x"`, `` `x` ``, `[x]`.
    Quoted,
    Str,
    Num,
    /// `:name`, `$n`, `?`, `@name`.
    Param,
    Op,
    Open,
    Close,
    Comma,
    Dot,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
}

/// Splits SQLite SQL into tokens, without comments and blanks.
fn tokens(sql: &str) -> Vec<Tok> {
    let b = sql.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    // The end of a quoted run starting at `i` and closed by `close` (doubled: escaped).
    let quoted = |i: usize, close: u8| {
        let mut j = i + 1;
        while j < b.len() {
            if b[j] == close {
                if close != b']' && b.get(j + 1) == Some(&close) {
                    j += 2;
                    continue;
                }
                return j + 1;
            }
            j += 1;
        }
        b.len()
    };
    while i < b.len() {
        let c = b[i];
        let (kind, end) = match c {
            _ if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(b.len(), |n| i + n + 1);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |n| i + n + 4);
                continue;
            }
            b'\'' => (Kind::Str, quoted(i, b'\'')),
            b'"' => (Kind::Quoted, quoted(i, b'"')),
            b'`' => (Kind::Quoted, quoted(i, b'`')),
            b'[' => (Kind::Quoted, quoted(i, b']')),
            b':' | b'@' | b'$' if b.get(i + 1).is_some_and(|&n| ident(n) && n != b'$') => {
                let end = (i + 1..b.len()).find(|&j| !ident(b[j])).unwrap_or(b.len());
                (Kind::Param, end)
            }
            b'?' => {
                let end = (i + 1..b.len())
                    .find(|&j| !b[j].is_ascii_digit())
                    .unwrap_or(b.len());
                (Kind::Param, end)
            }
            b'0'..=b'9' => {
                let end = (i + 1..b.len())
                    .find(|&j| !(ident(b[j]) || b[j] == b'.'))
                    .unwrap_or(b.len());
                (Kind::Num, end)
            }
            _ if ident(c) => {
                let end = (i + 1..b.len()).find(|&j| !ident(b[j])).unwrap_or(b.len());
                (Kind::Word, end)
            }
            b'(' => (Kind::Open, i + 1),
            b')' => (Kind::Close, i + 1),
            b',' => (Kind::Comma, i + 1),
            b'.' => (Kind::Dot, i + 1),
            b'<' | b'>' | b'=' | b'!' | b'|' | b'-' | b'+' | b'*' | b'/' | b'%' | b'&' | b'~' => {
                let two = sql.get(i..i + 2).unwrap_or("");
                let three = sql.get(i..i + 3).unwrap_or("");
                let len = if three == "->>" {
                    3
                } else if ["<=", ">=", "<>", "!=", "==", "||", "<<", ">>", "->"].contains(&two) {
                    2
                } else {
                    1
                };
                (Kind::Op, i + len)
            }
            _ => {
                // A character of no use here (`;`, or one SQLite would refuse anyway).
                let len = sql[i..].chars().next().map_or(1, char::len_utf8);
                (Kind::Other, i + len)
            }
        };
        out.push(Tok {
            kind,
            start: i,
            end,
        });
        i = end;
    }
    out
}

/// Words that end an operand or are not a column's name.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "null",
    "true",
    "false",
    "current_timestamp",
    "current_date",
    "current_time",
    "case",
    "when",
    "then",
    "else",
    "end",
    "between",
    "is",
    "in",
    "like",
    "glob",
    "match",
    "regexp",
    "escape",
    "collate",
    "exists",
    "select",
    "distinct",
    "from",
    "where",
    "on",
    "using",
    "as",
    "join",
    "left",
    "right",
    "inner",
    "outer",
    "cross",
    "full",
    "natural",
    "group",
    "order",
    "by",
    "having",
    "limit",
    "offset",
    "union",
    "except",
    "intersect",
    "window",
    "set",
    "values",
    "returning",
    "indexed",
];

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// The comparison operators whose operands `:now` may be.
const COMPARISONS: &[&str] = &["<", "<=", ">", ">=", "=", "==", "<>", "!="];

/// What an operand of a comparison is, as far as this reading goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operand {
    /// `name` or `qualifier.name`, unquoted.
    Column {
        qualifier: Option<String>,
        name: String,
    },
    /// `name(…)`, lower-cased, and whether `:now` is among its arguments.
    Call { name: String, now: bool },
    /// `:now`.
    Now,
    /// Anything else: a literal, another parameter, a subquery, a `CASE`.
    Other,
}

/// How `:now` comes out of an operand: as SQLite's datetime text, or its date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Datetime,
    Date,
}

impl Operand {
    fn now_form(&self) -> Option<Form> {
        match self {
            Operand::Now => Some(Form::Datetime),
            Operand::Call { name, now: true } if name == "datetime" => Some(Form::Datetime),
            Operand::Call { name, now: true } if name == "date" => Some(Form::Date),
            _ => None,
        }
    }
}

/// An operand: its first and last token, and what it is.
type Span = (usize, usize, Operand);

struct Reader<'a> {
    sql: &'a str,
    toks: Vec<Tok>,
    /// For each `(` its `)`, for each `)` its `(`.
    pair: Vec<Option<usize>>,
    /// How many parentheses each token is inside.
    depth: Vec<usize>,
}

impl<'a> Reader<'a> {
    fn new(sql: &'a str) -> Reader<'a> {
        let toks = tokens(sql);
        let mut pair = vec![None; toks.len()];
        let mut depth = vec![0; toks.len()];
        let mut open = vec![];
        for (i, t) in toks.iter().enumerate() {
            depth[i] = open.len();
            match t.kind {
                Kind::Open => open.push(i),
                Kind::Close => {
                    if let Some(o) = open.pop() {
                        pair[o] = Some(i);
                        pair[i] = Some(o);
                    }
                }
                _ => {}
            }
        }
        Reader {
            sql,
            toks,
            pair,
            depth,
        }
    }

    /// Whether the `=` at `i` assigns (`UPDATE … SET col = :now, …`) rather than compares:
    /// it is in a `SET` clause, which ends at `WHERE`, `FROM` or `RETURNING` of its level.
    fn assigns(&self, i: usize) -> bool {
        let d = self.depth[i];
        for j in (0..i).rev() {
            if self.depth[j] < d {
                return false;
            }
            if self.depth[j] > d {
                continue;
            }
            if self.is_word(j, "set") {
                return true;
            }
            if [
                "where",
                "from",
                "returning",
                "on",
                "having",
                "select",
                "when",
            ]
            .iter()
            .any(|w| self.is_word(j, w))
            {
                return false;
            }
        }
        false
    }

    fn text(&self, i: usize) -> &'a str {
        &self.sql[self.toks[i].start..self.toks[i].end]
    }

    fn kind(&self, i: usize) -> Option<Kind> {
        self.toks.get(i).map(|t| t.kind)
    }

    fn is_word(&self, i: usize, word: &str) -> bool {
        self.kind(i) == Some(Kind::Word) && self.text(i).eq_ignore_ascii_case(word)
    }

    /// A name as SQLite reads it: quotes removed.
    fn name(&self, i: usize) -> String {
        let t = self.text(i);
        match self.toks[i].kind {
            Kind::Quoted if t.len() >= 2 => {
                let q = &t[..1];
                let inner = &t[1..t.len() - 1];
                if q == "[" {
                    inner.to_string()
                } else {
                    inner.replace(&format!("{q}{q}"), q)
                }
            }
            _ => t.to_string(),
        }
    }

    fn is_name(&self, i: usize) -> bool {
        match self.kind(i) {
            Some(Kind::Word) => !is_keyword(self.text(i)),
            Some(Kind::Quoted) => true,
            _ => false,
        }
    }

    fn has_now(&self, from: usize, to: usize) -> bool {
        (from..=to).any(|i| self.kind(i) == Some(Kind::Param) && self.text(i) == ":now")
    }

    /// An operator that binds tighter than a comparison, so that the operand next to it is
    /// only part of the comparison's operand.
    fn binds_tighter(&self, i: usize) -> bool {
        match self.kind(i) {
            Some(Kind::Op) => !COMPARISONS.contains(&self.text(i)),
            Some(Kind::Word) => self.is_word(i, "collate") || self.is_word(i, "escape"),
            Some(Kind::Dot) => true,
            _ => false,
        }
    }

    fn classify(&self, from: usize, to: usize) -> Operand {
        let t = &self.toks[from];
        match t.kind {
            Kind::Param if from == to && self.text(from) == ":now" => Operand::Now,
            Kind::Word if self.kind(from + 1) == Some(Kind::Open) => Operand::Call {
                name: self.text(from).to_ascii_lowercase(),
                now: self.has_now(from, to),
            },
            Kind::Word | Kind::Quoted if from == to && self.is_name(from) => Operand::Column {
                qualifier: None,
                name: self.name(from),
            },
            Kind::Word | Kind::Quoted if to == from + 2 && self.is_name(to) => Operand::Column {
                qualifier: Some(self.name(from)),
                name: self.name(to),
            },
            _ => Operand::Other,
        }
    }

    /// The operand ending just before token `i`: its tokens' range and what it is.
    fn before(&self, i: usize) -> Option<Span> {
        let end = i.checked_sub(1)?;
        let start = match self.kind(end)? {
            Kind::Close => {
                let open = self.pair[end]?;
                if open > 0 && self.kind(open - 1) == Some(Kind::Word) {
                    open - 1
                } else {
                    open
                }
            }
            Kind::Word | Kind::Quoted
                if end >= 2 && self.kind(end - 1) == Some(Kind::Dot) && self.is_name(end - 2) =>
            {
                end - 2
            }
            _ => end,
        };
        let whole = start == 0 || !self.binds_tighter(start - 1);
        let operand = if whole {
            self.classify(start, end)
        } else {
            Operand::Other
        };
        Some((start, end, operand))
    }

    /// The operand starting at token `i`.
    fn after(&self, i: usize) -> Option<Span> {
        let start = i;
        let end = match self.kind(start)? {
            Kind::Open => self.pair[start]?,
            Kind::Word if self.kind(start + 1) == Some(Kind::Open) => self.pair[start + 1]?,
            Kind::Word | Kind::Quoted
                if self.kind(start + 1) == Some(Kind::Dot) && self.is_name(start + 2) =>
            {
                start + 2
            }
            _ => start,
        };
        let whole = !self.binds_tighter(end + 1);
        let operand = if whole {
            self.classify(start, end)
        } else {
            Operand::Other
        };
        Some((start, end, operand))
    }

    /// The source text of tokens `from..=to`, blanks run together.
    fn source(&self, from: usize, to: usize) -> String {
        let text = &self.sql[self.toks[from].start..self.toks[to].end];
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// One column compared bare with `:now`, and the comparison it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Compared {
    /// The column as written: `s.starts_at`.
    pub written: String,
    pub qualifier: Option<String>,
    pub name: String,
    /// The comparison as written, blanks run together: `s.starts_at <= :now`.
    pub comparison: String,
    /// Whether `:now` is compared as a date (`date(:now)`) rather than a datetime.
    date_only: bool,
    /// The comparison's operands as written, with the operators between them, for the fix.
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// An operand: its text, whether it is a column, and whether it is `datetime(…)`.
    Operand {
        text: String,
        column: bool,
        datetime: bool,
    },
    /// An operator or keyword between operands (`<=`, `BETWEEN`, `AND`).
    Between(String),
}

impl Compared {
    /// The comparison rewritten to compare instants: for text in another form, `julianday()`
    /// on every side; for numbers (unix seconds), `unixepoch()` on `:now`'s side.
    fn fix(&self, numbers: bool) -> String {
        let f = if numbers { "unixepoch" } else { "julianday" };
        let mut out = vec![];
        for part in &self.parts {
            out.push(match part {
                Part::Between(op) => op.clone(),
                Part::Operand {
                    text, column: true, ..
                } if numbers => text.clone(),
                // `datetime(:now, '+1 day')` becomes `julianday(:now, '+1 day')`.
                Part::Operand {
                    text,
                    datetime: true,
                    ..
                } => match text.split_once('(') {
                    Some((_, args)) => format!("{f}({args}"),
                    None => format!("{f}({text})"),
                },
                Part::Operand { text, .. } => format!("{f}({text})"),
            });
        }
        out.join(" ")
    }
}

/// The columns a query compares bare with `:now` (as SQLite's datetime text, or its date).
pub(crate) fn compared_with_now(sql: &str) -> Vec<Compared> {
    let r = Reader::new(sql);
    let mut out = vec![];
    let operand = |from: usize, to: usize, o: &Operand| Part::Operand {
        text: r.source(from, to),
        column: matches!(o, Operand::Column { .. }),
        datetime: matches!(o, Operand::Call { name, .. } if name == "datetime"),
    };
    for i in 0..r.toks.len() {
        let t = r.toks[i];
        if t.kind == Kind::Op && COMPARISONS.contains(&r.text(i)) {
            if r.assigns(i) {
                continue;
            }
            let (Some(left), Some(right)) = (r.before(i), r.after(i + 1)) else {
                continue;
            };
            let pairs = [(&left, &right), (&right, &left)];
            for (col, now) in pairs {
                let (Operand::Column { qualifier, name }, Some(form)) = (&col.2, now.2.now_form())
                else {
                    continue;
                };
                out.push(Compared {
                    written: r.source(col.0, col.1),
                    qualifier: qualifier.clone(),
                    name: name.clone(),
                    comparison: r.source(left.0, right.1),
                    date_only: form == Form::Date,
                    parts: vec![
                        operand(left.0, left.1, &left.2),
                        Part::Between(r.text(i).to_string()),
                        operand(right.0, right.1, &right.2),
                    ],
                });
            }
        } else if r.is_word(i, "between") {
            let not = i > 0 && r.is_word(i - 1, "not");
            let Some(subject) = r.before(if not { i - 1 } else { i }) else {
                continue;
            };
            let Some(low) = r.after(i + 1) else {
                continue;
            };
            if !r.is_word(low.1 + 1, "and") {
                continue;
            }
            let Some(high) = r.after(low.1 + 2) else {
                continue;
            };
            let parts = vec![
                operand(subject.0, subject.1, &subject.2),
                Part::Between(r.source(subject.1 + 1, i)),
                operand(low.0, low.1, &low.2),
                Part::Between(r.text(low.1 + 1).to_string()),
                operand(high.0, high.1, &high.2),
            ];
            let comparison = r.source(subject.0, high.1);
            // `col BETWEEN <now> AND …`, or `:now BETWEEN col AND col`.
            let forms = [low.2.now_form(), high.2.now_form()];
            let cols: Vec<(&Span, Option<Form>)> = if let Some(form) = subject.2.now_form() {
                vec![(&low, Some(form)), (&high, Some(form))]
            } else if forms.iter().any(Option::is_some) {
                let form = if forms.contains(&Some(Form::Datetime)) {
                    Form::Datetime
                } else {
                    Form::Date
                };
                vec![(&subject, Some(form))]
            } else {
                vec![]
            };
            for (col, form) in cols {
                let (Operand::Column { qualifier, name }, Some(form)) = (&col.2, form) else {
                    continue;
                };
                out.push(Compared {
                    written: r.source(col.0, col.1),
                    qualifier: qualifier.clone(),
                    name: name.clone(),
                    comparison: comparison.clone(),
                    date_only: form == Form::Date,
                    parts: parts.clone(),
                });
            }
        }
    }
    out
}

/// A table the query reads: its name (and schema), and the alias it goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    schema: Option<String>,
    /// `None`: a subquery or a table-valued function.
    table: Option<String>,
    alias: Option<String>,
}

/// The tables after `FROM`, `JOIN` and `UPDATE`, with their aliases.
fn sources(r: &Reader<'_>) -> Vec<Source> {
    let mut out = vec![];
    let mut i = 0;
    while i < r.toks.len() {
        if !(r.is_word(i, "from") || r.is_word(i, "join") || r.is_word(i, "update")) {
            i += 1;
            continue;
        }
        i += 1;
        if r.is_word(i - 1, "update") && r.is_word(i, "or") {
            i += 2;
        }
        loop {
            let mut source = Source {
                schema: None,
                table: None,
                alias: None,
            };
            match r.kind(i) {
                Some(Kind::Open) => i = r.pair[i].map_or(r.toks.len(), |c| c + 1),
                Some(Kind::Word | Kind::Quoted) if r.is_name(i) => {
                    if r.kind(i + 1) == Some(Kind::Dot) && r.is_name(i + 2) {
                        source.schema = Some(r.name(i));
                        i += 2;
                    }
                    if r.kind(i + 1) == Some(Kind::Open) {
                        i = r.pair[i + 1].map_or(r.toks.len(), |c| c + 1);
                    } else {
                        source.table = Some(r.name(i));
                        i += 1;
                    }
                }
                _ => break,
            }
            if r.is_word(i, "as") {
                i += 1;
            }
            if r.is_name(i) {
                source.alias = Some(r.name(i));
                i += 1;
            }
            out.push(source);
            if r.kind(i) == Some(Kind::Comma) {
                i += 1;
                continue;
            }
            break;
        }
    }
    out
}

/// A column compared bare with `:now` whose sampled value is another form of instant: the
/// comparison as written, the value, and the comparison to write instead.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{comparison}` compares `{column}` with `:now`, {now}, and `{column}` holds {found}: \
     {why}, so the query would pick the wrong rows; {fix}, or keep `YYYY-MM-DD HH:MM:SS` (UTC) \
     in the column"
)]
pub struct NowComparedAsText {
    comparison: String,
    /// What `:now` is there: SQLite's datetime text, or a date.
    now: &'static str,
    /// `table.column`.
    column: String,
    /// The value, quoted, with its type when it is not text.
    found: String,
    why: &'static str,
    fix: String,
}

/// The value found, and the comparison to write instead.
fn refusal(c: &Compared, column: String, found: String, ty: &str) -> StoreError {
    let now = if c.date_only {
        "a date, the text `YYYY-MM-DD`"
    } else {
        "the text `YYYY-MM-DD HH:MM:SS` (UTC)"
    };
    let (found, why, fix) = if ty == "text" {
        (
            format!("`{found}`"),
            "as text it sorts by its characters, not by time",
            format!("write `{}`", c.fix(false)),
        )
    } else {
        (
            format!("`{found}` (a number, {ty})"),
            "SQLite sorts every number before any text",
            format!("if it holds unix seconds, write `{}`", c.fix(true)),
        )
    };
    StoreError::NowComparedAsText(Box::new(NowComparedAsText {
        comparison: c.comparison.clone(),
        now,
        column,
        found,
        why,
        fix,
    }))
}

/// Quotes an identifier for SQLite.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The first value of the sample of `table.column` not in the form `:now` is compared in,
/// with its `typeof`.
async fn odd_value(
    pool: &SqlitePool,
    schema: Option<&str>,
    table: &str,
    column: &str,
    date_only: bool,
) -> Result<Option<(String, String)>> {
    let doing = "checking the columns compared with `:now`";
    let table = match schema {
        Some(s) => format!("{}.{}", quote(s), quote(table)),
        None => quote(table),
    };
    let col = quote(column);
    const DATE: &str = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]";
    // Text in SQLite's own forms compares with `:now`'s text in time order: a date, or a date
    // and `HH:MM`, then only seconds and their fraction (no `T`, no offset, no `Z`).
    let fits = if date_only {
        format!("typeof(v) = 'text' AND v GLOB '{DATE}*'")
    } else {
        format!(
            "typeof(v) = 'text' AND (v GLOB '{DATE}' OR (v GLOB '{DATE} [0-9][0-9]:[0-9][0-9]*' \
             AND substr(v, 17) NOT GLOB '*[^0-9:.]*'))"
        )
    };
    let pick = |order: &str, limit: u32| {
        format!("SELECT {col} AS v FROM {table} WHERE {col} IS NOT NULL {order} LIMIT {limit}")
    };
    let sampled = format!(
        "SELECT CAST(v AS TEXT), typeof(v) FROM (SELECT * FROM ({}) UNION ALL SELECT * FROM ({})) \
         WHERE NOT ({fits}) LIMIT 1",
        pick("ORDER BY rowid DESC", SAMPLE),
        pick("ORDER BY rowid", SAMPLE)
    );
    match sqlx::query_as(&sampled).fetch_optional(pool).await {
        Ok(found) => Ok(found),
        // A view or a `WITHOUT ROWID` table has no `rowid`: the first rows it gives.
        Err(sqlx::Error::Database(_)) => {
            let plain = format!(
                "SELECT CAST(v AS TEXT), typeof(v) FROM ({}) WHERE NOT ({fits}) LIMIT 1",
                pick("", 2 * SAMPLE)
            );
            sqlx::query_as(&plain)
                .fetch_optional(pool)
                .await
                .doing(doing)
        }
        Err(e) => Err(e).doing(doing),
    }
}

/// Whether `table` (in `schema`) has a column `name`.
async fn has_column(
    pool: &SqlitePool,
    schema: Option<&str>,
    table: &str,
    name: &str,
) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM pragma_table_info(?1, ?2) WHERE name = ?3 COLLATE NOCASE LIMIT 1",
    )
    .bind(table)
    .bind(schema)
    .bind(name)
    .fetch_optional(pool)
    .await
    .doing("checking the columns compared with `:now`")?;
    Ok(found.is_some())
}

/// Refuses `sql` if it compares a column bare with `:now` and a sampled value of that column
/// is not in SQLite's datetime text form (see the module's comment).
pub(crate) async fn check(pool: &SqlitePool, sql: &str) -> Result<()> {
    let compared = compared_with_now(sql);
    if compared.is_empty() {
        return Ok(());
    }
    let reader = Reader::new(sql);
    let sources = sources(&reader);
    for c in &compared {
        let tables: Vec<&Source> = match &c.qualifier {
            Some(q) => sources
                .iter()
                .find(|s| {
                    s.alias
                        .as_deref()
                        .is_some_and(|a| a.eq_ignore_ascii_case(q))
                })
                .or_else(|| {
                    sources.iter().find(|s| {
                        s.alias.is_none()
                            && s.table
                                .as_deref()
                                .is_some_and(|t| t.eq_ignore_ascii_case(q))
                    })
                })
                .into_iter()
                .collect(),
            None => sources.iter().collect(),
        };
        for s in tables {
            let Some(table) = &s.table else { continue };
            let schema = s.schema.as_deref();
            // A CTE, an outer query's alias, a result column: not a column of a table here.
            if !has_column(pool, schema, table, &c.name).await? {
                continue;
            }
            if let Some((found, ty)) = odd_value(pool, schema, table, &c.name, c.date_only).await? {
                return Err(refusal(c, format!("{table}.{}", c.name), found, &ty));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each query, and the columns found compared with `:now`: (column as written, the
    /// comparison as written).
    #[test]
    fn columns_compared_with_now_are_found() {
        #[rustfmt::skip]
        let table: &[(&str, &[(&str, &str)])] = &[
            ("SELECT * FROM s WHERE s.starts_at <= :now",
             &[("s.starts_at", "s.starts_at <= :now")]),
            ("SELECT * FROM s WHERE :now>starts_at AND id = 1",
             &[("starts_at", ":now>starts_at")]),
            ("SELECT * FROM s WHERE \"s\".\"at\" > datetime(:now, '-1 day')",
             &[("\"s\".\"at\"", "\"s\".\"at\" > datetime(:now, '-1 day')")]),
            ("SELECT * FROM b WHERE b.starts_at\n   BETWEEN datetime(:now, '+23 hours') \
              AND datetime(:now, '+25 hours') AND b.x = 1",
             &[("b.starts_at", "b.starts_at BETWEEN datetime(:now, '+23 hours') AND \
                                datetime(:now, '+25 hours')")]),
            ("SELECT 1 FROM s WHERE s.at NOT BETWEEN :now AND '2030-01-01'",
             &[("s.at", "s.at NOT BETWEEN :now AND '2030-01-01'")]),
            ("SELECT 1 FROM s WHERE :now BETWEEN s.opens AND s.closes",
             &[("s.opens", ":now BETWEEN s.opens AND s.closes"),
               ("s.closes", ":now BETWEEN s.opens AND s.closes")]),
            ("SELECT 1 FROM s WHERE due >= date(:now)", &[("due", "due >= date(:now)")]),
            // `on_sent`: an assignment is not a comparison; its `WHERE` is.
            ("UPDATE s SET at = :now, n = (SELECT 1 WHERE x = :now) WHERE s.due < :now",
             &[("x", "x = :now"), ("s.due", "s.due < :now")]),
            ("INSERT INTO n (at) VALUES (:now)", &[]),
            // Wrapped on the column's side or on `:now`'s, `:now` in arithmetic, a literal,
            // another placeholder, a comment or a string: nothing to look at.
            ("SELECT 1 FROM s WHERE julianday(s.at) <= julianday(:now)", &[]),
            ("SELECT 1 FROM s WHERE s.at <= unixepoch(:now)", &[]),
            ("SELECT 1 FROM s WHERE s.at <= strftime('%Y-%m-%dT%H:%M:%SZ', :now)", &[]),
            ("SELECT 1 FROM s WHERE s.at + 0 <= :now", &[]),
            ("SELECT 1 FROM s WHERE s.at <= :now || ''", &[]),
            ("SELECT 1 FROM s WHERE :now > '2026-01-01' AND s.at = :nowish", &[]),
            ("SELECT 1 FROM s WHERE NULL < :now -- s.at < :now\n /* s.x < :now */", &[]),
            ("SELECT 's.at < :now' FROM s", &[]),
            ("SELECT 1 FROM s WHERE (SELECT max(at) FROM t) < :now", &[]),
        ];
        for (sql, expected) in table {
            let found: Vec<(String, String)> = compared_with_now(sql)
                .into_iter()
                .map(|c| (c.written, c.comparison))
                .collect();
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            assert_eq!(found, expected, "{sql}");
        }
    }

    #[test]
    fn the_fix_compares_instants() {
        #[rustfmt::skip]
        let table = [
            ("SELECT 1 FROM s WHERE s.at <= :now",
             "julianday(s.at) <= julianday(:now)", "s.at <= unixepoch(:now)"),
            ("SELECT 1 FROM s WHERE datetime(:now, '-1 day') > s.at",
             "julianday(:now, '-1 day') > julianday(s.at)", "unixepoch(:now, '-1 day') > s.at"),
            ("SELECT 1 FROM b WHERE b.at BETWEEN datetime(:now, '+23 hours') AND \
              datetime(:now, '+25 hours')",
             "julianday(b.at) BETWEEN julianday(:now, '+23 hours') AND \
              julianday(:now, '+25 hours')",
             "b.at BETWEEN unixepoch(:now, '+23 hours') AND unixepoch(:now, '+25 hours')"),
            ("SELECT 1 FROM s WHERE due >= date(:now)",
             "julianday(due) >= julianday(date(:now))", "due >= unixepoch(date(:now))"),
        ];
        for (sql, text, numbers) in table {
            let c = &compared_with_now(sql)[0];
            assert_eq!(
                (c.fix(false).as_str(), c.fix(true).as_str()),
                (text, numbers)
            );
        }
    }

    #[test]
    fn tables_and_aliases_are_read_from_from_and_join() {
        let r = Reader::new(
            "WITH x AS (SELECT 1) SELECT * FROM main.bookings AS b JOIN \"clients\" c ON \
             c.id = b.client_id LEFT JOIN (SELECT 1) sub ON 1 WHERE b.x IN (SELECT y \
             FROM json_each('[]') j, audit, [log] AS l WHERE l.id = 1)",
        );
        let s = |schema: Option<&str>, table: Option<&str>, alias: Option<&str>| Source {
            schema: schema.map(String::from),
            table: table.map(String::from),
            alias: alias.map(String::from),
        };
        assert_eq!(
            sources(&r),
            [
                s(Some("main"), Some("bookings"), Some("b")),
                s(None, Some("clients"), Some("c")),
                s(None, None, Some("sub")),
                s(None, None, Some("j")),
                s(None, Some("audit"), None),
                s(None, Some("log"), Some("l")),
            ]
        );
    }
}
