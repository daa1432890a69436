//! A sleep the kernel ends at its instant (a `timerfd`), for what an idle daemon waits on each
//! beat. tokio's timer wheel wakes its driver at every wheel level a long timer passes on its
//! way down: a 30 s sleep costs three wakeups (about 26 s, 4 s and 60 ms before its end), and
//! each is a context switch of an otherwise idle process. A timerfd wakes it once, when it
//! expires.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

/// One timer, armed again by each [`Alarm::sleep_until`]. Should the kernel refuse a timerfd
/// (none is left, a seccomp filter), it sleeps on tokio's timer instead, said once in the log.
pub struct Alarm {
    fd: Option<AsyncFd<File>>,
}

impl Default for Alarm {
    /// Needs a tokio runtime with its I/O driver.
    fn default() -> Alarm {
        match open() {
            Ok(fd) => Alarm { fd: Some(fd) },
            Err(e) => {
                tracing::warn!(error = %e, "no timerfd; sleeping on tokio's timer");
                Alarm { fd: None }
            }
        }
    }
}

impl Alarm {
    /// Returns at `at`, at once if it has passed.
    pub async fn sleep_until(&mut self, at: Instant) {
        let wait = at.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return;
        }
        if let Some(fd) = &self.fd {
            match expire_after(fd, wait).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the timerfd failed; sleeping on tokio's timer");
                    self.fd = None;
                }
            }
        }
        tokio::time::sleep_until(at.into()).await;
    }
}

fn open() -> io::Result<AsyncFd<File>> {
    // SAFETY: creates a descriptor and passes no memory; it is owned just below.
    let raw = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just created and nothing else owns it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    // SAFETY: the `File` owns the descriptor and keeps it open until the `AsyncFd` (its only
    // owner from here on) is dropped; nothing replaces it.
    unsafe { AsyncFd::register_with_interest(file, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Arms the timer to expire once after `wait` (which is not zero: zero disarms it) and waits
/// for the expiry. Arming again drops an expiry not read yet.
async fn expire_after(fd: &AsyncFd<File>, wait: Duration) -> io::Result<()> {
    arm(fd, wait)?;
    loop {
        let mut ready = fd.readable().await?;
        // The expiry count (8 bytes); reading it makes the descriptor quiet again.
        let mut count = [0u8; 8];
        match ready.try_io(|f| f.get_ref().read(&mut count)) {
            Ok(read) => return read.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

fn arm(fd: &AsyncFd<File>, wait: Duration) -> io::Result<()> {
    let value = libc::timespec {
        tv_sec: libc::time_t::try_from(wait.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(wait.subsec_nanos()),
    };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: value,
    };
    // SAFETY: `spec` outlives the call, which only reads it; the old value is not asked for.
    let rc = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_alarm_wakes_at_its_instant_and_again_when_rearmed() {
        let mut alarm = Alarm::default();
        assert!(alarm.fd.is_some(), "this kernel gave no timerfd");
        for wait_ms in [40u64, 15, 60] {
            let start = Instant::now();
            let at = start + Duration::from_millis(wait_ms);
            tokio::time::timeout(Duration::from_secs(10), alarm.sleep_until(at))
                .await
                .expect("the alarm never went off");
            let now = Instant::now();
            assert!(now >= at, "woke {:?} early", at - now);
        }
        assert!(alarm.fd.is_some(), "the timerfd failed and was replaced");
    }

    #[tokio::test]
    async fn an_alarm_for_a_past_instant_returns_at_once() {
        let mut alarm = Alarm::default();
        let past = Instant::now();
        tokio::time::timeout(Duration::from_secs(1), alarm.sleep_until(past))
            .await
            .expect("an instant already passed was waited for");
    }

    #[tokio::test]
    async fn an_alarm_rearmed_before_expiry_keeps_only_the_new_instant() {
        let mut alarm = Alarm::default();
        // Armed for an hour, dropped unfinished, then armed for 20 ms: the hour is gone.
        let far = Instant::now() + Duration::from_secs(3600);
        let _ = tokio::time::timeout(Duration::from_millis(10), alarm.sleep_until(far)).await;
        let near = Instant::now() + Duration::from_millis(20);
        tokio::time::timeout(Duration::from_secs(10), alarm.sleep_until(near))
            .await
            .expect("the re-armed alarm never went off");
        assert!(Instant::now() >= near);
        assert!(alarm.fd.is_some(), "the timerfd failed and was replaced");
    }

    #[tokio::test]
    async fn an_expiry_left_unread_does_not_end_the_next_sleep_early() {
        let mut alarm = Alarm::default();
        // Armed for 5 ms (as by a sleep dropped before its end) and expired with nobody
        // reading it: tokio has it ready.
        let fd = alarm.fd.as_ref().expect("this kernel gave no timerfd");
        arm(fd, Duration::from_millis(5)).unwrap();
        let ready = tokio::time::timeout(Duration::from_secs(10), fd.readable())
            .await
            .expect("the alarm never expired")
            .unwrap();
        drop(ready);
        // Armed again: the old expiry, still unread and still ready to tokio, is not this one.
        let later = Instant::now() + Duration::from_millis(50);
        tokio::time::timeout(Duration::from_secs(10), alarm.sleep_until(later))
            .await
            .expect("the re-armed alarm never went off");
        let now = Instant::now();
        assert!(
            now >= later,
            "woke {:?} early on the old expiry",
            later - now
        );
    }
}
