//! Who is using the console: users checked against the users file (read again whenever it
//! changed), sessions held in memory (a random 256-bit token in an `HttpOnly`,
//! `SameSite=Strict` cookie, ended server-side at logout, after `session_ttl`, or at the first
//! request after its user was removed or got another password or role), a CSRF token per
//! session checked on every `POST`, and a bounded limit of login attempts per client address
//! and per user name, counted before the password is checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::users::{Role, User, UsersError, check_name, read_users, verify_password};

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

/// A logged-in user, with what the users file said of them at login: a request whose user is
/// gone from the file, has another password or another role now ends the session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    /// SHA-256 of the password hash the login was checked against.
    digest: [u8; 32],
    expires: Instant,
    /// A message for the next page (after an action's redirect).
    pub flash: Option<String>,
}

/// SHA-256 of a password hash (a PHC string): what a session remembers of it.
pub fn hash_digest(password_hash: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(password_hash.as_bytes()).into()
}

/// What [`Sessions::get`] found.
#[derive(Debug)]
pub enum Found {
    Live(Session),
    /// No such session, or it expired.
    None,
    /// The session was ended now: its user was removed from the users file, or their password
    /// or role changed since the login.
    Revoked {
        user: String,
    },
}

/// The sessions of the console.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session for `user` as the users file has them now (`role`, `digest` of their
    /// password hash); returns its token.
    pub fn open(&self, user: &str, role: Role, digest: [u8; 32], ttl: Duration) -> String {
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
                digest,
                expires: now + ttl,
                flash: None,
            },
        );
        token
    }

    /// The live session of `token`, checked against `users` (the users file as it is now):
    /// ended when its user is gone or their password hash or role is not the login's. Its
    /// flash message is taken out when `take_flash`.
    pub fn get(&self, token: &str, take_flash: bool, users: &[User]) -> Found {
        let mut map = self.map.lock().expect("sessions lock");
        let Some(s) = map.get_mut(token) else {
            return Found::None;
        };
        if s.expires <= Instant::now() {
            map.remove(token);
            return Found::None;
        }
        let same = users.iter().any(|u| {
            u.name == s.user && u.role == s.role && hash_digest(&u.password_hash) == s.digest
        });
        if !same {
            let user = s.user.clone();
            map.remove(token);
            return Found::Revoked { user };
        }
        let out = s.clone();
        if take_flash {
            s.flash = None;
        }
        Found::Live(out)
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

/// The users file as last read, read again only when it changed (another inode, size, or
/// modification or change time), so a page view costs a `stat`, not a parse.
pub struct UsersCache {
    path: PathBuf,
    last: Mutex<Option<(Stamp, Arc<Vec<User>>)>>,
}

/// What tells that the users file changed: `tickler console add-user` renames a new file over
/// it (a new inode); an edit in place changes the size or the times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt as _;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl UsersCache {
    pub fn new(path: PathBuf) -> UsersCache {
        UsersCache {
            path,
            last: Mutex::new(None),
        }
    }

    /// The users of the file now; `Err` (logged) when it cannot be read or is invalid, in which
    /// case every request is refused until it is fixed.
    pub fn users(&self) -> Result<Arc<Vec<User>>, UsersError> {
        let logged = |e: UsersError| {
            tracing::error!(error = %e, "console: the users file is unusable; refusing everyone");
            e
        };
        let meta = std::fs::metadata(&self.path).map_err(|cause| {
            logged(UsersError::Read {
                path: self.path.clone(),
                cause,
            })
        })?;
        let stamp = Stamp::of(&meta);
        let mut last = self.last.lock().expect("users cache lock");
        if let Some((s, users)) = last.as_ref()
            && *s == stamp
        {
            return Ok(users.clone());
        }
        // Read after the stamp: a change meanwhile gives a new stamp, and a new read, next time.
        *last = None;
        let users = Arc::new(read_users(&self.path).map_err(logged)?);
        *last = Some((stamp, users.clone()));
        Ok(users)
    }
}

