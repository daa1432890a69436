//! Message templates (minijinja): one file per template, `NAME.j2`, holding the blocks
//! `subject`, `text`, `html` and `sms`. The shipped ones are built in; a file of the same name
//! in the configured directory replaces one, and new names add templates. Undefined values are
//! errors (a typo must not send "Dear ," to a customer), and `tickler check` renders every
//! template a job uses against sample data, so a broken one is found before 9 AM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde_json::Map;

use super::ChannelKind;

/// The templates shipped with tickler (also in the repository's `templates/` directory).
const BUILTIN: &[(&str, &str)] = &[
    ("friendly", include_str!("../../templates/friendly.j2")),
    (
        "professional",
        include_str!("../../templates/professional.j2"),
    ),
    ("firm", include_str!("../../templates/firm.j2")),
    ("urgent", include_str!("../../templates/urgent.j2")),
    (
        "escalation-1",
        include_str!("../../templates/escalation-1.j2"),
    ),
    (
        "escalation-2",
        include_str!("../../templates/escalation-2.j2"),
    ),
    (
        "escalation-3",
        include_str!("../../templates/escalation-3.j2"),
    ),
    (
        "custom-message",
        include_str!("../../templates/custom-message.j2"),
    ),
    (
        "stats-report",
        include_str!("../../templates/stats-report.j2"),
    ),
];

/// A message rendered for one channel.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// The loaded templates.
pub struct Templates {
    env: Environment<'static>,
    /// Where each template came from, for error messages.
    origin: BTreeMap<String, String>,
    /// For each template, its `once/` children (see [`Templates::render`]).
    once: BTreeMap<String, Children>,
    /// A search for what every mark starts with (its needle): a private-use character and 128
    /// random bits drawn at load, so no template or value can hold one (a value that could
    /// would move its own text into another block, a subject for instance).
    mark: memchr::memmem::Finder<'static>,
}

/// The blocks a message takes (see [`Templates::render`]).
const MESSAGE_BLOCKS: [&str; 4] = ["subject", "text", "html", "sms"];

/// What a channel takes of a template: an email its subject, text and HTML; a webhook its
/// subject and text; an SMS or WhatsApp message its `sms` block, or its text when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Email,
    Webhook,
    Short,
}

impl Use {
    const COUNT: usize = 3;
    const ALL: [Use; Use::COUNT] = [Use::Email, Use::Webhook, Use::Short];

    fn of(channel: ChannelKind) -> Use {
        match channel {
            ChannelKind::Email => Use::Email,
            ChannelKind::Webhook => Use::Webhook,
            ChannelKind::Sms | ChannelKind::Whatsapp => Use::Short,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Use::Email => "email",
            Use::Webhook => "webhook",
            Use::Short => "sms",
        }
    }

    /// Of the message blocks a template defines itself, those this use takes.
    fn takes(self, defined: &[&'static str]) -> Vec<&'static str> {
        let wanted: &[&str] = match self {
            Use::Email => &["subject", "text", "html"],
            Use::Webhook => &["subject", "text"],
            Use::Short if defined.contains(&"sms") => &["sms"],
            Use::Short => &["text"],
        };
        defined
            .iter()
            .copied()
            .filter(|b| wanted.contains(b))
            .collect()
    }
}

/// A template's `once/` children, one per [`Use`] (none for a use it defines no block of).
struct Children {
    by_use: [Option<Once>; Use::COUNT],
    /// The message blocks the template does not have: it defines them nowhere and extends no
    /// template (its source never says `extends`). Empty when it may inherit blocks.
    absent: Vec<&'static str>,
}

/// A template's `once/` child for one [`Use`]: its name, and the message blocks the template
/// defines itself that the use takes, each marked in it.
struct Once {
    child: String,
    blocks: Vec<Marked>,
}

/// A block as its `once/` child marks it: `open` text `close`.
struct Marked {
    block: &'static str,
    open: String,
    close: String,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("names", &self.origin.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What went wrong with a template; the text names the template, its origin and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A message names a template that is not loaded.
    #[error("no template named `{name}`")]
    Unknown { name: String },
    /// `tickler check`: a job names a template that is not loaded.
    #[error(
        "no template named `{name}`; add `{name}.j2` to the templates directory or use one of: \
         {known}"
    )]
    NotFound { name: String, known: String },
    /// A tone (or other `what`) of a task or campaign has no template.
    #[error(
        "no template for the {what} `{name}`: add `{name}.j2` to the templates directory or use \
         one of: {known}"
    )]
    NoneFor {
        what: String,
        name: String,
        known: String,
    },
    /// Rendering failed (origin, line and minijinja's reason).
    #[error("cannot render {0}")]
    Render(String),
    /// The template lacks a block the channel needs.
    #[error("{origin} has no `{block}` block, which {channel} messages need")]
    NoBlock {
        origin: String,
        block: String,
        channel: &'static str,
    },
    /// A template string does not parse (origin, line and reason).
    #[error("{0}")]
    Syntax(String),
}

