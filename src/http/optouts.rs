//! The ways an opt-out or a bounce comes in over HTTP, each checked before anything is written,
//! each ending in `contact_blocks` (the table every send is checked against):
//!
//! - `GET /unsubscribe/TOKEN` answers a page whose button POSTs (mail scanners fetch links, so a
//!   GET never unsubscribes); `POST /unsubscribe/TOKEN` (RFC 8058 one-click, or that button)
//!   blocks the token's address on `email`, source `list-unsubscribe`. The token is checked by
//!   `notify::unsubscribe`, which also signs it. A bad token is 400 and writes nothing.
//! - `POST /twilio/inbound`: a reply to a Twilio number, signed with `X-Twilio-Signature`
//!   (base64 HMAC-SHA1 of the channel's `inbound_url` and the sorted parameters, keyed by its
//!   auth token; 401 and nothing written when it does not match). STOP and its synonyms block
//!   the sender on `sms` (or `whatsapp` for a `whatsapp:` sender), START and its synonyms
//!   unblock; anything else changes nothing. Answered with an empty TwiML `<Response/>`.
//! - `POST /bounces` with the `[http]` bearer token: an email provider's (or the application's)
//!   hard bounces and complaints, all or nothing.
//!
//! Each route is served only where it is configured (404 otherwise). 503 when the store fails,
//! so the caller retries.

use std::time::Duration;

use crate::http::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use sha1::Sha1;

use super::payments::SignatureError;
use super::{HttpState, body_within, json_reply, not_found, reply};
use crate::notify::blocks::{self, BlockError};
use crate::notify::twilio::Inbound;
use crate::notify::unsubscribe::{self, Unsubscribe};
use crate::store::StoreError;
use crate::store::contacts::NewBlock;

/// The largest one-click body read (`List-Unsubscribe=One-Click`, or the page's form).
const MAX_UNSUBSCRIBE_BODY: usize = 4 << 10;
/// Twilio's inbound parameters are a few hundred bytes (more with media URLs).
const MAX_TWILIO_BODY: usize = 64 << 10;
const MAX_BOUNCES_BODY: usize = 1 << 20;
/// How long the store may take before the caller is told to retry.
const STORE_PATIENCE: Duration = Duration::from_secs(10);
/// Twilio's answer when there is nothing to say back.
const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#;

/// The opt-out routes that are on: from `[channels.email]` and `[channels.sms|whatsapp]`.
#[derive(Debug, Default, Clone)]
pub struct OptOuts {
    pub unsubscribe: Option<Unsubscribe>,
    pub sms: Option<Inbound>,
    pub whatsapp: Option<Inbound>,
}

/// Runs a store call within [`STORE_PATIENCE`]; a failure or a timeout is logged and becomes
/// the caller's 503.
async fn stored<T>(
    what: &str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, &'static str> {
    const RETRY: &str = "the opt-out could not be recorded now; retry later";
    match tokio::time::timeout(STORE_PATIENCE, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "{what}: the store failed");
            Err(RETRY)
        }
        Err(_) => {
            tracing::error!("{what}: the store took over 10s");
            Err(RETRY)
        }
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json_reply(status, json!({ "error": message.to_string() }))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A small page for the person who clicked: `message` (escaped) and `form` (trusted HTML).
fn page(status: StatusCode, message: &str, form: &str) -> Response<Body> {
    reply(
        status,
        "text/html; charset=utf-8",
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Unsubscribe</title>\
             </head>\n<body><p>{}</p>{form}</body></html>\n",
            escape(message)
        ),
    )
}

