//! Email through lettre: SMTP with implicit TLS, STARTTLS or (on loopback) plain text, with a
//! pool of connections; or the `file` transport, which writes each message as an `.eml` file
//! into the state directory, so a fresh checkout sends nothing anywhere.
//!
//! The pool is ours, over connections tickler opens ([`super::smtp`]: `TCP_NODELAY`, its own
//! STARTTLS and implicit TLS, what lettre writes held until it reads, pipelining when the
//! server offers it, and BDAT chunks when it offers CHUNKING too); lettre speaks SMTP over them
//! and builds the messages, their parts' bodies encoded by its encoders through `body`. A
//! connection goes back to the pool without the NOOP lettre sends at every checkout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::Address;
use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::ratelimit::RateLimitError;
use super::smtp::{self, Connection, Corked};
use super::unsubscribe::Unsubscribe;
use super::{Rendered, SendError};
use crate::secret::{SecretError, SecretSource};

/// `text` as a message part's body, as lettre's `Body::new` encodes it: the encoding chosen by
/// email-encoding from the text as given (7bit, else quoted-printable, else base64; see
/// [`choose`]), its line endings made CRLF. Its CRLF pass inserts each `\r` by moving the rest of
/// the text, a fifth of the building of a reminder; this one copies the text once.
fn body(text: &str) -> Body {
    match choose(text) {
        ContentTransferEncoding::QuotedPrintable => Body::dangerous_pre_encoded(
            quoted_printable(text.as_bytes()),
            ContentTransferEncoding::QuotedPrintable,
        ),
        ContentTransferEncoding::Base64 => {
            let text = crlf(text);
            let mut out =
                String::with_capacity(email_encoding::body::base64::encoded_len(text.len()));
            email_encoding::body::base64::encode(text.as_bytes(), &mut out)
                .expect("a String takes base64");
            Body::dangerous_pre_encoded(out.into_bytes(), ContentTransferEncoding::Base64)
        }
        seven_bit => Body::dangerous_pre_encoded(crlf(text).into_bytes(), seven_bit),
    }
}

/// The encoding email-encoding's `Encoding::choose(text, false)` gives (lettre's `Body::new`
/// asks it so): 7bit for ASCII whose lines (between `\n`s) are all under 76 bytes; otherwise
/// quoted-printable when at most a third of the bytes are neither a tab nor `' '..='~'`, else
/// base64. Its count of those bytes goes one byte at a time, a sixth of building a reminder's
/// email; this one counts 255 at a time in a form the compiler makes vector instructions of.
fn choose(text: &str) -> ContentTransferEncoding {
    let bytes = text.as_bytes();
    let mut start = 0;
    let long = memchr::memchr_iter(b'\n', bytes).any(|at| {
        let from = std::mem::replace(&mut start, at);
        at - from >= 76
    }) || bytes.len() - start >= 76;
    if !long && text.is_ascii() {
        return ContentTransferEncoding::SevenBit;
    }
    let escaped: usize = bytes
        .chunks(255)
        .map(|chunk| {
            let n = chunk.iter().fold(0u8, |n, &b| {
                n + u8::from(b != b'\t' && !(b' '..=b'~').contains(&b))
            });
            usize::from(n)
        })
        .sum();
    if escaped <= bytes.len() / 3 {
        ContentTransferEncoding::QuotedPrintable
    } else {
        ContentTransferEncoding::Base64
    }
}

/// `text` in quoted-printable, byte for byte as lettre's `Body::new` encodes it (its line ends
/// made CRLF by [`crlf`], then the `quoted_printable` crate's encoding of text): each `\n` or
/// `\r\n` a CRLF; encoded lines of at most 76 characters, each cut one ending in a soft break
/// `=`; `=`, control characters, a lone `\r` and every byte past `~` as `=XX`; a space or tab
/// before a line end as `=20` or `=09`. Where a cut falls on a full line, it goes before the
/// last character or escape written (so the `=` fits). The crate writes each plain character
/// apart, nearly half of building a reminder's email; this copies a run of them in one go, and
/// makes the line ends CRLF in the same pass.
fn quoted_printable(text: &[u8]) -> Vec<u8> {
    /// The longest encoded line, a soft break's `=` included (RFC 2045 6.7).
    const LIMIT: usize = 76;
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    /// The bytes written as they are: tab, and space to `~` but `=`. In arithmetic, which the
    /// compiler does on sixteen bytes at once in a run's scan.
    const fn plain_arith(b: u8) -> bool {
        (b.wrapping_sub(b' ') <= b'~' - b' ' && b != b'=') | (b == b'\t')
    }
    /// The same test as a table, faster a byte at a time.
    const PLAIN: [bool; 256] = {
        let mut plain = [false; 256];
        let mut b = 0;
        while b < 256 {
            plain[b] = plain_arith(b as u8);
            b += 1;
        }
        plain
    };
    let plain = |b: u8| PLAIN[usize::from(b)];
    let mut out = Vec::with_capacity(text.len() + text.len() / 16 + 8);
    // The characters on the encoded line, and where the last one written apart starts.
    let (mut on_line, mut last) = (0usize, 0usize);
    // Writes a character or an escape, cutting the line first when it would not fit.
    let put = |out: &mut Vec<u8>, token: &[u8], on_line: &mut usize, last: &mut usize| {
        if *on_line + token.len() > LIMIT {
            if *on_line == LIMIT {
                *on_line = out.len() - *last;
                out.splice(*last..*last, *b"=\r\n");
            } else {
                out.extend_from_slice(b"=\r\n");
                *on_line = 0;
            }
        }
        out.extend_from_slice(token);
        *on_line += token.len();
        *last = out.len() - token.len();
    };
    // A space or tab that ends a line is written encoded.
    let end_line = |out: &mut Vec<u8>, on_line: &mut usize, last: &mut usize| {
        let escape: &[u8] = match out.last() {
            Some(b' ') => b"=20",
            Some(b'\t') => b"=09",
            _ => return,
        };
        out.pop();
        *on_line -= 1;
        put(out, escape, on_line, last);
    };
    let mut at = 0;
    while let Some(&byte) = text.get(at) {
        let crlf = byte == b'\r' && text.get(at + 1) == Some(&b'\n');
        if crlf || byte == b'\n' {
            end_line(&mut out, &mut on_line, &mut last);
            out.extend_from_slice(b"\r\n");
            on_line = 0;
            at += if crlf { 2 } else { 1 };
        } else if plain(byte) && LIMIT - on_line >= 3 {
            // A run of plain characters, up to two short of the line's end.
            let window = &text[at..text.len().min(at + LIMIT - on_line - 2)];
            // Sixteen bytes at a time while all are plain (vector compares), then one by one.
            let mut run = 0;
            for block in window.chunks_exact(16) {
                let block: &[u8; 16] = block.try_into().expect("chunks of 16");
                if !block.iter().fold(true, |all, &b| all & plain_arith(b)) {
                    break;
                }
                run += 16;
            }
            run += window[run..]
                .iter()
                .position(|&b| !plain(b))
                .unwrap_or(window.len() - run);
            out.extend_from_slice(&text[at..at + run]);
            on_line += run;
            last = out.len();
            at += run;
        } else {
            let escape = [
                b'=',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ];
            let token = if plain(byte) {
                &text[at..=at]
            } else {
                &escape[..]
            };
            put(&mut out, token, &mut on_line, &mut last);
            at += 1;
        }
    }
    end_line(&mut out, &mut on_line, &mut last);
    out
}

