//! The `[http]` section: an optional listener (off unless the section is present) serving
//! `/metrics`, `/healthz` and `POST /jobs/{name}/run`, the last guarded by a bearer token
//! (and answering `GET` too where `allow_get_trigger = true`, for hosted crons that only GET).
//! Its `[http.console]` sub-table turns on the operator console, on a listener of its own.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::problems::{Collector, Owner};
use super::read::deser;
use crate::secret::SecretSource;

/// Where `[http]` listens unless `listen` says otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9184";

/// Connections served at once unless `max_connections` says otherwise: a scraper, a monitor
/// and a few trigger calls need a handful, and each one costs a file descriptor that jobs and
/// the database also need.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// The largest `max_connections` accepted: beyond it the open-file limit, not this setting,
/// is what bounds the listener.
pub const MAX_MAX_CONNECTIONS: i64 = 65_536;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The bearer token of `POST /jobs/{name}/run`, read at each request (so a rotated file is
    /// picked up). Without one, every trigger request is refused.
    pub token: Option<SecretSource>,
    /// The most connections served at once; the daemon lowers it further when the open-file
    /// limit would leave too few descriptors for jobs and the database.
    pub max_connections: usize,
    /// `GET /jobs/{name}/run` triggers a run as `POST` does: Vercel cron and similar callers
    /// only send `GET` (with the bearer token). Off by default, since a `GET` is expected to
    /// change nothing and may be sent by link previews and prefetchers.
    pub allow_get_trigger: bool,
    /// `[http.console]`: the operator console, off unless present.
    pub console: Option<ConsoleConfig>,
}

/// Where the console listens unless `listen` says otherwise: loopback only, and never the
/// port of the webhooks and metrics, so exposing those never exposes the console.
pub const DEFAULT_CONSOLE_LISTEN: &str = "127.0.0.1:9185";
/// How long a console login lasts unless `session_ttl` says otherwise: a working day.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// `[http.console]`: the server-rendered operator console.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleConfig {
    pub listen: SocketAddr,
    /// The users and their argon2 password hashes (`tickler console add-user`), resolved
    /// against the config file's folder; read again whenever it changes.
    pub users_file: PathBuf,
    /// Marks the session cookie `Secure`: set it when a TLS proxy serves the console.
    pub secure_cookie: bool,
    /// A session ends this long after its login.
    pub session_ttl: Duration,
    /// The reverse proxies in front of the console: a request from one of them is taken to
    /// come from the last `X-Forwarded-For` hop that is not one of them (for the login limit
    /// and the audit log's origin). Empty by default: the header is ignored.
    pub trusted_proxies: Vec<IpAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleRaw {
    listen: Option<Spanned<String>>,
    users_file: Option<PathBuf>,
    #[serde(default)]
    secure_cookie: bool,
    session_ttl: Option<Spanned<String>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpRaw {
    console: Option<ConsoleRaw>,
    listen: Option<Spanned<String>>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    max_connections: Option<Spanned<i64>>,
    #[serde(default)]
    allow_get_trigger: bool,
}

pub(super) fn http_config(
    value: Option<Spanned<DeValue<'_>>>,
    config_dir: &Path,
    c: &mut Collector<'_>,
) -> Option<HttpConfig> {
    let value = value?;
    let span = value.span();
    let raw = match deser::<HttpRaw>(value) {
        Ok(raw) => raw,
        Err(e) => {
            c.toml_value(Owner::Section("invalid `[http]` section"), &e, span);
            return None;
        }
    };
    let listen = listen_of(raw.listen.as_ref(), "[http]", DEFAULT_LISTEN, c)?;
    let console = match raw.console {
        None => None,
        Some(console) => Some(console_config(console, span.clone(), config_dir, c)?),
    };
    let max_connections = match &raw.max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(n) if (1..=MAX_MAX_CONNECTIONS).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            c.push(
                "invalid `max_connections` in `[http]`",
                Some(n.span()),
                format!("must be 1-{MAX_MAX_CONNECTIONS} (found {})", n.get_ref()),
            );
            return None;
        }
    };
    let token = match SecretSource::from_pair("token", raw.token_env, raw.token_file) {
        Ok(t) => t,
        Err(e) => {
            c.push("invalid `[http]` section", Some(span.clone()), e);
            return None;
        }
    };
    // Read by the daemon when it starts (and at each request), not here: the other commands
    // load this config where a systemd credential or the service's environment is absent.
    Some(HttpConfig {
        listen,
        token,
        max_connections,
        allow_get_trigger: raw.allow_get_trigger,
        console,
    })
}

