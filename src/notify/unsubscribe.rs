//! One-click unsubscribe links (RFC 8058) of the email channel: where the email is built
//! ([`Email`](super::email::Email)) every message gets a `List-Unsubscribe` link to
//! `unsubscribe_url/TOKEN`, and the listener's `POST /unsubscribe/TOKEN` checks the token here
//! before it blocks the address. Signing and checking are this one module, so they cannot drift.
//!
//! A token is `base64url(address) "." base64url(HMAC-SHA256(secret, "tickler-unsubscribe\n"
//! "email\n" address))`, without padding, where `address` is the recipient normalized as
//! `contact_blocks` keeps it (trimmed, lower-cased). The address is readable by whoever holds
//! the link (its recipient); without the secret no token can be made for another address, and
//! the MAC is compared in constant time (`hmac`'s `verify_slice`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::blocks;
use crate::secret::{SecretError, SecretSource};

/// What the MAC covers before the address: a token of another tickler feature, or of another
/// channel, never verifies as an email unsubscribe.
const DOMAIN: &[u8] = b"tickler-unsubscribe\nemail\n";

/// `unsubscribe_url` and its signing secret, from `[channels.email]`.
#[derive(Debug, Clone)]
pub struct Unsubscribe {
    /// The public address of the listener's `/unsubscribe`, without a trailing `/`.
    url: String,
    secret: SecretSource,
}

/// Why an unsubscribe token is refused (the text is shown to the person who clicked).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "this unsubscribe link is damaged or incomplete; open the whole link from the email, or \
         reply to the email and ask to be removed"
    )]
    Malformed,
    #[error(
        "this unsubscribe link was not issued for this address; open the link from the email \
         itself, or reply to the email and ask to be removed"
    )]
    Forged,
}

impl Unsubscribe {
    pub fn new(url: &str, secret: SecretSource) -> Unsubscribe {
        Unsubscribe {
            url: url.trim_end_matches('/').to_string(),
            secret,
        }
    }

    /// The signing secret (read at each use, so a rotated file is picked up).
    pub fn secret(&self) -> &SecretSource {
        &self.secret
    }

    /// The `List-Unsubscribe` link of a message to `address` (an email address).
    pub fn link(&self, address: &str) -> Result<String, SecretError> {
        let secret = self.secret.read()?;
        Ok(format!(
            "{}/{}",
            self.url,
            token(secret.expose().as_bytes(), address)
        ))
    }
}

fn normalized(address: &str) -> String {
    blocks::normalize("email", address).unwrap_or_else(|_| address.trim().to_lowercase())
}

fn mac(secret: &[u8], address: &str) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    m.update(DOMAIN);
    m.update(address.as_bytes());
    m
}

/// The token of `address` signed with `secret`.
pub fn token(secret: &[u8], address: &str) -> String {
    let address = normalized(address);
    let tag = mac(secret, &address).finalize().into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(address.as_bytes()),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// The normalized email address a token was issued for, once its MAC is checked.
pub fn verify(secret: &[u8], token: &str) -> Result<String, TokenError> {
    let (address, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let address = URL_SAFE_NO_PAD
        .decode(address)
        .ok()
        .and_then(|a| String::from_utf8(a).ok())
        .ok_or(TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TokenError::Malformed)?;
    mac(secret, &address)
        .verify_slice(&tag)
        .map_err(|_| TokenError::Forged)?;
    // Signed addresses are normalized ones; anything else was not made by `token`.
    blocks::normalize("email", &address)
        .ok()
        .filter(|n| *n == address)
        .ok_or(TokenError::Forged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_address_and_verifies_only_with_its_secret() {
        let t = token(b"s3cret", " Ann@Example.com ");
        assert_eq!(verify(b"s3cret", &t), Ok("ann@example.com".to_string()));
        assert_eq!(verify(b"other", &t), Err(TokenError::Forged));
        let (_, tag) = t.split_once('.').unwrap();
        // Another address with this address's signature.
        let swapped = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("bob@example.com"));
        assert_eq!(verify(b"s3cret", &swapped), Err(TokenError::Forged));
        // The same address, not normalized, with the normalized one's signature.
        let upper = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("ANN@example.com"));
        assert_eq!(verify(b"s3cret", &upper), Err(TokenError::Forged));
        for garbage in ["", ".", "abc", "!!.!!", "YW5u.%%", &t[..t.len() - 2]] {
            assert!(verify(b"s3cret", garbage).is_err(), "{garbage:?}");
        }
        assert_eq!(verify(b"s3cret", "no-dot"), Err(TokenError::Malformed));
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{t}"
        );
    }

    #[test]
    fn the_link_is_the_url_and_the_token() {
        let u = Unsubscribe::new(
            "https://billing.example.com/unsubscribe/",
            SecretSource::File("/nonexistent/secret".into()),
        );
        assert!(u.link("ann@example.com").is_err());
        assert_eq!(u.url, "https://billing.example.com/unsubscribe");
    }
}