/// `text` with every `\n` not after a `\r` made `\r\n` (a lone `\r` stays), as lettre does.
fn crlf(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + text.len() / 32 + 2);
    let mut start = 0;
    for at in memchr::memchr_iter(b'\n', bytes) {
        if at == 0 || bytes[at - 1] != b'\r' {
            out.push_str(&text[start..at]);
            out.push_str("\r\n");
            start = at + 1;
        }
    }
    out.push_str(&text[start..]);
    out
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Smtp,
    #[default]
    File,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// Implicit TLS (port 465).
    Tls,
    /// STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// No encryption: only for a relay on the same host.
    None,
}

/// `[channels.email]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    #[serde(default)]
    pub transport: Transport,
    pub from: String,
    pub reply_to: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: Tls,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub pool_size: Option<u32>,
    #[serde(default, with = "crate::time::duration::option")]
    pub timeout: Option<Duration>,
    /// The `file` transport's directory, relative to the state directory.
    pub dir: Option<PathBuf>,
    /// Messages per second (0: no limit).
    pub rate_limit: Option<f64>,
    /// Sends in flight at once.
    pub concurrency: Option<usize>,
    /// When messages on this channel may reach people, in their zone (invariant 6).
    pub send_window: Option<super::window::WindowRaw>,
    /// The public address of the listener's `/unsubscribe` (RFC 8058 one-click links).
    pub unsubscribe_url: Option<String>,
    pub unsubscribe_secret_env: Option<String>,
    pub unsubscribe_secret_file: Option<PathBuf>,
}

enum Sender {
    Smtp {
        host: String,
        port: u16,
        tls: Tls,
        username: Option<String>,
        password: Option<SecretSource>,
        pool_size: u32,
        timeout: Duration,
        /// Idle connections, with when they were last used.
        idle: std::sync::Mutex<Vec<(Connection, std::time::Instant)>>,
    },
    File {
        dir: PathBuf,
        transport: OnceCell<AsyncFileTransport<Tokio1Executor>>,
    },
}

/// What is wrong with `[channels.email]`.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error(
        "`from` `{from}` is not an email address ({reason}); write e.g. `Acme Billing \
         <billing@acme.example>`"
    )]
    FromAddress {
        from: String,
        reason: lettre::address::AddressError,
    },
    #[error("`reply_to` `{reply_to}` is not an email address ({reason})")]
    ReplyToAddress {
        reply_to: String,
        reason: lettre::address::AddressError,
    },
    /// `password_env`/`password_file` both set.
    #[error(transparent)]
    Password(#[from] SecretError),
    #[error("`host` is required with `transport = \"smtp\"`; e.g. `host = \"smtp.example.com\"`")]
    NoHost,
    /// A password would cross the network unencrypted (to this host).
    #[error(
        "`tls = \"none\"` would send the SMTP password to `{host}` in clear text; use `tls = \
         \"starttls\"` or `\"tls\"` (plain text is for a relay on this host)"
    )]
    ClearText { host: String },
    #[error("`password_env`/`password_file` needs `username`")]
    PasswordWithoutUsername,
    #[error(
        "`host` is set but `transport` is `file`; set `transport = \"smtp\"` to send through it"
    )]
    HostWithFile,
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
    #[error(
        "`unsubscribe_url` `{url}` is not an https URL ({reason}); write the public address of \
         the listener's `/unsubscribe`, e.g. `https://billing.example.com/unsubscribe`"
    )]
    UnsubscribeUrl { url: String, reason: String },
    #[error(
        "`unsubscribe_url` needs `unsubscribe_secret_env` or `unsubscribe_secret_file`: the \
         links are signed with that secret"
    )]
    UnsubscribeWithoutSecret,
    #[error("`unsubscribe_secret_env`/`unsubscribe_secret_file` needs `unsubscribe_url`")]
    UnsubscribeSecretWithoutUrl,
}

pub struct Email {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    domain: String,
    sender: Sender,
    unsubscribe: Option<Unsubscribe>,
}