/// A `listen` address of `section`, or its default.
fn listen_of(
    listen: Option<&Spanned<String>>,
    section: &str,
    default: &str,
    c: &mut Collector<'_>,
) -> Option<SocketAddr> {
    let Some(l) = listen else {
        return Some(default.parse().expect("default listen address"));
    };
    match l.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            c.push(
                format!("invalid `listen` in `{section}`"),
                Some(l.span()),
                format!(
                    "`{}` is not an address and port; write e.g. `{default}` (a host name is \
                     not accepted)",
                    l.get_ref()
                ),
            );
            None
        }
    }
}

fn console_config(
    raw: ConsoleRaw,
    span: std::ops::Range<usize>,
    config_dir: &Path,
    c: &mut Collector<'_>,
) -> Option<ConsoleConfig> {
    let listen = listen_of(
        raw.listen.as_ref(),
        "[http.console]",
        DEFAULT_CONSOLE_LISTEN,
        c,
    )?;
    let Some(users_file) = raw.users_file else {
        c.push(
            "invalid `[http.console]` section",
            Some(span),
            "`users_file` is required: name the file of console users, e.g. \
             `users_file = \"console-users.toml\"`, and add a user with `tickler console \
             add-user NAME --role operator`",
        );
        return None;
    };
    let session_ttl = match &raw.session_ttl {
        None => DEFAULT_SESSION_TTL,
        Some(t) => {
            let parsed = crate::time::duration::parse(t.get_ref()).map_err(|e| e.to_string());
            let checked = parsed.and_then(|d| {
                if (Duration::from_secs(60)..=Duration::from_secs(30 * 86_400)).contains(&d) {
                    Ok(d)
                } else {
                    Err(format!("must be 1m-30d (found `{}`)", t.get_ref()))
                }
            });
            match checked {
                Ok(d) => d,
                Err(e) => {
                    c.push(
                        "invalid `session_ttl` in `[http.console]`",
                        Some(t.span()),
                        e,
                    );
                    return None;
                }
            }
        }
    };
    let mut trusted_proxies = vec![];
    for p in &raw.trusted_proxies {
        match p.get_ref().trim().parse::<IpAddr>() {
            Ok(ip) => trusted_proxies.push(ip.to_canonical()),
            Err(_) => {
                c.push(
                    "invalid `trusted_proxies` in `[http.console]`",
                    Some(p.span()),
                    format!(
                        "`{}` is not an IP address; write the proxy's address, e.g. \
                         `127.0.0.1` or `::1` (a host name or a network like `10.0.0.0/8` is \
                         not accepted)",
                        p.get_ref()
                    ),
                );
                return None;
            }
        }
    }
    Some(ConsoleConfig {
        listen,
        users_file: config_dir.join(users_file),
        secure_cookie: raw.secure_cookie,
        session_ttl,
        trusted_proxies,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;

    fn err(text: &str) -> String {
        match parse(Path::new("t.toml"), text) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{text:?} should not parse"),
        }
    }

    #[test]
    fn http_is_off_unless_present_and_listens_on_loopback_by_default() {
        let c = parse(Path::new("t.toml"), "").unwrap();
        assert!(c.http.is_none());
        let c = parse(Path::new("t.toml"), "[http]\n").unwrap();
        let h = c.http.unwrap();
        assert_eq!(h.listen.to_string(), "127.0.0.1:9184");
        assert!(h.token.is_none());
        assert_eq!(h.max_connections, 128);
        assert!(
            !h.allow_get_trigger,
            "GET does not trigger unless asked for"
        );
        let c = parse(Path::new("t.toml"), "[http]\nmax_connections = 3\n").unwrap();
        assert_eq!(c.http.unwrap().max_connections, 3);
        let c = parse(Path::new("t.toml"), "[http]\nallow_get_trigger = true\n").unwrap();
        assert!(c.http.unwrap().allow_get_trigger);
    }

    #[test]
    fn the_console_is_off_unless_present_and_has_its_own_loopback_port() {
        let c = parse(Path::new("t.toml"), "[http]\n").unwrap();
        assert!(c.http.unwrap().console.is_none());
        let text = "[http.console]\nusers_file = \"users.toml\"\n";
        let c = parse(Path::new("/etc/tickler/config.toml"), text).unwrap();
        let console = c.http.unwrap().console.unwrap();
        assert_eq!(console.listen.to_string(), "127.0.0.1:9185");
        assert_eq!(
            console.users_file,
            Path::new("/etc/tickler/users.toml"),
            "relative to the config file's folder"
        );
        assert!(!console.secure_cookie);
        assert_eq!(console.session_ttl.as_secs(), 8 * 3600);
        assert!(
            console.trusted_proxies.is_empty(),
            "X-Forwarded-For ignored by default"
        );
        let text = "[http.console]\nusers_file = \"/srv/u.toml\"\nlisten = \"0.0.0.0:8443\"\n\
                    secure_cookie = true\nsession_ttl = \"30m\"\n\
                    trusted_proxies = [\"127.0.0.1\", \"::1\", \"::ffff:10.0.0.2\"]\n";
        let console = parse(Path::new("t.toml"), text)
            .unwrap()
            .http
            .unwrap()
            .console
            .unwrap();
        assert_eq!(console.users_file, Path::new("/srv/u.toml"));
        assert_eq!(console.listen.to_string(), "0.0.0.0:8443");
        assert!(console.secure_cookie);
        assert_eq!(console.session_ttl.as_secs(), 1800);
        let proxies: Vec<String> = console
            .trusted_proxies
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(proxies, ["127.0.0.1", "::1", "10.0.0.2"]);
    }

    #[test]
    fn bad_http_settings_say_where_and_what() {
        assert_eq!(
            err("[http]\nlisten = \"localhost:80\"\n"),
            "invalid `listen` in `[http]` (t.toml line 2, column 10): `localhost:80` is not an \
             address and port; write e.g. `127.0.0.1:9184` (a host name is not accepted)"
        );
        assert!(
            parse(
                Path::new("t.toml"),
                "[http]\ntoken_file = \"/nonexistent/token\"\n"
            )
            .is_ok(),
            "the token is read by the daemon, so `tickler history` works from a shell"
        );
        assert!(err("[http]\nport = 80\n").contains("unknown field `port`"));
        assert_eq!(
            err("[http]\nallow_get_trigger = \"yes\"\n"),
            "invalid `allow_get_trigger` in `[http]` (t.toml line 2, column 21): invalid type: \
             string \"yes\", expected a boolean"
        );
        for (text, message) in [
            (
                "[http.console]\n",
                "invalid `[http.console]` section (t.toml line 1, column 2): `users_file` is \
                 required: name the file of console users, e.g. `users_file = \
                 \"console-users.toml\"`, and add a user with `tickler console add-user NAME \
                 --role operator`",
            ),
            (
                "[http.console]\nusers_file = \"u.toml\"\nlisten = \"localhost:9185\"\n",
                "invalid `listen` in `[http.console]` (t.toml line 3, column 10): \
                 `localhost:9185` is not an address and port; write e.g. `127.0.0.1:9185` (a \
                 host name is not accepted)",
            ),
            (
                "[http.console]\nusers_file = \"u.toml\"\nsession_ttl = \"10s\"\n",
                "invalid `session_ttl` in `[http.console]` (t.toml line 3, column 15): must be \
                 1m-30d (found `10s`)",
            ),
            (
                "[http.console]\nusers_file = \"u.toml\"\nsession_ttl = \"soon\"\n",
                "invalid `session_ttl` in `[http.console]` (t.toml line 3, column 15): invalid \
                 duration `soon`: expected number at 0; write e.g. `30s`, `10m`, `1h30m`, `7d`",
            ),
            (
                "[http.console]\nusers_file = \"u.toml\"\ntrusted_proxies = [\"127.0.0.1\", \"proxy.lan\"]\n",
                "invalid `trusted_proxies` in `[http.console]` (t.toml line 3, column 33): \
                 `proxy.lan` is not an IP address; write the proxy's address, e.g. `127.0.0.1` \
                 or `::1` (a host name or a network like `10.0.0.0/8` is not accepted)",
            ),
            (
                "[http.console]\nusers_file = \"u.toml\"\ntrusted_proxies = \"127.0.0.1\"\n",
                "invalid `trusted_proxies` in `[http.console]` (t.toml line 3, column 19): \
                 invalid type: string \"127.0.0.1\", expected a sequence",
            ),
            (
                "[http.console]\nusers_file = \"u.toml\"\nsecure_cookie = 1\n",
                "invalid `secure_cookie` in `[http.console]` (t.toml line 3, column 17): \
                 invalid type: integer `1`, expected a boolean",
            ),
        ] {
            assert_eq!(err(text), message, "{text}");
        }
        assert!(
            err("[http.console]\nusers_file = \"u\"\nport = 1\n").contains("unknown field `port`")
        );
        for (bad, found) in [("0", "0"), ("-1", "-1"), ("65537", "65537")] {
            assert_eq!(
                err(&format!("[http]\nmax_connections = {bad}\n")),
                format!(
                    "invalid `max_connections` in `[http]` (t.toml line 2, column 19): must be \
                     1-65536 (found {found})"
                )
            );
        }
    }
}
