//! Opt-outs: the addresses in `contact_blocks` get nothing on their channel (`*`: on email,
//! SMS and WhatsApp alike). [`Notifier::deliver`](super::Notifier::deliver) looks up every
//! batch's recipients here before it claims them, in one query, and records a blocked message
//! `suppressed`, never sent. Webhook messages have no person's address and are never blocked.
//! Addresses are compared normalized: emails trimmed and lower-cased, phone numbers in E.164
//! without spaces, dashes or a `whatsapp:` prefix.

use std::collections::HashMap;

use super::{ChannelKind, Message};
use crate::store::contacts::ContactBlock;
use crate::store::{Store, StoreError};

/// Why a block is refused: the channel or the address is not one tickler can match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("unknown channel `{0}`; write `email`, `sms`, `whatsapp` or `*` (every channel)")]
    Channel(String),
    #[error("`{0}` is not an email address")]
    Email(String),
    #[error("`{0}` is not a phone number in E.164 form, e.g. `+15551234567`")]
    Phone(String),
}

/// The channel names a block takes.
pub fn parse_channel(s: &str) -> Result<&'static str, BlockError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "email" => Ok("email"),
        "sms" => Ok("sms"),
        "whatsapp" => Ok("whatsapp"),
        "*" => Ok("*"),
        _ => Err(BlockError::Channel(s.trim().to_string())),
    }
}

/// The address of a block on `channel`, normalized and checked: an email address on `email`, a
/// phone number on `sms` and `whatsapp`, either on `*`.
pub fn normalize(channel: &str, address: &str) -> Result<String, BlockError> {
    let a = address.trim();
    let email = match channel {
        "email" => true,
        "*" => a.contains('@'),
        _ => false,
    };
    if email {
        let e = a.to_lowercase();
        return match e.parse::<lettre::Address>() {
            Ok(_) => Ok(e),
            Err(_) => Err(BlockError::Email(a.to_string())),
        };
    }
    let p = phone(a);
    if valid_phone(&p) {
        Ok(p)
    } else {
        Err(BlockError::Phone(a.to_string()))
    }
}

fn phone(a: &str) -> String {
    let a = a.trim();
    let a = a.strip_prefix("whatsapp:").unwrap_or(a);
    a.replace([' ', '-', '(', ')'], "")
}

/// A phone number in E.164 form: `+`, then 7-15 digits not starting with 0. The one check of
/// imports, blocks and the SNS channel.
pub fn valid_phone(p: &str) -> bool {
    p.len() >= 8
        && p.len() <= 16
        && p.starts_with('+')
        && p[1..].chars().all(|c| c.is_ascii_digit())
        && !p[1..].starts_with('0')
}

/// The key a message's recipient is looked up by; `None` for a channel blocks do not apply to
/// (webhooks) or a message without an address.
fn lookup(m: &Message) -> Option<(&'static str, String)> {
    let to = m.recipient.as_deref()?;
    match m.channel {
        ChannelKind::Email => Some(("email", to.trim().to_lowercase())),
        ChannelKind::Sms => Some(("sms", phone(to))),
        ChannelKind::Whatsapp => Some(("whatsapp", phone(to))),
        ChannelKind::Webhook => None,
    }
}

/// For each blocked message of `messages` (by index), why: the block's reason and source. One
/// query for the batch; a block on the message's own channel wins over a `*` one.
pub async fn blocked(
    store: &Store,
    messages: &[Message],
) -> Result<HashMap<usize, String>, StoreError> {
    let keys: Vec<Option<(&'static str, String)>> = messages.iter().map(lookup).collect();
    let mut wanted: Vec<(&str, String)> = keys.iter().flatten().cloned().collect();
    wanted.sort();
    wanted.dedup();
    let found = store.contact_blocks_for(&wanted).await?;
    if found.is_empty() {
        return Ok(HashMap::new());
    }
    let mut by: HashMap<(&str, &str), &ContactBlock> = HashMap::new();
    for b in &found {
        by.insert((b.channel.as_str(), b.address.as_str()), b);
    }
    let mut out = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        let Some((channel, address)) = key else {
            continue;
        };
        let block = by
            .get(&(*channel, address.as_str()))
            .or_else(|| by.get(&("*", address.as_str())));
        if let Some(b) = block {
            out.insert(i, suppressed(b));
        }
    }
    Ok(out)
}

/// The `error` of a suppressed message: which block, why, and who set it.
fn suppressed(b: &ContactBlock) -> String {
    let reason = if b.reason.is_empty() {
        "no reason given".to_string()
    } else {
        b.reason.clone()
    };
    format!(
        "blocked on `{}` since {}: {reason} (source `{}`); not sent",
        b.channel,
        b.created_at.format("%Y-%m-%d"),
        b.source
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_and_addresses_are_checked_and_normalized() {
        let ok = [
            ("email", " Ann@Example.COM ", "ann@example.com"),
            ("sms", "+1 555-123 4567", "+15551234567"),
            ("whatsapp", "whatsapp:+447700900123", "+447700900123"),
            ("*", "Bob@example.com", "bob@example.com"),
            ("*", "+447700900123", "+447700900123"),
        ];
        for (channel, address, want) in ok {
            assert_eq!(
                normalize(channel, address).as_deref(),
                Ok(want),
                "{address}"
            );
        }
        let bad = [
            ("email", "ann", "`ann` is not an email address"),
            (
                "email",
                "+15551234567",
                "`+15551234567` is not an email address",
            ),
            (
                "sms",
                "555-1234",
                "`555-1234` is not a phone number in E.164 form, e.g. `+15551234567`",
            ),
            (
                "*",
                "ann.example.com",
                "`ann.example.com` is not a phone number in E.164 form, e.g. `+15551234567`",
            ),
        ];
        for (channel, address, want) in bad {
            assert_eq!(normalize(channel, address).unwrap_err().to_string(), want);
        }
        assert_eq!(parse_channel(" SMS "), Ok("sms"));
        assert_eq!(
            parse_channel("fax").unwrap_err().to_string(),
            "unknown channel `fax`; write `email`, `sms`, `whatsapp` or `*` (every channel)"
        );
        assert!(parse_channel("webhook").is_err());
    }
}