/// For the callers that still report errors as text (config checks, job parameters).
impl From<TemplateError> for String {
    fn from(e: TemplateError) -> String {
        e.to_string()
    }
}

/// A JSON context as template values, built directly rather than through serde (a tenth of
/// a reminder's rendering). The values are those serde's path gives (positive integers
/// unsigned, negative ones signed, `null` none), except that a JSON object becomes a
/// [`Fields`], which a template looks a key up in by its text: the same keys, in the same
/// order, read the same way.
fn context(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            (None, None) => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(context).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => Value::from_object(Fields::of(map)),
    }
}

/// A JSON object's members as template values, in the order of their keys (as a `BTreeMap`
/// keeps them, and minijinja's map of one enumerates them). A message's context is made once
/// and read a few dozen times: a `BTreeMap<String, Value>` cost an allocation a key to make and
/// five to seven string comparisons a lookup, a fifth of a reminder's render; here the keys
/// share one allocation, and a lookup compares the text of a key of the same length only.
struct Fields {
    /// The keys one after another; key `i` ends at `ends[i]`.
    keys: String,
    ends: Vec<usize>,
    values: Vec<Value>,
}

impl Fields {
    fn of(map: &Map<String, serde_json::Value>) -> Fields {
        let mut fields = Fields {
            keys: String::with_capacity(map.keys().map(String::len).sum()),
            ends: Vec::with_capacity(map.len()),
            values: Vec::with_capacity(map.len()),
        };
        // In key order already, unless serde_json keeps the order of insertion.
        if map.keys().is_sorted() {
            fields.push(map.iter());
        } else {
            let mut members: Vec<_> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            fields.push(members.into_iter());
        }
        fields
    }

    /// Appends `members`, which come in key order.
    fn push<'a>(&mut self, members: impl Iterator<Item = (&'a String, &'a serde_json::Value)>) {
        for (key, value) in members {
            self.keys.push_str(key);
            self.ends.push(self.keys.len());
            self.values.push(context(value));
        }
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.keys[start..end])
    }
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.keys().zip(&self.values))
            .finish()
    }
}

impl minijinja::value::Object for Fields {
    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &std::sync::Arc<Self>, key: &str) -> Option<Value> {
        let mut start = 0;
        for (i, &end) in self.ends.iter().enumerate() {
            if end - start == key.len() && &self.keys[start..end] == key {
                return Some(self.values[i].clone());
            }
            start = end;
        }
        None
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        use minijinja::value::ObjectExt;
        self.mapped_enumerator(|this| Box::new(this.keys().map(Value::from)))
    }

    fn enumerator_len(self: &std::sync::Arc<Self>) -> Option<usize> {
        Some(self.values.len())
    }
}

/// Describes a minijinja error with the template's origin and line.
fn describe(origin: &str, mut err: &minijinja::Error) -> String {
    // A `once/` child's `super()` wraps the template's own error: that one says where the
    // template failed. (A wrapper of the template's own `super()` stays, as it always read.)
    while let Some(inner) = std::error::Error::source(err)
        .and_then(|e| e.downcast_ref::<minijinja::Error>())
        .filter(|_| {
            err.kind() == minijinja::ErrorKind::EvalBlock
                && err.name().is_some_and(|n| n.starts_with("once/"))
        })
    {
        err = inner;
    }
    let mut text = err.kind().to_string();
    if let Some(detail) = err.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    match err.line() {
        Some(line) => format!("{origin} line {line}: {text}"),
        None => format!("{origin}: {text}"),
    }
}

