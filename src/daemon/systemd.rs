//! The service manager's notify protocol (`Type=notify` in `systemd/tickler.service`):
//! `READY=1` once migrations ran and the schedule is loaded, `RELOADING=1` then `READY=1` around
//! a reload, `STOPPING=1` when a shutdown begins, and `WATCHDOG=1` from the timer loop itself,
//! so a loop that stalls stops pinging and systemd restarts the daemon.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing. The variables stay
//! in this process's environment; command jobs are started without them, so a job's process
//! never speaks to systemd for the daemon.

use std::time::Duration;

use sd_notify::NotifyState;

/// What the daemon tells its service manager.
#[derive(Clone, Debug, Default)]
pub struct ServiceManager {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl ServiceManager {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, as systemd sets them.
    pub fn from_env() -> ServiceManager {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        ServiceManager {
            enabled,
            watchdog: sd_notify::watchdog_enabled().filter(|_| enabled),
        }
    }

    /// How often the timer loop pings the watchdog: a quarter of its timeout. The loop sleeps
    /// at most this long, so two pings are never more than half the timeout apart.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog
            .map(|t| (t / 4).max(Duration::from_millis(50)))
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Before a reload; [`ServiceManager::ready`] follows it, whether the reload was taken or
    /// refused. systemd 253 and newer want the monotonic time with it.
    pub fn reloading(&self) {
        let mut states = vec![
            NotifyState::Reloading,
            NotifyState::Status("reloading the config"),
        ];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.send(&states);
    }

    pub fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
        }
    }
}
