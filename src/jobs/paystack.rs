//! Paystack's payment requests (`POST /paymentrequest`), used by `create_invoices`: one request
//! per invoice, with the job's per-item retry policy. Not a job kind.

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
}

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

    /// Creates the payment request of `invoice`; returns its request code. `Err(retryable,
    /// message)` tells the caller whether another attempt may succeed.
    pub async fn payment_request(&self, invoice: &InvoiceView) -> Result<String, (bool, String)> {
        let Some(customer) = &invoice.provider_customer_id else {
            return Err((
                false,
                format!(
                    "no Paystack customer ID found for customer `{}`; set `provider_customer_id` \
                     (a Paystack customer code, `CUS_...`) for it, e.g. with `tickler import customers`",
                    invoice.customer_name
                ),
            ));
        };
        let secret = self
            .secret()
            .map_err(|e| (false, e.to_string()))?
            .ok_or((false, "no Paystack secret key configured".to_string()))?
            .read()
            .map_err(|e| (false, e.to_string()))?;
        let url = format!("{}/paymentrequest", self.base_url.trim_end_matches('/'));
        let body = json!({
            "customer": customer,
            "amount": invoice.amount_minor,
            "currency": invoice.currency,
            "due_date": invoice.due_date.to_string(),
            "description": format!("Invoice {}", invoice.number),
            "send_notification": self.send_notification,
        });
        let response = crate::net::http_client()
            .post(&url)
            .bearer_auth(secret.expose())
            .json(&body)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| {
                let timed_out = e.is_timeout();
                let what = if timed_out {
                    "timed out".to_string()
                } else {
                    e.without_url().to_string()
                };
                // A timeout may have created the request: not retried at once, to avoid a
                // second one (the next run tries again if no request code was recorded).
                (!timed_out, format!("Paystack API error: {what}"))
            })?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if status.is_success() && answer["status"] == json!(true) {
            return answer["data"]["request_code"]
                .as_str()
                .map(str::to_string)
                .ok_or((
                    false,
                    "Paystack answered without a `request_code`".to_string(),
                ));
        }
        let message = answer["message"].as_str().unwrap_or("no message");
        let retryable = status.is_server_error() || status.as_u16() == 429;
        Err((
            retryable,
            format!("Paystack API error: HTTP {}: {message}", status.as_u16()),
        ))
    }
}