/// `GET` or `POST /unsubscribe/TOKEN`.
pub(super) async fn unsubscribe(
    req: Request<Incoming>,
    token: &str,
    state: &HttpState,
) -> Response<Body> {
    let Some(links) = &state.optouts.unsubscribe else {
        return not_found();
    };
    let post = req.method() == hyper::Method::POST;
    if post {
        // The body says only `List-Unsubscribe=One-Click`: read (bounded) and not needed.
        if let Err(refused) = body_within(req.into_body(), MAX_UNSUBSCRIBE_BODY).await {
            return refused;
        }
    }
    let secret = match links.secret().read() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe: cannot read `unsubscribe_secret`");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "unsubscribing is not possible right now; try again later",
                "",
            );
        }
    };
    let address = match unsubscribe::verify(secret.expose().as_bytes(), token) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "unsubscribe refused: bad token");
            return page(StatusCode::BAD_REQUEST, &e.to_string(), "");
        }
    };
    if !post {
        return page(
            StatusCode::OK,
            &format!("Stop all email to {address}?"),
            "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" \
             value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>",
        );
    }
    let block = NewBlock {
        channel: "email".into(),
        address: address.clone(),
        reason: "unsubscribed".into(),
        source: "list-unsubscribe".into(),
    };
    let now = state.shared.clock.now();
    let store = &state.shared.store;
    match stored("unsubscribe", store.add_contact_blocks(&[block], now, None)).await {
        Ok(added) => {
            if !added.is_empty() {
                tracing::info!(address = %address, "unsubscribed through List-Unsubscribe");
            }
            page(
                StatusCode::OK,
                &format!("{address} is unsubscribed: no more email will be sent to it."),
                "",
            )
        }
        Err(retry) => page(StatusCode::SERVICE_UNAVAILABLE, retry, ""),
    }
}

/// Checks `X-Twilio-Signature`: the base64 HMAC-SHA1, keyed by the auth token, of `url`
/// followed by every parameter's name and value, sorted by name (then value); compared in
/// constant time.
pub fn verify_twilio(
    token: &[u8],
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing("x-twilio-signature"))?;
    let presented = STANDARD
        .decode(header.trim())
        .map_err(|_| SignatureError::Twilio)?;
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(token).expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.verify_slice(&presented)
        .map_err(|_| SignatureError::Twilio)
}

/// What a reply's first word asks for (Twilio's own opt-out keywords).
#[derive(Debug, PartialEq, Eq)]
enum Keyword {
    Stop,
    Start,
}

fn keyword(body: &str) -> Option<Keyword> {
    let word = body.split_whitespace().next()?.to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" => Some(Keyword::Stop),
        "START" | "UNSTOP" | "YES" => Some(Keyword::Start),
        _ => None,
    }
}

/// `POST /twilio/inbound`.
pub(super) async fn twilio_inbound(req: Request<Incoming>, state: &HttpState) -> Response<Body> {
    let o = &state.optouts;
    if o.sms.is_none() && o.whatsapp.is_none() {
        return not_found();
    }
    let header = req
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match body_within(req.into_body(), MAX_TWILIO_BODY).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let from = param("From").unwrap_or("");
    // The signature covers `From`, so choosing the channel by it before checking is safe.
    let (channel, inbound) = if from.starts_with("whatsapp:") {
        ("whatsapp", &o.whatsapp)
    } else {
        ("sms", &o.sms)
    };
    let Some(inbound) = inbound else {
        tracing::warn!(
            channel,
            "twilio inbound refused: `[channels.{channel}]` has no `inbound_url`"
        );
        return not_found();
    };
    let token = match inbound.token.read() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(channel, error = %e, "twilio inbound: cannot read the auth token");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "replies are not set up: the auth token cannot be read",
            );
        }
    };
    let checked = verify_twilio(
        token.expose().as_bytes(),
        &inbound.url,
        &params,
        header.as_deref(),
    );
    if let Err(e) = checked {
        tracing::warn!(channel, error = %e, "twilio inbound refused");
        return error(StatusCode::UNAUTHORIZED, e);
    }
    let twiml = || reply(StatusCode::OK, "text/xml", EMPTY_TWIML);
    let Some(word) = keyword(param("Body").unwrap_or("")) else {
        return twiml();
    };
    let address = match blocks::normalize(channel, from) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(channel, error = %e, "twilio inbound: unusable `From`");
            return error(StatusCode::BAD_REQUEST, format!("`From`: {e}"));
        }
    };
    let store = &state.shared.store;
    let done = match word {
        Keyword::Stop => {
            let block = NewBlock {
                channel: channel.into(),
                address: address.clone(),
                // The keyword as typed: the rest of the reply is the person's, not ours to keep.
                reason: format!(
                    "replied {}",
                    param("Body")
                        .unwrap_or("")
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                ),
                source: "twilio-inbound".into(),
            };
            let now = state.shared.clock.now();
            stored(
                "twilio inbound",
                store.add_contact_blocks(&[block], now, None),
            )
            .await
            .map(|_| ())
        }
        Keyword::Start => stored(
            "twilio inbound",
            store.remove_contact_block(channel, &address, state.shared.clock.now(), None),
        )
        .await
        .map(|_| ()),
    };
    match done {
        Ok(()) => {
            tracing::info!(channel, address = %address, keyword = ?word, "twilio reply applied");
            twiml()
        }
        Err(retry) => error(StatusCode::SERVICE_UNAVAILABLE, retry),
    }
}

