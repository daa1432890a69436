//! A real SMTP server on loopback: Debian's `python3-aiosmtpd` with its Maildir handler, so
//! tests assert on the messages as delivered.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What the server's EHLO answer lists beyond aiosmtpd's own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Offers {
    Nothing,
    /// PIPELINING (RFC 2920).
    Pipelining,
    /// PIPELINING and CHUNKING (RFC 3030's BDAT).
    Chunking,
}

pub struct SmtpServer {
    pub port: u16,
    maildir: PathBuf,
    child: Child,
}

/// A delivered message: envelope-free, read from its headers and decoded text.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    /// The whole message with quoted-printable soft breaks and `=3D` undone, for `contains`.
    pub body: String,
}

fn python() -> &'static str {
    // Debian's interpreter, where `apt-get install python3-aiosmtpd` puts the module.
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// aiosmtpd's SMTP protocol with its Maildir handler, on a port the server binds itself and
/// prints: a port picked by the test and bound later could be taken by another test's server
/// (or an outgoing connection) in between, and this test's mail would go elsewhere. Its name is
/// given, so that no connection waits for a DNS lookup of the machine's name (`getfqdn`).
const SERVER: &str = r#"
import asyncio, sys
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP

PIPELINING = sys.argv[2] in ("pipelining", "chunking")
CHUNKING = sys.argv[2] == "chunking"

class Handler(Mailbox):
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if PIPELINING:
            responses.insert(-1, "250-PIPELINING")
        if CHUNKING:
            responses.insert(-1, "250-CHUNKING")
        return responses

class Server(SMTP):
    # Counts the MAIL commands whose RCPT had come with them (read already, in the buffer):
    # the client pipelined them. aiosmtpd reads each command from its buffer in turn, as a
    # server that offers PIPELINING does.
    async def smtp_MAIL(self, arg):
        if b"RCPT" in bytes(self._reader._buffer):
            with open(sys.argv[1] + ".pipelined", "a") as f:
                f.write("1")
        await super().smtp_MAIL(arg)

    # RFC 3030's BDAT, which aiosmtpd lacks: `BDAT <size> [LAST]`, the chunk's bytes after
    # the line, read whatever the transaction's state (the size says where the next command
    # starts), then refused when CHUNKING is not offered or no recipient was accepted; at LAST
    # the message goes to the Maildir as DATA's would. Every BDAT is counted, offered or not.
    async def smtp_BDAT(self, arg):
        with open(sys.argv[1] + ".chunked", "a") as f:
            f.write("1")
        words = (arg or "").split()
        if not words or not words[0].isdigit():
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            return
        chunk = await self._reader.readexactly(int(words[0]))
        if not CHUNKING:
            await self.push("502 5.5.1 BDAT not offered")
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        self.envelope.original_content = (self.envelope.original_content or b"") + chunk
        if len(words) < 2 or words[1].upper() != "LAST":
            await self.push("250 2.0.0 %d octets received" % len(chunk))
            return
        self.envelope.content = self.envelope.original_content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

async def main():
    handler = Handler(sys.argv[1])
    server = await asyncio.get_running_loop().create_server(
        lambda: Server(handler, hostname="localhost"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Stops with the test: its stdin closes when the test process ends, even on a panic.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"#;

impl SmtpServer {
    /// A server without PIPELINING: tickler sends its commands one at a time.
    pub fn start(dir: &Path) -> SmtpServer {
        SmtpServer::start_with(dir, Offers::Nothing)
    }

    /// A server that offers what `offers` says, as Postfix offers PIPELINING and CHUNKING.
    pub fn start_with(dir: &Path, offers: Offers) -> SmtpServer {
        let maildir = dir.join("maildir");
        let mut child = Command::new(python())
            .arg("-c")
            .arg(SERVER)
            .arg(&maildir)
            .arg(match offers {
                Offers::Nothing => "one-at-a-time",
                Offers::Pipelining => "pipelining",
                Offers::Chunking => "chunking",
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 with aiosmtpd (apt-get install python3-aiosmtpd)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read the SMTP server's port");
        let port = line.trim().parse::<u16>().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("aiosmtpd did not start (printed {line:?}); is python3-aiosmtpd installed?")
        });
        SmtpServer {
            port,
            maildir,
            child,
        }
    }

    /// Waits until at least `n` messages were delivered; returns them all.
    pub async fn wait_for_messages(&self, n: usize) -> Vec<Mail> {
        super::wait_for(&format!("{n} emails"), Duration::from_secs(30), || async {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .await
    }

    /// How many messages came with their MAIL and RCPT in one write (pipelined).
    pub fn pipelined(&self) -> usize {
        std::fs::read_to_string(self.maildir.with_extension("pipelined")).map_or(0, |s| s.len())
    }

    /// How many BDAT commands came (offered or not).
    pub fn chunks(&self) -> usize {
        std::fs::read_to_string(self.maildir.with_extension("chunked")).map_or(0, |s| s.len())
    }

    /// The messages delivered so far, sorted by recipient then subject.
    pub fn messages(&self) -> Vec<Mail> {
        let mut out = vec![];
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return out;
        };
        for e in entries.flatten() {
            let raw = std::fs::read_to_string(e.path()).unwrap_or_default();
            let unfolded = raw.replace("\r\n", "\n").replace("\n ", " ");
            let header = |name: &str| {
                unfolded
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_default()
                    .to_string()
            };
            let body = raw
                .replace("\r\n", "\n")
                .replace("=\n", "")
                .replace("=3D", "=");
            out.push(Mail {
                to: header("To"),
                subject: header("Subject"),
                body,
            });
        }
        out.sort_by(|a, b| (&a.to, &a.subject).cmp(&(&b.to, &b.subject)));
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
