//! SMS and WhatsApp through Twilio's Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`).
//! `base_url` points tests at a local mock server. WhatsApp numbers are sent as
//! `whatsapp:+E164`; the prefix is added when missing.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ratelimit::RateLimitError;
use super::{ChannelKind, Rendered, SendError};
use crate::net::UrlError;
use crate::secret::redact_url;
use crate::secret::{SecretError, SecretSource};

/// `[channels.sms]` or `[channels.whatsapp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    pub account_sid: Option<String>,
    pub account_sid_env: Option<String>,
    pub auth_token_env: Option<String>,
    pub auth_token_file: Option<PathBuf>,
    /// The sender: a Twilio number (`+15005550006`) or a messaging service sid (`MG...`).
    pub from: String,
    pub base_url: Option<String>,
    #[serde(default, with = "crate::time::duration::option")]
    pub timeout: Option<Duration>,
    /// Messages per second (Twilio queues more than 1/s per long code; 0: no limit).
    pub rate_limit: Option<f64>,
    pub concurrency: Option<usize>,
    /// When messages on this channel may reach people, in their zone (invariant 6).
    pub send_window: Option<super::window::WindowRaw>,
    /// The public URL Twilio posts replies to (the listener's `/twilio/inbound` as the world
    /// reaches it): the URL its `X-Twilio-Signature` signs.
    pub inbound_url: Option<String>,
}

/// What is wrong with `[channels.sms]` or `[channels.whatsapp]`.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    #[error("set one of `account_sid` and `account_sid_env`")]
    AccountSid,
    #[error("`auth_token_env` or `auth_token_file` is required")]
    NoAuthToken,
    /// `auth_token_env` and `auth_token_file` both set.
    #[error(transparent)]
    AuthToken(#[from] SecretError),
    #[error("invalid `base_url` `{url}`: {reason}")]
    BaseUrl { url: String, reason: UrlError },
    #[error("`from` must be a phone number such as `+15005550006`")]
    NoSender,
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
    #[error(
        "invalid `inbound_url` `{url}`: {reason}; write the public URL Twilio posts replies to, \
         e.g. `https://billing.example.com/twilio/inbound`"
    )]
    InboundUrl { url: String, reason: UrlError },
}

/// Replies to a Twilio number (`POST /twilio/inbound`) of one channel: the URL Twilio signs
/// and the auth token it signs with.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub url: String,
    pub token: SecretSource,
}

pub struct Twilio {
    kind: ChannelKind,
    account_sid: Option<String>,
    account_sid_env: Option<String>,
    token: SecretSource,
    from: String,
    base_url: String,
    timeout: Duration,
    inbound_url: Option<String>,
}

impl Twilio {
    pub fn build(c: TwilioConfig, kind: ChannelKind) -> Result<(Twilio, f64, usize), TwilioError> {
        if c.account_sid.is_some() == c.account_sid_env.is_some() {
            return Err(TwilioError::AccountSid);
        }
        let token = SecretSource::from_pair("auth_token", c.auth_token_env, c.auth_token_file)?
            .ok_or(TwilioError::NoAuthToken)?;
        let base_url = c
            .base_url
            .unwrap_or_else(|| "https://api.twilio.com".into())
            .trim_end_matches('/')
            .to_string();
        if let Err(reason) = reqwest::Url::parse(&base_url) {
            return Err(TwilioError::BaseUrl {
                url: base_url,
                reason,
            });
        }
        if let Some(url) = &c.inbound_url
            && let Err(reason) = reqwest::Url::parse(url)
        {
            return Err(TwilioError::InboundUrl {
                url: url.clone(),
                reason,
            });
        }
        if c.from.trim().is_empty() {
            return Err(TwilioError::NoSender);
        }
        let rate = c
            .rate_limit
            .unwrap_or(if kind == ChannelKind::Sms { 10.0 } else { 20.0 });
        super::ratelimit::check(rate)?;
        Ok((
            Twilio {
                kind,
                account_sid: c.account_sid,
                account_sid_env: c.account_sid_env,
                token,
                from: c.from,
                base_url,
                timeout: c.timeout.unwrap_or(Duration::from_secs(15)),
                inbound_url: c.inbound_url,
            },
            rate,
            c.concurrency.unwrap_or(4).clamp(1, 256),
        ))
    }