/// One entry of `POST /bounces`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Bounce {
    address: String,
    channel: Option<String>,
    reason: Option<String>,
    kind: Option<String>,
}

/// An entry read: a block to add, or a soft bounce that blocks nothing.
enum Entry {
    Block(NewBlock),
    Soft,
}

/// Why an entry of `POST /bounces` is refused.
#[derive(Debug, thiserror::Error)]
enum BounceError {
    #[error("{0}")]
    Shape(serde_json::Error),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("unknown `kind` `{0}`; write `hard`, `complaint` or `soft`")]
    Kind(String),
}

fn entry(value: &Value) -> Result<Entry, BounceError> {
    use serde::Deserialize;
    let b = Bounce::deserialize(value).map_err(BounceError::Shape)?;
    let channel = blocks::parse_channel(b.channel.as_deref().unwrap_or("email"))?;
    let address = blocks::normalize(channel, &b.address)?;
    let label = match b.kind.as_deref().map(str::trim) {
        None | Some("hard") => "hard bounce",
        Some("complaint") => "complaint",
        Some("soft") => return Ok(Entry::Soft),
        Some(other) => return Err(BounceError::Kind(other.to_string())),
    };
    let reason = match b.reason.as_deref().map(str::trim) {
        Some(r) if !r.is_empty() => format!("{label}: {r}"),
        _ => label.to_string(),
    };
    Ok(Entry::Block(NewBlock {
        channel: channel.into(),
        address,
        reason,
        source: "bounce".into(),
    }))
}

