//! The operator console (`[http.console]`) on a real socket of a real daemon: logins (wrong
//! password, rate limit, cookie flags, logout), what a viewer may not do, CSRF tokens, the
//! security headers, that no secret reaches a page, and every page with demo-like data on
//! SQLite (and the overview and the message log on PostgreSQL).

use std::time::Duration;

use chrono::TimeDelta;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use tickler::config::users::{Role, User, hash_password, render_users};
use tickler::store::Store;
use tickler::store::queue::NewTask;

use crate::helpers::{Project, TestDaemon, free_port, utc, wait_settled};

const TRIGGER_TOKEN: &str = "s3cret-trigger-token";
const OPERATOR_PASSWORD: &str = "operator password 1";
const VIEWER_PASSWORD: &str = "viewer password 22";

/// A project with `[http]`, `[http.console]` (users `ana`, an operator, and `vic`, a viewer)
/// and two jobs; returns it with the console's base URL.
fn project(p: Project, secure_cookie: bool) -> (Project, String) {
    project_with(p, secure_cookie, "")
}

/// [`project`] with more lines in `[http.console]`.
fn project_with(p: Project, secure_cookie: bool, console_extra: &str) -> (Project, String) {
    let (port, console) = (free_port(), free_port());
    std::fs::write(p.path().join("trigger-token"), format!("{TRIGGER_TOKEN}\n")).unwrap();
    let users = vec![
        User {
            name: "ana".into(),
            role: Role::Operator,
            password_hash: hash_password(OPERATOR_PASSWORD).unwrap(),
        },
        User {
            name: "vic".into(),
            role: Role::Viewer,
            password_hash: hash_password(VIEWER_PASSWORD).unwrap(),
        },
    ];
    std::fs::write(p.path().join("users.toml"), render_users(&users)).unwrap();
    p.write_config(
        "",
        &format!(
            "[queue]\nenabled = false\n\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n\n\
             [http.console]\nlisten = \"127.0.0.1:{console}\"\nusers_file = \"users.toml\"\n\
             secure_cookie = {secure_cookie}\n{console_extra}\n\
             [[job]]\nname = \"nightly\"\nkind = \"noop\"\nevery = \"1m\"\n\n\
             [[job]]\nname = \"weekday-report\"\nkind = \"noop\"\nschedule = \"0 9 * * 1-5\"\n\
             timezone = \"Europe/Berlin\"\nexpect_success_within = \"4d\"\n",
            p.path().join("trigger-token").display()
        ),
    );
    (p, format!("http://127.0.0.1:{console}"))
}

/// A browser without a cookie jar, following no redirects, so each test says what it sends.
struct Browser {
    base: String,
    http: reqwest::Client,
}

