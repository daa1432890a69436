//! SMS through Amazon SNS (`[channels.sms] provider = "aws-sns"`): the `Publish` action of the
//! SNS query API to a phone number, signed with SigV4 by `aws-sigv4` (no SDK), with the
//! `AWS.SNS.SMS.SMSType`, `AWS.SNS.SMS.SenderID` and `AWS.MM.SMS.OriginationNumber` attributes.
//! `base_url` points tests at a local mock server.
//!
//! What a failure means for the message: SNS refusing the request (HTTP 4xx: a bad number, an
//! opted-out number, throttling, bad credentials) is a sure failure, sent again by a later run;
//! a request whose answer was lost (a timeout) or that SNS failed inside (HTTP 5xx) may have
//! gone out, so it is `unknown` and never sent twice.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::ratelimit::RateLimitError;
use super::{Rendered, SendError};
use crate::net::UrlError;
use crate::secret::{SecretError, SecretSource, redact_url};

/// `[channels.sms]` with `provider = "aws-sns"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    /// The AWS region, e.g. `af-south-1`.
    pub region: String,
    pub access_key_id: Option<String>,
    /// Default `AWS_ACCESS_KEY_ID` when neither this nor `access_key_id` is set.
    pub access_key_id_env: Option<String>,
    /// Default `AWS_SECRET_ACCESS_KEY` when neither this nor `secret_access_key_file` is set.
    pub secret_access_key_env: Option<String>,
    pub secret_access_key_file: Option<PathBuf>,
    /// Temporary credentials' session token (read when the variable is set).
    pub session_token_env: Option<String>,
    /// `Transactional` (default: delivered first, for payment reminders) or `Promotional`.
    pub sms_type: Option<String>,
    /// The alphanumeric sender id, where the destination country supports one.
    pub sender_id: Option<String>,
    /// The number SNS sends from, where one is needed (E.164).
    pub origination_number: Option<String>,
    /// Default `https://sns.REGION.amazonaws.com`.
    pub base_url: Option<String>,
    #[serde(default, with = "crate::time::duration::option")]
    pub timeout: Option<Duration>,
    /// Messages per second (SNS's default account quota is 20/s; 0: no limit).
    pub rate_limit: Option<f64>,
    pub concurrency: Option<usize>,
    /// When messages on this channel may reach people, in their zone (invariant 6).
    pub send_window: Option<super::window::WindowRaw>,
}

/// What is wrong with `[channels.sms]` under `provider = "aws-sns"`.
#[derive(Debug, thiserror::Error)]
pub enum SnsError {
    #[error("`region` must be an AWS region such as `af-south-1` (found `{0}`)")]
    Region(String),
    #[error("set only one of `access_key_id` and `access_key_id_env`, not both")]
    AccessKeyId,
    /// `secret_access_key_env` and `secret_access_key_file` both set.
    #[error(transparent)]
    SecretKey(#[from] SecretError),
    #[error("`sms_type` must be `Transactional` or `Promotional` (found `{0}`)")]
    SmsType(String),
    #[error("`sender_id` must be 1-11 letters and digits with at least one letter (found `{0}`)")]
    SenderId(String),
    #[error("`origination_number` must be a phone number such as `+15005550006` (found `{0}`)")]
    OriginationNumber(String),
    #[error("invalid `base_url` `{url}`: {reason}")]
    BaseUrl { url: String, reason: UrlError },
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
}

/// The access key id: written in the file (it is not a secret), or read from a variable.
enum KeyId {
    Literal(String),
    Env(SecretSource),
}

pub struct Sns {
    region: String,
    access_key_id: KeyId,
    secret_access_key: SecretSource,
    session_token: Option<String>,
    attributes: Vec<(&'static str, String)>,
    base_url: String,
    timeout: Duration,
}

fn valid_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts
            .iter()
            .take(parts.len() - 1)
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

impl Sns {
    pub fn build(c: SnsConfig) -> Result<(Sns, f64, usize), SnsError> {
        if !valid_region(&c.region) {
            return Err(SnsError::Region(c.region));
        }
        let access_key_id = match (c.access_key_id, c.access_key_id_env) {
            (Some(_), Some(_)) => return Err(SnsError::AccessKeyId),
            (Some(id), None) => KeyId::Literal(id),
            (None, env) => KeyId::Env(SecretSource::Env(
                env.unwrap_or_else(|| "AWS_ACCESS_KEY_ID".into()),
            )),
        };
        let secret_access_key = SecretSource::from_pair(
            "secret_access_key",
            c.secret_access_key_env,
            c.secret_access_key_file,
        )?
        .unwrap_or_else(|| SecretSource::Env("AWS_SECRET_ACCESS_KEY".into()));
        let sms_type = c.sms_type.unwrap_or_else(|| "Transactional".into());
        if sms_type != "Transactional" && sms_type != "Promotional" {
            return Err(SnsError::SmsType(sms_type));
        }
        let mut attributes = vec![("AWS.SNS.SMS.SMSType", sms_type)];
        if let Some(id) = c.sender_id {
            let ok = (1..=11).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric())
                && id.bytes().any(|b| b.is_ascii_alphabetic());
            if !ok {
                return Err(SnsError::SenderId(id));
            }
            attributes.push(("AWS.SNS.SMS.SenderID", id));
        }
        if let Some(n) = c.origination_number {
            if !super::blocks::valid_phone(&n) {
                return Err(SnsError::OriginationNumber(n));
            }
            attributes.push(("AWS.MM.SMS.OriginationNumber", n));
        }
        let base_url = c
            .base_url
            .unwrap_or_else(|| format!("https://sns.{}.amazonaws.com", c.region))
            .trim_end_matches('/')
            .to_string();
        if let Err(reason) = reqwest::Url::parse(&base_url) {
            return Err(SnsError::BaseUrl {
                url: base_url,
                reason,
            });
        }
        let rate = c.rate_limit.unwrap_or(20.0);
        super::ratelimit::check(rate)?;
        Ok((
            Sns {
                region: c.region,
                access_key_id,
                secret_access_key,
                session_token: c.session_token_env,
                attributes,
                base_url,
                timeout: c.timeout.unwrap_or(Duration::from_secs(15)),
            },
            rate,
            c.concurrency.unwrap_or(4).clamp(1, 256),
        ))
    }