impl Templates {
    /// Loads the built-in templates, then every `*.j2` file of `dir` (when it exists), and
    /// makes `vars` available to all of them. Returns every problem found.
    pub fn load(
        dir: Option<&Path>,
        vars: &Map<String, serde_json::Value>,
    ) -> Result<Self, Vec<String>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_global("vars", Value::from(Serde(vars)));
        let mut origin = BTreeMap::new();
        let mut problems = vec![];
        let mut sources: BTreeMap<String, (String, String)> = BUILTIN
            .iter()
            .map(|(name, src)| {
                (
                    name.to_string(),
                    (format!("built-in template `{name}`"), src.to_string()),
                )
            })
            .collect();
        if let Some(dir) = dir {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    let mut paths: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "j2"))
                        .collect();
                    paths.sort();
                    for path in paths {
                        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                            continue;
                        };
                        match std::fs::read_to_string(&path) {
                            Ok(src) => {
                                sources.insert(
                                    name.to_string(),
                                    (format!("template `{name}` ({})", path.display()), src),
                                );
                            }
                            Err(e) => problems.push(format!(
                                "cannot read the template `{}`: {e}",
                                path.display()
                            )),
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push(format!(
                    "cannot read the templates directory `{}`: {e}",
                    dir.display()
                )),
            }
        }
        for (name, (from, src)) in sources {
            if let Err(e) = env.add_template_owned(name.clone(), src) {
                problems.push(describe(&from, &e));
            }
            origin.insert(name, from);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mark = format!("\u{E000}{}", uuid::Uuid::new_v4().simple());
        let once = once_children(&mut env, &origin, &mark);
        Ok(Templates {
            env,
            origin,
            once,
            mark: memchr::memmem::Finder::new(mark.as_bytes()).into_owned(),
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.origin.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.origin.keys().map(|s| s.as_str())
    }

    fn origin<'a>(&'a self, name: &'a str) -> &'a str {
        self.origin.get(name).map(|s| s.as_str()).unwrap_or(name)
    }

    /// Renders `name` for `channel`: an email takes `subject`, `text` and `html`; an SMS or
    /// WhatsApp message takes `sms` (or `text` when the template has no `sms` block); a
    /// webhook takes `subject` and `text`.
    ///
    /// Each block is rendered once: the template's `once/` child for the channel (made at load)
    /// extends it and wraps every message block the template defines and the channel takes in
    /// marks, so one render of the template yields every block's text apart, each rendered
    /// where the template's body renders it (as a plain render of a Jinja template does). The
    /// message blocks the channel does not take are left out of that render (an email does not
    /// render the `sms` block, so an error there does not stop an email). A block that render
    /// cannot give is rendered the slower way, the whole template and then the block apart, as
    /// every block was before: one the template inherits, renders twice, nests in another or
    /// leaves out, one that renders a block left out (`self.sms()`), and one that comes out
    /// empty (a `required` block left empty fails that way, as it always did).
    pub fn render(
        &self,
        name: &str,
        channel: ChannelKind,
        ctx: &serde_json::Value,
    ) -> Result<Rendered, TemplateError> {
        self.render_with(name, channel, ctx, true)
    }

    /// [`Templates::render`], with the one pass (`once`) or without it (the tests' reference).
    fn render_with(
        &self,
        name: &str,
        channel: ChannelKind,
        ctx: &serde_json::Value,
        once: bool,
    ) -> Result<Rendered, TemplateError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|_| TemplateError::Unknown {
                name: name.to_string(),
            })?;
        let origin = self.origin(name);
        let ctx = context(ctx);
        let children = self.once.get(name).filter(|_| once);
        let child = children.and_then(|c| c.by_use[Use::of(channel) as usize].as_ref());
        let output = match child {
            Some(o) => Some(
                self.env
                    .get_template(&o.child)
                    .and_then(|t| t.render(ctx.clone()))
                    .map_err(|e| TemplateError::Render(describe(origin, &e)))?,
            ),
            None => None,
        };
        let marked = child
            .zip(output.as_deref())
            .and_then(|(o, output)| split_marked(output, &o.blocks, &self.mark));
        // What the template lacks is known where its one pass is taken.
        let absent = match (children, child) {
            (Some(c), Some(_)) => &c.absent[..],
            _ => &[],
        };
        let mut captured = None;
        let mut block = |block: &str| -> Result<Option<String>, TemplateError> {
            if absent.contains(&block) {
                return Ok(None);
            }
            if let Some(text) = marked
                .as_ref()
                .and_then(|m| m.get(block))
                .map(|t| t.trim())
                .filter(|t| !t.is_empty())
            {
                return Ok(Some(text.to_string()));
            }
            if captured.is_none() {
                captured = Some(
                    template
                        .render_captured_to(ctx.clone(), std::io::sink())
                        .map_err(|e| TemplateError::Render(describe(origin, &e)))?,
                );
            }
            let captured = captured.as_mut().expect("captured above");
            captured.with_state_mut(|state| match state.render_block(block) {
                Ok(text) => Ok(Some(text.trim().to_string())),
                Err(e) if e.kind() == minijinja::ErrorKind::UnknownBlock => Ok(None),
                Err(e) => Err(TemplateError::Render(format!(
                    "{} (block `{block}`)",
                    describe(origin, &e)
                ))),
            })
        };
        let missing = |block: &str| TemplateError::NoBlock {
            origin: origin.to_string(),
            block: block.to_string(),
            channel: channel.as_str(),
        };
        match channel {
            ChannelKind::Email => Ok(Rendered {
                subject: block("subject")?.ok_or_else(|| missing("subject"))?,
                text: block("text")?.ok_or_else(|| missing("text"))?,
                html: block("html")?,
            }),
            ChannelKind::Sms | ChannelKind::Whatsapp => {
                let text = match block("sms")? {
                    Some(t) => t,
                    None => block("text")?.ok_or_else(|| missing("sms"))?,
                };
                Ok(Rendered {
                    subject: String::new(),
                    text,
                    html: None,
                })
            }
            ChannelKind::Webhook => Ok(Rendered {
                subject: block("subject")?.unwrap_or_default(),
                text: block("text")?.ok_or_else(|| missing("text"))?,
                html: None,
            }),
        }
    }

    /// Checks that a template exists for a tone (or other `what`) a task or campaign names.
    pub fn require(&self, name: &str, what: &str) -> Result<(), TemplateError> {
        if self.has(name) {
            return Ok(());
        }
        Err(TemplateError::NoneFor {
            what: what.to_string(),
            name: name.to_string(),
            known: self.names().collect::<Vec<_>>().join(", "),
        })
    }

    /// Checks that `name` exists and renders for each of `channels` against `sample`.
    pub fn check(
        &self,
        name: &str,
        channels: &[ChannelKind],
        sample: &serde_json::Value,
    ) -> Result<(), TemplateError> {
        if !self.has(name) {
            return Err(TemplateError::NotFound {
                name: name.to_string(),
                known: self.names().collect::<Vec<_>>().join(", "),
            });
        }
        for channel in channels {
            self.render(name, *channel, sample)?;
        }
        Ok(())
    }

    /// Renders a one-line template string (a dedup key, a recipient) against a row.
    pub fn render_str(
        &self,
        what: &str,
        source: &str,
        ctx: &serde_json::Value,
    ) -> Result<String, TemplateError> {
        self.env
            .render_str(source, context(ctx))
            .map(|s| s.trim().to_string())
            .map_err(|e| TemplateError::Render(describe(what, &e)))
    }

    /// Checks the syntax of a one-line template string.
    pub fn check_str(&self, what: &str, source: &str) -> Result<(), TemplateError> {
        self.env
            .template_from_str(source)
            .map(|_| ())
            .map_err(|e| TemplateError::Syntax(describe(what, &e)))
    }
}

