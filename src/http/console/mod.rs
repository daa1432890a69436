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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::config::http::ConsoleConfig;
use crate::config::users::{Role, read_users};
use crate::daemon::Shared;

mod actions;
pub mod auth;
mod chart;
mod pages;

use auth::{LoginLimit, Sessions};

/// Connections the console serves at once: a handful of operators' browsers.
const MAX_CONNECTIONS: usize = 64;
/// The largest form body accepted.
const MAX_FORM: usize = 16 * 1024;

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
            config: self.config,
            sessions: Sessions::default(),
            limit: LoginLimit::default(),
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
    pub limit: LoginLimit,
    pub pages: minijinja::Environment<'static>,
}

impl super::Handler for Console {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> BoxFuture<'static, Response<Full<Bytes>>> {
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
    pub peer: SocketAddr,
}

async fn route(c: &Console, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let cookies = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let cookies = cookies.as_str();
    match (&method, path.as_str()) {
        (&Method::GET, "/login") => {
            return pages::login_page(c, None, auth::cookie(cookies, auth::LOGIN_COOKIE));
        }
        (&Method::POST, "/login") => return login(c, req, peer).await,
        // Browsers ask for it on their own; redirected to the login form, its answer would
        // set a new login token under the form already shown.
        (&Method::GET, "/favicon.ico") => return text(StatusCode::NOT_FOUND, "not found"),
        _ => {}
    }
    let token = auth::cookie(cookies, auth::COOKIE).map(str::to_string);
    let session = token
        .as_deref()
        .and_then(|t| c.sessions.get(t, method == Method::GET));
    let (Some(token), Some(s)) = (token, session) else {
        return if method == Method::GET {
            redirect("/login")
        } else {
            text(StatusCode::FORBIDDEN, "log in first")
        };
    };
    let who = Who {
        token,
        user: s.user,
        role: s.role,
        csrf: s.csrf,
        flash: s.flash,
        peer,
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

async fn login(c: &Console, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let cookies = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
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
    if let Some(wait) = c.limit.blocked(peer.ip(), user, now) {
        tracing::warn!(client = %peer.ip(), user, "console login refused: too many failures");
        let mut r = text(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins: wait and try again",
        );
        if let Ok(v) = header::HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let users_file = c.config.users_file.clone();
    let (u, p) = (user.to_string(), password.to_string());
    // Argon2 takes tens of milliseconds of CPU: off the async workers.
    let checked = tokio::task::spawn_blocking(move || auth::check_login(&users_file, &u, &p))
        .await
        .unwrap_or(Err(auth::Refused::NoUsers));
    match checked {
        Ok(role) => {
            c.limit.succeeded(user);
            let token = c.sessions.open(user, role, c.config.session_ttl);
            tracing::info!(user, role = role.as_str(), client = %peer.ip(), "console login");
            let mut r = redirect("/");
            let secure = if c.config.secure_cookie {
                "; Secure"
            } else {
                ""
            };
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
            c.limit.failed(peer.ip(), user, now);
            tracing::warn!(user, client = %peer.ip(), "console login refused");
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

fn clear_cookie(c: &Console, name: &str) -> String {
    let secure = if c.config.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

pub(super) fn set_cookie(r: &mut Response<Full<Bytes>>, value: &str) {
    if let Ok(v) = header::HeaderValue::from_str(value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The headers every console answer carries.
fn secure(r: &mut Response<Full<Bytes>>) {
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

pub(super) fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    super::reply(status, "text/plain; charset=utf-8", format!("{body}\n"))
}

pub(super) fn redirect(to: &str) -> Response<Full<Bytes>> {
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

async fn form_of(req: Request<Incoming>) -> Option<HashMap<String, String>> {
    let body = super::body_within(req.into_body(), MAX_FORM).await.ok()?;
    Some(form_urlencoded::parse(&body).into_owned().collect())
}