    /// The `Publish` request's form: the number, the text and the attributes.
    fn form(&self, to: &str, text: &str) -> Vec<(String, String)> {
        let mut form = vec![
            ("Action".to_string(), "Publish".to_string()),
            ("Version".into(), "2010-03-31".into()),
            ("PhoneNumber".into(), to.to_string()),
            ("Message".into(), text.to_string()),
        ];
        for (i, (name, value)) in self.attributes.iter().enumerate() {
            let entry = format!("MessageAttributes.entry.{}", i + 1);
            form.push((format!("{entry}.Name"), name.to_string()));
            form.push((format!("{entry}.Value.DataType"), "String".into()));
            form.push((format!("{entry}.Value.StringValue"), value.clone()));
        }
        form
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, and `x-amz-security-token` with a
    /// session token) of a POST of `body` to `url`.
    fn sign(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        at: SystemTime,
    ) -> Result<Vec<(String, String)>, SendError> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let key_id = match &self.access_key_id {
            KeyId::Literal(id) => id.clone(),
            KeyId::Env(source) => source.read().map_err(SendError::new)?.expose().to_string(),
        };
        let secret = self.secret_access_key.read().map_err(SendError::new)?;
        let token = match &self.session_token {
            Some(env) => std::env::var(env).ok().filter(|t| !t.is_empty()),
            None => None,
        };
        let identity =
            aws_credential_types::Credentials::new(key_id, secret.expose(), token, None, "tickler")
                .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("sns")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SendError::new(format!("SNS: cannot sign the request: {e}")))?
            .into();
        let request = SignableRequest::new(
            "POST",
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| SendError::new(format!("SNS: cannot sign the request: {e}")))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| SendError::new(format!("SNS: cannot sign the request: {e}")))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Sends one SMS; returns SNS's message id.
    pub async fn send(&self, to: &str, r: &Rendered) -> Result<String, SendError> {
        let url = format!("{}/", self.base_url);
        let body = serde_urlencoded_form(&self.form(to, &r.text));
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let signed = self.sign(
            &url,
            &[("content-type", content_type)],
            body.as_bytes(),
            SystemTime::now(),
        )?;
        let mut request = crate::net::http_client()
            .post(&url)
            .header("content-type", content_type)
            .timeout(self.timeout)
            .body(body);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let what = format!("SNS ({})", redact_url(&self.base_url));
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                SendError::ambiguous(format!("{what}: timed out"))
            } else {
                SendError::new(format!("{what}: {}", e.without_url()))
            }
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(xml_text(&text, "MessageId").unwrap_or_else(|| "(no message id)".into()));
        }
        let detail = match (xml_text(&text, "Code"), xml_text(&text, "Message")) {
            (Some(code), Some(msg)) => format!("{code}: {msg}"),
            (Some(code), None) => code.to_string(),
            _ => "no error message".to_string(),
        };
        let message = format!("SNS answered HTTP {}: {detail}", status.as_u16());
        if status.is_server_error() {
            // SNS failed inside: the message may have been published.
            Err(SendError::ambiguous(message))
        } else {
            Err(SendError::new(message))
        }
    }
}

