//! The operator console (`[http.console]`): server-rendered pages on a listener of its own
//! (127.0.0.1:9185 by default), never on the port of the webhooks and metrics. Every page works
//! without JavaScript and loads nothing from elsewhere (inline CSS, charts drawn as SVG on the
//! server). Users log in with a name and password from the users file (`auth.rs`); viewers
//! read, operators also act through `POST` forms, each carrying the session's CSRF token and
//! answered by a redirect back with a flash message.
//!
//! Routes: `GET /login`, `POST /login`, `POST /logout`; pages `GET /` (overview), `/jobs/NAME`,
//! `/runs/ID`, `/queue`, `/campaigns`, `/messages`, `/invoices`, `/audit`; actions (operator)
//! `POST /jobs/NAME/run`, `/jobs/NAME/pause`, `/jobs/NAME/resume`, `/tasks/ID/retry`,
//! `/tasks/ID/cancel`, `/tasks/ID/run-now`, `/invoices/NUMBER/paid`, `/contacts/block`,
//! `/contacts/unblock`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::Body;
use futures_util::future::BoxFuture;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::http::ConsoleConfig;
use crate::config::users::{Role, check_name, read_users};
use crate::daemon::Shared;

mod actions;
pub mod auth;
mod chart;
mod pages;

use auth::{Found, LoginLimit, Sessions, UsersCache};

/// Connections the console serves at once: a handful of operators' browsers.
const MAX_CONNECTIONS: usize = 64;
/// The largest form body accepted.
const MAX_FORM: usize = 16 * 1024;
/// Password checks run at once: each argon2 check takes about 19 MiB and a core for tens of
/// milliseconds, on a box whose timer loop must keep going.
const PASSWORD_CHECKS: usize = 2;
/// How long a login waits for a turn at the password check before it is answered 503: long
/// enough for a few checks ahead of it, short enough that a flood of logins from many
/// addresses holds few connections.
const CHECK_PATIENCE: Duration = Duration::from_secs(2);

/// Why the console could not start; the daemon does not start either.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "cannot listen on {listen} (`[http.console] listen`): {cause}; pick a free port or \
         remove the `[http.console]` section"
    )]
    Bind {
        listen: SocketAddr,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Users(#[from] crate::config::users::UsersError),
    #[error(
        "the console users file `{0}` has no user: add one with `tickler console add-user NAME \
         --role operator`"
    )]
    NoUsers(std::path::PathBuf),
}

/// The console's listener, bound at start-up beside `[http]`.
pub struct Listener {
    config: ConsoleConfig,
    listener: Option<TcpListener>,
}

impl Listener {
    pub fn new(config: ConsoleConfig) -> Listener {
        Listener {
            config,
            listener: None,
        }
    }

    /// Checks the users file (a missing or invalid one stops the start, naming the file),
    /// then binds.
    pub async fn bind(&mut self) -> Result<(), ConsoleError> {
        let users = read_users(&self.config.users_file)?;
        if users.is_empty() {
            return Err(ConsoleError::NoUsers(self.config.users_file.clone()));
        }
        let listen = self.config.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|cause| ConsoleError::Bind { listen, cause })?;
        self.listener = Some(listener);
        Ok(())
    }

    pub fn serve(self, shared: Arc<Shared>, tracker: TaskTracker) {
        let Some(listener) = self.listener else {
            return;
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(listen = %addr, "console listener started");
        }
        let stopping = shared.stopping.clone();
        let state = Arc::new(Console {
            shared,
            tracker,
            users: UsersCache::new(self.config.users_file.clone()),
            config: self.config,
            sessions: Sessions::default(),
            limit: LoginLimit::default(),
            checks: Arc::new(Semaphore::new(PASSWORD_CHECKS)),
            pages: pages::environment(),
        });
        tokio::spawn(super::serve(listener, state, MAX_CONNECTIONS, stopping));
    }
}

