//! Secrets (tokens, passwords) are named in `config.toml` by where they live, never by value:
//! an environment variable or a file (a systemd credential when the path is relative and
//! `$CREDENTIALS_DIRECTORY` is set). Their values never reach logs, `Debug` output or errors.

use std::fmt;
use std::path::PathBuf;

/// A secret value. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret is read from, resolved at each use so a rotated file is picked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// Builds the source from a pair of `*_env` / `*_file` keys; `what` names the key prefix.
    pub fn from_pair(
        what: &str,
        env: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<Self>, SecretError> {
        match (env, file) {
            (Some(_), Some(_)) => Err(SecretError::Both {
                what: what.to_string(),
            }),
            (Some(env), None) => Ok(Some(SecretSource::Env(env))),
            (None, Some(file)) => Ok(Some(SecretSource::File(file))),
            (None, None) => Ok(None),
        }
    }

    pub fn read(&self) -> Result<Secret, SecretError> {
        match self {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                _ => Err(SecretError::MissingEnv { name: name.clone() }),
            },
            SecretSource::File(path) => {
                let path = match std::env::var_os("CREDENTIALS_DIRECTORY") {
                    Some(dir) if path.is_relative() => PathBuf::from(dir).join(path),
                    _ => path.clone(),
                };
                let text =
                    std::fs::read_to_string(&path).map_err(|cause| SecretError::Unreadable {
                        path: path.clone(),
                        cause,
                    })?;
                let value = text.trim_end_matches(['\n', '\r']).to_string();
                if value.is_empty() {
                    return Err(SecretError::EmptyFile { path });
                }
                Ok(Secret(value))
            }
        }
    }
}

/// Why a secret could not be had; the text names the key, variable or file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("set only one of `{what}_env` and `{what}_file`, not both")]
    Both { what: String },
    #[error(
        "environment variable `{name}` is not set or empty; set it in the service's environment \
         (e.g. an EnvironmentFile=)"
    )]
    MissingEnv { name: String },
    #[error("cannot read secret file `{}`: {cause}", path.display())]
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("secret file `{}` is empty", path.display())]
    EmptyFile { path: PathBuf },
}

/// For the callers that still report errors as text (channel builders, job parameters).
impl From<SecretError> for String {
    fn from(e: SecretError) -> String {
        e.to_string()
    }
}

/// A database URL whose password, if any, is hidden when printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }
    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

/// What may be shown of a URL that is itself a secret (a Slack webhook, a healthchecks.io ping
/// URL): its scheme and host, or `***` when it does not parse.
pub fn host_only(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("{}://{h}/***", u.scheme())))
        .unwrap_or_else(|| "***".into())
}

/// A URL with the password of its user info, and any `password`, `token`, `secret` or `key`
/// query value, replaced by `***`. A password may hold `/` or `@` unescaped: the user info
/// ends at the last `@` before the query.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let hidden = match before_query.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let mask = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{mask}@{host}")
        }
        None => format!("{scheme}://{before_query}"),
    };
    match query {
        Some(q) => format!("{hidden}{}", redact_query_password(&format!("?{q}"))),
        None => hidden,
    }
}

fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _))
                if [
                    "password",
                    "token",
                    "secret",
                    "key",
                    "access_token",
                    "api_key",
                ]
                .iter()
                .any(|s| k.eq_ignore_ascii_case(s)) =>
            {
                format!("{k}=***")
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_hides_passwords() {
        let url = DatabaseUrl::new("postgres://tickler:s3cret@db.internal:5432/tickler");
        assert_eq!(
            url.redacted(),
            "postgres://tickler:***@db.internal:5432/tickler"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let url = DatabaseUrl::new("postgres://db/tickler?user=t&password=s3cret&sslmode=require");
        assert_eq!(
            url.redacted(),
            "postgres://db/tickler?user=t&password=***&sslmode=require"
        );
        assert_eq!(
            DatabaseUrl::new("sqlite://var/t.db").redacted(),
            "sqlite://var/t.db"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    #[test]
    fn secret_files_are_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc\n").unwrap();
        assert_eq!(
            SecretSource::File(path.clone()).read().unwrap().expose(),
            "abc"
        );
        std::fs::write(&path, "\n").unwrap();
        let err = SecretSource::File(path.clone())
            .read()
            .unwrap_err()
            .to_string();
        assert_eq!(err, format!("secret file `{}` is empty", path.display()));
        let err = SecretSource::Env("TICKLER_TEST_SURELY_UNSET".into())
            .read()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("environment variable `TICKLER_TEST_SURELY_UNSET` is not set"));
    }
}
