//! The `[payments.paystack]` and `[payments.stripe]` sections: the secrets with which the
//! `[http]` listener checks the signature of each provider's payment webhook
//! (`POST /payments/paystack`, `POST /payments/stripe`). A provider without its section has no
//! webhook: its requests are answered 404.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::problems::{Collector, Owner};
use super::read::deser;
use crate::secret::SecretSource;

/// The payment webhooks that are on, each with where its signing secret is read from (at the
/// daemon's start and at each request, so a rotated file is picked up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentsConfig {
    /// `[payments.paystack]`: the secret key (`sk_live_...`), with which Paystack signs.
    pub paystack: Option<SecretSource>,
    /// `[payments.stripe]`: the endpoint's signing secret (`whsec_...`).
    pub stripe: Option<SecretSource>,
}

impl PaymentsConfig {
    pub fn is_empty(&self) -> bool {
        self.paystack.is_none() && self.stripe.is_none()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentsRaw {
    paystack: Option<Spanned<PaystackRaw>>,
    stripe: Option<Spanned<StripeRaw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaystackRaw {
    secret_key_env: Option<String>,
    secret_key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StripeRaw {
    webhook_secret_env: Option<String>,
    webhook_secret_file: Option<PathBuf>,
}

/// `[payments]` read and checked; empty when absent. `has_http` says whether an `[http]`
/// section is there to serve the webhooks.
pub(super) fn payments_config(
    value: Option<Spanned<DeValue<'_>>>,
    has_http: bool,
    c: &mut Collector<'_>,
) -> PaymentsConfig {
    let Some(value) = value else {
        return PaymentsConfig::default();
    };
    let span = value.span();
    let raw = match deser::<PaymentsRaw>(value) {
        Ok(raw) => raw,
        Err(e) => {
            c.toml_value(Owner::Section("invalid `[payments]` section"), &e, span);
            return PaymentsConfig::default();
        }
    };
    let mut out = PaymentsConfig::default();
    if let Some(p) = raw.paystack {
        let at = p.span();
        let p = p.into_inner();
        out.paystack = source(
            "paystack",
            "secret_key",
            p.secret_key_env,
            p.secret_key_file,
            at,
            c,
        );
    }
    if let Some(s) = raw.stripe {
        let at = s.span();
        let s = s.into_inner();
        out.stripe = source(
            "stripe",
            "webhook_secret",
            s.webhook_secret_env,
            s.webhook_secret_file,
            at,
            c,
        );
    }
    if !out.is_empty() && !has_http {
        c.push(
            "`[payments]` without `[http]`",
            Some(span),
            "the payment webhooks are served by the `[http]` listener; add an `[http]` section \
             (and register `https://YOUR-HOST/payments/PROVIDER` with the provider)",
        );
    }
    out
}

/// The secret of `[payments.{provider}]`: exactly one of `{key}_env` and `{key}_file`.
fn source(
    provider: &str,
    key: &str,
    env: Option<String>,
    file: Option<PathBuf>,
    at: std::ops::Range<usize>,
    c: &mut Collector<'_>,
) -> Option<SecretSource> {
    let what = format!("invalid `[payments.{provider}]` section");
    match SecretSource::from_pair(key, env, file) {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            c.push(
                what,
                Some(at),
                format!(
                    "set `{key}_env` or `{key}_file`: without its secret no webhook signature \
                     can be checked"
                ),
            );
            None
        }
        Err(e) => {
            c.push(what, Some(at), e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::parse;
    use crate::config::tests::errors;
    use crate::secret::SecretSource;

    #[test]
    fn payments_are_off_unless_configured() {
        let c = parse(Path::new("config.toml"), "").unwrap();
        assert!(c.payments.is_empty());
        let c = parse(
            Path::new("config.toml"),
            "[http]\n[payments.paystack]\nsecret_key_env = \"PAYSTACK_SECRET_KEY\"\n\
             [payments.stripe]\nwebhook_secret_file = \"stripe-whsec\"\n",
        )
        .unwrap();
        assert_eq!(
            c.payments.paystack,
            Some(SecretSource::Env("PAYSTACK_SECRET_KEY".into()))
        );
        assert_eq!(
            c.payments.stripe,
            Some(SecretSource::File(PathBuf::from("stripe-whsec")))
        );
        assert!(
            parse(
                Path::new("config.toml"),
                "[http]\n[payments.stripe]\nwebhook_secret_file = \"/nonexistent\"\n"
            )
            .is_ok(),
            "the secret is read by the daemon, so `tickler history` works from a shell"
        );
    }

    #[test]
    fn bad_payments_settings_say_where_and_what() {
        for (text, message) in [
            (
                "[http]\n[payments.paystack]\n",
                "invalid `[payments.paystack]` section (config.toml line 2, column 1): set \
                 `secret_key_env` or `secret_key_file`: without its secret no webhook signature \
                 can be checked",
            ),
            (
                "[http]\n[payments.stripe]\nwebhook_secret_env = \"A\"\nwebhook_secret_file = \
                 \"b\"\n",
                "invalid `[payments.stripe]` section (config.toml line 2, column 1): set only \
                 one of `webhook_secret_env` and `webhook_secret_file`, not both",
            ),
            (
                "[http]\n[payments.stripe]\nsecret_key_env = \"A\"\n",
                "invalid `[payments]` section (config.toml line 3, column 1): unknown field \
                 `secret_key_env`, expected `webhook_secret_env` or `webhook_secret_file`",
            ),
            (
                "[http]\n[payments.paypal]\nkey = \"x\"\n",
                "invalid `[payments]` section (config.toml line 2, column 11): unknown field \
                 `paypal`, expected `paystack` or `stripe`",
            ),
            (
                "[payments.paystack]\nsecret_key_file = \"paystack-key\"\n",
                "`[payments]` without `[http]` (config.toml line 1, column 2): the payment \
                 webhooks are served by the `[http]` listener; add an `[http]` section (and \
                 register `https://YOUR-HOST/payments/PROVIDER` with the provider)",
            ),
        ] {
            assert_eq!(errors(text), message, "{text}");
        }
    }
}