/// `POST /bounces` with the `[http]` bearer token: one entry or an array of them,
/// `{"address", "channel"?: "email", "reason"?, "kind"?: "hard" | "complaint" | "soft"}`.
/// Hard bounces and complaints block; soft ones (a full mailbox, a greylisting) are counted and
/// block nothing, since the next send may well arrive. One bad entry refuses the whole body
/// (400, every bad entry named by its index) and nothing is written.
pub(super) async fn bounces(req: Request<Incoming>, state: &HttpState) -> Response<Body> {
    if let Some(refused) = super::unauthorized_unless_token(&req, state, "POST /bounces") {
        return refused;
    }
    let body = match body_within(req.into_body(), MAX_BOUNCES_BODY).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items,
        Ok(one @ Value::Object(_)) => vec![one],
        Ok(_) | Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the body must be a JSON object or an array of them, like [{\"address\": \
                 \"ann@example.com\", \"kind\": \"hard\", \"reason\": \"550 mailbox unknown\"}]; \
                 nothing was recorded",
            );
        }
    };
    let mut wanted: Vec<NewBlock> = vec![];
    let mut soft = 0;
    let mut bad = vec![];
    for (i, item) in items.iter().enumerate() {
        match entry(item) {
            Ok(Entry::Block(b)) => {
                let repeated = wanted
                    .iter()
                    .any(|w| w.channel == b.channel && w.address == b.address);
                if !repeated {
                    wanted.push(b);
                }
            }
            Ok(Entry::Soft) => soft += 1,
            Err(e) => bad.push(format!("bounces[{i}]: {e}")),
        }
    }
    if !bad.is_empty() {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({
                "error": format!("{} bad entr{}; nothing was recorded: {}", bad.len(),
                    if bad.len() == 1 { "y" } else { "ies" }, bad.join("; ")),
            }),
        );
    }
    let now = state.shared.clock.now();
    let store = &state.shared.store;
    match stored(
        "POST /bounces",
        store.add_contact_blocks(&wanted, now, None),
    )
    .await
    {
        Ok(added) => json_reply(
            StatusCode::OK,
            json!({"added": added.len(), "already": wanted.len() - added.len(), "soft": soft}),
        ),
        Err(retry) => error(StatusCode::SERVICE_UNAVAILABLE, retry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
        let mut sorted = params.to_vec();
        sorted.sort();
        let mut data = url.to_string();
        for (k, v) in sorted {
            data.push_str(k);
            data.push_str(v);
        }
        let mut m = Hmac::<Sha1>::new_from_slice(token.as_bytes()).unwrap();
        m.update(data.as_bytes());
        STANDARD.encode(m.finalize().into_bytes())
    }

    #[test]
    fn twilio_signatures_cover_the_url_and_every_sorted_parameter() {
        let url = "https://b.example.com/twilio/inbound";
        let p = [
            ("From", "+15551230000"),
            ("Body", "STOP"),
            ("To", "+15005550006"),
        ];
        let owned: Vec<(String, String)> = p
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let good = sign("tok", url, &p);
        assert_eq!(verify_twilio(b"tok", url, &owned, Some(&good)), Ok(()));
        let mut tampered = owned.clone();
        tampered[1].1 = "START".into();
        for (token, url, params, header, err) in [
            (
                &b"tok"[..],
                url,
                &tampered,
                Some(good.as_str()),
                SignatureError::Twilio,
            ),
            (
                b"other",
                url,
                &owned,
                Some(good.as_str()),
                SignatureError::Twilio,
            ),
            (
                b"tok",
                "https://b.example.com/x",
                &owned,
                Some(&good),
                SignatureError::Twilio,
            ),
            (b"tok", url, &owned, Some("%%%"), SignatureError::Twilio),
            (
                b"tok",
                url,
                &owned,
                None,
                SignatureError::Missing("x-twilio-signature"),
            ),
        ] {
            assert_eq!(verify_twilio(token, url, params, header), Err(err));
        }
        assert_eq!(
            SignatureError::Twilio.to_string(),
            "the `X-Twilio-Signature` header is not the HMAC-SHA1 of `inbound_url` and the \
             parameters with the auth token"
        );
    }

    #[test]
    fn the_first_word_decides() {
        for (body, want) in [
            (" stop ", Some(Keyword::Stop)),
            ("Stop please", Some(Keyword::Stop)),
            ("STOPALL", Some(Keyword::Stop)),
            ("unsubscribe", Some(Keyword::Stop)),
            ("cancel", Some(Keyword::Stop)),
            ("End", Some(Keyword::Stop)),
            ("quit", Some(Keyword::Stop)),
            ("start", Some(Keyword::Start)),
            ("UNSTOP", Some(Keyword::Start)),
            ("yes", Some(Keyword::Start)),
            ("please stop", None),
            ("stopping by later", None),
            ("", None),
        ] {
            assert_eq!(keyword(body), want, "{body:?}");
        }
    }

    #[test]
    fn bounce_entries_are_checked_one_by_one() {
        let e = |v: Value| entry(&v).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            e(json!({"address": "nope"})),
            "`nope` is not an email address"
        );
        assert_eq!(
            e(json!({"address": "a@b.example", "kind": "bounce"})),
            "unknown `kind` `bounce`; write `hard`, `complaint` or `soft`"
        );
        assert_eq!(
            e(json!({"address": "a@b.example", "channel": "fax"})),
            "unknown channel `fax`; write `email`, `sms`, `whatsapp` or `*` (every channel)"
        );
        assert_eq!(
            e(json!({"email": "a@b.example"})),
            "unknown field `email`, expected one of `address`, `channel`, `reason`, `kind`"
        );
        let Ok(Entry::Block(b)) = entry(&json!({"address": " A@B.example ", "kind": "complaint",
            "reason": "marked as spam"}))
        else {
            panic!("a complaint blocks");
        };
        assert_eq!(
            (
                b.channel.as_str(),
                b.address.as_str(),
                b.reason.as_str(),
                b.source.as_str()
            ),
            (
                "email",
                "a@b.example",
                "complaint: marked as spam",
                "bounce"
            )
        );
        assert!(matches!(
            entry(&json!({"address": "a@b.example", "kind": "soft"})),
            Ok(Entry::Soft)
        ));
    }
}
