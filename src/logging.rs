//! Where the log goes. Under systemd, when stderr is the journal (`JOURNAL_STREAM` names it),
//! events go to journald natively with their fields as journal fields (`JOB`, `RUN_ID`,
//! `STATUS`, `SCHEDULED_FOR`, ...), so `journalctl -u tickler JOB=daily-invoices` finds a job's
//! lines. Otherwise they are plain lines on stderr, coloured only on a terminal.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The journal's `SYSLOG_IDENTIFIER` of every line.
pub const IDENTIFIER: &str = "tickler";

/// Installs the global subscriber: journald when stderr is connected to it, else plain lines.
pub fn init(filter: EnvFilter) {
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                let journal = journal
                    .with_field_prefix(None)
                    .with_syslog_identifier(IDENTIFIER.to_string());
                tracing_subscriber::registry()
                    .with(filter)
                    .with(journal)
                    .init();
                return;
            }
            Err(e) => eprintln!("tickler: cannot log to journald ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Whether stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` holds its
/// `device:inode`, and a stderr redirected elsewhere (a child of the service, a shell) does not
/// match, as sd_journal_stream_fd(3) advises.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}
