//! The SMTP connections tickler opens, for lettre to speak SMTP over: plain, implicit TLS or
//! STARTTLS, with `TCP_NODELAY`; what lettre writes leaves when it next reads; a message's
//! MAIL, RCPT and DATA go in one write when the server offers PIPELINING (RFC 2920), and the
//! message with them in one BDAT chunk when it offers CHUNKING too (RFC 3030).
//!
//! - **Held writes** ([`Corked`], the top of every stream, above TLS). lettre writes a
//!   message's body and then its final `.` with a flush after each; with `TCP_NODELAY`, which
//!   its one-line commands need, they would leave as two segments (two TLS records under TLS).
//!   SMTP answers everything a client sends, and lettre reads that answer before it writes
//!   again, so holding its writes until that read sends the same bytes, in the same order, no
//!   later than the server is waited for. What is still held when a stream is dropped (the
//!   rest of a send cut off by its timeout, a body held after the answers went out of step)
//!   is dropped with it.
//! - **Pipelining** ([`Connection::send`]). lettre 0.11 waits for each answer: MAIL, RCPT, DATA
//!   and the body are four round trips a message. When the server's EHLO answer lists
//!   PIPELINING, tickler writes MAIL, RCPT and DATA (formatted by lettre) at once through the
//!   stream's [`Handle`], reads their answers with lettre's parser, and after the `354` sends
//!   the body the same way, dot-stuffed as lettre's `message` would: two round trips. Each
//!   answer must be the one its command expects; a refusal leaves the body unsent and the
//!   connection closed, never reused. tickler drives the commands one at a time too, so it
//!   knows whether a send reached its body.
//! - **Chunking** ([`Connection::chunked`]). When the EHLO answer lists CHUNKING and
//!   PIPELINING (Postfix's does, since 3.4), MAIL, RCPT, `BDAT <size> LAST` and the message
//!   (not dot-stuffed: BDAT counts bytes) go in one write: one round trip a message. The body
//!   has then left before any answer, so only the chunk refused in its place (as it is after
//!   a refused MAIL or recipient) says it was not delivered; a cut-off or an answer out of
//!   step may follow a delivery (invariant 5).
//! - **STARTTLS is tickler's** ([`starttls`]): greeting, EHLO, STARTTLS in clear text, then the
//!   same TLS as implicit TLS (tokio-rustls on ring, the `webpki-roots` lettre trusts); lettre
//!   greets over the TLS stream (reading tickler's own greeting line, not the clear-text one)
//!   and sends its EHLO there. Holding and pipelining then sit above TLS on every connection. Anything the
//!   server sends after agreeing to STARTTLS and before the handshake is refused (RFC 3207's
//!   warning: it could be injected in clear text).
//! - Implicit TLS (port 465) had lettre's own connect leave Nagle on: a message's final `.`
//!   waited for the server's delayed ACK, about 40 ms a message on a loopback test server.

use std::io;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, ready};

use lettre::address::Envelope;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Starttls};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, ClientConfig, pki_types::ServerName};

/// Past this many bytes held, a write first sends what is held, and a larger write goes
/// straight through: a big message is not copied whole.
const HOLD: usize = 64 * 1024;
/// The most of the server's first words (greeting, EHLO answer) kept for [`Handle::heard`].
const HEARD: usize = 16 * 1024;

/// A socket under [`Corked`]: plain TCP or TLS over it.
pub trait Socket: AsyncRead + AsyncWrite + Send + Sync + Unpin + std::fmt::Debug {
    fn peer(&self) -> io::Result<SocketAddr>;
    /// The TCP socket's descriptor (under TLS, the one TLS runs over).
    fn fd(&self) -> RawFd;
}

impl Socket for TcpStream {
    fn peer(&self) -> io::Result<SocketAddr> {
        self.peer_addr()
    }

    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

impl Socket for TlsStream<TcpStream> {
    fn peer(&self) -> io::Result<SocketAddr> {
        self.get_ref().0.peer_addr()
    }

    fn fd(&self) -> RawFd {
        self.get_ref().0.as_raw_fd()
    }
}

/// What tickler shares with a stream lettre owns.
#[derive(Debug)]
struct Side {
    /// Written through the [`Handle`]: joins what is held, and goes at lettre's next read.
    ahead: Vec<u8>,
    /// What the server has said so far, while it is wanted (the greeting and EHLO answer).
    heard: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Shared {
    side: Mutex<Side>,
    /// The stream holds bytes lettre wrote and no read has sent yet.
    holding: AtomicBool,
    /// The TCP socket's descriptor, for [`Handle::spoke_or_closed`]; the stream owns it.
    socket: RawFd,
}

/// tickler's hold on a stream it handed to lettre.
#[derive(Debug, Clone)]
struct Handle(Arc<Shared>);

impl Handle {
    fn side(&self) -> std::sync::MutexGuard<'_, Side> {
        self.0.side.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether lettre or tickler (through [`Handle::ahead`] and [`Handle::body`]) wrote what
    /// has not gone yet: after a send, a sign that lettre read an answer from its buffer rather
    /// than the one to what was written last.
    fn holding(&self) -> bool {
        self.0.holding.load(Ordering::Relaxed) || !self.side().ahead.is_empty()
    }

    /// `bytes` go out at lettre's next read, after what lettre wrote before.
    fn ahead(&self, bytes: &[u8]) {
        self.side().ahead.extend_from_slice(bytes);
    }

    /// `message` as DATA's content, then its end (`\r\n.\r\n`), to go at lettre's next read:
    /// a `.` that starts a line is doubled (RFC 5321 4.5.2), as lettre's `message` does it,
    /// found by a vectorized search (lettre's codec looks at every byte; a twentieth of the
    /// CPU per reminder).
    fn body(&self, message: &[u8]) {
        let mut side = self.side();
        let out = &mut side.ahead;
        out.reserve(message.len() + 8);
        let mut start = 0;
        if message.first() == Some(&b'.') {
            out.push(b'.');
        }
        for at in memchr::memmem::find_iter(message, b"\r\n.") {
            out.extend_from_slice(&message[start..at + 2]);
            out.push(b'.');
            start = at + 2;
        }
        out.extend_from_slice(&message[start..]);
        out.extend_from_slice(b"\r\n.\r\n");
    }

    /// `message` as one BDAT chunk's content (RFC 3030), to go at lettre's next read: as it
    /// is, then `\r\n`, so the relay stores the bytes DATA's [`Handle::body`] gives it.
    fn chunk(&self, message: &[u8]) {
        let mut side = self.side();
        side.ahead.reserve(message.len() + 2);
        side.ahead.extend_from_slice(message);
        side.ahead.extend_from_slice(b"\r\n");
    }

