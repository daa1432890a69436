//! Paystack's payment requests (`POST /paymentrequest`), used by `create_invoices`: one request
//! per invoice, with the job's per-item retry policy. Not a job kind.
//!
//! Nothing is created twice at Paystack. A customer without a Paystack code is looked up by
//! email (`GET /customer/EMAIL`) and created (`POST /customer`) only when Paystack has none, and
//! its code is kept. Before a payment request is created, the customer's requests are listed
//! (`GET /paymentrequest?customer=CODE`) and one for this invoice (its description, amount and
//! currency) is taken as it is: a request whose creation timed out, and so may exist, is found
//! by the next attempt instead of being sent again.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::json;

use crate::net::UrlError;
use crate::secret::{SecretError, SecretSource};
use crate::store::billing::InvoiceView;

/// `paystack = { ... }` of a `create_invoices` job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaystackConfig {
    pub secret_key_env: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    #[serde(default = "default_base")]
    pub base_url: String,
    /// Ask Paystack to email the customer its own notice too.
    #[serde(default)]
    pub send_notification: bool,
    /// How long one call to Paystack may take (default 30s).
    #[serde(default, with = "crate::time::duration::option")]
    pub timeout: Option<std::time::Duration>,
}

/// What a failed call to Paystack means: whether another attempt may succeed, and why.
pub type CallError = (bool, String);

fn default_base() -> String {
    "https://api.paystack.co".into()
}

/// What is wrong with the `paystack` table of a `create_invoices` job.
#[derive(Debug, thiserror::Error)]
pub enum PaystackError {
    #[error("invalid `paystack.base_url` `{url}`: {reason}")]
    BaseUrl { url: String, reason: UrlError },
    #[error("`paystack` needs `secret_key_env` or `secret_key_file`")]
    NoSecretKey,
    /// `secret_key_env` and `secret_key_file` both set.
    #[error(transparent)]
    SecretKey(#[from] SecretError),
}

impl PaystackConfig {
    /// Checks the table when the config is read: a URL that parses, one source of the key.
    pub fn validate(&self) -> Result<(), PaystackError> {
        reqwest::Url::parse(&self.base_url).map_err(|reason| PaystackError::BaseUrl {
            url: self.base_url.clone(),
            reason,
        })?;
        self.secret()?.ok_or(PaystackError::NoSecretKey)?;
        Ok(())
    }

    fn secret(&self) -> Result<Option<SecretSource>, SecretError> {
        SecretSource::from_pair(
            "paystack.secret_key",
            self.secret_key_env.clone(),
            self.secret_key_file.clone(),
        )
    }

    fn key(&self) -> Result<crate::secret::Secret, CallError> {
        self.secret()
            .map_err(|e| (false, e.to_string()))?
            .ok_or((false, "no Paystack secret key configured".to_string()))?
            .read()
            .map_err(|e| (false, e.to_string()))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url.trim_end_matches('/'))
    }

