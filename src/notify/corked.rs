//! The TCP stream under every SMTP connection: what lettre writes goes out when it next reads.
//!
//! lettre writes a message's body and then its final `.` with a flush after each. With
//! `TCP_NODELAY`, which its one-line commands need, they leave as two segments, and the server
//! wakes for each. SMTP answers everything a client sends, and lettre reads that answer before
//! it writes again. So holding its writes until that read sends the same bytes, in the same
//! order, no later than the server is waited for: one segment per message instead of two for the
//! body, one write instead of two. What is still held when the stream is dropped (a TLS alert
//! after a failed handshake) is handed to the socket then, as a write straight to it would have
//! been.
//!
//! Implicit TLS (port 465) runs over it too ([`ImplicitTls`]). lettre's own implicit-TLS
//! connect leaves Nagle on, so a message's final `.`, a small TLS record sent behind the body's,
//! waited for the server's delayed ACK: about 40 ms a message on a loopback test server.

use std::io;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, ClientConfig, pki_types::ServerName};

/// Past this many bytes held, a write first sends what is held, and a larger write goes
/// straight through: a big message is not copied whole.
const HOLD: usize = 64 * 1024;

#[derive(Debug)]
pub struct Corked {
    tcp: TcpStream,
    /// Written by lettre and not yet sent; `held[sent..]` is still to go.
    held: Vec<u8>,
    sent: usize,
}

impl Corked {
    pub fn new(tcp: TcpStream) -> Corked {
        Corked {
            tcp,
            held: Vec::with_capacity(4096),
            sent: 0,
        }
    }

    /// Sends what is held; `Pending` until the socket has taken all of it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Corked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Corked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// All the slices at once: rustls writes its records so (a handshake's last records, an
    /// alert behind them), and the default would take the first slice only.
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
                return Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            this.held.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Held bytes wait for the next read (see the module): the socket itself buffers nothing
    /// a flush would push.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// What is held when the stream goes (a TLS alert after a failed handshake, the rest of a
/// message whose send timed out while the socket was full) is handed to the socket as far as it
/// takes it now, as bytes written straight to the socket would have gone out after a close.
impl Drop for Corked {
    fn drop(&mut self) {
        if self.sent < self.held.len() {
            let _ = self.tcp.try_write(&self.held[self.sent..]);
        }
    }
}

impl AsyncTokioStream for Corked {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }
}

/// Implicit TLS over a [`Corked`] stream, handed to lettre as the transport its connection
/// greets over. The server's certificate is checked against the same roots as lettre's own TLS
/// (`webpki-roots`, with ring). lettre sees a plain stream: its `is_encrypted()` is false on
/// such a connection, and it must not be asked to STARTTLS.
#[derive(Debug)]
pub struct ImplicitTls(TlsStream<Corked>);

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