/// What the console's handlers see.
pub struct Console {
    pub shared: Arc<Shared>,
    pub tracker: TaskTracker,
    pub config: ConsoleConfig,
    pub sessions: Sessions,
    /// The users file, read again when it changes: every request is checked against it.
    pub users: UsersCache,
    pub limit: LoginLimit,
    /// Turns at the password check ([`PASSWORD_CHECKS`]).
    pub checks: Arc<Semaphore>,
    pub pages: minijinja::Environment<'static>,
}

impl super::Handler for Console {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> BoxFuture<'static, Response<super::Body>> {
        Box::pin(async move {
            let mut r = route(&self, req, peer).await;
            secure(&mut r);
            r
        })
    }
}

/// The logged-in user of a request.
pub struct Who {
    pub token: String,
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub flash: Option<String>,
    /// The client's address: the peer's, or behind a trusted proxy the one it forwarded.
    pub client: IpAddr,
}

async fn route(c: &Console, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let cookies = cookie_header(&req);
    let cookies = cookies.as_str();
    match (&method, path.as_str()) {
        (&Method::GET, "/login") => {
            return pages::login_page(c, None, auth::cookie(cookies, auth::LOGIN_COOKIE));
        }
        (&Method::POST, "/login") => {
            let client = client_ip(peer.ip(), req.headers(), &c.config.trusted_proxies);
            return login(c, req, client).await;
        }
        // Browsers ask for it on their own; redirected to the login form, its answer would
        // set a new login token under the form already shown.
        (&Method::GET, "/favicon.ico") => return text(StatusCode::NOT_FOUND, "not found"),
        _ => {}
    }
    let client = client_ip(peer.ip(), req.headers(), &c.config.trusted_proxies);
    let refuse = || {
        if method == Method::GET {
            redirect("/login")
        } else {
            text(StatusCode::FORBIDDEN, "log in first")
        }
    };
    let Some(token) = auth::cookie(cookies, auth::COOKIE).map(str::to_string) else {
        return refuse();
    };
    let Ok(users) = c.users.users() else {
        return users_unusable();
    };
    let s = match c.sessions.get(&token, method == Method::GET, &users) {
        Found::Live(s) => s,
        Found::None => return refuse(),
        Found::Revoked { user } => {
            tracing::info!(
                user,
                client = %client,
                "console session ended: the user was removed or their password or role changed"
            );
            let mut r = refuse();
            set_cookie(&mut r, &clear_cookie(c, auth::COOKIE));
            return r;
        }
    };
    let who = Who {
        token,
        user: s.user,
        role: s.role,
        csrf: s.csrf,
        flash: s.flash,
        client,
    };
    let query = query_of(req.uri().query());
    if method == Method::GET {
        return pages::page(c, &who, &path, &query).await;
    }
    if method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let form = match form_of(req).await {
        Some(f) => f,
        None => return text(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"),
    };
    let presented = form.get("csrf").map(String::as_str).unwrap_or("");
    if !super::same_token(presented.as_bytes(), who.csrf.as_bytes()) {
        tracing::warn!(user = %who.user, path, "console: missing or wrong CSRF token");
        return text(
            StatusCode::FORBIDDEN,
            "missing or wrong form token: reload the page",
        );
    }
    if path == "/logout" {
        c.sessions.close(&who.token);
        tracing::info!(user = %who.user, "console logout");
        let mut r = redirect("/login");
        set_cookie(&mut r, &clear_cookie(c, auth::COOKIE));
        return r;
    }
    if who.role != Role::Operator {
        tracing::warn!(user = %who.user, path, "console: a viewer tried to act");
        return text(StatusCode::FORBIDDEN, "viewers cannot act: ask an operator");
    }
    actions::act(c, &who, &path, &form).await
}

async fn login(c: &Console, req: Request<Incoming>, client: IpAddr) -> Response<Body> {
    let cookies = cookie_header(&req);
    let Some(form) = form_of(req).await else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large");
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    // Double submit: the form's token must match the pre-session cookie set with the form.
    let expected = auth::cookie(&cookies, auth::LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !super::same_token(field("csrf").as_bytes(), expected.as_bytes()) {
        return text(
            StatusCode::FORBIDDEN,
            "missing or wrong form token: reload the page",
        );
    }
    let (user, password) = (field("user"), field("password"));
    let now = Instant::now();
    // Counted before the password is checked, so parallel guesses count too.
    let attempt = match c.limit.try_begin(client, user, now) {
        Ok(a) => a,
        Err(wait) => {
            tracing::warn!(client = %client, user, "console login refused: too many failures");
            let mut r = text(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins: wait and try again",
            );
            retry_after(&mut r, wait);
            return r;
        }
    };
    let checked = if check_name(user).is_err() {
        // No user of the file can have this name (it says so publicly): no argon2 work.
        Err(auth::Refused::Wrong)
    } else {
        match c.users.users() {
            Err(_) => Err(auth::Refused::NoUsers),
            Ok(users) => {
                let turn = c.checks.clone().acquire_owned();
                let Ok(Ok(turn)) = tokio::time::timeout(CHECK_PATIENCE, turn).await else {
                    attempt.forgive();
                    tracing::warn!(client = %client, user, "console login refused: busy");
                    let mut r = text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many logins at once: try again in a moment",
                    );
                    retry_after(&mut r, 1);
                    return r;
                };
                let (u, p) = (user.to_string(), password.to_string());
                // Argon2 takes tens of milliseconds of CPU: off the async workers, holding its
                // turn until done even if the client leaves meanwhile.
                tokio::task::spawn_blocking(move || {
                    let checked = auth::check_login(&users, &u, &p);
                    drop(turn);
                    checked
                })
                .await
                .unwrap_or(Err(auth::Refused::Wrong))
            }
        }
    };
    match checked {
        Ok((role, digest)) => {
            attempt.succeeded();
            let token = c.sessions.open(user, role, digest, c.config.session_ttl);
            tracing::info!(user, role = role.as_str(), client = %client, "console login");
            let mut r = redirect("/");
            let secure = secure_attr(c);
            set_cookie(
                &mut r,
                &format!(
                    "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                    auth::COOKIE,
                    c.config.session_ttl.as_secs()
                ),
            );
            set_cookie(&mut r, &clear_cookie(c, auth::LOGIN_COOKIE));
            r
        }
        Err(refused) => {
            // The attempt stays counted.
            drop(attempt);
            tracing::warn!(user, client = %client, "console login refused");
            let message = match refused {
                auth::Refused::Wrong => "wrong user name or password",
                auth::Refused::NoUsers => {
                    "logins are refused: the users file is unusable (see the daemon's log)"
                }
            };
            let mut r = pages::login_page(c, Some(message), Some(expected));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
    }
}

/// The answer while the users file cannot be read or is invalid (the log says why): nobody is
/// let in, and sessions resume once it is fixed (each checked against it).
fn users_unusable() -> Response<Body> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the console refuses everyone: the users file is unusable (see the daemon's log)",
    )
}

fn retry_after(r: &mut Response<Body>, seconds: u64) {
    if let Ok(v) = header::HeaderValue::from_str(&seconds.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// The client's address: `peer`, unless `peer` is one of `trusted` proxies; then the last
/// `X-Forwarded-For` hop (right to left, as each proxy appends the address it saw) that is not
/// a trusted proxy, or the first hop when all are. A header that does not parse as a list of
/// addresses is ignored (the peer is the client), and so is an absent one.
pub(crate) fn client_ip(peer: IpAddr, headers: &header::HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut hops = vec![];
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            return peer;
        };
        for hop in value.split(',') {
            let hop = hop.trim();
            let Some(ip) = hop
                .parse::<IpAddr>()
                .ok()
                .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
            else {
                return peer;
            };
            hops.push(ip.to_canonical());
        }
    }
    hops.iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

/// The request's `Cookie` header ("" when it has none).
fn cookie_header(req: &Request<Incoming>) -> String {
    req.headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// `; Secure` when the console's cookies are marked so (behind TLS), else nothing.
pub(super) fn secure_attr(c: &Console) -> &'static str {
    if c.config.secure_cookie {
        "; Secure"
    } else {
        ""
    }
}

fn clear_cookie(c: &Console, name: &str) -> String {
    let secure = secure_attr(c);
    format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

pub(super) fn set_cookie(r: &mut Response<Body>, value: &str) {
    if let Ok(v) = header::HeaderValue::from_str(value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The headers every console answer carries.
fn secure(r: &mut Response<Body>) {
    let h = r.headers_mut();
    for (k, v) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(k, header::HeaderValue::from_static(v));
    }
}

pub(super) fn text(status: StatusCode, body: &str) -> Response<Body> {
    super::reply(status, "text/plain; charset=utf-8", format!("{body}\n"))
}

pub(super) fn redirect(to: &str) -> Response<Body> {
    let mut r = super::reply(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(v) = header::HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The pairs of a query string (the last one of a repeated key wins).
fn query_of(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// Bytes left as they are in a path segment: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one path segment: everything but unreserved characters percent-encoded, so `/`
/// (`INV/2026/7`), `+`, spaces and `%` survive the way back through [`decode_segment`].
pub(crate) fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// A path segment, percent-decoded after the path was split at `/` (not form-decoded: `+`
/// stays `+`); `None` when it is not UTF-8.
pub(crate) fn decode_segment(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|d| d.into_owned())
}

async fn form_of(req: Request<Incoming>) -> Option<HashMap<String, String>> {
    let body = super::body_within(req.into_body(), MAX_FORM).await.ok()?;
    Some(form_urlencoded::parse(&body).into_owned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_last_untrusted_hop() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxy = [ip("127.0.0.1"), ip("10.0.0.2")];
        let of = |peer: &str, xff: &[&str], trusted: &[IpAddr]| {
            let mut h = header::HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", header::HeaderValue::from_str(v).unwrap());
            }
            client_ip(ip(peer), &h, trusted).to_string()
        };
        for (peer, xff, client) in [
            ("127.0.0.1", &["203.0.113.7"][..], "203.0.113.7"),
            // A client's own header comes first; the proxies append what they saw.
            ("127.0.0.1", &["1.2.3.4, 203.0.113.7"], "203.0.113.7"),
            (
                "127.0.0.1",
                &["1.2.3.4, 203.0.113.7, 10.0.0.2"],
                "203.0.113.7",
            ),
            ("127.0.0.1", &["1.2.3.4", "203.0.113.7"], "203.0.113.7"),
            ("127.0.0.1", &["[2001:db8::1]:443"], "2001:db8::1"),
            ("::ffff:127.0.0.1", &["203.0.113.7"], "203.0.113.7"),
            ("127.0.0.1", &["10.0.0.2"], "10.0.0.2"),
            // Malformed or absent: the peer.
            ("127.0.0.1", &["1.2.3.4, nonsense"], "127.0.0.1"),
            ("127.0.0.1", &["203.0.113.7,"], "127.0.0.1"),
            ("127.0.0.1", &[], "127.0.0.1"),
            // Not from a trusted proxy: the header is anyone's to write.
            ("198.51.100.1", &["203.0.113.7"], "198.51.100.1"),
        ] {
            assert_eq!(of(peer, xff, &proxy), client, "{peer} {xff:?}");
        }
        assert_eq!(of("127.0.0.1", &["203.0.113.7"], &[]), "127.0.0.1");
    }

    #[test]
    fn a_segment_keeps_slashes_plus_signs_and_spaces() {
        for s in [
            "INV/2026/7+1",
            "a b",
            "100%",
            "caf\u{e9}",
            "nightly",
            "x?y#z&w=v",
        ] {
            let e = encode_segment(s);
            assert!(!e.contains(['/', '+', ' ', '?', '#', '&']), "{e}");
            assert_eq!(decode_segment(&e).as_deref(), Some(s));
        }
        assert_eq!(encode_segment("INV/2026/7+1"), "INV%2F2026%2F7%2B1");
        assert_eq!(
            decode_segment("a+b").as_deref(),
            Some("a+b"),
            "not form decoding"
        );
        assert_eq!(decode_segment("%FF"), None);
    }
}
