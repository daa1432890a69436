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

/// Describes a minijinja error with the template's origin and line.
fn describe(origin: &str, err: &minijinja::Error) -> String {
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
        if problems.is_empty() {
            Ok(Templates { env, origin })
        } else {
            Err(problems)
        }
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
    pub fn render(
        &self,
        name: &str,
        channel: ChannelKind,
        ctx: &serde_json::Value,
    ) -> Result<Rendered, TemplateError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|_| TemplateError::Unknown {
                name: name.to_string(),
            })?;
        let origin = self.origin(name);
        let mut captured = template
            .render_captured_to(Value::from(Serde(ctx)), std::io::sink())
            .map_err(|e| TemplateError::Render(describe(origin, &e)))?;
        let mut block = |block: &str| -> Result<Option<String>, TemplateError> {
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
            .render_str(source, Value::from(Serde(ctx)))
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

        std::fs::write(
            dir.path().join("broken.j2"),
            "{% block subject %}Hi {{ customer.nmae }}{% endblock %}{% block text %}x{% endblock %}",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path()), &Map::new()).unwrap();
        let err = t
            .check("broken", &[ChannelKind::Email], &sample())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "cannot render template `broken` ({}/broken.j2) line 1: undefined value",
                dir.path().display()
            )),
            "{err}"
        );
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