/// `[channels.email]`'s one-click unsubscribe: both keys or neither, the URL https.
fn unsubscribe_of(
    url: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<Unsubscribe>, EmailError> {
    let secret = SecretSource::from_pair("unsubscribe_secret", env, file)?;
    let (url, secret) = match (url, secret) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(EmailError::UnsubscribeWithoutSecret),
        (None, Some(_)) => return Err(EmailError::UnsubscribeSecretWithoutUrl),
        (Some(url), Some(secret)) => (url, secret),
    };
    let refused = |reason: String| EmailError::UnsubscribeUrl {
        url: url.clone(),
        reason,
    };
    let parsed = reqwest::Url::parse(&url).map_err(|e| refused(e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(refused(format!(
            "RFC 8058 one-click links must be https, found `{}`",
            parsed.scheme()
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(refused(
            "the token is appended to its path: no `?` or `#`".into(),
        ));
    }
    Ok(Some(Unsubscribe::new(&url, secret)))
}

impl Email {
    /// Validates the section; returns the channel, its rate limit and its concurrency.
    pub fn build(c: EmailConfig, state_dir: &Path) -> Result<(Email, f64, usize), EmailError> {
        let from: Mailbox = c.from.parse().map_err(|reason| EmailError::FromAddress {
            from: c.from.clone(),
            reason,
        })?;
        let reply_to = match &c.reply_to {
            Some(r) => Some(
                r.parse::<Mailbox>()
                    .map_err(|reason| EmailError::ReplyToAddress {
                        reply_to: r.clone(),
                        reason,
                    })?,
            ),
            None => None,
        };
        let domain = from.email.domain().to_string();
        let unsubscribe = unsubscribe_of(
            c.unsubscribe_url,
            c.unsubscribe_secret_env,
            c.unsubscribe_secret_file,
        )?;
        let password = SecretSource::from_pair("password", c.password_env, c.password_file)?;
        let pool_size = c.pool_size.unwrap_or(4).clamp(1, 64);
        let sender = match c.transport {
            Transport::Smtp => {
                let host = c.host.ok_or(EmailError::NoHost)?;
                let loopback = matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1");
                if c.tls == Tls::None && c.username.is_some() && !loopback {
                    return Err(EmailError::ClearText { host });
                }
                if password.is_some() && c.username.is_none() {
                    return Err(EmailError::PasswordWithoutUsername);
                }
                let port = c.port.unwrap_or(match c.tls {
                    Tls::Tls => 465,
                    Tls::Starttls => 587,
                    Tls::None => 25,
                });
                Sender::Smtp {
                    host,
                    port,
                    tls: c.tls,
                    username: c.username,
                    password,
                    pool_size,
                    timeout: c.timeout.unwrap_or(Duration::from_secs(30)),
                    idle: std::sync::Mutex::new(vec![]),
                }
            }
            Transport::File => {
                if c.host.is_some() {
                    return Err(EmailError::HostWithFile);
                }
                Sender::File {
                    dir: state_dir.join(c.dir.unwrap_or_else(|| PathBuf::from("outbox"))),
                    transport: OnceCell::new(),
                }
            }
        };
        let rate = c.rate_limit.unwrap_or(0.0);
        super::ratelimit::check(rate)?;
        // More sends in flight than pooled connections would open and drop one per message.
        let concurrency = c
            .concurrency
            .unwrap_or(pool_size as usize)
            .clamp(1, pool_size as usize);
        Ok((
            Email {
                from,
                reply_to,
                domain,
                sender,
                unsubscribe,
            },
            rate,
            concurrency,
        ))
    }

    /// Where the `file` transport writes, if it is in use.
    pub fn outbox(&self) -> Option<&Path> {
        match &self.sender {
            Sender::File { dir, .. } => Some(dir),
            Sender::Smtp { .. } => None,
        }
    }

    /// The one-click unsubscribe links of this channel, when `unsubscribe_url` is set.
    pub fn unsubscribe(&self) -> Option<&Unsubscribe> {
        self.unsubscribe.as_ref()
    }

    fn message(
        &self,
        to: &str,
        message_id: &str,
        r: &Rendered,
        to_a_person: bool,
    ) -> Result<lettre::Message, SendError> {
        // A bare address (a contact's) is checked as one; anything else as a mailbox
        // (`Name <address>`), by lettre's slower parser.
        let to: Mailbox = match to.parse::<Address>() {
            Ok(address) => Mailbox::new(None, address),
            Err(_) => to
                .parse()
                .map_err(|e| SendError::new(format!("`{to}` is not an email address: {e}")))?,
        };
        // The envelope lettre would read back from the From and To headers it was given.
        let envelope = Envelope::new(Some(self.from.email.clone()), vec![to.email.clone()])
            .map_err(|e| SendError::new(format!("cannot build the email: {e}")))?;
        let link =
            match self.unsubscribe.as_ref().filter(|_| to_a_person) {
                Some(u) => Some(u.link(to.email.as_ref()).map_err(|e| {
                    SendError::new(format!("cannot sign the unsubscribe link: {e}"))
                })?),
                None => None,
            };
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(r.subject.clone())
            .message_id(Some(message_id.to_string()))
            .envelope(envelope);
        if let Some(reply) = &self.reply_to {
            builder = builder.reply_to(reply.clone());
        }
        if let Some(link) = link {
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{link}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_string(),
                ));
        }
        let built = match &r.html {
            Some(html) => {
                builder.multipart(MultiPart::alternative_plain_html(body(&r.text), body(html)))
            }
            None => builder.header(ContentType::TEXT_PLAIN).body(body(&r.text)),
        };
        built.map_err(|e| SendError::new(format!("cannot build the email: {e}")))
    }

    fn message_id(&self) -> String {
        format!("<{}@{}>", uuid::Uuid::now_v7().simple(), self.domain)
    }

    /// The bytes `send` puts on the wire for this message, built as it builds them: the
    /// reminders benchmark times lettre's building apart from the SMTP exchange with it.
    #[doc(hidden)]
    pub fn wire_bytes(
        &self,
        to: &str,
        r: &Rendered,
        to_a_person: bool,
    ) -> Result<Vec<u8>, SendError> {
        let message_id = self.message_id();
        Ok(self.message(to, &message_id, r, to_a_person)?.formatted())
    }

    /// Sends one message; returns its Message-ID (SMTP) or file id (`file`).
    ///
    /// A message `to_a_person` (every message of the delivery pipeline, which checks blocks)
    /// carries the `List-Unsubscribe` link when it is configured; an operator's alert does not,
    /// since blocks do not stop alerts and the link would promise what it cannot keep.
    pub async fn send(
        &self,
        to: &str,
        r: &Rendered,
        to_a_person: bool,
    ) -> Result<String, SendError> {
        let message_id = self.message_id();
        let message = self.message(to, &message_id, r, to_a_person)?;
        match &self.sender {
            Sender::Smtp {
                host,
                port,
                tls,
                username,
                password,
                pool_size,
                timeout,
                idle,
            } => {
                let envelope = message.envelope().clone();
                let bytes = message.formatted();
                let pooled = match idle.lock().ok().and_then(|mut v| v.pop()) {
                    // Closed by the server meanwhile, or a `421` waits: not used.
                    Some((c, _)) if c.spoke_or_closed() => None,
                    // A connection idle for long may have been closed by the server: check it.
                    Some((mut c, at)) if at.elapsed() > Duration::from_secs(10) => {
                        tokio::time::timeout(*timeout, c.conn.test_connected())
                            .await
                            .unwrap_or(false)
                            .then_some(c)
                    }
                    other => other.map(|(c, _)| c),
                };
                let mut conn = match pooled {
                    Some(c) => c,
                    None => connect(host, *port, *tls, username, password, *timeout).await?,
                };
                let sent = tokio::time::timeout(*timeout, conn.send(&envelope, &bytes)).await;
                match sent {
                    Ok(Ok(())) => {
                        if conn.reusable()
                            && let Ok(mut v) = idle.lock()
                            && v.len() < *pool_size as usize
                        {
                            v.push((conn, std::time::Instant::now()));
                        }
                        Ok(message_id)
                    }
                    Ok(Err(failed)) => {
                        let message = format!("SMTP `{host}:{port}`: {}", failed.message);
                        Err(match failed.maybe_sent {
                            true => SendError::ambiguous(message),
                            false => SendError::new(message),
                        })
                    }
                    // Cut off before the body went: nothing can have been delivered.
                    Err(_) if !conn.reached_body() => Err(SendError::new(format!(
                        "SMTP `{host}:{port}`: timed out after {} before the message was sent",
                        humantime::format_duration(*timeout)
                    ))),
                    Err(_) => Err(SendError::ambiguous(format!(
                        "SMTP `{host}:{port}`: timed out after {}",
                        humantime::format_duration(*timeout)
                    ))),
                }
            }
            Sender::File { dir, transport } => {
                let transport = transport
                    .get_or_try_init(|| async {
                        tokio::fs::create_dir_all(dir).await.map_err(|e| {
                            SendError::new(format!("cannot create `{}`: {e}", dir.display()))
                        })?;
                        Ok::<_, SendError>(AsyncFileTransport::<Tokio1Executor>::new(dir))
                    })
                    .await?;
                let id = transport.send(message).await.map_err(|e| {
                    SendError::new(format!(
                        "cannot write the email into `{}`: {e}",
                        dir.display()
                    ))
                })?;
                Ok(format!("{id}.eml"))
            }
        }
    }
}

/// Opens an SMTP connection with `TCP_NODELAY`: plain, upgraded with STARTTLS, or implicit
/// TLS; then authenticates. All of it within `timeout`: a server that accepts the connection but
/// never greets (or never answers STARTTLS or AUTH) fails like a refused connection, and as
/// nothing was sent, the message may be tried again.
async fn connect(
    host: &str,
    port: u16,
    tls: Tls,
    username: &Option<String>,
    password: &Option<SecretSource>,
    timeout: Duration,
) -> Result<Connection, SendError> {
    let fail = |e: &dyn std::fmt::Display| SendError::new(format!("SMTP `{host}:{port}`: {e}"));
    let open = async {
        let hello = ClientId::default();
        // Every connection is ours, with `TCP_NODELAY`, under lettre's SMTP (see `smtp`).
        let mut tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| fail(&e))?;
        tcp.set_nodelay(true).map_err(|e| fail(&e))?;
        let greeted = match tls {
            Tls::None => Connection::greet(Corked::new(tcp, b""), &hello).await,
            Tls::Tls | Tls::Starttls => {
                let mut greeting: &[u8] = b"";
                if tls == Tls::Starttls {
                    smtp::starttls(&mut tcp, &hello)
                        .await
                        .map_err(|e| fail(&e))?;
                    greeting = smtp::GREETING_AFTER_STARTTLS;
                }
                let config = smtp::public_roots().map_err(|e| fail(&e))?;
                let stream = smtp::tls(tcp, host, config)
                    .await
                    .map_err(|e| fail(&tls_failure(&e, host, port, tls)))?;
                Connection::greet(Corked::new(stream, greeting), &hello).await
            }
        };
        let mut conn = greeted.map_err(|e| fail(&e))?;
        if let Some(user) = username {
            let secret = match password {
                Some(source) => source.read().map_err(SendError::new)?,
                None => crate::secret::Secret::new(""),
            };
            let credentials = Credentials::new(user.clone(), secret.expose().to_string());
            conn.conn
                .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
                .map_err(|e| fail(&e))?;
        }
        Ok(conn)
    };
    tokio::time::timeout(timeout, open)
        .await
        .unwrap_or_else(|_| {
            Err(fail(&format_args!(
                "no answer within {} (connecting, TLS, greeting, STARTTLS or AUTH)",
                humantime::format_duration(timeout)
            )))
        })
}

/// A failed TLS handshake (implicit or STARTTLS) as a user reads it: what rustls refused, and
/// what to check for the two common causes.
fn tls_failure(e: &(dyn std::error::Error + 'static), host: &str, port: u16, mode: Tls) -> String {
    use tokio_rustls::rustls::Error as Rustls;
    let mut cause = Some(e);
    while let Some(c) = cause {
        match c.downcast_ref::<Rustls>() {
            Some(Rustls::InvalidMessage(_)) if mode == Tls::Starttls => {
                return format!(
                    "TLS: the server did not answer in TLS after agreeing to STARTTLS ({c})"
                );
            }
            Some(Rustls::InvalidCertificate(why)) => {
                return format!(
                    "TLS: the server's certificate is refused ({why:?}): it must be valid, for \
                     `{host}`, and signed by a public CA (tickler trusts the webpki-roots list)"
                );
            }
            Some(Rustls::InvalidMessage(_)) => {
                return format!(
                    "TLS: the server did not answer in TLS ({c}): port {port} may take \
                     `tls = \"starttls\"` (usual on 587 and 25) rather than `tls = \"tls\"` \
                     (usual on 465)"
                );
            }
            Some(other) => return format!("TLS: {other}"),
            // An `io::Error`'s `source()` skips the error it wraps: look into it.
            None => {
                cause = match c
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                {
                    Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                    None => c.source(),
                }
            }
        }
    }
    format!("TLS: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` gives the bytes and the encoding lettre's `Body::new` gives: on the edges of its
    /// choice (a line of 75 or 76 characters, mostly ASCII or mostly not), on every kind of line
    /// end (`\n`, `\r\n`, a lone `\r`, one first or last), on a shipped template's text and
    /// HTML, on 2,000 random texts of those characters, and on 3,000 of long lines, mostly
    /// plain, where quoted-printable cuts lines (`quoted_printable` against the crate's).
    #[test]
    fn a_part_is_encoded_as_lettres_body_new_encodes_it() {
        let same = |text: &str| {
            let (ours, lettres) = (body(text), Body::new(text.to_string()));
            assert_eq!(ours.encoding(), lettres.encoding(), "{text:?}");
            assert_eq!(ours.as_ref(), lettres.as_ref(), "{text:?}");
            ours.encoding()
        };
        let line = |n: usize| "x".repeat(n);
        let fixed = [
            String::new(),
            "Invoice 7 is due.".into(),
            "\n".into(),
            "\nfirst\n".into(),
            "a\nb\r\nc\rd\n\n\r\n".into(),
            format!("{}\n{}", line(75), line(74)),
            format!("{}\nend", line(76)),
            "a = b \nc\t\nd".into(),
            "Grüße aus Köln, 12,50 €\n".into(),
            "€€€€€€€€€€€€€€€€\n€€€€€".into(),
        ];
        let encodings: Vec<_> = fixed.iter().map(|t| same(t)).collect();
        for wanted in [
            ContentTransferEncoding::SevenBit,
            ContentTransferEncoding::QuotedPrintable,
            ContentTransferEncoding::Base64,
        ] {
            assert!(encodings.contains(&wanted), "{wanted:?} never chosen");
        }
        let mut vars = serde_json::Map::new();
        vars.insert("company".into(), "Acme Rentals".into());
        let templates = super::super::templates::Templates::load(None, &vars).unwrap();
        let ctx = crate::billing::messages::sample_invoice_context(Some(7), None);
        let r = templates
            .render("friendly", super::super::ChannelKind::Email, &ctx)
            .unwrap();
        same(&r.text);
        same(r.html.as_deref().unwrap());
        let alphabet = ['a', ' ', '\t', '=', '.', '\r', '\n', 'é', '€', 'x'];
        let mut rng = fastrand::Rng::with_seed(17);
        for _ in 0..2_000 {
            let len = rng.usize(0..300);
            let text: String = (0..len)
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            same(&text);
        }
        // Long lines: cuts at every column, escapes and spaces on either side of them.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3_000 {
            let len = rng.usize(70..1_500);
            let text: String = (0..len)
                .map(|_| match rng.usize(0..100) {
                    0 => '\n',
                    1 => '\r',
                    2..=5 => ' ',
                    6 => '\t',
                    7 => '=',
                    8 => 'é',
                    _ => 'a',
                })
                .collect();
            seen.insert(same(&text));
        }
        assert!(seen.contains(&ContentTransferEncoding::QuotedPrintable));
        // Every character up to U+00FF, in runs around the 16-byte blocks the plain scan takes,
        // and on both sides of the third of escaped bytes that decides base64.
        for c in (0u8..=255).map(char::from) {
            for run in [1, 15, 16, 17, 31, 33, 80] {
                same(&format!("{}{}{}", "a".repeat(run), c, "b".repeat(90)));
                same(&format!(
                    "{}{}",
                    c.to_string().repeat(run),
                    "a".repeat(2 * run)
                ));
            }
        }
        let mut both = std::collections::HashSet::new();
        for escaped in 0..40 {
            both.insert(same(&format!(
                "{}{}",
                "\u{1}".repeat(escaped),
                "a".repeat(60)
            )));
        }
        assert!(both.contains(&ContentTransferEncoding::Base64), "{both:?}");
        assert!(
            both.contains(&ContentTransferEncoding::QuotedPrintable),
            "{both:?}"
        );
    }

    /// The envelope `Email::message` gives lettre is the one lettre reads back from the
    /// message's From and To, for a bare address (taken the fast way) and for mailboxes with
    /// names (lettre's parser); what is no address is refused, naming it.
    #[test]
    fn the_envelope_is_the_one_lettre_reads_from_the_headers() {
        let c: EmailConfig = toml::from_str("from = \"Acme <billing@acme.example>\"").unwrap();
        let (email, _, _) = Email::build(c, Path::new("var")).unwrap();
        let r = Rendered {
            subject: "Hi".into(),
            text: "Hello".into(),
            html: Some("<p>Hello</p>".into()),
        };
        for to in [
            "ann@example.com",
            "Ann <ann@example.com>",
            "\"Ann B.\" <ann@example.com>",
            " ann@example.com",
        ] {
            let m = email.message(to, "<1@acme.example>", &r, true).unwrap();
            let read = Envelope::try_from(m.headers()).unwrap();
            assert_eq!(m.envelope(), &read, "{to}");
            assert_eq!(
                m.envelope().to(),
                ["ann@example.com".parse().unwrap()],
                "{to}"
            );
        }
        let refused = email
            .message("ann", "<1@acme.example>", &r, true)
            .unwrap_err();
        assert_eq!(
            refused.message,
            "`ann` is not an email address: Invalid input"
        );
    }

    #[test]
    fn bad_sections_are_refused_with_what_to_write() {
        let smtp = "transport = \"smtp\"\nhost = \"mail.example.com\"\n";
        #[rustfmt::skip]
        let table = [
            ("from = \"billing\"".to_string(),
             "`from` `billing` is not an email address (Invalid input); write e.g. \
              `Acme Billing <billing@acme.example>`"),
            ("from = \"a@b.example\"\nreply_to = \"accounts\"".into(),
             "`reply_to` `accounts` is not an email address (Invalid input)"),
            ("from = \"a@b.example\"\npassword_env = \"P\"\npassword_file = \"p\"".into(),
             "set only one of `password_env` and `password_file`, not both"),
            ("from = \"a@b.example\"\ntransport = \"smtp\"".into(),
             "`host` is required with `transport = \"smtp\"`; e.g. `host = \"smtp.example.com\"`"),
            (format!("from = \"a@b.example\"\n{smtp}tls = \"none\"\nusername = \"u\""),
             "`tls = \"none\"` would send the SMTP password to `mail.example.com` in clear text; \
              use `tls = \"starttls\"` or `\"tls\"` (plain text is for a relay on this host)"),
            (format!("from = \"a@b.example\"\n{smtp}password_env = \"P\""),
             "`password_env`/`password_file` needs `username`"),
            ("from = \"a@b.example\"\nhost = \"mail.example.com\"".into(),
             "`host` is set but `transport` is `file`; set `transport = \"smtp\"` to send through \
              it"),
            ("from = \"a@b.example\"\nrate_limit = -1.0".into(),
             "`rate_limit` must be 0 (no limit) or 0.001-100000 messages per second (found -1)"),
            ("from = \"a@b.example\"\nunsubscribe_url = \"https://b.example/unsubscribe\"".into(),
             "`unsubscribe_url` needs `unsubscribe_secret_env` or `unsubscribe_secret_file`: the \
              links are signed with that secret"),
            ("from = \"a@b.example\"\nunsubscribe_secret_env = \"U\"".into(),
             "`unsubscribe_secret_env`/`unsubscribe_secret_file` needs `unsubscribe_url`"),
            ("from = \"a@b.example\"\nunsubscribe_url = \"https://b.example/u\"\n\
              unsubscribe_secret_env = \"U\"\nunsubscribe_secret_file = \"u\"".into(),
             "set only one of `unsubscribe_secret_env` and `unsubscribe_secret_file`, not both"),
            ("from = \"a@b.example\"\nunsubscribe_url = \"http://b.example/u\"\n\
              unsubscribe_secret_env = \"U\"".into(),
             "`unsubscribe_url` `http://b.example/u` is not an https URL (RFC 8058 one-click \
              links must be https, found `http`); write the public address of the listener's \
              `/unsubscribe`, e.g. `https://billing.example.com/unsubscribe`"),
            ("from = \"a@b.example\"\nunsubscribe_url = \"unsubscribe\"\n\
              unsubscribe_secret_env = \"U\"".into(),
             "`unsubscribe_url` `unsubscribe` is not an https URL (relative URL without a base); \
              write the public address of the listener's `/unsubscribe`, e.g. \
              `https://billing.example.com/unsubscribe`"),
        ];
        for (section, message) in table {
            let c: EmailConfig = toml::from_str(&section).unwrap();
            let err = Email::build(c, Path::new("var")).map(|_| ()).unwrap_err();
            assert_eq!(err.to_string(), message, "{section}");
        }
    }

    #[test]
    fn a_message_to_a_person_carries_the_one_click_link_and_an_alert_does_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        let section = format!(
            "from = \"a@b.example\"\nunsubscribe_url = \"https://b.example/unsubscribe/\"\n\
             unsubscribe_secret_file = \"{}\"",
            dir.path().join("secret").display()
        );
        let c: EmailConfig = toml::from_str(&section).unwrap();
        let (email, _, _) = Email::build(c, dir.path()).unwrap();
        let r = Rendered {
            subject: "Hi".into(),
            text: "Hello".into(),
            html: None,
        };
        let head = |to_a_person: bool| {
            let m = email.message("Ann@Example.com", "<1@b.example>", &r, to_a_person);
            let text = String::from_utf8(m.unwrap().formatted()).unwrap();
            text.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ")
        };
        let token = super::super::unsubscribe::token(b"s3cret", "ann@example.com");
        let person = head(true);
        assert!(
            person.contains(&format!(
                "\r\nList-Unsubscribe: <https://b.example/unsubscribe/{token}>\r\n"
            )),
            "{person}"
        );
        assert!(
            person.contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            "{person}"
        );
        assert!(!head(false).contains("List-Unsubscribe"));
    }

    /// What a user reads when a connection cannot be set up, through `connect` as the pool
    /// opens one: a refused port, a plain server under `tls = "tls"`, and a certificate the
    /// public roots do not hold, under implicit TLS and STARTTLS (the test server's, signed by
    /// a test CA).
    #[tokio::test]
    async fn connection_failures_say_what_to_check() {
        super::super::smtp::tests::within(async {
            let open = |port: u16, tls: Tls| async move {
                match connect(
                    "127.0.0.1",
                    port,
                    tls,
                    &None,
                    &None,
                    Duration::from_secs(10),
                )
                .await
                {
                    Ok(_) => panic!("connected to port {port} with {tls:?}"),
                    Err(e) => e.message,
                }
            };
            let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = closed.local_addr().unwrap().port();
            drop(closed);
            let refused = open(port, Tls::None).await;
            assert!(
                refused.starts_with(&format!("SMTP `127.0.0.1:{port}`: Connection refused")),
                "{refused}"
            );

            let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = plain.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (mut tcp, _) = plain.accept().await.unwrap();
                tokio::io::AsyncWriteExt::write_all(&mut tcp, b"220 plain ESMTP\r\n")
                    .await
                    .unwrap();
                let mut rest = vec![];
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut rest).await;
            });
            assert_eq!(
                open(port, Tls::Tls).await,
                format!(
                    "SMTP `127.0.0.1:{port}`: TLS: the server did not answer in TLS (received \
                     corrupt message of type InvalidContentType): port {port} may take \
                     `tls = \"starttls\"` (usual on 587 and 25) rather than `tls = \"tls\"` \
                     (usual on 465)"
                )
            );
            server.await.unwrap();

            // STARTTLS: not offered, refused, or agreed with more behind the `220`, which
            // could have been injected in clear text. Each fails before anything is sent.
            let cases: [(&[u8], &[u8], &str); 3] = [
                (
                    b"250-plain\r\n250 SIZE 100\r\n",
                    b"",
                    "STARTTLS: the server does not offer it (EHLO answered `250-plain / 250 SIZE \
                     100`); tickler sends nothing in clear text: use the provider's STARTTLS port \
                     (usually 587), or `tls = \"tls\"` on its TLS port (usually 465)",
                ),
                (
                    b"250-tls\r\n250 STARTTLS\r\n",
                    b"454 4.7.0 TLS not available\r\n",
                    "STARTTLS: the server answered `454 4.7.0 TLS not available`",
                ),
                (
                    b"250-tls\r\n250 STARTTLS\r\n",
                    b"220 go ahead\r\n250-injected\r\n",
                    "STARTTLS: the server sent more before the TLS handshake; refused, as it \
                     could have been injected in clear text",
                ),
            ];
            for (ehlo, agreed, why) in cases {
                use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let port = listener.local_addr().unwrap().port();
                let server = tokio::spawn(async move {
                    let mut s = tokio::io::BufReader::new(listener.accept().await.unwrap().0);
                    let mut said = String::new();
                    s.get_mut().write_all(b"220 plain ESMTP\r\n").await.unwrap();
                    s.read_line(&mut said).await.unwrap();
                    s.get_mut().write_all(ehlo).await.unwrap();
                    if !agreed.is_empty() {
                        s.read_line(&mut said).await.unwrap();
                        s.get_mut().write_all(agreed).await.unwrap();
                    }
                    while s.read_line(&mut said).await.unwrap_or(0) > 0 {}
                    said
                });
                assert_eq!(
                    open(port, Tls::Starttls).await,
                    format!("SMTP `127.0.0.1:{port}`: {why}")
                );
                let said = server.await.unwrap();
                let verbs: Vec<&str> = said.lines().map(|l| &l[..4]).collect();
                let expected: &[&str] = if agreed.is_empty() {
                    &["EHLO"]
                } else {
                    &["EHLO", "STAR"]
                };
                assert_eq!(verbs, expected, "nothing else was sent");
            }

            // A greeting cut off mid-line, one line too long, and a server that agrees to
            // STARTTLS and then answers in clear text.
            let cases: [(&[u8], String); 3] = [
                (
                    b"220 partial",
                    "greeting: the server closed the connection before it answered".into(),
                ),
                (
                    &[b'2'; 2000],
                    "greeting: an answer line longer than 1024 bytes".into(),
                ),
                (
                    b"220 plain ESMTP\r\n",
                    "TLS: the server did not answer in TLS after agreeing to STARTTLS (received \
                     corrupt message of type InvalidContentType)"
                        .into(),
                ),
            ];
            for (greeting, why) in cases {
                use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let port = listener.local_addr().unwrap().port();
                let server = tokio::spawn(async move {
                    let mut s = tokio::io::BufReader::new(listener.accept().await.unwrap().0);
                    s.get_mut().write_all(greeting).await.unwrap();
                    if greeting.ends_with(b"\n") {
                        let mut line = String::new();
                        s.read_line(&mut line).await.unwrap();
                        s.get_mut()
                            .write_all(b"250-plain\r\n250 STARTTLS\r\n")
                            .await
                            .unwrap();
                        s.read_line(&mut line).await.unwrap();
                        s.get_mut().write_all(b"220 go ahead\r\n").await.unwrap();
                        // The client's handshake is answered in clear text.
                        let mut hello = [0u8; 1];
                        tokio::io::AsyncReadExt::read_exact(&mut s, &mut hello)
                            .await
                            .unwrap();
                        s.get_mut().write_all(b"250 hello\r\n").await.unwrap();
                    }
                    let _ = s.get_mut().shutdown().await;
                    let mut rest = vec![];
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut rest).await;
                });
                assert_eq!(
                    open(port, Tls::Starttls).await,
                    format!("SMTP `127.0.0.1:{port}`: {why}")
                );
                server.await.unwrap();
            }

            for (implicit, tls) in [(true, Tls::Tls), (false, Tls::Starttls)] {
                let (addr, server) = super::super::smtp::tests::tls_server(
                    implicit,
                    super::super::smtp::tests::Offers::Pipelining,
                )
                .await;
                assert_eq!(
                    open(addr.port(), tls).await,
                    format!(
                        "SMTP `127.0.0.1:{}`: TLS: the server's certificate is refused \
                         (UnknownIssuer): it must be valid, for `127.0.0.1`, and signed by a \
                         public CA (tickler trusts the webpki-roots list)",
                        addr.port()
                    ),
                    "{tls:?}"
                );
                // tickler's alert reaches the server, whose log then says why.
                let (said, bodies) = server.await.unwrap();
                let why = "handshake: received fatal alert: UnknownCA";
                assert_eq!((said, bodies), (vec![why.to_string()], vec![]), "{tls:?}");
            }
        })
        .await
    }

    /// An email channel to a plain relay on loopback `port`, one pooled connection, with
    /// `timeout`; and its state directory, to keep while it is used.
    fn to_relay(port: u16, timeout: &str) -> (Email, tempfile::TempDir) {
        let section = format!(
            "from = \"a@b.example\"\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\n\
             port = {port}\ntls = \"none\"\ntimeout = \"{timeout}\"\npool_size = 1"
        );
        let dir = tempfile::tempdir().unwrap();
        let c: EmailConfig = toml::from_str(&section).unwrap();
        let (email, _, _) = Email::build(c, dir.path()).unwrap();
        (email, dir)
    }

    fn invoice_7() -> Rendered {
        Rendered {
            subject: "Invoice 7".into(),
            text: "Invoice 7 is due.".into(),
            html: None,
        }
    }

    /// Each message a test relay stores: its connection's number and its text.
    type Stored = tokio::sync::mpsc::UnboundedReceiver<(usize, String)>;

    /// Test relays on loopback: the `n`th connection is served by
    /// [`relay`](super::super::smtp::tests::relay) in `modes[n]`, offering `offers`. Returns
    /// the port; each message stored, as it is; and a task ending with each connection's
    /// record of what it answered, by number, once all have closed.
    async fn relays(
        modes: Vec<super::super::smtp::tests::Relay>,
        offers: super::super::smtp::tests::Offers,
    ) -> (
        u16,
        Stored,
        tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
        tokio::task::JoinHandle<Vec<Vec<String>>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (got, stored) = tokio::sync::mpsc::unbounded_channel();
        let (ended, each) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            let mut sessions = vec![];
            for (n, mode) in modes.into_iter().enumerate() {
                let (tcp, _) = listener.accept().await.unwrap();
                let (got, ended) = (got.clone(), ended.clone());
                sessions.push(tokio::spawn(async move {
                    let mut s = tokio::io::BufReader::new(tcp);
                    let take = |b| got.send((n, b)).unwrap();
                    let said = super::super::smtp::tests::relay(
                        &mut s,
                        b"220 test\r\n",
                        mode,
                        offers,
                        take,
                    )
                    .await;
                    drop(s);
                    let _ = ended.send(said.clone());
                    said
                }));
            }
            let mut said = vec![];
            for session in sessions {
                said.push(session.await.unwrap());
            }
            said
        });
        (port, stored, each, server)
    }

    /// A pooled connection the relay closed after its `421` (as one timing out an idle
    /// connection does) carries no message: the next one goes on a new connection and is
    /// sent. Before, it went on the closed one: by DATA it failed on the `421` (sent again
    /// only by the next run), in a BDAT chunk it left with MAIL and was recorded `unknown`,
    /// never sent. One command at a time, pipelined, and in chunks.
    #[tokio::test]
    async fn a_pooled_connection_the_relay_closed_carries_nothing() {
        use super::super::smtp::tests::{Offers, Relay, within};
        for offers in [Offers::Nothing, Offers::Pipelining, Offers::Chunking] {
            within(async {
                let modes = vec![Relay::CloseAfterMessage; 2];
                let (port, mut bodies, mut sessions, server) = relays(modes, offers).await;
                let (email, _dir) = to_relay(port, "5s");
                let r = invoice_7();
                email.send("al@example.com", &r, true).await.unwrap();
                // The first session has said `421` and closed before the second message goes.
                let first = sessions.recv().await.unwrap();
                assert_eq!(first.last().map(String::as_str), Some("421"), "{offers:?}");
                email.send("bo@example.com", &r, true).await.unwrap();
                let (n, body) = bodies.recv().await.unwrap();
                assert!(n == 0 && body.contains("To: al@example.com"), "{n} {body}");
                let (n, body) = bodies.recv().await.unwrap();
                assert!(n == 1 && body.contains("To: bo@example.com"), "{n} {body}");
                drop(email);
                server.await.unwrap();
            })
            .await
        }
    }

    /// A relay that never answers MAIL fails the send plainly at the configured timeout (the
    /// body never went: it is sent again later; in BDAT chunks it went with MAIL: ambiguous);
    /// one that takes a whole message and then never answers leaves the send ambiguous (it may
    /// deliver it: recorded `unknown`, never sent again); a refused recipient is a plain
    /// failure, and the connection it broke is not reused: the next message goes on a new one
    /// and is sent. So one command at a time; pipelined, where
    /// the refusal arrives with MAIL's and DATA's answers and the body stays unsent; and in BDAT
    /// chunks, where the body goes with the commands and the relay refuses it after the
    /// refused recipient.
    #[tokio::test]
    async fn a_relay_that_stops_answering_is_ambiguous_and_a_refusal_is_not() {
        use super::super::smtp::tests::{Offers, Relay, within};
        for offers in [Offers::Nothing, Offers::Pipelining, Offers::Chunking] {
            within(async {
                // Each connection in turn: silent, hang after the body, refuse the recipient,
                // or serve; says what each connection answered, and which one each body
                // reached.
                let modes = vec![
                    Relay::Silent,
                    Relay::HangAfterBody,
                    Relay::RefuseRecipient,
                    Relay::Serve,
                ];
                let (port, mut bodies, _, server) = relays(modes, offers).await;
                let (email, _dir) = to_relay(port, "1s");
                let r = invoice_7();

                // No answer to MAIL: cut off before the body, so certainly not sent; in BDAT
                // chunks the body went with MAIL, so it may have been delivered.
                let silent = email.send("al@example.com", &r, true).await.unwrap_err();
                let (why, ambiguous) = match offers {
                    Offers::Chunking => ("timed out after 1s", true),
                    _ => ("timed out after 1s before the message was sent", false),
                };
                assert_eq!(
                    (silent.message.as_str(), silent.ambiguous),
                    (
                        format!("SMTP `127.0.0.1:{port}`: {why}").as_str(),
                        ambiguous
                    )
                );

                let hung = email.send("ann@example.com", &r, true).await.unwrap_err();
                assert_eq!(
                    (hung.message.as_str(), hung.ambiguous),
                    (
                        format!("SMTP `127.0.0.1:{port}`: timed out after 1s").as_str(),
                        true
                    )
                );
                let (n, body) = bodies.recv().await.unwrap();
                assert!(n == 1 && body.contains("Invoice 7 is due."), "{n} {body}");

                let refused = email.send("ben@example.com", &r, true).await.unwrap_err();
                assert!(!refused.ambiguous);
                assert!(
                    refused
                        .message
                        .starts_with(&format!("SMTP `127.0.0.1:{port}`: "))
                        && refused.message.contains("550"),
                    "{}",
                    refused.message
                );

                email.send("cy@example.com", &r, true).await.unwrap();
                let (n, body) = bodies.recv().await.unwrap();
                assert!(n == 3 && body.contains("To: cy@example.com"), "{n} {body}");
                drop(email);
                let said = server.await.unwrap();
                // A refusal is followed by QUIT: the server waits for a command.
                let expected: [&[&str]; 4] = match offers {
                    Offers::Nothing => [
                        &["EHLO", "MAIL (silent)"],
                        &["EHLO", "MAIL", "RCPT", "DATA"],
                        &["EHLO", "MAIL", "RCPT", "QUIT"],
                        &["EHLO", "MAIL", "RCPT", "DATA"],
                    ],
                    Offers::Pipelining => [
                        &["EHLO", "MAIL (silent)"],
                        &["EHLO", "MAIL RCPT DATA"],
                        &["EHLO", "MAIL RCPT DATA", "QUIT"],
                        &["EHLO", "MAIL RCPT DATA"],
                    ],
                    Offers::Chunking => [
                        &["EHLO", "MAIL (silent)"],
                        &["EHLO", "MAIL RCPT BDAT"],
                        &["EHLO", "MAIL RCPT BDAT", "QUIT"],
                        &["EHLO", "MAIL RCPT BDAT"],
                    ],
                };
                assert_eq!(said, expected, "{offers:?}");
                assert!(bodies.try_recv().is_err(), "no other body was sent");
            })
            .await
        }
    }
}
