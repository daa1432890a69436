//! `http`: calls a URL, typically an application's cron endpoint guarded by a bearer secret
//! (seed 003). A 2xx answer succeeds; a JSON answer with counts and an `errors` list is
//! recorded as such, and is `partial` when errors are present. 5xx answers, timeouts and
//! connection failures are retryable; 4xx answers are not.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Job, JobError, Outcome, RunContext, report_from_json};
use crate::net::{UrlError, tail};
use crate::secret::redact_url;
use crate::secret::{SecretError, SecretSource};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpJob {
    pub url: String,
    #[serde(default = "get")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A raw request body.
    pub body: Option<String>,
    /// A JSON request body (a TOML table), sent with `Content-Type: application/json`.
    pub json: Option<Value>,
    /// The bearer token, from an environment variable ...
    pub bearer_token_env: Option<String>,
    /// ... or from a file (relative paths are looked up in `$CREDENTIALS_DIRECTORY`).
    pub bearer_token_file: Option<PathBuf>,
}

fn get() -> String {
    "GET".into()
}

/// What is wrong with the request of an `http` job.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid `url` `{url}`: {reason}")]
    Url { url: String, reason: UrlError },
    /// A URL of another scheme (the URL as written).
    #[error("`url` must be http:// or https:// (found `{0}`)")]
    Scheme(String),
    #[error("invalid HTTP `method` `{0}`")]
    Method(String),
    #[error("set only one of `body` and `json`")]
    BodyAndJson,
    /// `bearer_token_env` and `bearer_token_file` both set.
    #[error(transparent)]
    BearerToken(#[from] SecretError),
}

impl HttpJob {
    fn bearer(&self) -> Result<Option<SecretSource>, SecretError> {
        SecretSource::from_pair(
            "bearer_token",
            self.bearer_token_env.clone(),
            self.bearer_token_file.clone(),
        )
    }
}

impl Job for HttpJob {
    type Invalid = HttpError;

    fn validate(&self) -> Result<(), HttpError> {
        let url = reqwest::Url::parse(&self.url).map_err(|reason| HttpError::Url {
            url: self.url.clone(),
            reason,
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::Scheme(self.url.clone()));
        }
        reqwest::Method::from_bytes(self.method.as_bytes())
            .map_err(|_| HttpError::Method(self.method.clone()))?;
        if self.body.is_some() && self.json.is_some() {
            return Err(HttpError::BodyAndJson);
        }
        self.bearer()?;
        Ok(())
    }

    async fn run(&self, ctx: &RunContext) -> Result<Outcome, JobError> {
        if ctx.dry_run {
            return Ok(super::dry_run_only(
                "would_call",
                Value::String(format!("{} {}", self.method, redact_url(&self.url))),
            ));
        }
        let method = reqwest::Method::from_bytes(self.method.as_bytes())
            .map_err(|_| JobError::fatal(format!("invalid HTTP method `{}`", self.method)))?;
        let mut request = crate::net::http_client().request(method, &self.url);
        for (k, v) in &self.headers {
            request = request.header(k, v);
        }
        if let Some(source) = self.bearer().map_err(JobError::fatal)? {
            let token = source.read().map_err(JobError::fatal)?;
            request = request.bearer_auth(token.expose());
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        if let Some(json) = &self.json {
            request = request.json(json);
        }
        if let Some(task) = &ctx.task {
            // The receiver dedupes on this key: a reclaimed task calls again with the same one.
            request = request.header("Idempotency-Key", &task.id);
            if self.body.is_none() && self.json.is_none() {
                request = request.json(&**task);
            }
        }
        // Messages and metadata show the URL with any password or token hidden.
        let url = redact_url(&self.url);
        let response = request.send().await.map_err(|e| {
            JobError::retryable(format!("request to `{url}` failed: {}", e.without_url()))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map(crate::net::without_nul)
            .map_err(|e| {
                JobError::retryable(format!(
                    "reading the answer of `{url}` failed: {}",
                    e.without_url()
                ))
            })?;
        let mut meta = Map::new();
        meta.insert("http_status".into(), status.as_u16().into());
        if !status.is_success() {
            meta.insert("response_tail".into(), tail(&text, 2048).into());
            let message = format!("`{} {url}` answered {status}", self.method);
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                JobError::retryable(message)
            } else {
                JobError::fatal(message)
            }
            .with_metadata(meta));
        }
        let mut out = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| report_from_json(&v))
            .unwrap_or_else(|| {
                let mut o = Outcome::default();
                o.metadata
                    .insert("response_tail".into(), tail(&text, 2048).into());
                o
            });
        out.metadata.extend(meta);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::tests::assert_refused;

    #[test]
    fn bad_requests_are_refused_with_what_to_write() {
        #[rustfmt::skip]
        let table = [
            ("url = \"not a url\"", "invalid `url` `not a url`: relative URL without a base"),
            ("url = \"ftp://x\"", "`url` must be http:// or https:// (found `ftp://x`)"),
            ("url = \"https://x\"\nmethod = \"G ET\"", "invalid HTTP `method` `G ET`"),
            ("url = \"https://x\"\nbody = \"b\"\njson = { a = 1 }",
             "set only one of `body` and `json`"),
            ("url = \"https://x\"\nbearer_token_env = \"T\"\nbearer_token_file = \"t\"",
             "set only one of `bearer_token_env` and `bearer_token_file`, not both"),
        ];
        assert_refused::<HttpJob>(&table);
    }
}