/// Adds, for each template, its `once/` children, one per [`Use`]: each `{% extends %}` the
/// template, wraps each message block the template defines itself and the use takes in marks
/// around `super()`, and replaces each other message block the template defines with a mark of
/// its own (`~`), so the render leaves it out, and a taken block that renders it shows it.
/// Whether a template defines a block is asked of an empty state (`UnknownBlock` or not); a
/// block it inherits from a template it extends is not wrapped, and is rendered the slower way.
fn once_children(
    env: &mut Environment<'static>,
    origin: &BTreeMap<String, String>,
    mark: &str,
) -> BTreeMap<String, Children> {
    let mut once = BTreeMap::new();
    for name in origin.keys() {
        let Ok(template) = env.get_template(name) else {
            continue;
        };
        let defined: Vec<&'static str> = MESSAGE_BLOCKS
            .into_iter()
            .filter(|b| {
                !matches!(template.new_state().render_block(b),
                    Err(e) if e.kind() == minijinja::ErrorKind::UnknownBlock)
            })
            .collect();
        let absent: Vec<&'static str> = if template.source().contains("extends") {
            vec![]
        } else {
            MESSAGE_BLOCKS
                .into_iter()
                .filter(|b| !defined.contains(b))
                .collect()
        };
        // A JSON string is a Jinja string literal, whatever the name holds.
        let Ok(literal) = serde_json::to_string(name) else {
            continue;
        };
        let by_use = Use::ALL.map(|the_use| {
            let taken = the_use.takes(&defined);
            if taken.is_empty() {
                return None;
            }
            let blocks: Vec<Marked> = taken
                .into_iter()
                .map(|block| Marked {
                    block,
                    open: format!("{mark}+{block}:"),
                    close: format!("{mark}-{block}:"),
                })
                .collect();
            let mut source = format!("{{% extends {literal} %}}");
            for block in &defined {
                match blocks.iter().find(|m| m.block == *block) {
                    Some(m) => source.push_str(&format!(
                        "{{% block {block} %}}{}{{{{ super() }}}}{}{{% endblock %}}",
                        m.open, m.close
                    )),
                    None => source.push_str(&format!(
                        "{{% block {block} %}}{mark}~{block}:{{% endblock %}}"
                    )),
                }
            }
            // A template's name is a file's stem, which holds no `/`: no clash.
            let child = format!("once/{}/{name}", the_use.name());
            env.add_template_owned(child.clone(), source).ok()?;
            Some(Once { child, blocks })
        });
        once.insert(name.clone(), Children { by_use, absent });
    }
    once
}

