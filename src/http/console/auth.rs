//! Who is using the console: users checked against the users file (read again at each login),
//! sessions held in memory (a random 256-bit token in an `HttpOnly`, `SameSite=Strict` cookie,
//! ended server-side at logout or after `session_ttl`), a CSRF token per session checked on
//! every `POST`, and a bounded limit of failed logins per client address and per user name.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::users::{Role, read_users, verify_password};

/// The session cookie's name.
pub const COOKIE: &str = "tickler_console";
/// The pre-session cookie of the login form (double-submit CSRF token).
pub const LOGIN_COOKIE: &str = "tickler_login";
/// Failed logins allowed per client address and per user name within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The most sessions and rate-limit keys held: beyond them the oldest go first, so a flood of
/// logins cannot grow the daemon's memory.
const MAX_SESSIONS: usize = 10_000;
const MAX_LIMITED: usize = 10_000;

/// 32 random bytes from the OS, hex-encoded.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    // The OS's generator does not fail on Linux once booted; a failure must not yield a
    // guessable token, so it stops the request instead.
    getrandom::fill(&mut b).expect("the OS random generator");
    hex::encode(b)
}

/// Whether `t` has the shape of [`random_token`]'s tokens (64 lower-case hex digits).
pub fn is_token(t: &str) -> bool {
    t.len() == 64 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    expires: Instant,
    /// A message for the next page (after an action's redirect).
    pub flash: Option<String>,
}

/// The sessions of the console.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session; returns its token.
    pub fn open(&self, user: &str, role: Role, ttl: Duration) -> String {
        let token = random_token();
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            token.clone(),
            Session {
                user: user.to_string(),
                role,
                csrf: random_token(),
                expires: now + ttl,
                flash: None,
            },
        );
        token
    }

    /// The live session of `token`, its flash message taken out when `take_flash`.
    pub fn get(&self, token: &str, take_flash: bool) -> Option<Session> {
        let mut map = self.map.lock().expect("sessions lock");
        let s = map.get_mut(token)?;
        if s.expires <= Instant::now() {
            map.remove(token);
            return None;
        }
        let out = s.clone();
        if take_flash {
            s.flash = None;
        }
        Some(out)
    }

    pub fn set_flash(&self, token: &str, message: String) {
        if let Some(s) = self.map.lock().expect("sessions lock").get_mut(token) {
            s.flash = Some(message);
        }
    }

    /// Ends a session: its cookie is refused from now on.
    pub fn close(&self, token: &str) {
        self.map.lock().expect("sessions lock").remove(token);
    }
}

/// Failed logins by client address and by user name.
#[derive(Default)]
pub struct LoginLimit {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimit {
    fn keys(ip: IpAddr, user: &str) -> [String; 2] {
        [format!("ip {ip}"), format!("user {user}")]
    }

    /// `Some(seconds to wait)` when this address or name failed too often lately.
    pub fn blocked(&self, ip: IpAddr, user: &str, now: Instant) -> Option<u64> {
        let map = self.failures.lock().expect("login limit lock");
        Self::keys(ip, user)
            .iter()
            .filter_map(|k| map.get(k))
            .filter_map(|times| {
                let recent: Vec<&Instant> = times
                    .iter()
                    .filter(|t| now.saturating_duration_since(**t) < FAILURE_WINDOW)
                    .collect();
                (recent.len() >= MAX_FAILURES).then(|| {
                    let oldest = recent.iter().min().copied().copied().unwrap_or(now);
                    (FAILURE_WINDOW.saturating_sub(now.saturating_duration_since(oldest)))
                        .as_secs()
                        .max(1)
                })
            })
            .max()
    }

    pub fn failed(&self, ip: IpAddr, user: &str, now: Instant) {
        let mut map = self.failures.lock().expect("login limit lock");
        if map.len() >= MAX_LIMITED {
            map.retain(|_, times| {
                times.retain(|t| now.saturating_duration_since(*t) < FAILURE_WINDOW);
                !times.is_empty()
            });
            if map.len() >= MAX_LIMITED {
                map.clear();
            }
        }
        for k in Self::keys(ip, user) {
            let times = map.entry(k).or_default();
            times.retain(|t| now.saturating_duration_since(*t) < FAILURE_WINDOW);
            times.push(now);
        }
    }

    /// A successful login forgets the name's failures (not the address's).
    pub fn succeeded(&self, user: &str) {
        self.failures
            .lock()
            .expect("login limit lock")
            .remove(&format!("user {user}"));
    }
}

/// Why a login was refused.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Wrong name or password (which one is not told).
    Wrong,
    /// The users file cannot be read or is invalid (logged with what is wrong).
    NoUsers,
}

/// Checks a name and password against the users file, read now.
pub fn check_login(users_file: &Path, user: &str, password: &str) -> Result<Role, Refused> {
    let users = match read_users(users_file) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "console login refused: the users file is unusable");
            return Err(Refused::NoUsers);
        }
    };
    match users.iter().find(|u| u.name == user) {
        Some(u) if verify_password(&u.password_hash, password) => Ok(u.role),
        Some(_) => Err(Refused::Wrong),
        None => {
            // The same work as a real check, so timing does not tell which names exist.
            let _ = verify_password(DUMMY_HASH, password);
            Err(Refused::Wrong)
        }
    }
}

/// A valid argon2id hash of no one's password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$\
    Mgd3Dk1uRBt1f1dCt6/5vv0NTRk8c6ahozfDwVmKuFk";

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_block_the_address_and_the_name_for_the_window() {
        let l = LoginLimit::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..4 {
            l.failed(ip, "ana", t0);
        }
        assert_eq!(l.blocked(ip, "ana", t0), None);
        l.failed(ip, "ana", t0);
        assert_eq!(l.blocked(ip, "ana", t0), Some(900));
        assert!(l.blocked(ip, "bob", t0).is_some(), "by address");
        assert!(l.blocked(other, "ana", t0).is_some(), "by name");
        assert_eq!(l.blocked(other, "bob", t0), None);
        assert_eq!(l.blocked(ip, "ana", t0 + FAILURE_WINDOW), None);
    }

    #[test]
    fn sessions_end_at_logout_and_after_their_ttl() {
        let s = Sessions::default();
        let t = s.open("ana", Role::Viewer, Duration::from_secs(60));
        assert_eq!(t.len(), 64);
        let got = s.get(&t, false).unwrap();
        assert_eq!(got.user, "ana");
        assert_eq!(got.csrf.len(), 64);
        assert_ne!(got.csrf, t);
        s.close(&t);
        assert!(s.get(&t, false).is_none());
        let t = s.open("ana", Role::Viewer, Duration::ZERO);
        assert!(s.get(&t, false).is_none());
        assert!(s.get("nonsense", false).is_none());
    }

    #[test]
    fn the_dummy_hash_is_a_hash() {
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert_eq!(cookie("a=1; tickler_console=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(cookie("a=1", COOKIE), None);
    }
}
