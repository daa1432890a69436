//! A real SMTP server on loopback: Debian's `python3-aiosmtpd` with its Maildir handler, so
//! tests assert on the messages as delivered.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

impl SmtpServer {
    pub fn start(dir: &Path) -> SmtpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let maildir = dir.join("maildir");
        let child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start `python3 -m aiosmtpd` (apt-get install python3-aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on port {port}; is python3-aiosmtpd installed?"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