/// Failed logins by client address and by user name. An attempt counts from the moment it
/// begins ([`LoginLimit::try_begin`]), before its password is checked, so guesses sent in
/// parallel cannot all pass the limit while the first ones are still being checked; a
/// successful login takes its own attempt back.
#[derive(Default)]
pub struct LoginLimit {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

/// A login attempt counted by [`LoginLimit::try_begin`]; it stays counted (as a failure)
/// unless [`Attempt::succeeded`] or [`Attempt::forgive`] takes it back.
#[must_use]
pub struct Attempt<'a> {
    limit: &'a LoginLimit,
    keys: Vec<String>,
    at: Instant,
}

impl Attempt<'_> {
    /// The login succeeded: the name's failures are forgotten (not the address's), and this
    /// attempt does not count against the address.
    pub fn succeeded(self) {
        let mut map = self.limit.failures.lock().expect("login limit lock");
        for k in &self.keys {
            if k.starts_with("user ") {
                map.remove(k);
            } else {
                LoginLimit::take_back(&mut map, k, self.at);
            }
        }
    }

    /// The password was never checked (the server was busy): the attempt does not count.
    pub fn forgive(self) {
        let mut map = self.limit.failures.lock().expect("login limit lock");
        for k in &self.keys {
            LoginLimit::take_back(&mut map, k, self.at);
        }
    }
}

fn recent(times: &[Instant], now: Instant) -> impl Iterator<Item = &Instant> {
    times
        .iter()
        .filter(move |t| now.saturating_duration_since(**t) < FAILURE_WINDOW)
}

impl LoginLimit {
    /// The keys of an attempt: the address, and the name when it is one the users file could
    /// hold (any other is never a key, so junk names cannot fill the map).
    fn keys(ip: IpAddr, user: &str) -> Vec<String> {
        let mut keys = vec![format!("ip {ip}")];
        if check_name(user).is_ok() {
            keys.push(format!("user {user}"));
        }
        keys
    }

    fn take_back(map: &mut HashMap<String, Vec<Instant>>, key: &str, at: Instant) {
        if let Some(times) = map.get_mut(key) {
            if let Some(i) = times.iter().rposition(|t| *t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                map.remove(key);
            }
        }
    }

    /// Seconds to wait when `times` holds [`MAX_FAILURES`] within the window.
    fn wait_of(times: &[Instant], now: Instant) -> Option<u64> {
        let recent: Vec<&Instant> = recent(times, now).collect();
        (recent.len() >= MAX_FAILURES).then(|| {
            let oldest = recent.iter().min().copied().copied().unwrap_or(now);
            (FAILURE_WINDOW.saturating_sub(now.saturating_duration_since(oldest)))
                .as_secs()
                .max(1)
        })
    }