/// `application/x-www-form-urlencoded` of `form`, as `reqwest` would write it (the signature
/// covers these exact bytes, so the body is built once and signed).
fn serde_urlencoded_form(form: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The text of the first `<tag>…</tag>` of an SNS answer (its documents are flat and never
/// hold markup in these elements), XML's predefined entities decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(
        xml[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(section: &str) -> Result<Sns, SnsError> {
        let c: SnsConfig = toml::from_str(section).unwrap();
        Sns::build(c).map(|(s, _, _)| s)
    }

    #[test]
    fn bad_sections_are_refused_with_what_to_write() {
        let ok = "region = \"af-south-1\"\n";
        #[rustfmt::skip]
        let table = [
            ("region = \"South Africa\"".to_string(),
             "`region` must be an AWS region such as `af-south-1` (found `South Africa`)"),
            (format!("{ok}access_key_id = \"AKIA1\"\naccess_key_id_env = \"K\""),
             "set only one of `access_key_id` and `access_key_id_env`, not both"),
            (format!("{ok}secret_access_key_env = \"S\"\nsecret_access_key_file = \"s\""),
             "set only one of `secret_access_key_env` and `secret_access_key_file`, not both"),
            (format!("{ok}sms_type = \"transactional\""),
             "`sms_type` must be `Transactional` or `Promotional` (found `transactional`)"),
            (format!("{ok}sender_id = \"Lease-Up\""),
             "`sender_id` must be 1-11 letters and digits with at least one letter (found \
              `Lease-Up`)"),
            (format!("{ok}sender_id = \"123456\""),
             "`sender_id` must be 1-11 letters and digits with at least one letter (found \
              `123456`)"),
            (format!("{ok}origination_number = \"0821234567\""),
             "`origination_number` must be a phone number such as `+15005550006` (found \
              `0821234567`)"),
            (format!("{ok}base_url = \"nope\""),
             "invalid `base_url` `nope`: relative URL without a base"),
            (format!("{ok}rate_limit = -1.0"),
             "`rate_limit` must be 0 (no limit) or 0.001-100000 messages per second (found -1)"),
        ];
        for (section, message) in table {
            let err = build(&section).map(|_| ()).unwrap_err();
            assert_eq!(err.to_string(), message, "{section}");
        }
        for region in ["us-east-1", "af-south-1", "us-gov-west-1", "ap-southeast-2"] {
            assert!(valid_region(region), "{region}");
        }
        for region in ["us-east", "useast1", "US-EAST-1", "us--1", "-east-1"] {
            assert!(!valid_region(region), "{region}");
        }
    }

    #[test]
    fn the_publish_form_carries_the_attributes() {
        let sns = build(
            "region = \"af-south-1\"\nsender_id = \"LeaseUp\"\n\
             origination_number = \"+27600000000\"\n",
        )
        .unwrap();
        assert_eq!(sns.base_url, "https://sns.af-south-1.amazonaws.com");
        let body = serde_urlencoded_form(&sns.form("+27821234567", "Rent due: R 5 000 & more"));
        assert_eq!(
            body,
            "Action=Publish&Version=2010-03-31&PhoneNumber=%2B27821234567&\
             Message=Rent+due%3A+R+5+000+%26+more&\
             MessageAttributes.entry.1.Name=AWS.SNS.SMS.SMSType&\
             MessageAttributes.entry.1.Value.DataType=String&\
             MessageAttributes.entry.1.Value.StringValue=Transactional&\
             MessageAttributes.entry.2.Name=AWS.SNS.SMS.SenderID&\
             MessageAttributes.entry.2.Value.DataType=String&\
             MessageAttributes.entry.2.Value.StringValue=LeaseUp&\
             MessageAttributes.entry.3.Name=AWS.MM.SMS.OriginationNumber&\
             MessageAttributes.entry.3.Value.DataType=String&\
             MessageAttributes.entry.3.Value.StringValue=%2B27600000000"
        );
        assert_eq!(
            xml_text(
                "<PublishResponse><PublishResult><MessageId>5b1e-42</MessageId></PublishResult>\
                 </PublishResponse>",
                "MessageId"
            ),
            Some("5b1e-42".to_string())
        );
        assert_eq!(
            xml_text(
                "<Message>Invalid parameter: PhoneNumber &amp; &lt;x&gt;</Message>",
                "Message"
            ),
            Some("Invalid parameter: PhoneNumber & <x>".to_string())
        );
    }

    /// AWS's published SigV4 example key signs the same request the same way every time; the
    /// header names the key, the date, the region and `sns`, and covers host, date and type.
    #[test]
    fn requests_are_signed_for_sns_in_the_region() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").unwrap();
        let sns = build(&format!(
            "region = \"us-east-1\"\naccess_key_id = \"AKIDEXAMPLE\"\n\
             secret_access_key_file = \"{}\"\n",
            key.display()
        ))
        .unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        let headers = [(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )];
        let signed = sns
            .sign(
                "https://sns.us-east-1.amazonaws.com/",
                &headers,
                b"Action=Publish",
                at,
            )
            .unwrap();
        let get = |name: &str| {
            signed
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} in {signed:?}"))
        };
        assert_eq!(get("x-amz-date"), "20150830T123600Z");
        let auth = get("authorization");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sns/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature="
            ),
            "{auth}"
        );
        let signature = auth.rsplit_once("Signature=").unwrap().1;
        assert_eq!(signature.len(), 64);
        let again = sns
            .sign(
                "https://sns.us-east-1.amazonaws.com/",
                &headers,
                b"Action=Publish",
                at,
            )
            .unwrap();
        assert_eq!(signed, again);
        let other = sns
            .sign(
                "https://sns.us-east-1.amazonaws.com/",
                &headers,
                b"Action=Publish&x",
                at,
            )
            .unwrap();
        assert_ne!(signed, other, "the body is signed");
    }
}
