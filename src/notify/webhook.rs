//! Webhooks: a JSON POST per message, `{"text": ..., "subject": ..., "key": ...}`. The `text`
//! field makes it a valid Slack (and Mattermost, Rocket.Chat) incoming-webhook message.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::ratelimit::RateLimitError;
use super::{Rendered, SendError};
use crate::net::UrlError;
use crate::secret::redact_url;
use crate::secret::{SecretError, SecretSource};

/// `[channels.webhook]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL, when it is not a secret ...
    pub url: Option<String>,
    /// ... or from an environment variable or a file (a Slack webhook URL is a secret).
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    pub bearer_token_env: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default, with = "crate::time::duration::option")]
    pub timeout: Option<Duration>,
    pub rate_limit: Option<f64>,
    pub concurrency: Option<usize>,
    /// When messages on this channel may reach people, in their zone (invariant 6).
    pub send_window: Option<super::window::WindowRaw>,
}

enum Url {
    Plain(String),
    Secret(SecretSource),
}

/// What is wrong with `[channels.webhook]`.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("set one of `url`, `url_env` and `url_file`")]
    NoUrl,
    /// `url` does not parse (shown with any password hidden).
    #[error("invalid `url` `{shown}`: {reason}")]
    Url { shown: String, reason: UrlError },
    /// A secret's `_env` and `_file` keys both set (`url`, `bearer_token`).
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
}

pub struct Webhook {
    url: Url,
    bearer: Option<SecretSource>,
    timeout: Duration,
}

impl Webhook {
    pub fn build(c: WebhookConfig) -> Result<(Webhook, f64, usize), WebhookError> {
        let secret = SecretSource::from_pair("url", c.url_env, c.url_file)?;
        let url = match (c.url, secret) {
            (Some(url), None) => {
                reqwest::Url::parse(&url).map_err(|reason| WebhookError::Url {
                    shown: redact_url(&url),
                    reason,
                })?;
                Url::Plain(url)
            }
            (None, Some(s)) => Url::Secret(s),
            _ => return Err(WebhookError::NoUrl),
        };
        let bearer =
            SecretSource::from_pair("bearer_token", c.bearer_token_env, c.bearer_token_file)?;
        let rate = c.rate_limit.unwrap_or(1.0);
        super::ratelimit::check(rate)?;
        Ok((
            Webhook {
                url,
                bearer,
                timeout: c.timeout.unwrap_or(Duration::from_secs(10)),
            },
            rate,
            c.concurrency.unwrap_or(2).clamp(1, 64),
        ))
    }

    /// Posts one message; returns `HTTP <status>` as the provider's id.
    pub async fn send(&self, key: &str, r: &Rendered) -> Result<String, SendError> {
        let (url, shown) = match &self.url {
            Url::Plain(u) => (u.clone(), redact_url(u)),
            Url::Secret(s) => {
                let url = s.read().map_err(SendError::new)?.expose().to_string();
                // The whole URL is the secret (Slack's are): show its host only.
                let host = crate::secret::host_only(&url);
                (url, host)
            }
        };
        let bearer = match &self.bearer {
            Some(b) => Some(b.read().map_err(SendError::new)?),
            None => None,
        };
        let body = json!({ "text": r.text, "subject": r.subject, "key": key });
        post_json(
            &url,
            &shown,
            self.timeout,
            bearer.as_ref().map(|b| b.expose()),
            &body,
        )
        .await
    }
}

/// POSTs `body` as JSON to `url`; returns `HTTP <status>` as the provider's id. Messages name
/// the URL as `shown`, and a server's echo of the URL's path is hidden (it may be the secret).
pub async fn post_json(
    url: &str,
    shown: &str,
    timeout: Duration,
    bearer: Option<&str>,
    body: &serde_json::Value,
) -> Result<String, SendError> {
    let mut request = crate::net::http_client()
        .post(url)
        .timeout(timeout)
        .json(body);
    if let Some(b) = bearer {
        request = request.bearer_auth(b);
    }
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            SendError::ambiguous(format!("webhook `{shown}`: timed out"))
        } else {
            SendError::new(format!("webhook `{shown}`: {}", e.without_url()))
        }
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(format!("HTTP {}", status.as_u16()))
    } else {
        let mut text = response.text().await.unwrap_or_default();
        // Servers echo the path ("Cannot POST /hooks/<token>"): keep a secret URL secret.
        if let Ok(u) = reqwest::Url::parse(url)
            && u.path().len() > 1
        {
            text = text.replace(u.path(), "/***");
        }
        Err(SendError::new(format!(
            "webhook `{shown}` answered HTTP {}: {}",
            status.as_u16(),
            crate::net::tail(text.trim(), 200)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sections_are_refused_with_what_to_write() {
        #[rustfmt::skip]
        let table = [
            ("", "set one of `url`, `url_env` and `url_file`"),
            ("url = \"https://x\"\nurl_env = \"U\"", "set one of `url`, `url_env` and `url_file`"),
            ("url = \"nope\"", "invalid `url` `nope`: relative URL without a base"),
            ("url_env = \"U\"\nurl_file = \"u\"",
             "set only one of `url_env` and `url_file`, not both"),
            ("url = \"https://x\"\nbearer_token_env = \"T\"\nbearer_token_file = \"t\"",
             "set only one of `bearer_token_env` and `bearer_token_file`, not both"),
            ("url = \"https://x\"\nrate_limit = -1.0",
             "`rate_limit` must be 0 (no limit) or 0.001-100000 messages per second (found -1)"),
        ];
        for (section, message) in table {
            let c: WebhookConfig = toml::from_str(section).unwrap();
            let err = Webhook::build(c).map(|_| ()).unwrap_err();
            assert_eq!(err.to_string(), message, "{section}");
        }
    }
}