    /// Begins a login attempt of `user` from `ip`: counts it at once (as a failure until told
    /// otherwise) and returns it, or `Err(seconds to wait)` when this address or name failed
    /// [`MAX_FAILURES`] times within [`FAILURE_WINDOW`]. Checking and counting under one lock
    /// is what makes parallel guesses count.
    pub fn try_begin(&self, ip: IpAddr, user: &str, now: Instant) -> Result<Attempt<'_>, u64> {
        let keys = Self::keys(ip, user);
        let mut map = self.failures.lock().expect("login limit lock");
        if let Some(wait) = keys
            .iter()
            .filter_map(|k| map.get(k))
            .filter_map(|times| Self::wait_of(times, now))
            .max()
        {
            return Err(wait);
        }
        let fresh = keys.iter().filter(|k| !map.contains_key(*k)).count();
        if map.len() + fresh > MAX_LIMITED {
            Self::evict(&mut map, now);
        }
        for k in &keys {
            let times = map.entry(k.clone()).or_default();
            times.retain(|t| now.saturating_duration_since(*t) < FAILURE_WINDOW);
            times.push(now);
        }
        Ok(Attempt {
            limit: self,
            keys,
            at: now,
        })
    }

    /// Makes room in a full map: expired keys go first, then the least recently used of the
    /// keys that block nothing, and blocked keys (a name under attack) only when every key is
    /// blocked. A tenth goes at once, so a flood does not sort the map at every attempt.
    fn evict(map: &mut HashMap<String, Vec<Instant>>, now: Instant) {
        map.retain(|_, times| {
            times.retain(|t| now.saturating_duration_since(*t) < FAILURE_WINDOW);
            !times.is_empty()
        });
        let keep = MAX_LIMITED - MAX_LIMITED / 10;
        if map.len() <= keep {
            return;
        }
        let mut order: Vec<(bool, Instant, String)> = map
            .iter()
            .map(|(k, times)| {
                let blocked = Self::wait_of(times, now).is_some();
                let last = times.iter().max().copied().unwrap_or(now);
                (blocked, last, k.clone())
            })
            .collect();
        // Unblocked before blocked; within each, the oldest last attempt first.
        order.sort();
        let excess = map.len() - keep;
        for (_, _, k) in order.into_iter().take(excess) {
            map.remove(&k);
        }
    }

    /// `Some(seconds to wait)` when this address or name failed too often lately.
    pub fn blocked(&self, ip: IpAddr, user: &str, now: Instant) -> Option<u64> {
        let map = self.failures.lock().expect("login limit lock");
        Self::keys(ip, user)
            .iter()
            .filter_map(|k| map.get(k))
            .filter_map(|times| Self::wait_of(times, now))
            .max()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.failures.lock().expect("login limit lock").len()
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

/// Checks a name and password against `users` (the users file as it is now); returns the
/// user's role and the digest of their hash for the session. Argon2 runs here: call it off
/// the async workers.
pub fn check_login(
    users: &[User],
    user: &str,
    password: &str,
) -> Result<(Role, [u8; 32]), Refused> {
    match users.iter().find(|u| u.name == user) {
        Some(u) if verify_password(&u.password_hash, password) => {
            Ok((u.role, hash_digest(&u.password_hash)))
        }
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

    fn fail(l: &LoginLimit, ip: IpAddr, user: &str, at: Instant) {
        drop(l.try_begin(ip, user, at).expect("not blocked yet"));
    }

    #[test]
    fn five_attempts_block_the_address_and_the_name_for_the_window() {
        let l = LoginLimit::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..4 {
            fail(&l, ip, "ana", t0);
        }
        assert_eq!(l.blocked(ip, "ana", t0), None);
        fail(&l, ip, "ana", t0);
        assert_eq!(l.blocked(ip, "ana", t0), Some(900));
        assert_eq!(l.try_begin(ip, "ana", t0).err(), Some(900));
        assert!(l.blocked(ip, "bob", t0).is_some(), "by address");
        assert!(l.blocked(other, "ana", t0).is_some(), "by name");
        assert_eq!(l.blocked(other, "bob", t0), None);
        assert_eq!(l.blocked(ip, "ana", t0 + FAILURE_WINDOW), None);
        assert!(l.try_begin(ip, "ana", t0 + FAILURE_WINDOW).is_ok());
    }

    #[test]
    fn an_attempt_counts_before_its_password_is_checked() {
        let l = LoginLimit::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        // Five attempts under way at once: the sixth is refused before any of them finished.
        let open: Vec<Attempt<'_>> = (0..5)
            .map(|_| l.try_begin(ip, "ana", t0).unwrap())
            .collect();
        assert!(l.try_begin(ip, "ana", t0).is_err());
        // A success takes its attempt back (and the name's failures); one never checked is
        // forgiven; the other three stay counted against the address.
        let mut open = open.into_iter();
        open.next().unwrap().succeeded();
        open.next().unwrap().forgive();
        drop(open);
        assert_eq!(l.blocked(ip, "ana", t0), None);
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(l.blocked(other, "ana", t0), None, "the name was forgiven");
        fail(&l, ip, "bob", t0);
        assert!(l.try_begin(ip, "bob", t0).is_ok());
        assert!(l.try_begin(ip, "bob", t0).is_err(), "3 + 2 by the address");
    }

    #[test]
    fn a_full_limit_evicts_expired_then_unblocked_keys_never_a_blocked_name() {
        let l = LoginLimit::default();
        let t0 = Instant::now();
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        // Keys from long ago, expired by the time of the flood.
        for i in 0..3000u32 {
            fail(&l, IpAddr::from(i.to_be_bytes()), &format!("o{i}"), t0);
        }
        // The name under attack, blocked a minute later.
        let t1 = t0 + Duration::from_secs(60);
        for _ in 0..MAX_FAILURES {
            fail(&l, attacker, "ana", t1);
        }
        // A flood from many addresses with names that could exist: each key one attempt.
        let flood = t0 + FAILURE_WINDOW + Duration::from_secs(1);
        for i in 0..(MAX_LIMITED as u32) {
            let ip = IpAddr::from((0x0b00_0000 + i).to_be_bytes());
            drop(l.try_begin(ip, &format!("u{i}"), flood));
        }
        assert!(l.len() <= MAX_LIMITED, "{}", l.len());
        assert!(
            l.blocked("10.9.9.9".parse().unwrap(), "ana", flood)
                .is_some(),
            "the targeted name stays blocked"
        );
        assert!(l.blocked(attacker, "x", flood).is_some());
        // Names that cannot be in the users file are never keys: only the address counts.
        let l = LoginLimit::default();
        for bad in ["", "a b", &"x".repeat(65), "ana\u{0}", "<script>"] {
            fail(&l, "10.0.0.3".parse().unwrap(), bad, t0);
        }
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn sessions_end_at_logout_after_their_ttl_and_when_the_user_changes() {
        let s = Sessions::default();
        let hash = crate::config::users::hash_password("a long password").unwrap();
        let ana = |role, password_hash: &str| User {
            name: "ana".into(),
            role,
            password_hash: password_hash.into(),
        };
        let users = vec![ana(Role::Viewer, &hash)];
        let digest = hash_digest(&hash);
        let live = |f: Found| match f {
            Found::Live(s) => Some(s),
            _ => None,
        };
        let t = s.open("ana", Role::Viewer, digest, Duration::from_secs(60));
        assert_eq!(t.len(), 64);
        let got = live(s.get(&t, false, &users)).unwrap();
        assert_eq!(got.user, "ana");
        assert_eq!(got.csrf.len(), 64);
        assert_ne!(got.csrf, t);
        s.close(&t);
        assert!(matches!(s.get(&t, false, &users), Found::None));
        let t = s.open("ana", Role::Viewer, digest, Duration::ZERO);
        assert!(matches!(s.get(&t, false, &users), Found::None));
        assert!(matches!(s.get("nonsense", false, &users), Found::None));
        let other = crate::config::users::hash_password("another password").unwrap();
        for changed in [
            vec![],
            vec![ana(Role::Operator, &hash)],
            vec![ana(Role::Viewer, &other)],
        ] {
            let t = s.open("ana", Role::Viewer, digest, Duration::from_secs(60));
            assert!(
                matches!(s.get(&t, false, &changed), Found::Revoked { ref user } if user == "ana"),
                "{changed:?}"
            );
            // Ended for good, even with the old file back.
            assert!(matches!(s.get(&t, false, &users), Found::None));
        }
    }

    #[test]
    fn the_users_cache_reads_the_file_again_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let cache = UsersCache::new(path.clone());
        assert!(cache.users().is_err(), "no file");
        let user = |name: &str| User {
            name: name.into(),
            role: Role::Viewer,
            password_hash: DUMMY_HASH.into(),
        };
        std::fs::write(&path, crate::config::users::render_users(&[user("ana")])).unwrap();
        let first = cache.users().unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            Arc::ptr_eq(&first, &cache.users().unwrap()),
            "not read again"
        );
        std::fs::write(
            &path,
            crate::config::users::render_users(&[user("ana"), user("bob")]),
        )
        .unwrap();
        assert_eq!(cache.users().unwrap().len(), 2);
        std::fs::write(&path, "[[user]]\nname = 1\n").unwrap();
        assert!(cache.users().is_err(), "invalid");
        std::fs::remove_file(&path).unwrap();
        assert!(cache.users().is_err(), "removed");
    }

    #[test]
    fn the_dummy_hash_is_a_hash() {
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert_eq!(cookie("a=1; tickler_console=xyz; b=2", COOKIE), Some("xyz"));
        assert_eq!(cookie("a=1", COOKIE), None);
    }
}