    /// One call; its answer's JSON and HTTP status. A timeout is not retried at once (`false`):
    /// the call may have done its work, which the next attempt looks up first.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, serde_json::Value), CallError> {
        let key = self.key()?;
        let response = request
            .bearer_auth(key.expose())
            .timeout(self.timeout.unwrap_or(std::time::Duration::from_secs(30)))
            .send()
            .await
            .map_err(|e| {
                let timed_out = e.is_timeout();
                let what = if timed_out {
                    "timed out".to_string()
                } else {
                    e.without_url().to_string()
                };
                (!timed_out, format!("Paystack API error: {what}"))
            })?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        Ok((status, answer))
    }

    fn refused(status: reqwest::StatusCode, answer: &serde_json::Value) -> CallError {
        let message = answer["message"].as_str().unwrap_or("no message");
        let retryable = status.is_server_error() || status.as_u16() == 429;
        (
            retryable,
            format!("Paystack API error: HTTP {}: {message}", status.as_u16()),
        )
    }

    /// The Paystack customer code of the invoice's customer: its own, else the one Paystack
    /// has for its email, else a customer created now. The caller keeps a code that is new.
    pub async fn customer_code(&self, invoice: &InvoiceView) -> Result<String, CallError> {
        if let Some(code) = &invoice.provider_customer_id {
            return Ok(code.clone());
        }
        let Some(email) = &invoice.email else {
            return Err((
                false,
                format!(
                    "customer `{}` has no email, which Paystack needs to create the customer; \
                     add one, or set `provider_customer_id` (a Paystack customer code, `CUS_...`), \
                     e.g. with `tickler import customers --update`",
                    invoice.customer_name
                ),
            ));
        };
        let client = crate::net::http_client();
        let mut found = reqwest::Url::parse(&self.url("/customer/"))
            .map_err(|e| (false, format!("Paystack API error: {e}")))?;
        found
            .path_segments_mut()
            .map_err(|_| (false, "Paystack API error: bad base_url".to_string()))?
            .pop_if_empty()
            .push(email);
        let (status, answer) = self.call(client.get(found)).await?;
        if status.is_success() && answer["status"] == json!(true) {
            if let Some(code) = answer["data"]["customer_code"].as_str() {
                return Ok(code.to_string());
            }
        } else if status.as_u16() != 404 {
            return Err(Self::refused(status, &answer));
        }
        let (first, last) = invoice
            .customer_name
            .split_once(' ')
            .unwrap_or((invoice.customer_name.as_str(), ""));
        let mut body = json!({ "email": email, "first_name": first, "last_name": last });
        if let Some(phone) = &invoice.phone {
            body["phone"] = json!(phone);
        }
        let (status, answer) = self
            .call(client.post(self.url("/customer")).json(&body))
            .await?;
        if status.is_success() && answer["status"] == json!(true) {
            return answer["data"]["customer_code"]
                .as_str()
                .map(str::to_string)
                .ok_or((
                    false,
                    "Paystack answered without a `customer_code`".to_string(),
                ));
        }
        Err(Self::refused(status, &answer))
    }

    /// The payment request of `invoice` for the Paystack customer `customer`: one that exists
    /// already for it (same description, amount and currency), else one created now; returns
    /// its request code.
    pub async fn payment_request(
        &self,
        invoice: &InvoiceView,
        customer: &str,
    ) -> Result<String, CallError> {
        let client = crate::net::http_client();
        let description = format!("Invoice {}", invoice.number);
        let list = client
            .get(self.url("/paymentrequest"))
            .query(&[("customer", customer), ("perPage", "100")]);
        let (status, answer) = self.call(list).await?;
        if !(status.is_success() && answer["status"] == json!(true)) {
            return Err(Self::refused(status, &answer));
        }
        let existing = answer["data"].as_array().and_then(|requests| {
            requests.iter().find(|r| {
                r["description"].as_str() == Some(description.as_str())
                    && r["amount"].as_i64() == Some(invoice.amount_minor)
                    && r["currency"].as_str() == Some(invoice.currency.as_str())
            })
        });
        if let Some(code) = existing.and_then(|r| r["request_code"].as_str()) {
            return Ok(code.to_string());
        }
        let body = json!({
            "customer": customer,
            "amount": invoice.amount_minor,
            "currency": invoice.currency,
            "due_date": invoice.due_date.to_string(),
            "description": description,
            "send_notification": self.send_notification,
        });
        let (status, answer) = self
            .call(client.post(self.url("/paymentrequest")).json(&body))
            .await?;
        if status.is_success() && answer["status"] == json!(true) {
            return answer["data"]["request_code"]
                .as_str()
                .map(str::to_string)
                .ok_or((
                    false,
                    "Paystack answered without a `request_code`".to_string(),
                ));
        }
        Err(Self::refused(status, &answer))
    }
}