    /// Whether the server closed the connection, or sent something nobody asked for, since
    /// the last answer was read: a byte or the end waits on the socket (looked at with
    /// `MSG_PEEK`, which neither waits nor takes it). A pooled connection a server timed out
    /// is one (its `421` and its FIN wait there); so is any socket error.
    fn spoke_or_closed(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: `socket` is the descriptor of the stream this handle's `Corked` owns, open
        // while the connection is (the handle is only asked through it); the buffer is one
        // byte of this frame.
        let n = unsafe {
            libc::recv(
                self.0.socket,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
    }

    /// What the server said since the stream was made (at most 16 KiB); stops keeping it.
    fn heard(&self) -> Vec<u8> {
        self.side().heard.take().unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct Corked<S> {
    io: S,
    /// Written by lettre and not yet sent; `held[sent..]` is still to go.
    held: Vec<u8>,
    sent: usize,
    /// Read before the socket's own bytes: [`GREETING_AFTER_STARTTLS`] after tickler's
    /// STARTTLS, else nothing.
    unread: &'static [u8],
    side: Handle,
}

impl<S: Socket> Corked<S> {
    pub fn new(io: S, unread: &'static [u8]) -> Corked<S> {
        let socket = io.fd();
        Corked {
            io,
            held: Vec::with_capacity(4096),
            sent: 0,
            unread,
            side: Handle(Arc::new(Shared {
                side: Mutex::new(Side {
                    ahead: vec![],
                    heard: Some(vec![]),
                }),
                holding: AtomicBool::new(false),
                socket,
            })),
        }
    }

    /// Sends what is held, then flushes (TLS writes its records at a flush); `Pending` until
    /// the socket has taken all of it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        self.side.0.holding.store(false, Ordering::Relaxed);
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

impl<S: Socket> AsyncRead for Corked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let hearing = {
            let mut side = this.side.side();
            if !side.ahead.is_empty() {
                this.held.extend_from_slice(&side.ahead);
                side.ahead.clear();
            }
            side.heard.is_some()
        };
        ready!(this.poll_send(cx))?;
        if !this.unread.is_empty() {
            let n = buf.remaining().min(this.unread.len());
            buf.put_slice(&this.unread[..n]);
            this.unread = &this.unread[n..];
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if hearing && let Some(heard) = this.side.side().heard.as_mut() {
            let got = &buf.filled()[before..];
            let room = HEARD.saturating_sub(heard.len()).min(got.len());
            heard.extend_from_slice(&got[..room]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: Socket> AsyncWrite for Corked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// All the slices at once (the default would take the first slice only).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if this.held.len() + len > HOLD {
            ready!(this.poll_send(cx))?;
            if len > HOLD {
                return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            this.held.extend_from_slice(b);
        }
        if len > 0 {
            this.side.0.holding.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Held bytes wait for the next read (see the module).
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<S: Socket> AsyncTokioStream for Corked<S> {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer()
    }
}

/// A TLS client configuration on ring (as lettre's) trusting `roots`.
pub fn client_config(roots: rustls::RootCertStore) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// The configuration trusting the public roots (`webpki-roots`), built once.
pub fn public_roots() -> io::Result<Arc<ClientConfig>> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, rustls::Error>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            client_config(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        })
        .clone()
        .map_err(io::Error::other)
}

/// The TLS handshake with `host` over `tcp`.
pub async fn tls(
    tcp: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_string()).map_err(io::Error::other)?;
    TlsConnector::from(config).connect(name, tcp).await
}

/// What lettre reads as the greeting over TLS after [`starttls`]: what the server said in clear
/// text is not handed on (RFC 3207: the client discards what it learnt before TLS).
pub const GREETING_AFTER_STARTTLS: &[u8] = b"220 TLS established by tickler\r\n";

/// The clear-text part of STARTTLS on a fresh connection: the greeting, EHLO, STARTTLS and its
/// `220`. Errors name the step and say what the server answered.
pub async fn starttls(tcp: &mut TcpStream, hello: &ClientId) -> io::Result<()> {
    let mut r = tokio::io::BufReader::new(tcp);
    let mut said = vec![];
    if reply(&mut r, "greeting", &mut said).await? != 220 {
        return Err(answered("greeting", &said));
    }
    let ehlo = Ehlo::new(hello.clone()).to_string();
    r.get_mut().write_all(ehlo.as_bytes()).await?;
    said.clear();
    if reply(&mut r, "EHLO", &mut said).await? != 250 {
        return Err(answered("EHLO", &said));
    }
    if !offers(&said, "STARTTLS") {
        return Err(io::Error::other(format!(
            "STARTTLS: the server does not offer it (EHLO answered `{}`); tickler sends nothing \
             in clear text: use the provider's STARTTLS port (usually 587), or `tls = \"tls\"` \
             on its TLS port (usually 465)",
            text(&said)
        )));
    }
    r.get_mut()
        .write_all(Starttls.to_string().as_bytes())
        .await?;
    said.clear();
    if reply(&mut r, "STARTTLS", &mut said).await? != 220 {
        return Err(answered("STARTTLS", &said));
    }
    if !r.buffer().is_empty() {
        return Err(io::Error::other(
            "STARTTLS: the server sent more before the TLS handshake; refused, as it could have \
             been injected in clear text",
        ));
    }
    Ok(())
}

fn answered(what: &str, said: &[u8]) -> io::Error {
    io::Error::other(format!("{what}: the server answered `{}`", text(said)))
}

/// A server's answer as one line of text.
fn text(said: &[u8]) -> String {
    String::from_utf8_lossy(said)
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The longest answer line read, well above SMTP's 512.
const LINE: u64 = 1024;

/// Reads one answer to `step` (its lines appended to `said`) and returns its code: three digits,
/// the same on every line.
async fn reply(
    r: &mut tokio::io::BufReader<&mut TcpStream>,
    step: &str,
    said: &mut Vec<u8>,
) -> io::Result<u16> {
    let mut first = None;
    loop {
        let start = said.len();
        let n = (&mut *r).take(LINE).read_until(b'\n', said).await?;
        let line = &said[start..];
        if !line.ends_with(b"\n") {
            return Err(if n as u64 == LINE {
                io::Error::other(format!("{step}: an answer line longer than {LINE} bytes"))
            } else {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{step}: the server closed the connection before it answered"),
                )
            });
        }
        if said.len() > HEARD {
            return Err(io::Error::other(format!(
                "{step}: an answer longer than {HEARD} bytes"
            )));
        }
        let code = match line {
            [a, b, c, rest @ ..]
                if [a, b, c].iter().all(|d| d.is_ascii_digit())
                    && matches!(rest.first(), Some(b' ' | b'-' | b'\r' | b'\n')) =>
            {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(answered(&format!("{step}: not SMTP"), line)),
        };
        if *first.get_or_insert(code) != code {
            return Err(answered(&format!("{step}: codes differ"), &said[..]));
        }
        if line[3] != b'-' {
            return Ok(code);
        }
    }
}

/// Whether an EHLO answer (or a transcript holding one) lists `keyword`: its `250` lines after
/// the first, by their first word.
fn offers(said: &[u8], keyword: &str) -> bool {
    String::from_utf8_lossy(said)
        .split("\r\n")
        .filter(|l| l.starts_with("250"))
        .skip(1)
        .filter_map(|l| l.get(4..)?.split_whitespace().next())
        .any(|k| k.eq_ignore_ascii_case(keyword))
}

/// A send that failed.
#[derive(Debug, PartialEq)]
pub struct Failed {
    pub message: String,
    /// The body was on its way when it failed: the message may have been delivered.
    pub maybe_sent: bool,
}

impl Failed {
    fn before_body(message: impl Into<String>) -> Failed {
        Failed {
            message: message.into(),
            maybe_sent: false,
        }
    }
}

/// The most a pipelined group may hold: RFC 2920 asks a client that writes a whole group before
/// reading to keep it within the TCP window.
const GROUP: usize = 4096;

/// How the server answered one command of a transaction.
enum Answer {
    /// With a code the command expects.
    Expected,
    /// With a refusal (a `4xx` or `5xx`): the server knows where it is.
    Refused(String),
    /// With a code the command does not expect, or not readably: the answers cannot be trusted.
    OutOfStep(String),
}

/// Judges `answer` to the `n`th of `commands` (each a line): MAIL expects `250`, RCPT `250` or
/// `251`, the last command `last` (DATA `354`, BDAT `250`). The failures name the command.
fn judge(
    commands: &[String],
    n: usize,
    last: u16,
    answer: Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
) -> Answer {
    let last = [last];
    let expected: &[u16] = match n {
        0 => &[250],
        _ if n == commands.len() - 1 => &last,
        _ => &[250, 251],
    };
    let verb = &commands[n][..4];
    match answer {
        Ok(a) if expected.iter().any(|c| a.has_code(*c)) => Answer::Expected,
        Ok(a) => {
            let said = a.message().collect::<Vec<_>>().join(" / ");
            Answer::OutOfStep(format!(
                "{verb}: the server answered `{} {said}` where {} was expected",
                a.code(),
                expected
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
        }
        Err(e) if e.status().is_some() => Answer::Refused(format!("{verb}: {e}")),
        Err(e) => Answer::OutOfStep(format!("{verb}: {e}")),
    }
}

/// Why a send failed whose answers lettre read from its buffer, not the socket: nothing went.
const OUT_OF_STEP: &str =
    "the server's answers are out of step with tickler's commands; the message was not sent";

/// One SMTP connection: lettre's, over a stream tickler made, with what tickler knows of it.
pub struct Connection {
    pub conn: AsyncSmtpConnection,
    side: Handle,
    pipelining: bool,
    /// The server offers CHUNKING (RFC 3030) and PIPELINING: a message goes as one BDAT chunk
    /// in the write of its MAIL and RCPT.
    chunking: bool,
    /// A send failed or went out of step: the connection is not reused.
    broken: bool,
    /// The last send reached its body: a timeout from here on may have delivered it.
    body: bool,
}

impl Connection {
    /// lettre's greeting and EHLO over `stream`; learns whether the server pipelines.
    pub async fn greet<S: Socket + 'static>(
        stream: Corked<S>,
        hello: &ClientId,
    ) -> Result<Connection, lettre::transport::smtp::Error> {
        let side = stream.side.clone();
        let conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), hello).await?;
        let heard = side.heard();
        let pipelining = offers(&heard, "PIPELINING");
        let chunking = pipelining && offers(&heard, "CHUNKING");
        Ok(Connection {
            conn,
            side,
            pipelining,
            chunking,
            broken: false,
            body: false,
        })
    }

    #[cfg(test)]
    pub fn pipelines(&self) -> bool {
        self.pipelining
    }

    #[cfg(test)]
    pub fn chunks(&self) -> bool {
        self.chunking
    }

    /// Whether the connection may carry another message: no send on it failed (an answer out
    /// of step, a body still held, and lettre's own `abort` are all failed sends).
    pub fn reusable(&self) -> bool {
        !self.broken
    }

    /// Whether the server, since its last answer, closed the connection or said something
    /// (a `421` before closing an idle one): such a connection must not carry a message. With
    /// CHUNKING the message would leave with MAIL and be taken for maybe delivered when MAIL's
    /// answer turned out to be that `421`; by DATA it would fail. Either way it was not sent.
    pub fn spoke_or_closed(&self) -> bool {
        self.side.spoke_or_closed()
    }

    /// Whether the last send had reached its body: if it was cut off, it may have delivered it.
    pub fn reached_body(&self) -> bool {
        self.body
    }

    /// Sends one message: MAIL, RCPT and DATA (formatted by lettre) in one write when the server
    /// pipelines, else one at a time; each answer must be the one its command expects (`250`,
    /// `250`/`251`, `354`), then the body goes ([`Handle::body`]). A refusal before the body
    /// sends QUIT when the server is known to wait for a command, and leaves the connection
    /// broken. When the server offers CHUNKING too, the body goes in the same write as
    /// `BDAT <size> LAST` ([`Handle::chunk`]): one round trip ([`Connection::chunked`]).
    pub async fn send(&mut self, envelope: &Envelope, message: &[u8]) -> Result<(), Failed> {
        self.body = false;
        // Refused before anything is written: the connection stays as it was.
        let parameters = self.parameters(envelope, message)?;
        let result = self.transact(envelope, message, parameters).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// MAIL's parameters, as lettre's `send` gives them, with its checks and its words.
    fn parameters(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Vec<MailParameter>, Failed> {
        let info = self.conn.server_info();
        let mut parameters = vec![];
        let mut addresses = envelope.from().into_iter().chain(envelope.to());
        if addresses.any(|a| !AsRef::<str>::as_ref(a).is_ascii()) {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Err(Failed::before_body(
                    "Envelope contains non-ascii chars but server does not support SMTPUTF8",
                ));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            if !info.supports_feature(Extension::EightBitMime) {
                return Err(Failed::before_body(
                    "Message contains non-ascii chars but server does not support 8BITMIME",
                ));
            }
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        Ok(parameters)
    }

    async fn transact(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        parameters: Vec<MailParameter>,
    ) -> Result<(), Failed> {
        let mut commands = vec![Mail::new(envelope.from().cloned(), parameters).to_string()];
        for to in envelope.to() {
            commands.push(Rcpt::new(to.clone(), vec![]).to_string());
        }
        commands.push(Data.to_string());
        let group: usize = commands.iter().map(String::len).sum();
        let pipelined = self.pipelining && group <= GROUP;
        if pipelined && self.chunking {
            return self.chunked(commands, message).await;
        }
        if pipelined {
            self.side.ahead(commands.concat().as_bytes());
        }
        // Every answer of a pipelined group is read; one at a time, the first refusal ends it.
        // QUIT follows a refusal only when the server is known to wait for a command: the last
        // answer read refused, and none was out of place or unreadable.
        let mut refused = None;
        let (mut last_refused, mut out_of_step) = (false, false);
        for (n, command) in commands.iter().enumerate() {
            if !pipelined && refused.is_some() {
                break;
            }
            let answer = if pipelined {
                self.conn.read_response().await
            } else {
                self.conn.command(command).await
            };
            last_refused = false;
            match judge(&commands, n, 354, answer) {
                Answer::Expected => {}
                Answer::Refused(why) => {
                    last_refused = true;
                    refused.get_or_insert(why);
                }
                Answer::OutOfStep(why) => {
                    out_of_step = true;
                    refused.get_or_insert(why);
                }
            }
        }
        if let Some(why) = refused {
            if last_refused && !out_of_step {
                self.conn.abort().await;
            }
            return Err(Failed::before_body(why));
        }
        self.body = true;
        self.side.body(message);
        let sent = self.conn.read_response().await;
        if self.side.holding() {
            // lettre took an answer from its buffer, not the body's: out of step, and the body
            // is still held or ahead (it goes nowhere: the connection is dropped).
            return Err(Failed::before_body(OUT_OF_STEP));
        }
        sent.map(drop).map_err(|e| Failed {
            // A refusal of the body is an answer; anything else may have come after delivery.
            maybe_sent: e.status().is_none(),
            message: e.to_string(),
        })
    }

    /// One message in one round trip (RFC 3030 with RFC 2920): MAIL, RCPT, `BDAT <size> LAST`
    /// and the message in one write, then their answers, each of which must be the one its
    /// command expects (`250`, `250`/`251`, `250`). The body left with the commands, so a
    /// failure is taken for a message not delivered only when the server, answering each
    /// command in its place, refused the chunk (RFC 3030 has it read and refuse the chunk of
    /// a transaction whose MAIL or every RCPT it refused); a chunk it took (one recipient of
    /// two refused) or an answer out of step, unreadable or missing may follow a delivery
    /// (`maybe_sent`, invariant 5). QUIT follows a refusal when every answer was read in its
    /// place: the server then waits for a command. The QUIT is no part of the message: if the
    /// caller's timeout cuts it off, the answers already read say whether the body went.
    async fn chunked(&mut self, mut commands: Vec<String>, message: &[u8]) -> Result<(), Failed> {
        let last = commands.len() - 1;
        commands[last] = format!("BDAT {} LAST\r\n", message.len() + 2);
        self.side.ahead(commands.concat().as_bytes());
        self.side.chunk(message);
        self.body = true;
        let (mut refused, mut out_of_step) = (None, false);
        let mut chunk = false;
        for n in 0..commands.len() {
            let answer = self.conn.read_response().await;
            if n == 0 && self.side.holding() {
                // lettre took MAIL's answer from its buffer, from before anything was written
                // (every answer is `250`, so no code would show it): nothing went.
                return Err(Failed::before_body(OUT_OF_STEP));
            }
            match judge(&commands, n, 250, answer) {
                Answer::Expected => chunk = n == last,
                Answer::Refused(why) => {
                    refused.get_or_insert(why);
                }
                Answer::OutOfStep(why) => {
                    out_of_step = true;
                    refused.get_or_insert(why);
                }
            }
            if out_of_step {
                break;
            }
        }
        match refused {
            None => Ok(()),
            Some(why) => {
                let maybe_sent = out_of_step || chunk;
                self.body = maybe_sent;
                if !out_of_step {
                    self.conn.abort().await;
                }
                Err(Failed {
                    message: why,
                    maybe_sent,
                })
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Each test's exchange, bounded: a stream that stops sending fails its test, not the run.
    pub(in crate::notify) async fn within<T>(exchange: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(60), exchange)
            .await
            .expect("the exchange did not end within 60 s")
    }

    /// The body as DATA carries it: a `.` at the start of a line (after `\r\n`, or first) is
    /// doubled, nowhere else (not after a bare `\n` or `\r`), then `\r\n.\r\n`; checked
    /// against a byte-by-byte reading of that rule on fixed and random texts.
    #[test]
    fn a_body_has_its_line_leading_dots_doubled() {
        fn by_bytes(m: &[u8]) -> Vec<u8> {
            let mut out = vec![];
            for (i, &b) in m.iter().enumerate() {
                if b == b'.' && (i == 0 || (i >= 2 && &m[i - 2..i] == b"\r\n")) {
                    out.push(b'.');
                }
                out.push(b);
            }
            out.extend_from_slice(b"\r\n.\r\n");
            out
        }
        let body = |m: &[u8]| {
            let handle = Handle(Arc::new(Shared {
                side: Mutex::new(Side {
                    ahead: vec![],
                    heard: None,
                }),
                holding: AtomicBool::new(false),
                socket: -1,
            }));
            handle.body(m);
            assert!(handle.holding(), "the body waits for the next read");
            handle.side().ahead.clone()
        };
        assert_eq!(
            body(BODY),
            b"Subject: due\r\n\r\nInvoice 7 is due.\r\n..dot\r\n\r\n.\r\n"
        );
        assert_eq!(
            body(b".a\r\n.\r\n..\n.b\r.c\r\r\n."),
            b"..a\r\n..\r\n...\n.b\r.c\r\r\n..\r\n.\r\n"
        );
        assert_eq!(body(b""), b"\r\n.\r\n");
        let mut rng = fastrand::Rng::with_seed(17);
        for _ in 0..2000 {
            let m: Vec<u8> = (0..rng.usize(0..40))
                .map(|_| *rng.choice(b"\r\n.a").unwrap())
                .collect();
            assert_eq!(body(&m), by_bytes(&m), "{:?}", String::from_utf8_lossy(&m));
        }
    }

    /// Two flushed writes are held, then reach the peer together when the writer reads, and
    /// the peer's answer is read; a write past the limit sends what is held first, in order.
    #[tokio::test]
    async fn writes_leave_together_at_the_next_read_and_in_order() {
        within(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tcp, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
            let mut client = Corked::new(tcp.unwrap(), b"");
            let (mut server, _) = accepted.unwrap();

            client.write_all(b"body\r\n").await.unwrap();
            client.flush().await.unwrap();
            client.write_all(b".\r\n").await.unwrap();
            client.flush().await.unwrap();
            assert_eq!(client.held, b"body\r\n.\r\n", "flushed writes are held");
            let mut first = [0u8; 1];
            let early = server.try_read(&mut first);
            assert!(
                matches!(&early, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
                "nothing was sent before the writer reads: {early:?}"
            );

            let answer = async {
                let mut got = vec![0u8; 9];
                server.read_exact(&mut got).await.unwrap();
                server.write_all(b"250 ok\r\n").await.unwrap();
                got
            };
            let mut reply = vec![0u8; 8];
            let (got, read) = tokio::join!(answer, client.read_exact(&mut reply));
            read.unwrap();
            assert_eq!(got, b"body\r\n.\r\n");
            assert_eq!(reply, b"250 ok\r\n");
            assert!(client.held.is_empty());

            // Past HOLD: the small write held before goes out first, the big one after it (what
            // the socket does not take at once may be held, and goes at the read).
            let big = vec![b'x'; HOLD + 1];
            client.write_all(b"MAIL\r\n").await.unwrap();
            let answer = async {
                let mut got = vec![0u8; 6 + big.len()];
                server.read_exact(&mut got).await.unwrap();
                server.write_all(b"250 ok\r\n").await.unwrap();
                got
            };
            let exchange = async {
                client.write_all(&big).await.unwrap();
                client.read_exact(&mut reply).await.unwrap();
            };
            let (got, ()) = tokio::join!(answer, exchange);
            assert_eq!(&got[..6], b"MAIL\r\n");
            assert!(got[6..] == big[..]);
            assert!(client.held.is_empty());
        })
        .await
    }

    /// A held message larger than the socket takes at once (buffers of 4 KiB each way) goes
    /// out whole and in order at the read, which then gets the answer; a shutdown sends what a
    /// later write left held.
    #[tokio::test]
    async fn a_held_message_the_socket_cannot_take_at_once_goes_whole_at_the_read() {
        within(async {
            let listening = tokio::net::TcpSocket::new_v4().unwrap();
            listening.set_recv_buffer_size(4096).unwrap();
            listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let listener = listening.listen(1).unwrap();
            let client = tokio::net::TcpSocket::new_v4().unwrap();
            client.set_send_buffer_size(4096).unwrap();
            let (tcp, accepted) = tokio::join!(
                client.connect(listener.local_addr().unwrap()),
                listener.accept()
            );
            let mut client = Corked::new(tcp.unwrap(), b"");
            let (mut server, _) = accepted.unwrap();

            let body: Vec<u8> = (0..60_000u32).map(|i| b'a' + (i % 26) as u8).collect();
            client.write_all(&body).await.unwrap();
            client.write_all(b"\r\n.\r\n").await.unwrap();
            let answer = async {
                let mut got = vec![0u8; body.len() + 5];
                server.read_exact(&mut got).await.unwrap();
                server.write_all(b"250 queued\r\n").await.unwrap();
                got
            };
            let mut reply = [0u8; 12];
            let (got, read) = tokio::join!(answer, client.read_exact(&mut reply));
            read.unwrap();
            assert!(got[..body.len()] == body[..] && &got[body.len()..] == b"\r\n.\r\n");
            assert_eq!(&reply, b"250 queued\r\n");

            client.write_all(b"QUIT\r\n").await.unwrap();
            client.shutdown().await.unwrap();
            let mut rest = vec![];
            server.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"QUIT\r\n");
        })
        .await
    }

    /// How [`relay`] treats a transaction.
    #[derive(Clone, Copy, PartialEq)]
    pub(in crate::notify) enum Relay {
        Serve,
        RefuseRecipient,
        /// Takes the body, then says nothing until the client goes.
        HangAfterBody,
        /// Answers EHLO, then nothing: what it reads next is recorded as `"VERB (silent)"`.
        Silent,
        /// Serves one message, then says `421` and closes, as a relay timing out an idle
        /// connection does (recorded as `"421"`).
        CloseAfterMessage,
        /// Serves, each write of answers this long after what it answers was read: a relay
        /// one round trip of this length away.
        Distant(std::time::Duration),
    }

    impl Relay {
        async fn away(self) {
            if let Relay::Distant(rtt) = self {
                tokio::time::sleep(rtt).await;
            }
        }
    }

    /// What a test relay's EHLO answer lists.
    #[derive(Clone, Copy, PartialEq, Debug)]
    pub(in crate::notify) enum Offers {
        Nothing,
        Pipelining,
        /// PIPELINING and CHUNKING (RFC 3030's BDAT).
        Chunking,
    }

    /// A test relay's side of SMTP on `s`: sends `greeting` (none after STARTTLS), then answers
    /// each command until QUIT or the client goes, handing each message as it stores it to
    /// `take` (DATA's lines without the final `.`, a leading dot undoubled; a BDAT chunk as it
    /// came). Its EHLO answer lists what `offers` says. Like Postfix, it writes its answers
    /// when nothing more waits to be read, and a DATA or BDAT with no recipient accepted is
    /// refused (a BDAT after its chunk was read). Returns the verbs it answered, those
    /// answered in one write together (`"MAIL RCPT DATA"` when they were pipelined).
    pub(in crate::notify) async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut tokio::io::BufReader<S>,
        greeting: &[u8],
        mode: Relay,
        offers: Offers,
        mut take: impl FnMut(String),
    ) -> Vec<String> {
        use tokio::io::AsyncBufReadExt;
        s.get_mut().write_all(greeting).await.unwrap();
        let (mut said, mut group, mut out) = (vec![], vec![], vec![]);
        let mut recipient = false;
        let mut line = String::new();
        while s.read_line(&mut line).await.unwrap_or(0) > 0 {
            let verb = line.split(' ').next().unwrap_or("").trim_end().to_string();
            if mode == Relay::Silent && verb != "EHLO" {
                said.push(format!("{verb} (silent)"));
                while s.read_line(&mut line).await.unwrap_or(0) > 0 {}
                break;
            }
            let mut chunk = None;
            if verb == "BDAT" {
                let size: usize = line.split(' ').nth(1).unwrap().trim().parse().unwrap();
                assert!(line.trim_end().ends_with(" LAST"), "{line:?}");
                let mut content = vec![0; size];
                s.read_exact(&mut content).await.unwrap();
                chunk = Some(String::from_utf8(content).unwrap());
            }
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => match offers {
                    Offers::Nothing => b"250 ok\r\n",
                    Offers::Pipelining => b"250-ok\r\n250 PIPELINING\r\n",
                    Offers::Chunking => b"250-ok\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
                },
                "MAIL" => b"250 ok\r\n",
                "RCPT" if mode == Relay::RefuseRecipient => b"550 no such user\r\n",
                "RCPT" => b"250 ok\r\n",
                "DATA" | "BDAT" if !recipient => b"554 no valid recipients\r\n",
                "DATA" => b"354 go on\r\n",
                "BDAT" => b"250 queued\r\n",
                "QUIT" => b"221 bye\r\n",
                other => panic!("unexpected {other:?}"),
            };
            recipient = match verb.as_str() {
                "RCPT" => recipient || reply.starts_with(b"250"),
                "MAIL" | "DATA" | "BDAT" => false,
                _ => recipient,
            };
            let body = reply.starts_with(b"354");
            let stored = reply.starts_with(b"250") && chunk.is_some();
            if stored {
                take(chunk.unwrap());
                if mode == Relay::HangAfterBody {
                    group.push(verb);
                    said.push(group.join(" "));
                    let _ = s.read_line(&mut String::new()).await;
                    break;
                }
            }
            out.extend_from_slice(reply);
            group.push(verb.clone());
            if body || s.buffer().is_empty() {
                mode.away().await;
                s.get_mut().write_all(&out).await.unwrap();
                out.clear();
                said.push(group.join(" "));
                group.clear();
            }
            if verb == "QUIT" {
                break;
            }
            if body {
                let mut body = String::new();
                loop {
                    line.clear();
                    s.read_line(&mut line).await.unwrap();
                    if line == ".\r\n" {
                        break;
                    }
                    body.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                take(body);
                if mode == Relay::HangAfterBody {
                    let _ = s.read_line(&mut String::new()).await;
                    break;
                }
                mode.away().await;
                s.get_mut().write_all(b"250 queued\r\n").await.unwrap();
            }
            // A message stored, by DATA or in a chunk.
            if (body || stored) && mode == Relay::CloseAfterMessage {
                s.get_mut().write_all(CLOSING).await.unwrap();
                said.push("421".into());
                break;
            }
            line.clear();
        }
        said
    }

    /// What [`Relay::CloseAfterMessage`] says before it closes.
    const CLOSING: &[u8] = b"421 4.4.2 test closing an idle connection\r\n";

    /// A test SMTP server on loopback: greets over TLS at once (`implicit`) or after
    /// STARTTLS, answers every command (offering over TLS what `offers` says), and returns
    /// the commands and the bodies it got. Its `localhost` certificate is signed by a test CA
    /// (`testdata/`, made with `openssl`, valid until 2126; the key is a test fixture, nothing
    /// else trusts it).
    pub(in crate::notify) async fn tls_server(
        implicit: bool,
        offers: Offers,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<(Vec<String>, Vec<String>)>,
    ) {
        use tokio::io::{AsyncBufReadExt, BufReader};
        use tokio_rustls::rustls::ServerConfig;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

        async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
            s: &mut BufReader<S>,
            says: &[u8],
        ) -> String {
            s.get_mut().write_all(says).await.unwrap();
            let mut line = String::new();
            s.read_line(&mut line).await.unwrap();
            line
        }
        let certs = CertificateDer::pem_slice_iter(include_bytes!("testdata/localhost.pem"))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/localhost.key")).unwrap();
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let tcp = listener.accept().await.unwrap().0;
            let mut said = vec![];
            let tls = if implicit {
                acceptor.accept(tcp).await
            } else {
                let mut plain = BufReader::new(tcp);
                let ehlo = answer(&mut plain, b"220 test ESMTP\r\n").await;
                let starttls = answer(&mut plain, b"250-test\r\n250 STARTTLS\r\n").await;
                said.extend([ehlo[..4].to_string(), starttls.trim_end().to_string()]);
                plain
                    .get_mut()
                    .write_all(b"220 go ahead\r\n")
                    .await
                    .unwrap();
                acceptor.accept(plain.into_inner()).await
            };
            // A client that refuses the certificate ends here: `said` holds why.
            let tls = match tls {
                Ok(tls) => tls,
                Err(e) => return (vec![format!("handshake: {e}")], vec![]),
            };
            let mut bodies = vec![];
            let greeting: &[u8] = if implicit { b"220 test ESMTP\r\n" } else { b"" };
            let mut s = BufReader::new(tls);
            said.extend(relay(&mut s, greeting, Relay::Serve, offers, |b| bodies.push(b)).await);
            (said, bodies)
        });
        (addr, server)
    }

    fn test_ca() -> lettre::transport::smtp::client::Certificate {
        lettre::transport::smtp::client::Certificate::from_pem(include_bytes!("testdata/ca.pem"))
            .unwrap()
    }

    fn envelope() -> lettre::address::Envelope {
        lettre::address::Envelope::new(
            Some("billing@example.com".parse().unwrap()),
            vec!["ana@example.com".parse().unwrap()],
        )
        .unwrap()
    }

    /// `envelope()`'s, with a second recipient.
    fn two_recipients() -> lettre::address::Envelope {
        lettre::address::Envelope::new(
            Some("billing@example.com".parse().unwrap()),
            vec![
                "ana@example.com".parse().unwrap(),
                "bo@example.com".parse().unwrap(),
            ],
        )
        .unwrap()
    }

    const BODY: &[u8] = b"Subject: due\r\n\r\nInvoice 7 is due.\r\n.dot\r\n";
    /// As the server reads it: the leading dot doubled, and lettre's `\r\n.\r\n` after it.
    const RECEIVED: &str = "Subject: due\r\n\r\nInvoice 7 is due.\r\n..dot\r\n\r\n";
    /// As a relay stores it, by DATA (the dot undoubled) or by BDAT alike: `BODY`, then `\r\n`.
    const DELIVERED: &str = "Subject: due\r\n\r\nInvoice 7 is due.\r\n.dot\r\n\r\n";

    /// The test CA as roots.
    fn test_roots() -> Arc<ClientConfig> {
        use tokio_rustls::rustls::pki_types::CertificateDer;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(include_bytes!("testdata/ca.pem")).unwrap();
        roots.add(ca).unwrap();
        client_config(roots).unwrap()
    }

    /// tickler's STARTTLS, then lettre over the TLS stream: it reads the greeting tickler hands
    /// it, sends its EHLO over TLS, and a message goes pipelined, its MAIL, RCPT and DATA in
    /// one write; dot-stuffed as lettre does.
    #[tokio::test]
    async fn starttls_then_a_pipelined_message() {
        for offers in [Offers::Pipelining, Offers::Chunking] {
            starttls_then_a_message(offers).await;
        }
    }

    /// STARTTLS, then a message pipelined, or in a BDAT chunk when the server offers CHUNKING.
    async fn starttls_then_a_message(offers: Offers) {
        within(async {
            let (addr, server) = tls_server(false, offers).await;
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let hello = ClientId::Domain("client.test".into());
            starttls(&mut tcp, &hello).await.unwrap();
            let stream = tls(tcp, "localhost", test_roots()).await.unwrap();
            let stream = Corked::new(stream, GREETING_AFTER_STARTTLS);
            let mut conn = Connection::greet(stream, &hello).await.unwrap();
            assert!(conn.pipelines());
            // Refused before anything is written, as lettre's own `send` refuses it.
            let eight_bit = conn.send(&envelope(), "Grüße\r\n".as_bytes()).await;
            assert_eq!(
                eight_bit.unwrap_err(),
                Failed::before_body(
                    "Message contains non-ascii chars but server does not support 8BITMIME"
                )
            );
            assert!(conn.reusable());
            conn.send(&envelope(), BODY).await.unwrap();
            assert!(conn.reusable());
            conn.conn.quit().await.unwrap();
            let (said, bodies) = server.await.unwrap();
            let transaction = match offers {
                Offers::Chunking => "MAIL RCPT BDAT",
                _ => "MAIL RCPT DATA",
            };
            assert_eq!(said, ["EHLO", "STARTTLS", "EHLO", transaction, "QUIT"]);
            assert_eq!(bodies, [DELIVERED]);
        })
        .await
    }

    /// Implicit TLS carries pipelined messages to a server whose certificate the given roots
    /// trust, and a certificate they do not trust is refused. The time 20 messages take this
    /// way and over lettre's own implicit-TLS connect is printed (`-- --nocapture`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn implicit_tls_carries_messages_and_checks_the_certificate() {
        within(async {
            use lettre::transport::smtp::client::TlsParameters;

            let hello = ClientId::Domain("client.test".into());
            let (addr, server) = tls_server(true, Offers::Pipelining).await;
            let tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let stream = tls(tcp, "localhost", test_roots()).await.unwrap();
            let stream = Corked::new(stream, b"");
            let mut conn = Connection::greet(stream, &hello).await.unwrap();
            let start = std::time::Instant::now();
            for _ in 0..20 {
                conn.send(&envelope(), BODY).await.unwrap();
            }
            let ours = start.elapsed();
            conn.conn.quit().await.unwrap();
            let (said, bodies) = server.await.unwrap();
            let mut expected = vec!["EHLO"];
            expected.extend(["MAIL RCPT DATA"; 20]);
            expected.push("QUIT");
            assert_eq!(said, expected);
            assert_eq!(bodies, vec![DELIVERED; 20]);

            // lettre's own connect, as tickler used it for implicit TLS before stop 29.
            let (addr, server) = tls_server(true, Offers::Pipelining).await;
            let params = TlsParameters::builder("localhost".into())
                .add_root_certificate(test_ca())
                .build()
                .unwrap();
            let mut conn = AsyncSmtpConnection::connect_tokio1(
                ("localhost", addr.port()),
                None,
                &hello,
                Some(params),
                None,
            )
            .await
            .unwrap();
            let start = std::time::Instant::now();
            for _ in 0..20 {
                conn.send(&envelope(), BODY).await.unwrap();
            }
            let lettre = start.elapsed();
            conn.quit().await.unwrap();
            let (said, bodies) = server.await.unwrap();
            assert_eq!((said.len(), bodies.len()), (2 + 20 * 3, 20));
            eprintln!(
                "20 messages over implicit TLS: {ours:?} on tickler's connection, {lettre:?} by \
                 lettre's own connect"
            );

            // The shipped roots do not hold the test CA: its certificate is refused.
            let (addr, server) = tls_server(true, Offers::Pipelining).await;
            let tcp = TcpStream::connect(addr).await.unwrap();
            let refused = tls(tcp, "localhost", public_roots().unwrap())
                .await
                .unwrap_err();
            assert!(
                refused.to_string().contains("invalid peer certificate"),
                "{refused}"
            );
            server.abort();
        })
        .await
    }

    /// Pipelined, a message takes two round trips instead of four, and one with CHUNKING: to
    /// a relay 20 ms away, 10 messages on one connection take about 0.8 s one command at a
    /// time, 0.4 s pipelined, 0.2 s in BDAT chunks. Every way delivers every message, the same
    /// bytes; the relay's record shows the round trips. The times are printed
    /// (`-- --nocapture`), not asserted.
    #[tokio::test]
    async fn pipelining_halves_the_round_trips_to_a_distant_relay_and_chunking_halves_them_again() {
        within(async {
            let rtt = std::time::Duration::from_millis(20);
            let hello = ClientId::Domain("client.test".into());
            let mut took = vec![];
            for offers in [Offers::Nothing, Offers::Pipelining, Offers::Chunking] {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let server = tokio::spawn(async move {
                    let tcp = listener.accept().await.unwrap().0;
                    let mut s = tokio::io::BufReader::new(tcp);
                    let mut bodies = vec![];
                    let greeting = b"220 test ESMTP\r\n";
                    let mode = Relay::Distant(rtt);
                    let said = relay(&mut s, greeting, mode, offers, |b| bodies.push(b)).await;
                    (said, bodies)
                });
                let tcp = TcpStream::connect(addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let stream = Corked::new(tcp, b"");
                let mut conn = Connection::greet(stream, &hello).await.unwrap();
                assert_eq!(conn.pipelines(), offers != Offers::Nothing);
                assert_eq!(conn.chunks(), offers == Offers::Chunking);
                let start = std::time::Instant::now();
                for _ in 0..10 {
                    conn.send(&envelope(), BODY).await.unwrap();
                    assert!(conn.reusable() && conn.reached_body());
                }
                took.push(start.elapsed());
                conn.conn.quit().await.unwrap();
                let (said, bodies) = server.await.unwrap();
                assert_eq!(bodies, vec![DELIVERED; 10], "{offers:?}");
                let transaction: &[&str] = match offers {
                    Offers::Nothing => &["MAIL", "RCPT", "DATA"],
                    Offers::Pipelining => &["MAIL RCPT DATA"],
                    Offers::Chunking => &["MAIL RCPT BDAT"],
                };
                let mut expected = vec!["EHLO"];
                for _ in 0..10 {
                    expected.extend(transaction);
                }
                expected.push("QUIT");
                assert_eq!(said, expected);
            }
            eprintln!(
                "10 messages to a relay {rtt:?} away: {:?} one command at a time, {:?} pipelined, \
                 {:?} in BDAT chunks",
                took[0], took[1], took[2]
            );
        })
        .await
    }

    /// A server that greets, answers EHLO with `ehlo`, then for each `(lines, answer)` of
    /// `script` reads that many lines (0: a body, up to its `.`) and writes `answer` at once;
    /// then closes its side and reads until the client goes. Returns a connection greeted by it, and what the server
    /// read after EHLO.
    async fn scripted(
        ehlo: &'static [u8],
        script: Vec<(usize, &'static [u8])>,
    ) -> (Connection, tokio::task::JoinHandle<String>) {
        use tokio::io::AsyncBufReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let tcp = listener.accept().await.unwrap().0;
            let mut s = tokio::io::BufReader::new(tcp);
            let mut line = String::new();
            s.get_mut().write_all(b"220 test ESMTP\r\n").await.unwrap();
            s.read_line(&mut line).await.unwrap();
            s.get_mut().write_all(ehlo).await.unwrap();
            let mut read = String::new();
            for (lines, answer) in script {
                let mut n = 0;
                while lines == 0 || n < lines {
                    line.clear();
                    assert!(s.read_line(&mut line).await.unwrap() > 0, "after {read:?}");
                    read.push_str(&line);
                    n += 1;
                    if lines == 0 && line == ".\r\n" {
                        break;
                    }
                }
                s.get_mut().write_all(answer).await.unwrap();
            }
            s.get_mut().shutdown().await.unwrap();
            s.read_to_string(&mut read).await.unwrap();
            read
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let stream = Corked::new(tcp, b"");
        let hello = ClientId::Domain("client.test".into());
        let conn = Connection::greet(stream, &hello).await.unwrap();
        (conn, server)
    }

    const PIPELINING: &[u8] = b"250-test\r\n250 PIPELINING\r\n";
    const MAIL_RCPT_DATA: &str =
        "MAIL FROM:<billing@example.com>\r\nRCPT TO:<ana@example.com>\r\nDATA\r\n";

    /// Each answer must be the one its command expects: a refused MAIL, a refused recipient of
    /// two with DATA accepted, an answer out of step (a stray line after EHLO), and a refusal
    /// one command at a time. None sends the body or is reused, and QUIT follows only when the
    /// server is known to wait for a command.
    #[tokio::test]
    async fn answers_are_checked_in_their_places_and_a_refusal_sends_no_body() {
        within(async {
            // A refused MAIL: RCPT and DATA are refused after it; QUIT.
            let refusals =
                b"550 5.7.1 sender refused\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n";
            let script = vec![(3, &refusals[..]), (1, &b"221 bye\r\n"[..])];
            let (mut conn, server) = scripted(PIPELINING, script).await;
            let failed = conn.send(&envelope(), BODY).await.unwrap_err();
            assert_eq!(
                failed,
                Failed::before_body("MAIL: permanent error (550): 5.7.1 sender refused")
            );
            assert!(!conn.reusable() && !conn.reached_body());
            drop(conn);
            assert_eq!(server.await.unwrap(), format!("{MAIL_RCPT_DATA}QUIT\r\n"));

            // Two recipients, the second refused, DATA accepted: the server waits for a body,
            // which does not come (nor a QUIT it would take as one); the connection is closed.
            let answers = b"250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n354 go on\r\n";
            let (mut conn, server) = scripted(PIPELINING, vec![(4, &answers[..])]).await;
            let two = two_recipients();
            let failed = conn.send(&two, BODY).await.unwrap_err();
            assert_eq!(
                failed,
                Failed::before_body("RCPT: permanent error (550): 5.1.1 no such user")
            );
            assert!(!conn.reusable());
            drop(conn);
            assert_eq!(
                server.await.unwrap(),
                "MAIL FROM:<billing@example.com>\r\nRCPT TO:<ana@example.com>\r\n\
                 RCPT TO:<bo@example.com>\r\nDATA\r\n"
            );

            // A stray line after the EHLO answer: every answer is one place late, and DATA's
            // place holds a `250`. Out of step: no body, no QUIT.
            let ehlo = b"250-test\r\n250 PIPELINING\r\n250 stray\r\n";
            let answers = b"250 ok\r\n250 ok\r\n354 go on\r\n";
            let (mut conn, server) = scripted(ehlo, vec![(3, &answers[..])]).await;
            let failed = conn.send(&envelope(), BODY).await.unwrap_err();
            assert_eq!(
                failed,
                Failed::before_body("DATA: the server answered `250 ok` where 354 was expected")
            );
            assert!(!conn.reusable());
            drop(conn);
            assert_eq!(server.await.unwrap(), MAIL_RCPT_DATA);

            // Answers to everything before anything was asked, after the EHLO answer: lettre
            // takes them from its buffer, the body's included, and never reads the socket, so
            // nothing was sent; tickler sees the body still held.
            let ehlo =
                b"250-test\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n";
            let (mut conn, server) = scripted(ehlo, vec![]).await;
            let failed = conn.send(&envelope(), BODY).await.unwrap_err();
            assert_eq!(
                failed,
                Failed::before_body(
                    "the server's answers are out of step with tickler's commands; the message \
                     was not sent"
                )
            );
            assert!(!conn.reusable());
            drop(conn);
            assert_eq!(server.await.unwrap(), "");

            // The connection closes after the body, unanswered: the message may have been
            // delivered, so the failure is ambiguous.
            let answers = b"250 ok\r\n250 ok\r\n354 go on\r\n";
            let (mut conn, server) = scripted(PIPELINING, vec![(3, &answers[..]), (0, b"")]).await;
            let failed = conn.send(&envelope(), BODY).await.unwrap_err();
            assert!(failed.maybe_sent && conn.reached_body(), "{failed:?}");
            assert!(!conn.reusable());
            drop(conn);
            assert_eq!(
                server.await.unwrap(),
                format!("{MAIL_RCPT_DATA}{RECEIVED}.\r\n")
            );

            // One command at a time (no PIPELINING): the refusal ends it before DATA; QUIT.
            let script = vec![
                (1, &b"250 ok\r\n"[..]),
                (1, &b"550 5.1.1 no such user\r\n"[..]),
                (1, &b"221 bye\r\n"[..]),
            ];
            let (mut conn, server) = scripted(b"250 test\r\n", script).await;
            assert!(!conn.pipelines());
            let failed = conn.send(&envelope(), BODY).await.unwrap_err();
            assert_eq!(
                failed,
                Failed::before_body("RCPT: permanent error (550): 5.1.1 no such user")
            );
            drop(conn);
            assert_eq!(
                server.await.unwrap(),
                "MAIL FROM:<billing@example.com>\r\nRCPT TO:<ana@example.com>\r\nQUIT\r\n"
            );
        })
        .await
    }

    const CHUNKING: &[u8] = b"250-test\r\n250-PIPELINING\r\n250 CHUNKING\r\n";

    /// What a BDAT transaction of `BODY` to `recipients` writes, in one write.
    fn chunked_to(recipients: &[&str]) -> String {
        let mut wrote = "MAIL FROM:<billing@example.com>\r\n".to_string();
        for r in recipients {
            wrote.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        let body = std::str::from_utf8(BODY).unwrap();
        format!("{wrote}BDAT {} LAST\r\n{body}\r\n", BODY.len() + 2)
    }

    /// In BDAT chunks the body leaves with MAIL and RCPT, so what the answers say decides
    /// whether it may have been delivered: not when the server, in step, refused the chunk
    /// (after refusing MAIL or the only recipient, or alone; QUIT follows: it waits for a
    /// command); maybe when it took the chunk (one recipient of two refused, or even MAIL
    /// refused), when it closes unanswered, or when an answer is out of its place. Answers
    /// read from before anything was written send nothing. None of the failed connections is
    /// reused.
    #[tokio::test]
    async fn in_chunks_only_a_refusal_in_step_means_not_sent() {
        within(async {
            let one = chunked_to(&["ana@example.com"]);
            let sent = b"250 ok\r\n250 ok\r\n250 2.0.0 queued\r\n";
            let (mut conn, server) = scripted(CHUNKING, vec![(8, &sent[..])]).await;
            assert!(conn.chunks());
            conn.send(&envelope(), BODY).await.unwrap();
            assert!(conn.reusable() && conn.reached_body());
            drop(conn);
            assert_eq!(server.await.unwrap(), one);

            let bye = &b"221 bye\r\n"[..];
            let not_sent: [(&[u8], &str); 3] = [
                (
                    b"550 5.7.1 sender refused\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n",
                    "MAIL: permanent error (550): 5.7.1 sender refused",
                ),
                (
                    b"250 ok\r\n450 4.2.0 try later\r\n554 5.5.1 no valid recipients\r\n",
                    "RCPT: transient error (450): 4.2.0 try later",
                ),
                (
                    b"250 ok\r\n250 ok\r\n552 5.3.4 message too big\r\n",
                    "BDAT: permanent error (552): 5.3.4 message too big",
                ),
            ];
            for (answers, why) in not_sent {
                let (mut conn, server) = scripted(CHUNKING, vec![(8, answers), (1, bye)]).await;
                let failed = conn.send(&envelope(), BODY).await.unwrap_err();
                assert_eq!(failed, Failed::before_body(why));
                // A timeout around the QUIT would not make the message ambiguous.
                assert!(!conn.reusable() && !conn.reached_body());
                drop(conn);
                assert_eq!(server.await.unwrap(), format!("{one}QUIT\r\n"));
            }

            // A refused MAIL, then the chunk taken all the same (a server not keeping RFC
            // 3030): its word on the chunk is the one that counts.
            let answers = b"550 5.7.1 sender refused\r\n503 5.5.1 no MAIL\r\n250 queued\r\n";
            let (mut conn, server) = scripted(CHUNKING, vec![(8, &answers[..]), (1, bye)]).await;
            let failed = conn.send(&envelope(), BODY).await.unwrap_err();
            assert_eq!(
                failed,
                Failed {
                    message: "MAIL: permanent error (550): 5.7.1 sender refused".into(),
                    maybe_sent: true
                }
            );
            assert!(conn.reached_body());
            drop(conn);
            assert_eq!(server.await.unwrap(), format!("{one}QUIT\r\n"));

            // One recipient of two refused, the chunk taken: delivered to the other.
            let two = two_recipients();
            let answers = b"250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n250 queued\r\n";
            let (mut conn, server) = scripted(CHUNKING, vec![(9, &answers[..]), (1, bye)]).await;
            let failed = conn.send(&two, BODY).await.unwrap_err();
            assert_eq!(
                failed,
                Failed {
                    message: "RCPT: permanent error (550): 5.1.1 no such user".into(),
                    maybe_sent: true
                }
            );
            drop(conn);
            let both = chunked_to(&["ana@example.com", "bo@example.com"]);
            assert_eq!(server.await.unwrap(), format!("{both}QUIT\r\n"));

            // The server closes after the chunk, unanswered.
            let (mut conn, server) = scripted(CHUNKING, vec![(8, b"")]).await;
            let failed = conn.send(&envelope(), BODY).await.unwrap_err();
            assert!(
                failed.maybe_sent && failed.message.starts_with("MAIL: "),
                "{failed:?}"
            );
            assert!(!conn.reusable());
            drop(conn);
            assert_eq!(server.await.unwrap(), one);

            // An answer out of its place (a `354` where BDAT's `250` was expected).
            let answers = b"250 ok\r\n250 ok\r\n354 go on\r\n";
            let (mut conn, server) = scripted(CHUNKING, vec![(8, &answers[..])]).await;
            let failed = conn.send(&envelope(), BODY).await.unwrap_err();
            assert_eq!(
                failed,
                Failed {
                    message: "BDAT: the server answered `354 go on` where 250 was expected".into(),
                    maybe_sent: true
                }
            );
            drop(conn);
            assert_eq!(server.await.unwrap(), one);

            // A stray line after the EHLO answer: lettre takes it for MAIL's answer before
            // anything is written. Nothing goes.
            let ehlo = b"250-test\r\n250-PIPELINING\r\n250 CHUNKING\r\n250 stray\r\n";
            let (mut conn, server) = scripted(ehlo, vec![]).await;
            let failed = conn.send(&envelope(), BODY).await.unwrap_err();
            assert_eq!(failed, Failed::before_body(OUT_OF_STEP));
            assert!(!conn.reusable());
            drop(conn);
            assert_eq!(server.await.unwrap(), "");
        })
        .await
    }

    /// A non-ASCII address and body go pipelined with the parameters lettre's `send` gives
    /// them (SMTPUTF8, BODY=8BITMIME), and the connection may carry another message.
    #[tokio::test]
    async fn pipelined_mail_carries_lettres_parameters() {
        within(async {
            let ehlo = b"250-test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n";
            let answers = b"250 ok\r\n250 ok\r\n354 go on\r\n";
            let script = vec![(3, &answers[..]), (0, &b"250 queued\r\n"[..])];
            let (mut conn, server) = scripted(ehlo, script).await;
            let to = Envelope::new(
                Some("billing@example.com".parse().unwrap()),
                vec!["zoë@example.com".parse().unwrap()],
            )
            .unwrap();
            conn.send(&to, "Grüße\r\n".as_bytes()).await.unwrap();
            assert!(conn.reusable() && conn.reached_body());
            drop(conn);
            assert_eq!(
                server.await.unwrap(),
                "MAIL FROM:<billing@example.com> SMTPUTF8 BODY=8BITMIME\r\n\
                 RCPT TO:<zoë@example.com>\r\nDATA\r\nGrüße\r\n\r\n.\r\n"
            );
        })
        .await
    }

    /// A group past 4 KiB (200 recipients) goes one command at a time even to a server that
    /// pipelines: RFC 2920 asks a client that writes a whole group before it reads to keep it
    /// within the TCP window. The server sees each command arrive alone.
    #[tokio::test]
    async fn a_group_past_the_window_goes_one_command_at_a_time() {
        within(async {
            use tokio::io::AsyncBufReadExt;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let mut s = tokio::io::BufReader::new(listener.accept().await.unwrap().0);
                s.get_mut().write_all(b"220 test\r\n").await.unwrap();
                let (mut line, mut together) = (String::new(), 0);
                while s.read_line(&mut line).await.unwrap() > 0 {
                    together += usize::from(!s.buffer().is_empty());
                    let answer: &[u8] = match &line[..4] {
                        "EHLO" => PIPELINING,
                        "DATA" => b"354 go on\r\n",
                        "QUIT" => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    s.get_mut().write_all(answer).await.unwrap();
                    if line.starts_with("DATA") {
                        while s.read_line(&mut line).await.unwrap() > 0
                            && !line.ends_with("\n.\r\n")
                        {}
                        s.get_mut().write_all(b"250 queued\r\n").await.unwrap();
                    }
                    line.clear();
                }
                together
            });
            let tcp = TcpStream::connect(addr).await.unwrap();
            let stream = Corked::new(tcp, b"");
            let hello = ClientId::Domain("client.test".into());
            let mut conn = Connection::greet(stream, &hello).await.unwrap();
            assert!(conn.pipelines());
            let many = (0..200)
                .map(|i| format!("person{i:03}@example.com").parse().unwrap())
                .collect();
            let many = Envelope::new(Some("billing@example.com".parse().unwrap()), many).unwrap();
            conn.send(&many, BODY).await.unwrap();
            conn.conn.quit().await.unwrap();
            drop(conn);
            assert_eq!(
                server.await.unwrap(),
                0,
                "commands that arrived with others behind"
            );
        })
        .await
    }
}
