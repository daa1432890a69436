//! The process's open-file limit (`RLIMIT_NOFILE`): raised at start-up, and shared out so that
//! the `[http]` listener can never take the descriptors that jobs and the database need.
//!
//! Every accepted connection, job pipe, database file and SMTP socket is a descriptor. When
//! they run out, `accept`, `pipe` and `open` all fail with `Too many open files` at once: the
//! listener stops answering `/healthz` and a job cannot even start. So the daemon raises its
//! soft limit where the hard limit allows, and the listener serves at most what is left after
//! a reserve.

use std::io;

/// Descriptors always left to everything but the listener: the database pools (SQLite keeps
/// the database, its WAL and shared-memory files open per connection; PostgreSQL one socket
/// each), job processes' pipes, SMTP and provider connections, the journal socket.
pub const MIN_RESERVE: u64 = 64;
/// The soft limit is raised at most to this, even when the hard limit is higher (often
/// 524288 under systemd, or unlimited): job processes inherit it, and some programs still
/// walk every possible descriptor or use `select` (systemd's advice is to keep children's
/// limit modest).
pub const RAISE_TO_AT_MOST: u64 = 65_536;
/// A listener never serves fewer than this many connections at once, however low the limit:
/// with fewer, `/healthz` could not answer a monitor while a scraper is connected.
pub const MIN_CONNECTIONS: usize = 4;

/// Why the limit could not be read or raised; the daemon runs on with what it has.
#[derive(Debug, thiserror::Error)]
pub enum FileLimitError {
    #[error("cannot read the open-file limit (`getrlimit(RLIMIT_NOFILE)`): {0}")]
    Read(io::Error),
    #[error(
        "cannot raise the open-file limit from {from} to {to}: {cause}; set `LimitNOFILE=` in \
         the service unit (or `ulimit -n`) instead"
    )]
    Raise {
        from: u64,
        to: u64,
        cause: io::Error,
    },
}

/// The soft and hard limit, and what the soft limit was before [`raise`] changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    pub soft: u64,
    pub hard: u64,
    /// `Some(old soft limit)` when [`raise`] raised it.
    pub raised_from: Option<u64>,
}

/// The current limit.
pub fn current() -> Result<FileLimit, FileLimitError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and has no other effect.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(FileLimitError::Read(io::Error::last_os_error()));
    }
    Ok(FileLimit {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
        raised_from: None,
    })
}

/// What [`raise`] sets the soft limit to: the hard limit, capped by [`RAISE_TO_AT_MOST`], and
/// never below the current soft limit (an admin's higher `LimitNOFILE=` is kept).
pub fn raise_target(soft: u64, hard: u64) -> u64 {
    hard.min(RAISE_TO_AT_MOST).max(soft)
}

/// Raises the soft limit towards the hard one, as servers commonly do: the soft limit
/// (1024 by default, 256 under some shells) is a guard for old programs using `select`, not a
/// budget for a server, and only the hard limit is the administrator's decision.
pub fn raise() -> Result<FileLimit, FileLimitError> {
    let now = current()?;
    let target = raise_target(now.soft, now.hard);
    if target == now.soft {
        return Ok(now);
    }
    let lim = libc::rlimit {
        rlim_cur: target,
        rlim_max: now.hard,
    };
    // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard one
    // needs no privilege and changes only this process's limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(FileLimitError::Raise {
            from: now.soft,
            to: target,
            cause: io::Error::last_os_error(),
        });
    }
    Ok(FileLimit {
        soft: target,
        hard: now.hard,
        raised_from: Some(now.soft),
    })
}

/// How many descriptors this process has open now (`/proc/self/fd`); `None` where that cannot
/// be read.
pub fn open_now() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory handle itself is one of the entries.
    Some((dir.count() as u64).saturating_sub(1))
}

/// The reserve kept free of connections under a soft limit of `soft`: [`MIN_RESERVE`] or a
/// quarter of the limit, whichever is more.
pub fn reserve(soft: u64) -> u64 {
    MIN_RESERVE.max(soft / 4)
}

/// The most connections the listener may hold: `wanted` (`[http] max_connections`), lowered
/// so that the descriptors open now, the reserve and the listener's one connection accepted
/// ahead of a free slot all fit under the soft limit; never below [`MIN_CONNECTIONS`].
pub fn connection_bound(wanted: usize, soft: u64, open: u64) -> usize {
    let room = soft.saturating_sub(open + reserve(soft) + 1);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    wanted.min(room.max(MIN_CONNECTIONS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_goes_up_to_the_hard_one_within_a_cap_and_never_down() {
        assert_eq!(raise_target(256, 4096), 4096);
        assert_eq!(raise_target(1024, 524_288), RAISE_TO_AT_MOST);
        assert_eq!(raise_target(1024, libc::RLIM_INFINITY), RAISE_TO_AT_MOST);
        assert_eq!(raise_target(256, 256), 256);
        assert_eq!(raise_target(200_000, 524_288), 200_000);
    }

    #[test]
    fn connections_get_what_the_reserve_leaves() {
        // 256 files, 20 open: 64 reserved, 1 for the connection accepted ahead of a slot.
        assert_eq!(connection_bound(1000, 256, 20), 171);
        assert_eq!(connection_bound(128, 256, 20), 128);
        // A large limit keeps a quarter back.
        assert_eq!(
            connection_bound(100_000, 65_536, 30),
            65_536 - 30 - 16_384 - 1
        );
        // A limit too low for any reserve still serves a monitor.
        assert_eq!(connection_bound(128, 64, 20), MIN_CONNECTIONS);
        assert_eq!(connection_bound(2, 65_536, 30), 2);
    }

    #[test]
    fn the_limit_is_read_and_raising_it_is_idempotent() {
        let first = raise().unwrap();
        assert!(first.soft <= first.hard);
        let again = raise().unwrap();
        assert_eq!(again.raised_from, None);
        assert_eq!(again.soft, current().unwrap().soft);
        assert!(
            open_now().unwrap() >= 3,
            "stdin, stdout and stderr at least"
        );
    }
}