/// The value of `name` in the response's `Set-Cookie` headers, with the whole header.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers.get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (k, rest) = v.split_once('=')?;
        (k == name).then(|| {
            (
                rest.split(';').next().unwrap_or("").to_string(),
                v.to_string(),
            )
        })
    })
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    async fn get(&self, session: Option<&str>, path: &str) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(s) = session {
            r = r.header("cookie", format!("tickler_console={s}"));
        }
        r.send().await.unwrap()
    }

    async fn post(
        &self,
        session: Option<&str>,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.post_with(session, path, form, &[]).await
    }

    /// [`Browser::post`] with more headers (as a proxy would add).
    async fn post_with(
        &self,
        session: Option<&str>,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(s) = session {
            r = r.header("cookie", format!("tickler_console={s}"));
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    /// The login form's pre-session cookie and form token, as a browser gets them.
    async fn login_form(&self) -> (String, String) {
        let form = self.get(None, "/login").await;
        assert_eq!(form.status(), 200);
        let (pre, _) = set_cookie(form.headers(), "tickler_login").expect("a login cookie");
        (pre, csrf_of(&form.text().await.unwrap()))
    }

    /// Sends the login form of [`Browser::login_form`], with more headers.
    async fn send_login(
        &self,
        (pre, csrf): &(String, String),
        user: &str,
        password: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!("{}/login", self.base))
            .header("cookie", format!("tickler_login={pre}"))
            .form(&[("user", user), ("password", password), ("csrf", csrf)]);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    /// Fills and sends the login form as a browser would.
    async fn login(&self, user: &str, password: &str) -> reqwest::Response {
        let form = self.login_form().await;
        self.send_login(&form, user, password, &[]).await
    }

    /// Logs in; returns the session cookie's value and the `Set-Cookie` header.
    async fn session(&self, user: &str, password: &str) -> (String, String) {
        let r = self.login(user, password).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "login of {user}");
        assert_eq!(r.headers()[LOCATION], "/");
        set_cookie(r.headers(), "tickler_console").expect("a session cookie")
    }

    /// A page's HTML after asserting it answered 200.
    async fn page(&self, session: &str, path: &str) -> String {
        let r = self.get(Some(session), path).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.text().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_sessions_roles_and_csrf_guard_every_action() {
    let (p, base) = project(Project::sqlite(), false);
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:30Z")).await;
    let store = p.store().await;
    let b = Browser::new(&base);

    // No session: pages redirect to the login form; actions are refused.
    let r = b.get(None, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login");
    let r = b.get(Some("forged"), "/jobs/nightly").await;
    assert_eq!(r.headers()[LOCATION], "/login");
    let r = b.post(None, "/jobs/nightly/pause", &[("csrf", "x")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Every answer carries the security headers.
    let r = b.get(None, "/login").await;
    let h = r.headers();
    assert_eq!(
        h["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
         form-action 'self'; frame-ancestors 'none'"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(html.contains("<form id=\"login\""), "{html}");
    assert!(html.contains("name=\"user\"") && html.contains("name=\"password\""));

    // A wrong password, an unknown user, and a login without its form token are refused.
    let r = b.login("ana", "not the password").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(r.headers(), "tickler_console").is_none());
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("wrong user name or password")
    );
    assert_eq!(b.login("nobody", OPERATOR_PASSWORD).await.status(), 401);
    let r = b
        .http
        .post(format!("{base}/login"))
        .form(&[
            ("user", "ana"),
            ("password", OPERATOR_PASSWORD),
            ("csrf", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no pre-session cookie");

    // The session cookie's flags.
    let (viewer, header) = b.session("vic", VIEWER_PASSWORD).await;
    assert!(header.contains("; HttpOnly"), "{header}");
    assert!(header.contains("; SameSite=Strict"), "{header}");
    assert!(header.contains("; Path=/"), "{header}");
    assert!(!header.contains("Secure"), "{header}");
    assert_eq!(viewer.len(), 64);

    // A viewer reads, and cannot act even with the right token.
    let html = b.page(&viewer, "/").await;
    assert!(html.contains("<tr data-job=\"nightly\""), "{html}");
    assert!(!html.contains("data-action=\"pause\""));
    let csrf = csrf_of(&html);
    let r = b
        .post(Some(&viewer), "/jobs/nightly/pause", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(store.paused_jobs().await.unwrap().is_empty());

    // An operator acts only with the session's CSRF token.
    let (operator, _) = b.session("ana", OPERATOR_PASSWORD).await;
    let html = b.page(&operator, "/jobs/nightly").await;
    assert!(html.contains("data-action=\"pause\""), "{html}");
    let csrf = csrf_of(&html);
    for form in [
        vec![],
        vec![("csrf", "0".repeat(64))],
        vec![("csrf", csrf_of(&b.page(&viewer, "/").await))],
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = b.post(Some(&operator), "/jobs/nightly/pause", &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{form:?}");
    }
    assert!(store.paused_jobs().await.unwrap().is_empty());
    let r = b
        .post(
            Some(&operator),
            "/jobs/nightly/pause",
            &[("csrf", &csrf), ("reason", "month-end freeze")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/jobs/nightly");
    let paused = store.paused_jobs().await.unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].reason, "month-end freeze");
    assert_eq!(paused[0].paused_by, "ana");
    // The flash shows once.
    let html = b.page(&operator, "/jobs/nightly").await;
    assert!(
        html.contains("<div id=\"flash\" role=\"status\">paused `nightly`"),
        "{html}"
    );
    assert!(html.contains("data-action=\"resume\""));
    assert!(
        !b.page(&operator, "/jobs/nightly")
            .await
            .contains("id=\"flash\"")
    );
    let overview = b.page(&operator, "/").await;
    assert!(overview.contains("data-badge=\"paused\""), "{overview}");
    // Run now: a manual run and an audit row naming the console user and address (the
    // connection's: without `trusted_proxies`, `X-Forwarded-For` is anyone's to write).
    let r = b
        .post_with(
            Some(&operator),
            "/jobs/weekday-report/run",
            &[("csrf", &csrf)],
            &[("x-forwarded-for", "203.0.113.7")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    wait_settled(&store, "weekday-report", 1).await;
    let audit = store
        .audit_log(&tickler::store::audit::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<(&str, &str, &str, &str)> = audit
        .iter()
        .map(|a| {
            (
                a.who.as_str(),
                a.origin.as_str(),
                a.action.as_str(),
                a.target.as_str(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("ana", "console 127.0.0.1", "run", "weekday-report"),
            ("ana", "console 127.0.0.1", "pause", "nightly"),
        ]
    );
    let html = b.page(&viewer, "/audit").await;
    assert!(html.contains("month-end freeze"), "{html}");

    // No secret on any page: the trigger token, the password hashes, the passwords.
    let users = std::fs::read_to_string(p.path().join("users.toml")).unwrap();
    let hashes: Vec<&str> = users
        .lines()
        .filter_map(|l| l.strip_prefix("password_hash = \""))
        .map(|h| h.trim_end_matches('"'))
        .collect();
    assert_eq!(hashes.len(), 2);
    for path in [
        "/",
        "/jobs/nightly",
        "/queue",
        "/campaigns",
        "/messages",
        "/invoices",
        "/audit",
    ] {
        let html = b.page(&operator, path).await;
        for secret in [TRIGGER_TOKEN, OPERATOR_PASSWORD, VIEWER_PASSWORD, "$argon2"]
            .iter()
            .chain(hashes.iter())
        {
            assert!(!html.contains(secret), "{secret} on {path}");
        }
    }

    // Logout ends the session server-side: the same cookie replayed is refused.
    let r = b.post(Some(&operator), "/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (cleared, _) = set_cookie(r.headers(), "tickler_console").unwrap();
    assert_eq!(cleared, "");
    let r = b.get(Some(&operator), "/").await;
    assert_eq!(r.headers()[LOCATION], "/login");
    let r = b
        .post(Some(&operator), "/jobs/nightly/resume", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(store.paused_jobs().await.unwrap().len(), 1);
    // The viewer's session is still good.
    b.page(&viewer, "/").await;

    // The users file is read again when it changes: a user added now logs in without a
    // restart, and the sessions of the others go on; a file broken meanwhile refuses logins
    // and pages (and says so) until it is mended.
    let users_file = p.path().join("users.toml");
    let mut text = std::fs::read_to_string(&users_file).unwrap();
    text.push_str(&render_users(&[User {
        name: "zoe".into(),
        role: Role::Viewer,
        password_hash: hash_password("zoe's long password").unwrap(),
    }]));
    std::fs::write(&users_file, &text).unwrap();
    b.session("zoe", "zoe's long password").await;
    b.page(&viewer, "/").await;
    std::fs::write(&users_file, "[[user]]\nname = 1\n").unwrap();
    let r = b.login("zoe", "zoe's long password").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("the users file is unusable")
    );
    let r = b.get(Some(&viewer), "/").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("the users file is unusable")
    );
    std::fs::write(&users_file, &text).unwrap();
    b.page(&viewer, "/").await;

    d.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited_and_cookies_are_secure_behind_tls() {
    let (p, base) = project(Project::sqlite(), true);
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:30Z")).await;
    let b = Browser::new(&base);
    let form = b.get(None, "/login").await;
    let (_, header) = set_cookie(form.headers(), "tickler_login").unwrap();
    assert!(header.ends_with("; Secure"), "{header}");
    let (_, header) = b.session("ana", OPERATOR_PASSWORD).await;
    assert!(header.contains("; HttpOnly; SameSite=Strict;"), "{header}");
    assert!(header.ends_with("; Secure"), "{header}");
    for _ in 0..5 {
        assert_eq!(b.login("ana", "wrong password!").await.status(), 401);
    }
    // The sixth try is refused before the password is looked at, even the right one.
    let r = b.login("ana", OPERATOR_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
    d.stop().await;
}

/// `tickler console ARGS` on the project's config, with `stdin` as its standard input.
fn console_cli(p: &Project, args: &[&str], stdin: &str) {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = std::process::Command::new(crate::helpers::BIN)
        .arg("console")
        .args(args)
        .arg("--config")
        .arg(p.config_path())
        .current_dir(p.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_or_changed_user_loses_their_session_at_once() {
    let (p, base) = project(Project::sqlite(), false);
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:30Z")).await;
    let store = p.store().await;
    let b = Browser::new(&base);
    let (ana, _) = b.session("ana", OPERATOR_PASSWORD).await;
    let (vic, _) = b.session("vic", VIEWER_PASSWORD).await;
    let csrf = csrf_of(&b.page(&ana, "/jobs/nightly").await);

    // Another user added: nobody's session ends.
    console_cli(
        &p,
        &["add-user", "zed", "--role", "viewer"],
        "zed's long password\n",
    );
    b.page(&ana, "/").await;
    b.page(&vic, "/").await;

    // Ana made a viewer (with the same password): her operator session ends before it acts.
    console_cli(
        &p,
        &["add-user", "ana", "--role", "viewer"],
        &format!("{OPERATOR_PASSWORD}\n"),
    );
    let r = b
        .post(Some(&ana), "/jobs/nightly/pause", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.text().await.unwrap(), "log in first\n");
    assert!(store.paused_jobs().await.unwrap().is_empty());
    let audit = store
        .audit_log(&tickler::store::audit::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(audit.is_empty(), "{audit:?}");
    let r = b.get(Some(&ana), "/").await;
    assert_eq!(r.headers()[LOCATION], "/login", "ended for good");
    // She logs in again, as what she is now.
    let (ana, _) = b.session("ana", OPERATOR_PASSWORD).await;
    let html = b.page(&ana, "/jobs/nightly").await;
    assert!(!html.contains("data-action=\"pause\""), "{html}");

    // Vic removed: his next page is the login form.
    b.page(&vic, "/").await;
    console_cli(&p, &["remove-user", "vic"], "");
    let r = b.get(Some(&vic), "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login");
    let (cleared, _) = set_cookie(r.headers(), "tickler_console").expect("the cookie cleared");
    assert_eq!(cleared, "");
    b.page(&ana, "/").await;
    d.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_count_against_the_login_limit() {
    let (p, base) = project(Project::sqlite(), false);
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:30Z")).await;
    let b = Browser::new(&base);
    let form = b.login_form().await;
    let guesses = (0..20).map(|i| {
        let (b, form) = (&b, &form);
        async move {
            b.send_login(form, "ana", &format!("guess number {i}"), &[])
                .await
                .status()
        }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let count = |s: StatusCode| answers.iter().filter(|a| **a == s).count();
    let (wrong, limited, busy) = (
        count(StatusCode::UNAUTHORIZED),
        count(StatusCode::TOO_MANY_REQUESTS),
        count(StatusCode::SERVICE_UNAVAILABLE),
    );
    assert_eq!(wrong + limited + busy, 20, "{answers:?}");
    assert!(wrong <= 5, "{answers:?}");
    assert!(limited >= 15, "{answers:?}");
    // The right password is refused now, for that name from another address too.
    let r = b.send_login(&form, "ana", OPERATOR_PASSWORD, &[]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_limited_and_audited() {
    let (p, base) = project_with(
        Project::sqlite(),
        false,
        "trusted_proxies = [\"127.0.0.1\"]\n",
    );
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:30Z")).await;
    let store = p.store().await;
    let b = Browser::new(&base);
    let form = b.login_form().await;
    // Five bad logins from one client behind the proxy block that client and that name only.
    let mallory = [("x-forwarded-for", "198.51.100.9")];
    for _ in 0..5 {
        let r = b
            .send_login(&form, "nobody", "wrong password!", &mallory)
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = b.send_login(&form, "vic", VIEWER_PASSWORD, &mallory).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let alice = [("x-forwarded-for", "203.0.113.7")];
    let r = b.send_login(&form, "ana", OPERATOR_PASSWORD, &alice).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "another client logs in");
    let (ana, _) = set_cookie(r.headers(), "tickler_console").unwrap();
    // An action names the forwarded client in the audit log.
    let csrf = csrf_of(&b.page(&ana, "/jobs/nightly").await);
    let r = b
        .post_with(
            Some(&ana),
            "/jobs/nightly/pause",
            &[("csrf", &csrf)],
            &alice,
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let audit = store
        .audit_log(&tickler::store::audit::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].origin, "console 203.0.113.7");
    d.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_users_file_stops_the_start_naming_the_file() {
    let (p, _) = project(Project::sqlite(), false);
    std::fs::remove_file(p.path().join("users.toml")).unwrap();
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    let config = p.config();
    let options = tickler::daemon::Options {
        edge: tickler::http::edge(&config),
        ..Default::default()
    };
    let e = tickler::daemon::run(config, rx, options).await.unwrap_err();
    let e = e.to_string();
    assert!(
        e.starts_with(&format!(
            "cannot read the console users file `{}`: ",
            p.path().join("users.toml").display()
        )),
        "{e}"
    );
    assert!(e.ends_with("create it with `tickler console add-user NAME --role operator`, or fix `[http.console] users_file`"), "{e}");
}

/// A message and a task the pages list (the demo fills invoices and customers only).
async fn seed_messages_and_tasks(store: &Store, at: chrono::DateTime<chrono::Utc>) {
    let id = uuid::Uuid::now_v7().to_string();
    let ts = tickler::store::ts(at);
    match store {
        Store::Sqlite(s) => sqlx::query(
            "INSERT INTO notification_log (id, dedup_key, job_name, channel, recipient, status, \
             created_at, updated_at) VALUES ($1, 'k1', 'reminders', 'email', \
             'thandi@example.com', 'sent', $2, $2)",
        )
        .bind(&id)
        .bind(&ts)
        .execute(s.pool())
        .await
        .map(|_| ())
        .unwrap(),
        Store::Postgres(s) => sqlx::query(
            "INSERT INTO notification_log (id, dedup_key, job_name, channel, recipient, status, \
             created_at, updated_at) VALUES ($1::uuid, 'k1', 'reminders', 'email', \
             'thandi@example.com', 'sent', $2::timestamptz, $2::timestamptz)",
        )
        .bind(&id)
        .bind(&ts)
        .execute(s.pool())
        .await
        .map(|_| ())
        .unwrap(),
    };
    store
        .enqueue_tasks(
            &[NewTask {
                id: uuid::Uuid::now_v7().to_string(),
                org_id: "00000000-0000-0000-0000-000000000000".into(),
                campaign_id: None,
                invoice_id: None,
                customer_id: None,
                task_type: "send_email".into(),
                task_data: Some("{}".into()),
                scheduled_for: tickler::store::ts(at + TimeDelta::days(1)),
                max_retries: 3,
                priority: 0,
                metadata: None,
            }],
            at,
        )
        .await
        .unwrap();
}

/// Every page answers with what the demo data holds.
async fn pages_show_the_data(p: Project, all_pages: bool) {
    let (p, base) = project(p, false);
    let t0 = utc("2026-11-23T10:00:30Z");
    let store = p.store().await;
    tickler::billing::demo::fill(&store, t0.date_naive())
        .await
        .unwrap();
    seed_messages_and_tasks(&store, t0).await;
    let d = TestDaemon::start(p.config(), t0).await;
    d.clock.advance(Duration::from_secs(30));
    let runs = wait_settled(&store, "nightly", 1).await;
    let b = Browser::new(&base);
    let (s, _) = b.session("ana", OPERATOR_PASSWORD).await;

    let html = b.page(&s, "/").await;
    for expected in [
        "<tr data-job=\"nightly\"",
        "<tr data-job=\"weekday-report\"",
        "every 1m",
        "at 09:00 on Mon-Fri",
        "Europe&#x2f;Berlin",
        "2026-11-24 09:00:00 CET",
        "<span class=\"badge succeeded\">succeeded</span>",
        "sent 1",
        "pending 1",
        "2 job(s), page 1 of 1",
        "<tr data-daemon=\"",
        "<span class=\"badge ok\">ok</span> <span class=\"muted\">(turned ",
    ] {
        assert!(html.contains(expected), "{expected:?} in {html}");
    }
    let html = b.page(&s, "/?name=week").await;
    assert!(html.contains("data-job=\"weekday-report\"") && !html.contains("data-job=\"nightly\""));
    let html = b.page(&s, "/?per_page=1&page=2").await;
    assert!(
        html.contains("page 2 of 2") && html.contains("data-job=\"weekday-report\""),
        "{html}"
    );

    let html = b.page(&s, "/messages").await;
    assert!(html.contains("thandi@example.com"), "{html}");
    assert!(
        b.page(&s, "/messages?status=failed")
            .await
            .contains("no messages")
    );
    if !all_pages {
        d.stop().await;
        store.close().await;
        return;
    }
    let html = b.page(&s, "/jobs/nightly").await;
    for expected in [
        "<svg ",
        "id=\"run-chart\"",
        "<ol id=\"next-fires\">",
        &runs[0].id,
        "data-action=\"run\"",
    ] {
        assert!(html.contains(expected), "{expected:?} in {html}");
    }
    assert_eq!(html.matches("<li>").count(), 20, "the next 20 fires");
    let html = b.page(&s, &format!("/runs/{}", runs[0].id)).await;
    assert!(
        html.contains("<span class=\"badge succeeded\">succeeded</span>"),
        "{html}"
    );
    assert!(html.contains("lateness_ms"), "{html}");
    let html = b.page(&s, "/queue").await;
    assert!(html.contains("<tr data-type=\"send_email\"><td>"), "{html}");
    assert!(html.contains("data-action=\"run-now\""), "{html}");
    let html = b.page(&s, "/invoices").await;
    assert!(html.contains("<table id=\"levels\">"), "{html}");
    assert!(html.contains("data-action=\"mark-paid\""), "{html}");
    assert!(b.page(&s, "/campaigns").await.contains("no campaigns"));
    assert!(b.page(&s, "/audit").await.contains("nothing recorded"));
    let r = b.get(Some(&s), "/jobs/nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Mark an overdue invoice paid through its form on the invoices page, its number holding
    // `/` and `+` (each a path segment of its own, or a space, if not encoded as one).
    let overdue = b.page(&s, "/invoices?overdue=1").await;
    let at = overdue.find("<tr data-invoice=\"").unwrap() + 18;
    let first = overdue[at..].split('"').next().unwrap().to_string();
    let number = "INV/2026/7+1".to_string();
    let Store::Sqlite(sqlite) = &store else {
        unreachable!("the invoice pages are checked on SQLite")
    };
    sqlx::query("UPDATE invoices SET number = $1 WHERE number = $2")
        .bind(&number)
        .bind(&first)
        .execute(sqlite.pool())
        .await
        .unwrap();
    let overdue = b.page(&s, "/invoices?overdue=1").await;
    let action = "action=\"/invoices/INV%2F2026%2F7%2B1/paid\"";
    assert!(overdue.contains(action), "{overdue}");
    let csrf = csrf_of(&overdue);
    let r = b
        .post(
            Some(&s),
            "/invoices/INV%2F2026%2F7%2B1/paid",
            &[("csrf", &csrf), ("reference", "bank-1")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let inv = store.invoice_by_number(&number).await.unwrap().unwrap();
    assert_eq!(inv.status, "paid");
    let html = b.page(&s, "/invoices").await;
    assert!(
        html.contains("invoice INV&#x2f;2026&#x2f;7+1 marked paid"),
        "{html}"
    );
    // Cancel the task from the queue page; block an address from the messages page.
    let queue = b.page(&s, "/queue").await;
    let at = queue.find("<tr data-task=\"").expect(&queue) + 15;
    let task = queue[at..].split('"').next().unwrap().to_string();
    let r = b
        .post(
            Some(&s),
            &format!("/tasks/{task}/cancel"),
            &[("csrf", &csrf), ("back", "/queue?status=failed")],
        )
        .await;
    assert_eq!(r.headers()[LOCATION], "/queue?status=failed");
    assert_eq!(
        store.task(&task).await.unwrap().unwrap().status,
        "cancelled"
    );
    let html = b.page(&s, "/queue?status=failed").await;
    assert!(html.contains(&format!("task {task} cancelled")), "{html}");
    assert!(!html.contains(&format!("data-task=\"{task}\"")), "{html}");
    let r = b
        .post(
            Some(&s),
            "/contacts/block",
            &[
                ("csrf", &csrf),
                ("channel", "email"),
                ("address", "Thandi@Example.com"),
                ("reason", "asked by phone"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let block = store.contact_block("email", "thandi@example.com").await;
    assert!(block.unwrap().is_some());
    let audit = b.page(&s, "/audit").await;
    for row in [
        "invoice.mark_paid",
        "INV&#x2f;2026&#x2f;7+1",
        "task.cancel",
        "contact.block",
        "email:thandi@example.com",
        "asked by phone",
    ] {
        assert!(audit.contains(row), "{row} in {audit}");
    }
    // A campaign's members, one a page: each once, in due-date order, with its next email.
    let out = p.cli(&[
        "campaign",
        "create",
        "--name",
        "late",
        "--overdue-days",
        "1",
    ]);
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));
    let campaign = store.campaigns().await.unwrap().remove(0).campaign;
    let expected: Vec<String> = store
        .campaign_members(&campaign.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.number)
        .collect();
    assert!(expected.len() >= 2, "{expected:?}");
    let mut seen = vec![];
    let mut path = format!("/campaigns?id={}&per_page=1", campaign.id);
    for _ in 0..=expected.len() {
        let html = b.page(&s, &path).await;
        let at = html.find("<tr data-member=\"").expect(&html) + 17;
        seen.push(html[at..].split('"').next().unwrap().to_string());
        let row = html[at..].split("</tr>").next().unwrap();
        assert!(
            row.contains(&format!("{}-", t0.format("%Y"))),
            "a next email: {row}"
        );
        match html.find("id=\"next\" href=\"") {
            Some(at) => {
                path = html[at + 16..]
                    .split('"')
                    .next()
                    .unwrap()
                    .replace("&amp;", "&")
            }
            None => break,
        }
    }
    assert_eq!(seen, expected, "every member once, in order");
    // `tickler status` from another process sees this daemon's heartbeat and loop.
    let text = crate::helpers::stdout(&p.cli(&["status"]));
    let daemons = text.split("\ndaemons:\n  ").nth(1).expect(&text);
    assert!(
        daemons.contains(&format!(" pid {} (", std::process::id())),
        "{text}"
    );
    assert!(daemons.contains("s before it: ok\n"), "{text}");
    // A viewer sees no action buttons on the queue and invoices pages.
    let (viewer, _) = b.session("vic", VIEWER_PASSWORD).await;
    for path in ["/queue", "/invoices", "/messages", "/jobs/nightly"] {
        assert!(
            !b.page(&viewer, path).await.contains("data-action=\"r"),
            "{path}"
        );
    }
    d.stop().await;

    // `tickler status`: the same overview in the terminal, and as JSON.
    let out = p.cli(&["status"]);
    assert!(out.status.success(), "{}", crate::helpers::stderr(&out));
    let text = crate::helpers::stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NEXT "), "{text}");
    assert!(lines[0].ends_with(" TRIGGER"), "{text}");
    let nightly = lines
        .iter()
        .find(|l| l.contains(" nightly "))
        .expect("a nightly line");
    assert!(
        nightly.contains(" succeeded ") && nightly.ends_with("every 1m"),
        "{nightly}"
    );
    let weekday = lines
        .iter()
        .find(|l| l.contains(" weekday-report "))
        .unwrap();
    assert!(
        weekday.contains(" CET ") || weekday.contains(" CEST "),
        "{weekday}"
    );
    assert!(
        weekday.contains(" never ") && weekday.ends_with("at 09:00 on Mon-Fri"),
        "{weekday}"
    );
    assert!(text.contains("\n2 job(s), page 1 of 1\n"), "{text}");
    assert!(text.contains("\ndatabase: ok\n"), "{text}");
    assert!(
        text.ends_with("\ndaemons: none registered (is the daemon running?)\n"),
        "{text}"
    );
    let out = p.cli(&["status", "--format", "json", "--name", "night"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["matching"], 1);
    assert_eq!(json["jobs"][0]["name"], "nightly");
    assert_eq!(json["jobs"][0]["last"]["status"], "succeeded");
    assert_eq!(json["jobs"][0]["dead_man"], "off");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_answers_with_the_demo_data_on_sqlite() {
    pages_show_the_data(Project::sqlite(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_and_the_message_log_answer_on_postgres() {
    if let Some(p) = Project::postgres().await {
        pages_show_the_data(p, false).await;
    }
}

/// A job's runs page through the ledger newest first, each row once, manual runs (which share
/// slots with nothing) and ties on the slot included; the overview's figures read the newest
/// run, the newest success and the failures after it.
async fn runs_page_by_slot_and_figures_count_the_streak(p: Project) {
    use std::sync::Arc;
    use tickler::store::{NewRun, RunTrigger, Status};
    let store = p.store().await;
    let t0 = utc("2026-11-01T00:00:00Z");
    let mut runs = vec![];
    for i in 0..120 {
        // Every tenth slot also has a manual run at the same instant.
        let slot = t0 + TimeDelta::minutes(i);
        for trigger in [RunTrigger::Schedule, RunTrigger::Manual] {
            if trigger == RunTrigger::Manual && i % 10 != 0 {
                continue;
            }
            let status = match i {
                117.. => Status::Failed,
                _ => Status::Succeeded,
            };
            runs.push(NewRun {
                id: uuid::Uuid::now_v7(),
                job_name: Arc::from("j"),
                scheduled_for: slot,
                trigger,
                status,
                started_at: slot,
                instance: Arc::from("test"),
                error_message: None,
                metadata: Some(serde_json::json!({"lateness_ms": i})),
                batch: None,
            });
        }
    }
    assert_eq!(store.insert_runs(&runs).await.unwrap().len(), 132);
    let mut seen = vec![];
    let mut before = None;
    loop {
        let page = store.job_runs("j", None, before.clone(), 50).await.unwrap();
        seen.extend(page.iter().map(|r| (r.scheduled_for, r.id.clone())));
        match page.last() {
            Some(last) if page.len() == 50 => before = Some((last.scheduled_for, last.id.clone())),
            _ => break,
        }
    }
    let mut expected: Vec<_> = runs
        .iter()
        .map(|r| (r.scheduled_for, r.id.to_string()))
        .collect();
    expected.sort();
    expected.reverse();
    assert_eq!(seen, expected);
    let failed = store.job_runs("j", Some("failed"), None, 50).await.unwrap();
    assert_eq!(failed.len(), 3);
    let f = store
        .job_figures(&["j".to_string(), "none".to_string()])
        .await
        .unwrap();
    let j = f.iter().find(|f| f.job == "j").unwrap();
    assert_eq!(j.last_status.as_deref(), Some("failed"));
    assert_eq!(j.last_scheduled_for, Some(t0 + TimeDelta::minutes(119)));
    assert_eq!(j.failure_streak, 3);
    let none = f.iter().find(|f| f.job == "none").unwrap();
    assert_eq!((none.last_id.as_ref(), none.failure_streak), (None, 0));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_page_by_slot_and_figures_count_the_streak_on_sqlite() {
    runs_page_by_slot_and_figures_count_the_streak(Project::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_page_by_slot_and_figures_count_the_streak_on_postgres() {
    if let Some(p) = Project::postgres().await {
        runs_page_by_slot_and_figures_count_the_streak(p).await;
    }
}

/// With PostgreSQL stopped the overview still answers: the jobs from the config and the
/// badge saying the database is unreachable (it once answered 503 on the first read after
/// the ping, so the badge could never show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_says_the_database_is_unreachable_and_still_lists_the_jobs() {
    let Some((pg, p)) = crate::helpers::PrivateCluster::project().await else {
        return;
    };
    let (p, base) = project(p, false);
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:30Z")).await;
    let b = Browser::new(&base);
    let (s, _) = b.session("ana", OPERATOR_PASSWORD).await;
    let html = b.page(&s, "/").await;
    assert!(
        html.contains("Database: <span class=\"badge ok\">ok</span>"),
        "{html}"
    );
    let cluster = pg.clone();
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap();
    let html = tokio::time::timeout(Duration::from_secs(20), b.page(&s, "/"))
        .await
        .expect("the overview answers within 20 s with the database down");
    assert!(
        html.contains("Database: <span class=\"badge failed\">unreachable</span>"),
        "{html}"
    );
    for job in ["nightly", "weekday-report"] {
        assert!(html.contains(&format!("<tr data-job=\"{job}\"")), "{html}");
    }
    let cluster = pg.clone();
    tokio::task::spawn_blocking(move || cluster.start_again())
        .await
        .unwrap();
    crate::helpers::wait_for("the badge back to ok", Duration::from_secs(30), || async {
        b.page(&s, "/")
            .await
            .contains("Database: <span class=\"badge ok\">ok</span>")
            .then_some(())
    })
    .await;
    d.stop().await;
}