/// The text of each of `blocks` in a `once/` child's output, when the output is what the
/// marks promise: each block's open mark once, followed by its own close as the next mark, and
/// no other open or close mark. Otherwise `None`: a block rendered twice (`self.text()`),
/// nested in another, not at all, or holding a block left out (its `~` mark).
///
/// The marks are found with one vectorized search, built once (`str::find` built a searcher
/// per call and scanned the output once per block: a fiftieth of the CPU per reminder).
fn split_marked<'a>(
    output: &'a str,
    blocks: &[Marked],
    mark: &memchr::memmem::Finder<'_>,
) -> Option<BTreeMap<&'static str, &'a str>> {
    let marks: Vec<usize> = mark.find_iter(output.as_bytes()).collect();
    let after = mark.needle().len();
    let paired = marks
        .iter()
        .filter(|&&p| output.as_bytes().get(p + after) != Some(&b'~'))
        .count();
    if paired != 2 * blocks.len() {
        return None;
    }
    let mut found = BTreeMap::new();
    for m in blocks {
        let at = *marks.iter().find(|&&p| output[p..].starts_with(&m.open))?;
        let start = at + m.open.len();
        // The next mark after the open one: it must be this block's close.
        let end = *marks.iter().find(|&&p| p >= start)?;
        if !output[end..].starts_with(&m.close) {
            return None;
        }
        found.insert(m.block, &output[start..end]);
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> serde_json::Value {
        crate::billing::messages::sample_invoice_context(Some(7), None)
    }

    #[test]
    fn the_shipped_templates_render_for_every_channel() {
        let mut vars = Map::new();
        vars.insert("company".into(), json!("Acme Rentals"));
        vars.insert("support_email".into(), json!("help@acme.test"));
        let t = Templates::load(None, &vars).unwrap();
        for name in ["friendly", "professional", "firm", "urgent"] {
            let r = t.render(name, ChannelKind::Email, &sample()).unwrap();
            assert!(r.text.contains("INV-000123"), "{name}: {}", r.text);
            assert!(r.html.unwrap().contains("INV-000123"));
            let sms = t.render(name, ChannelKind::Sms, &sample()).unwrap();
            assert!(sms.text.len() <= 320, "{name}: {}", sms.text);
        }
        for level in 1..=3 {
            let ctx = crate::billing::messages::sample_invoice_context(None, Some(level));
            let r = t
                .render(&format!("escalation-{level}"), ChannelKind::Email, &ctx)
                .unwrap();
            assert!(!r.subject.is_empty());
        }
    }

    /// Renders `name` for every channel both ways; returns whether the one pass gave every
    /// block each channel takes (no block rendered the slower way).
    fn same_both_ways(t: &Templates, name: &str, ctx: &serde_json::Value) -> bool {
        for channel in [ChannelKind::Email, ChannelKind::Sms, ChannelKind::Webhook] {
            let once = t.render_with(name, channel, ctx, true);
            let slow = t.render_with(name, channel, ctx, false);
            assert_eq!(
                format!("{once:?}"),
                format!("{slow:?}"),
                "{name} for {channel:?}"
            );
        }
        Use::ALL.iter().all(|u| {
            one_pass(t, name, *u, ctx).is_some_and(|(output, once)| {
                split_marked(&output, &once.blocks, &t.mark).is_some()
            })
        })
    }

    /// The output of `name`'s `once/` child for `the_use`, and the child.
    fn one_pass<'t>(
        t: &'t Templates,
        name: &str,
        the_use: Use,
        ctx: &serde_json::Value,
    ) -> Option<(String, &'t Once)> {
        let once = t.once[name].by_use[the_use as usize].as_ref()?;
        let output = t
            .env
            .get_template(&once.child)
            .unwrap()
            .render(context(ctx))
            .unwrap();
        Some((output, once))
    }

    #[test]
    fn each_block_is_rendered_once_and_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, source: &str| {
            std::fs::write(dir.path().join(format!("{name}.j2")), source).unwrap()
        };
        // Uses a block inside another (rendered twice): the slower way.
        write(
            "selfish",
            "{% block subject %}Invoice {{ invoice.number }}{% endblock %}\n\
             {% block text %}{{ self.subject() }}: {{ customer.name }}{% endblock %}\n",
        );
        // Defines a subject its body never renders.
        write(
            "hidden",
            "{% if false %}{% block subject %}The real subject{% endblock %}{% endif %}\n\
             {% block text %}Dear {{ customer.first_name }}{% endblock %}",
        );
        write(
            "required",
            "{% block subject required %}{% endblock %}{% block text %}x{% endblock %}",
        );
        write(
            "base",
            "{% block subject %}S{% endblock %}\n{% block text %}\n{{ customer.nmae }}{% endblock %}",
        );
        write(
            "layered",
            "{% extends 'base' %}{% block text %}Hi {{ super() }}{% endblock %}",
        );
        // Sets a value at its top level and has no `html` or `sms` block.
        write(
            "plain",
            "{% set greeting = 'Hello' %}{% block subject %}{{ greeting }}{% endblock %}\n\
             {% block text %}{{ greeting }} {{ customer.name }}{% endblock %}",
        );
        // Renders its `sms` block, which an email leaves out, inside its text: the slower way.
        write(
            "texting",
            "{% block subject %}S{% endblock %}{% block text %}T {{ self.sms() }}{% endblock %}\
             {% block sms %}short {{ customer.name }}{% endblock %}",
        );
        // An `sms` block that fails: an email, which leaves it out, still renders.
        write(
            "mistyped",
            "{% block subject %}S{% endblock %}{% block text %}T{% endblock %}\n\
             {% block sms %}{{ customer.nmae }}{% endblock %}",
        );
        let mut vars = Map::new();
        vars.insert("company".into(), json!("Acme Rentals"));
        vars.insert("support_email".into(), json!("help@acme.test"));
        let t = Templates::load(Some(dir.path()), &vars).unwrap();
        for name in ["friendly", "professional", "firm", "urgent", "plain"] {
            assert!(
                same_both_ways(&t, name, &sample()),
                "{name}: not in one pass"
            );
        }
        for level in 1..=3 {
            let ctx = crate::billing::messages::sample_invoice_context(None, Some(level));
            assert!(same_both_ways(&t, &format!("escalation-{level}"), &ctx));
        }
        let taken = |name: &str, the_use: Use| -> Vec<&str> {
            t.once[name].by_use[the_use as usize]
                .iter()
                .flat_map(|o| o.blocks.iter().map(|m| m.block))
                .collect()
        };
        assert_eq!(taken("plain", Use::Email), ["subject", "text"]);
        assert_eq!(taken("plain", Use::Short), ["text"]);
        assert_eq!(taken("friendly", Use::Email), ["subject", "text", "html"]);
        assert_eq!(taken("friendly", Use::Webhook), ["subject", "text"]);
        assert_eq!(taken("friendly", Use::Short), ["sms"]);

        // What a channel does not take is not rendered: an email's pass holds no SMS text,
        // and an SMS's no HTML.
        let (email, _) = one_pass(&t, "friendly", Use::Email, &sample()).unwrap();
        assert!(!email.contains("Already paid? Thanks"), "{email}");
        assert!(email.contains("<!DOCTYPE html>"), "{email}");
        let (sms, _) = one_pass(&t, "friendly", Use::Short, &sample()).unwrap();
        assert!(sms.contains("Already paid? Thanks"), "{sms}");
        assert!(
            !sms.contains("<!DOCTYPE html>") && !sms.contains("Hi Thandi,\n"),
            "{sms}"
        );
        // A taken block that renders a left-out one shows its mark: the slower way, same text.
        assert!(!same_both_ways(&t, "texting", &sample()));
        let r = t.render("texting", ChannelKind::Email, &sample()).unwrap();
        assert_eq!(r.text, "T short Thandi Mokoena");
        // An error in the `sms` block stops an SMS, not an email.
        let r = t.render("mistyped", ChannelKind::Email, &sample()).unwrap();
        assert_eq!((r.subject.as_str(), r.text.as_str()), ("S", "T"));
        t.check("mistyped", &[ChannelKind::Email], &sample())
            .unwrap();
        let err = t
            .check("mistyped", &[ChannelKind::Sms], &sample())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "cannot render template `mistyped` ({}/mistyped.j2) line 2: undefined value",
                dir.path().display()
            )),
            "{err}"
        );
        assert!(!same_both_ways(&t, "selfish", &sample()));

        // A value cannot move its text into another block: not with marks of its own (the
        // mark holds 128 bits drawn at load), not even into a block the body leaves out.
        let mut ctx = sample();
        let forged = |b: &str| {
            format!("\u{E000}-text:\u{E002}\u{E000}+{b}:Pay now at evil.example\u{E000}-{b}:")
        };
        ctx["customer"]["first_name"] = json!(forged("subject"));
        assert!(same_both_ways(&t, "friendly", &ctx));
        let r = t.render("friendly", ChannelKind::Email, &ctx).unwrap();
        assert!(!r.subject.contains("evil"), "{}", r.subject);
        assert!(r.text.contains("Pay now at evil.example"), "{}", r.text);
        ctx["customer"]["first_name"] = json!(
            forged("subject").replace("\u{E000}", std::str::from_utf8(t.mark.needle()).unwrap())
        );
        assert!(
            !same_both_ways(&t, "hidden", &ctx),
            "a forged mark was taken"
        );
        let r = t.render("hidden", ChannelKind::Email, &ctx).unwrap();
        assert_eq!(r.subject, "The real subject");

        // A `required` block left empty fails as it did; so does an error in a template it
        // extends, with the same words both ways.
        for name in ["required", "layered"] {
            let once = t.render_with(name, ChannelKind::Email, &sample(), true);
            let slow = t.render_with(name, ChannelKind::Email, &sample(), false);
            assert!(slow.is_err(), "{name}: {slow:?}");
            assert_eq!(format!("{once:?}"), format!("{slow:?}"), "{name}");
        }
    }

    #[test]
    fn a_context_reads_as_serde_would_give_it() {
        let ctx = json!({
            "none": null, "yes": true, "no": false, "pos": 7, "neg": -3, "zero": 0,
            "big": u64::MAX, "small": i64::MIN, "float": 2.5, "text": "a \"b\" <c>",
            "empty": "", "list": [1, "two", null, [3], {"k": "v"}], "nothing": [], "bare": {},
            "wide": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9,
                     "j": 10, "k": 11, "l": 12, "m": 13, "n": 14, "Z": 0, "é": 1, "10": 2,
                     "tax": 15, "tux": 16},
        });
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for expression in [
            "{{ none }} {{ none is none }} {{ yes }} {{ no }} {{ yes and not no }}",
            "{{ pos }} {{ neg }} {{ zero }} {{ big }} {{ small }} {{ float }}",
            "{{ pos + neg }} {{ pos - 10 }} {{ big - 1 }} {{ float * 2 }} {{ pos / 2 }} {{ neg // 2 }}",
            "{{ pos > neg }} {{ neg < 0 }} {{ pos == 7 }} {{ zero == 0.0 }} {{ big > pos }}",
            "{{ text }} {{ text|e }} {{ text|upper }} {{ empty or 'x' }} {{ text|length }}",
            "{{ list }} {{ list|length }} {{ list[1] }} {{ list[3][0] }} {{ list[4].k }}",
            "{{ list|tojson }} {{ nothing }} {{ bare }} {{ nothing|length }} {{ bare|length }}",
            "{{ wide }} {{ wide|tojson }} {{ wide|length }} {{ wide.n }} {{ wide['é'] }}",
            "{{ wide['10'] }} {{ 'n' in wide }} {{ 'x' in wide }} {{ wide.x is defined }}",
            "{{ wide.tax }} {{ wide.tux }} {{ 'tix' in wide }} {{ wide['t'] is defined }}",
            "{% for k, v in wide|items %}{{ k }}={{ v }},{% endfor %}",
            "{% for k in wide %}{{ k }};{% endfor %} {{ wide|dictsort }} {{ wide|list }}",
            "{{ wide is mapping }} {{ list is sequence }} {{ text is string }} {{ pos is number }}",
            "{{ none|default('d') }} {{ wide|string }} {{ list|join(',') }} {{ float|int }}",
        ] {
            let serde = env.render_str(expression, Value::from(Serde(&ctx)));
            let direct = env.render_str(expression, context(&ctx));
            assert_eq!(format!("{direct:?}"), format!("{serde:?}"), "{expression}");
            assert!(direct.is_ok(), "{expression}: {direct:?}");
        }
        // A key not there is an error both ways, with the same words.
        let serde = env.render_str("{{ wide.x }}", Value::from(Serde(&ctx)));
        let direct = env.render_str("{{ wide.x }}", context(&ctx));
        assert!(direct.is_err());
        assert_eq!(
            direct.unwrap_err().to_string(),
            serde.unwrap_err().to_string()
        );
    }

    #[test]
    fn errors_name_the_template_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("broken.j2"),
            "{% block subject %}Hi{% endblock %}\n{% block text %}\n{{ customer.name }\n{% endblock %}\n",
        )
        .unwrap();
        let err = Templates::load(Some(dir.path()), &Map::new()).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].starts_with(&format!(
                "template `broken` ({}/broken.j2) line 3: syntax error",
                dir.path().display()
            )),
            "{}",
            err[0]
        );

        // An error in a block names the template's own line (in the one pass too, not its
        // `once/` child's).
        let render_error = |source: &str| {
            std::fs::write(dir.path().join("broken.j2"), source).unwrap();
            Templates::load(Some(dir.path()), &Map::new())
                .unwrap()
                .check("broken", &[ChannelKind::Email], &sample())
                .unwrap_err()
                .to_string()
        };
        for (source, line) in [
            (
                "{% block subject %}Hi {{ customer.nmae }}{% endblock %}{% block text %}x{% endblock %}",
                1,
            ),
            (
                "{% block subject %}Hi{% endblock %}\n{% block text %}\n\n{{ customer.nmae }}\n{% endblock %}",
                4,
            ),
        ] {
            let err = render_error(source);
            assert!(
                err.starts_with(&format!(
                    "cannot render template `broken` ({}/broken.j2) line {line}: undefined value",
                    dir.path().display()
                )),
                "{err}"
            );
        }
        let t = Templates::load(Some(dir.path()), &Map::new()).unwrap();
        let err = t
            .check("nope", &[ChannelKind::Email], &sample())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("no template named `nope`; add `nope.j2`"),
            "{err}"
        );
    }
}
