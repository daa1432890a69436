//! A real SMTP server on loopback: Debian's `python3-aiosmtpd` with its Maildir handler, so
//! tests assert on the messages as delivered.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

async def main():
    handler = Mailbox(sys.argv[1])
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="localhost"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Stops with the test: its stdin closes when the test process ends, even on a panic.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"#;

impl SmtpServer {
    pub fn start(dir: &Path) -> SmtpServer {
        let maildir = dir.join("maildir");
        let mut child = Command::new(python())
            .arg("-c")
            .arg(SERVER)
            .arg(&maildir)
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