    /// Where this channel's replies are checked, when `inbound_url` is set.
    pub fn inbound(&self) -> Option<Inbound> {
        Some(Inbound {
            url: self.inbound_url.clone()?,
            token: self.token.clone(),
        })
    }

    fn address(&self, number: &str) -> String {
        if self.kind == ChannelKind::Whatsapp && !number.starts_with("whatsapp:") {
            format!("whatsapp:{number}")
        } else {
            number.to_string()
        }
    }

    /// Sends one message; returns Twilio's message sid.
    pub async fn send(&self, to: &str, r: &Rendered) -> Result<String, SendError> {
        let sid = match (&self.account_sid, &self.account_sid_env) {
            (Some(sid), _) => sid.clone(),
            (None, Some(env)) => SecretSource::Env(env.clone())
                .read()
                .map_err(SendError::new)?
                .expose()
                .to_string(),
            (None, None) => return Err(SendError::new("no Twilio account sid")),
        };
        let token = self.token.read().map_err(SendError::new)?;
        let url = format!("{}/2010-04-01/Accounts/{sid}/Messages.json", self.base_url);
        let mut form = vec![("To", self.address(to)), ("Body", r.text.clone())];
        if self.from.starts_with("MG") {
            form.push(("MessagingServiceSid", self.from.clone()));
        } else {
            form.push(("From", self.address(&self.from)));
        }
        let response = crate::net::http_client()
            .post(&url)
            .basic_auth(&sid, Some(token.expose()))
            .form(&form)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| {
                let what = format!("Twilio ({})", redact_url(&self.base_url));
                if e.is_timeout() {
                    SendError::ambiguous(format!("{what}: timed out"))
                } else {
                    SendError::new(format!("{what}: {}", e.without_url()))
                }
            })?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            // Accepted, even if the answer did not carry the sid.
            return Ok(body["sid"].as_str().unwrap_or("(no sid)").to_string());
        }
        let detail = match (body["code"].as_i64(), body["message"].as_str()) {
            (Some(code), Some(msg)) => format!("error {code}: {msg}"),
            (None, Some(msg)) => msg.to_string(),
            _ => "no error message".to_string(),
        };
        Err(SendError::new(format!(
            "Twilio answered HTTP {}: {detail}",
            status.as_u16()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sections_are_refused_with_what_to_write() {
        let ok = "from = \"+15005550006\"\naccount_sid = \"AC1\"\nauth_token_env = \"T\"\n";
        #[rustfmt::skip]
        let table = [
            ("from = \"+15005550006\"".to_string(), "set one of `account_sid` and `account_sid_env`"),
            ("from = \"+15005550006\"\naccount_sid = \"AC1\"".into(),
             "`auth_token_env` or `auth_token_file` is required"),
            ("from = \"+15005550006\"\naccount_sid = \"AC1\"\nauth_token_env = \"T\"\n\
              auth_token_file = \"t\"".into(),
             "set only one of `auth_token_env` and `auth_token_file`, not both"),
            (format!("{ok}base_url = \"nope\""),
             "invalid `base_url` `nope`: relative URL without a base"),
            ("from = \" \"\naccount_sid = \"AC1\"\nauth_token_env = \"T\"".into(),
             "`from` must be a phone number such as `+15005550006`"),
            (format!("{ok}rate_limit = 0.0001"),
             "`rate_limit` must be 0 (no limit) or 0.001-100000 messages per second (found \
              0.0001)"),
        ];
        for (section, message) in table {
            let c: TwilioConfig = toml::from_str(&section).unwrap();
            let err = Twilio::build(c, ChannelKind::Sms).map(|_| ()).unwrap_err();
            assert_eq!(err.to_string(), message, "{section}");
        }
    }
}
