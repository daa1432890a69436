//! The `[http]` section: an optional listener (off unless the section is present) serving
//! `/metrics`, `/healthz` and `POST /jobs/{name}/run`, the last guarded by a bearer token
//! (and answering `GET` too where `allow_get_trigger = true`, for hosted crons that only GET).

use std::net::SocketAddr;
use std::path::PathBuf;

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpRaw {
    listen: Option<Spanned<String>>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    max_connections: Option<Spanned<i64>>,
    #[serde(default)]
    allow_get_trigger: bool,
}

pub(super) fn http_config(
    value: Option<Spanned<DeValue<'_>>>,
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
    let listen = match &raw.listen {
        None => DEFAULT_LISTEN.parse().expect("default listen address"),
        Some(l) => match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                c.push(
                    "invalid `listen` in `[http]`",
                    Some(l.span()),
                    format!(
                        "`{}` is not an address and port; write e.g. `{DEFAULT_LISTEN}` \
                         (a host name is not accepted)",
                        l.get_ref()
                    ),
                );
                return None;
            }
        },
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