impl ImplicitTls {
    /// The handshake with `host` over `tcp`, trusting the public roots.
    pub async fn over(tcp: TcpStream, host: &str) -> io::Result<ImplicitTls> {
        static CONFIG: OnceLock<Result<Arc<ClientConfig>, rustls::Error>> = OnceLock::new();
        let config = CONFIG
            .get_or_init(|| {
                client_config(rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                })
            })
            .clone()
            .map_err(io::Error::other)?;
        ImplicitTls::with(tcp, host, config).await
    }

    pub async fn with(
        tcp: TcpStream,
        host: &str,
        config: Arc<ClientConfig>,
    ) -> io::Result<ImplicitTls> {
        let name = ServerName::try_from(host.to_string()).map_err(io::Error::other)?;
        let tls = TlsConnector::from(config)
            .connect(name, Corked::new(tcp))
            .await?;
        Ok(ImplicitTls(tls))
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
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

    /// Two flushed writes are held, then reach the peer together when the writer reads, and
    /// the peer's answer is read; a write past the limit sends what is held first, in order.
    #[tokio::test]
    async fn writes_leave_together_at_the_next_read_and_in_order() {
        within(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tcp, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
            let mut client = Corked::new(tcp.unwrap());
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
            let mut client = Corked::new(tcp.unwrap());
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
    }

    /// A test relay's side of SMTP on `s`: sends `greeting` (none after STARTTLS), then answers
    /// each command until QUIT or the client goes, handing each message's body (without its
    /// final `.`) to `take`. Returns the commands' verbs, in order.
    pub(in crate::notify) async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut tokio::io::BufReader<S>,
        greeting: &[u8],
        mode: Relay,
        mut take: impl FnMut(String),
    ) -> Vec<String> {
        use tokio::io::AsyncBufReadExt;
        s.get_mut().write_all(greeting).await.unwrap();
        let mut said = vec![];
        let mut line = String::new();
        while s.read_line(&mut line).await.unwrap_or(0) > 0 {
            let verb = line.split(' ').next().unwrap_or("").trim_end().to_string();
            let reply: &[u8] = match verb.as_str() {
                "RCPT" if mode == Relay::RefuseRecipient => b"550 no such user\r\n",
                "EHLO" | "MAIL" | "RCPT" => b"250 ok\r\n",
                "DATA" => b"354 go on\r\n",
                "QUIT" => b"221 bye\r\n",
                other => panic!("unexpected {other:?}"),
            };
            said.push(verb);
            s.get_mut().write_all(reply).await.unwrap();
            match said.last().map(String::as_str) {
                Some("QUIT") => break,
                Some("DATA") => {
                    let mut body = String::new();
                    loop {
                        line.clear();
                        s.read_line(&mut line).await.unwrap();
                        if line == ".\r\n" {
                            break;
                        }
                        body.push_str(&line);
                    }
                    take(body);
                    if mode == Relay::HangAfterBody {
                        let _ = s.read_line(&mut String::new()).await;
                        break;
                    }
                    s.get_mut().write_all(b"250 queued\r\n").await.unwrap();
                }
                _ => {}
            }
            line.clear();
        }
        said
    }

    /// A test SMTP server on loopback: greets over TLS at once (`implicit`) or after
    /// STARTTLS, answers every command, and returns the commands and the bodies it got. Its
    /// `localhost` certificate is signed by a test CA (`testdata/`, made with `openssl`, valid
    /// until 2126; the key is a test fixture, nothing else trusts it).
    pub(in crate::notify) async fn tls_server(
        implicit: bool,
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
            said.extend(relay(&mut s, greeting, Relay::Serve, |b| bodies.push(b)).await);
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

    const BODY: &[u8] = b"Subject: due\r\n\r\nInvoice 7 is due.\r\n.dot\r\n";
    /// As the server reads it: the leading dot doubled, and lettre's `\r\n.\r\n` after it.
    const RECEIVED: &str = "Subject: due\r\n\r\nInvoice 7 is due.\r\n..dot\r\n\r\n";

    /// lettre's STARTTLS and a message over the held stream reach a server that answers each
    /// command: the TLS handshake's writes are held and sent like any other.
    #[tokio::test]
    async fn lettre_sends_over_starttls_on_the_held_stream() {
        within(async {
            use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
            use lettre::transport::smtp::extension::ClientId;

            let (addr, server) = tls_server(false).await;
            let tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let hello = ClientId::Domain("client.test".into());
            let mut conn =
                AsyncSmtpConnection::connect_with_transport(Box::new(Corked::new(tcp)), &hello)
                    .await
                    .unwrap();
            let tls = TlsParameters::builder("localhost".into())
                .add_root_certificate(test_ca())
                .build()
                .unwrap();
            conn.starttls(tls, &hello).await.unwrap();
            assert!(conn.is_encrypted());
            conn.send(&envelope(), BODY).await.unwrap();
            conn.quit().await.unwrap();
            let (said, bodies) = server.await.unwrap();
            assert_eq!(
                said,
                ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
            );
            assert_eq!(bodies, [RECEIVED]);
        })
        .await
    }

    /// Implicit TLS over the held stream carries messages to a server whose certificate the
    /// given roots trust, and a certificate they do not trust is refused. The time 20 messages
    /// take this way and over lettre's own implicit-TLS connect is printed (`-- --nocapture`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn implicit_tls_carries_messages_and_checks_the_certificate() {
        within(async {
            use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
            use lettre::transport::smtp::extension::ClientId;
            use tokio_rustls::rustls::pki_types::CertificateDer;
            use tokio_rustls::rustls::pki_types::pem::PemObject;

            let hello = ClientId::Domain("client.test".into());
            let mut roots = rustls::RootCertStore::empty();
            let ca = CertificateDer::from_pem_slice(include_bytes!("testdata/ca.pem")).unwrap();
            roots.add(ca).unwrap();
            let config = client_config(roots).unwrap();
            let (addr, server) = tls_server(true).await;
            let tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let tls = ImplicitTls::with(tcp, "localhost", config).await.unwrap();
            let conn = AsyncSmtpConnection::connect_with_transport(Box::new(tls), &hello)
                .await
                .unwrap();
            // Sends 20 messages, then QUIT; returns how long the 20 took.
            async fn twenty(mut conn: AsyncSmtpConnection) -> std::time::Duration {
                let start = std::time::Instant::now();
                for _ in 0..20 {
                    conn.send(&envelope(), BODY).await.unwrap();
                }
                let took = start.elapsed();
                conn.quit().await.unwrap();
                took
            }
            let held = twenty(conn).await;
            let (said, bodies) = server.await.unwrap();
            assert_eq!(
                said.len(),
                2 + 20 * 3,
                "EHLO, 20 x MAIL RCPT DATA, QUIT: {said:?}"
            );
            assert_eq!(bodies, vec![RECEIVED; 20]);

            // lettre's own connect, as tickler used it for implicit TLS before.
            let (addr, server) = tls_server(true).await;
            let tls = TlsParameters::builder("localhost".into())
                .add_root_certificate(test_ca())
                .build()
                .unwrap();
            let conn = AsyncSmtpConnection::connect_tokio1(
                ("localhost", addr.port()),
                None,
                &hello,
                Some(tls),
                None,
            )
            .await
            .unwrap();
            let lettre = twenty(conn).await;
            assert_eq!(server.await.unwrap().1.len(), 20);
            eprintln!(
                "20 messages over implicit TLS: {held:?} held, {lettre:?} by lettre's own connect"
            );

            // The shipped roots do not hold the test CA: its certificate is refused.
            let (addr, server) = tls_server(true).await;
            let tcp = TcpStream::connect(addr).await.unwrap();
            let refused = ImplicitTls::over(tcp, "localhost").await.unwrap_err();
            assert!(
                refused.to_string().contains("invalid peer certificate"),
                "{refused}"
            );
            server.abort();
        })
        .await
    }
}
