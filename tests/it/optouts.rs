//! Opt-outs and bounces over HTTP (issue 15, item 9) on the real listener, on SQLite and
//! PostgreSQL: the one-click `List-Unsubscribe` link of an email written by the `file`
//! transport, Twilio STOP/START replies with their `X-Twilio-Signature`, and the bounce
//! webhook. Only a verified request writes a block, and the next run suppresses the blocked
//! person's message.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use tickler::store::Store;
use wiremock::MockServer;

use crate::billing::{texted, twilio_ok};
use crate::contacts::log;
use crate::helpers::free_port;
use crate::helpers::{Project, TestDaemon, wait_for};

const PUBLIC: &str = "https://billing.example.com";
const HTTP_TOKEN: &str = "http-token-1";
const UNSUBSCRIBE_SECRET: &str = "unsubscribe-secret-1";
const TWILIO_TOKEN: &str = "token-123";

/// A daemon with `[http]` (bearer token), email through the `file` transport with one-click
/// unsubscribe links, SMS through a Twilio mock with replies, and two `notify` jobs over the
/// `sessions` table: `mail` (email) and `text` (SMS).
struct Setup {
    p: Project,
    d: TestDaemon,
    store: Store,
    base: String,
    http: reqwest::Client,
    twilio: MockServer,
}

async fn setup(p: Project) -> Setup {
    let port = free_port();
    let twilio = MockServer::start().await;
    twilio_ok(&twilio).await;
    let dir = p.path().to_path_buf();
    std::fs::write(dir.join("http-token"), format!("{HTTP_TOKEN}\n")).unwrap();
    std::fs::write(dir.join("unsubscribe-secret"), UNSUBSCRIBE_SECRET).unwrap();
    std::fs::write(dir.join("twilio-token"), format!("{TWILIO_TOKEN}\n")).unwrap();
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("templates/session.j2"),
        "{% block subject %}Your session{% endblock %}{% block text %}Hi {{ name }}{% endblock %}",
    )
    .unwrap();
    let job = |name: &str, channel: &str| {
        format!(
            "[[job]]\nname = \"{name}\"\nkind = \"notify\"\nschedule = \"0 0 1 1 *\"\n\
             query = \"SELECT id, name, email, phone FROM sessions ORDER BY id\"\n\
             template = \"session\"\ndedup = \"{name}-{{{{ id }}}}\"\n\
             channels = [\"{channel}\"]\n\n"
        )
    };
    p.write_config(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n\n\
             [channels.email]\nfrom = \"Sessions <s@acme.test>\"\n\
             unsubscribe_url = \"{PUBLIC}/unsubscribe\"\nunsubscribe_secret_file = \"{}\"\n\n\
             [channels.sms]\naccount_sid = \"AC123\"\nauth_token_file = \"{}\"\n\
             from = \"+15005550006\"\nbase_url = \"{}\"\nrate_limit = 0\ntimeout = \"2s\"\n\
             inbound_url = \"{PUBLIC}/twilio/inbound\"\n\n{}{}",
            dir.join("http-token").display(),
            dir.join("unsubscribe-secret").display(),
            dir.join("twilio-token").display(),
            twilio.uri(),
            job("mail", "email"),
            job("text", "sms"),
        ),
    );
    let store = p.store().await;
    store
        .execute(
            &[
                "CREATE TABLE sessions (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT)"
                    .to_string(),
            ],
            true,
        )
        .await
        .unwrap();
    sessions(&store, 1).await;
    let d = TestDaemon::start(p.config(), Utc::now()).await;
    Setup {
        p,
        d,
        store,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        twilio,
    }
}

/// Adds Ann's and Ben's sessions with ids `first` and `first + 1`.
async fn sessions(store: &Store, first: i64) {
    store
        .execute(
            &[format!(
                "INSERT INTO sessions (id, name, email, phone) VALUES \
                 ({first}, 'Ann', 'Ann@Example.com', '+15551230001'), \
                 ({}, 'Ben', 'ben@example.com', '+15551230002')",
                first + 1
            )],
            true,
        )
        .await
        .unwrap();
}

impl Setup {
    /// Runs `job` through `POST /jobs/NAME/run?wait=30s`; its result.
    async fn run(&self, job: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/jobs/{job}/run?wait=30s", self.base))
            .bearer_auth(HTTP_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }

    /// `(channel, address, reason, source)` of every block.
    async fn blocks(&self) -> Vec<(String, String, String, String)> {
        let mut all: Vec<_> = self
            .store
            .contact_blocks()
            .await
            .unwrap()
            .into_iter()
            .map(|b| (b.channel, b.address, b.reason, b.source))
            .collect();
        all.sort();
        all
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> (u16, String, String) {
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let kind = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, kind, r.text().await.unwrap())
    }

    async fn stop(self) {
        self.d.stop().await;
        self.store.close().await;
        drop(self.p);
    }
}

/// The headers of the `.eml` to `to` in the outbox, unfolded, by name.
fn headers_of_mail_to(outbox: &std::path::Path, to: &str) -> Vec<(String, String)> {
    for entry in std::fs::read_dir(outbox).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("eml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
        let headers: Vec<(String, String)> = head
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if headers.iter().any(|(k, v)| k == "To" && v == to) {
            return headers;
        }
    }
    panic!("no email to {to} in {}", outbox.display());
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn page_says(body: &str, message: &str) {
    assert!(body.contains(&format!("<p>{message}</p>")), "{body}");
}

async fn unsubscribe_story(p: Project) {
    let s = setup(p).await;
    let r = s.run("mail").await;
    assert_eq!(
        (r["status"].as_str(), r["records_processed"].as_i64()),
        (Some("succeeded"), Some(2)),
        "{r}"
    );
    let outbox = s.p.path().join("outbox");
    let ann = headers_of_mail_to(&outbox, "Ann@Example.com");
    assert_eq!(
        header(&ann, "List-Unsubscribe-Post"),
        Some("List-Unsubscribe=One-Click")
    );
    let link = header(&ann, "List-Unsubscribe").expect("a List-Unsubscribe header");
    let link = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix('>'))
        .unwrap_or_else(|| panic!("<link>: {link}"));
    let token = link
        .strip_prefix(&format!("{PUBLIC}/unsubscribe/"))
        .unwrap_or_else(|| panic!("{link}"));
    let ben = headers_of_mail_to(&outbox, "ben@example.com");
    assert_ne!(
        header(&ben, "List-Unsubscribe"),
        header(&ann, "List-Unsubscribe")
    );
    let at = |t: &str| format!("{}/unsubscribe/{t}", s.base);
    let one_click = |t: &str| s.http.post(at(t)).body("List-Unsubscribe=One-Click");

    // A GET (a mail scanner, or the person's browser) only shows a form that POSTs.
    let (code, kind, body) = s.send(s.http.get(at(token))).await;
    assert_eq!((code, kind.as_str()), (200, "text/html; charset=utf-8"));
    page_says(&body, "Stop all email to ann@example.com?");
    assert!(body.contains("<form method=\"post\">"), "{body}");
    assert_eq!(s.blocks().await, [], "a GET blocks nothing");

    // Forged tokens: another address with Ann's signature, a signature of another secret,
    // garbage. Each is refused and writes nothing.
    let (_, ann_tag) = token.split_once('.').unwrap();
    let mut wrong = Hmac::<sha2::Sha256>::new_from_slice(b"not-the-secret").unwrap();
    wrong.update(b"tickler-unsubscribe\nemail\nann@example.com");
    let forged = [
        format!("{}.{ann_tag}", URL_SAFE_NO_PAD.encode("ben@example.com")),
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode("ann@example.com"),
            URL_SAFE_NO_PAD.encode(wrong.finalize().into_bytes())
        ),
        "garbage".to_string(),
        format!("{token}x"),
    ];
    let not_issued = "this unsubscribe link was not issued for this address; open the link from \
                      the email itself, or reply to the email and ask to be removed";
    let damaged = "this unsubscribe link is damaged or incomplete; open the whole link from the \
                   email, or reply to the email and ask to be removed";
    for (t, message) in forged
        .iter()
        .zip([not_issued, not_issued, damaged, not_issued])
    {
        let (code, _, body) = s.send(one_click(t)).await;
        assert_eq!(code, 400, "{t}");
        page_says(&body, message);
    }
    assert_eq!(s.blocks().await, [], "a forged token writes nothing");

    // The one-click POST blocks Ann's address; a second one is answered alike and adds nothing.
    for _ in 0..2 {
        let (code, _, body) = s.send(one_click(token)).await;
        assert_eq!(code, 200);
        page_says(
            &body,
            "ann@example.com is unsubscribed: no more email will be sent to it.",
        );
        assert_eq!(
            s.blocks().await,
            [(
                "email".into(),
                "ann@example.com".into(),
                "unsubscribed".into(),
                "list-unsubscribe".into()
            )]
        );
    }

    // The next run suppresses Ann's new message and sends Ben's.
    sessions(&s.store, 3).await;
    let r = s.run("mail").await;
    assert_eq!(r["records_processed"].as_i64(), Some(1), "{r}");
    let rows = log(&s.store).await;
    let today = Utc::now().format("%Y-%m-%d");
    assert_eq!(
        rows,
        [
            ("Ann@Example.com".into(), "sent".into(), String::new()),
            (
                "Ann@Example.com".into(),
                "suppressed".into(),
                format!(
                    "blocked on `email` since {today}: unsubscribed (source `list-unsubscribe`); \
                     not sent"
                )
            ),
            ("ben@example.com".into(), "sent".into(), String::new()),
            ("ben@example.com".into(), "sent".into(), String::new()),
        ]
    );
    let mails = wait_for("3 emails", std::time::Duration::from_secs(10), || async {
        let n = std::fs::read_dir(&outbox).unwrap().count();
        (n >= 3).then_some(n)
    })
    .await;
    assert_eq!(mails, 3, "Ann's second email was not written");
    s.stop().await;
}

#[tokio::test]
async fn a_list_unsubscribe_post_blocks_the_address_and_a_get_or_a_forged_token_does_not_sqlite() {
    unsubscribe_story(Project::sqlite()).await;
}

#[tokio::test]
async fn a_list_unsubscribe_post_blocks_the_address_and_a_get_or_a_forged_token_does_not_postgres()
{
    if let Some(p) = Project::postgres().await {
        unsubscribe_story(p).await;
    }
}

/// Twilio's signature, computed here on its own: base64 HMAC-SHA1 of the URL and each
/// parameter's name and value, sorted by name.
fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut m = Hmac::<Sha1>::new_from_slice(token.as_bytes()).unwrap();
    m.update(url.as_bytes());
    for (k, v) in sorted {
        m.update(k.as_bytes());
        m.update(v.as_bytes());
    }
    STANDARD.encode(m.finalize().into_bytes())
}

fn reply(from: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AccountSid", "AC123".to_string()),
        ("MessageSid", "SM1234567890".to_string()),
        ("From", from.to_string()),
        ("To", "+15005550006".to_string()),
        ("Body", body.to_string()),
    ]
}

impl Setup {
    /// Posts `params` to `/twilio/inbound`, signed with `token` over `signed` (the parameters
    /// as signed, which a test may tamper with after signing); `None`: unsigned.
    async fn twilio(
        &self,
        params: &[(&'static str, String)],
        signed: Option<(&str, &[(&'static str, String)])>,
    ) -> (u16, String, String) {
        let mut r = self
            .http
            .post(format!("{}/twilio/inbound", self.base))
            .form(params);
        if let Some((token, signed)) = signed {
            let pairs: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let url = format!("{PUBLIC}/twilio/inbound");
            r = r.header("X-Twilio-Signature", twilio_signature(token, &url, &pairs));
        }
        self.send(r).await
    }

    async fn signed(&self, params: &[(&'static str, String)]) -> (u16, String, String) {
        self.twilio(params, Some((TWILIO_TOKEN, params))).await
    }
}

const TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#;

async fn twilio_story(p: Project) {
    let s = setup(p).await;
    let stop = reply("+15551230001", " Stop ");
    let mut tampered = stop.clone();
    tampered[2].1 = "+15551230002".into();
    let refused = "the `X-Twilio-Signature` header is not the HMAC-SHA1 of `inbound_url` and the \
                   parameters with the auth token";
    for (signed, message) in [
        (
            s.twilio(&stop, None).await,
            "missing `x-twilio-signature` header: the request is not signed",
        ),
        (s.twilio(&stop, Some(("wrong-token", &stop))).await, refused),
        (
            s.twilio(&tampered, Some((TWILIO_TOKEN, &stop))).await,
            refused,
        ),
    ] {
        let (code, _, body) = signed;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((code, body), (401, json!({ "error": message })));
    }
    assert_eq!(s.blocks().await, [], "an unsigned reply writes nothing");

    // Anything but a keyword changes nothing.
    let chat = s
        .signed(&reply("+15551230001", "please stop by tomorrow"))
        .await;
    assert_eq!(chat, (200, "text/xml".into(), TWIML.into()));
    assert_eq!(s.blocks().await, []);

    let blocked = || {
        vec![(
            "sms".to_string(),
            "+15551230001".to_string(),
            "replied Stop".to_string(),
            "twilio-inbound".to_string(),
        )]
    };
    assert_eq!(
        s.signed(&stop).await,
        (200, "text/xml".into(), TWIML.into())
    );
    assert_eq!(s.blocks().await, blocked());
    assert_eq!(s.signed(&reply("+15551230001", "START")).await.0, 200);
    assert_eq!(s.blocks().await, [], "START unblocks");
    assert_eq!(s.signed(&reply("+15551230001", "unsubscribe")).await.0, 200);
    assert_eq!(s.signed(&stop).await.0, 200);
    assert_eq!(s.blocks().await.len(), 1);
    // WhatsApp replies are not configured here: not served.
    let whatsapp = s.signed(&reply("whatsapp:+15551230001", "STOP")).await;
    assert_eq!(whatsapp.0, 404);

    // The next run texts Ben only and records Ann's message suppressed.
    let r = s.run("text").await;
    assert_eq!(r["records_processed"].as_i64(), Some(1), "{r}");
    assert_eq!(texted(&s.twilio).await, ["+15551230002"]);
    let suppressed: Vec<_> = log(&s.store)
        .await
        .into_iter()
        .filter(|(_, status, _)| status == "suppressed")
        .map(|(to, _, error)| (to, error))
        .collect();
    let today = Utc::now().format("%Y-%m-%d");
    assert_eq!(
        suppressed,
        [(
            "+15551230001".to_string(),
            format!(
                "blocked on `sms` since {today}: replied unsubscribe (source `twilio-inbound`); \
                 not sent"
            )
        )]
    );
    s.stop().await;
}

#[tokio::test]
async fn a_signed_twilio_stop_blocks_the_sender_and_start_unblocks_sqlite() {
    twilio_story(Project::sqlite()).await;
}

#[tokio::test]
async fn a_signed_twilio_stop_blocks_the_sender_and_start_unblocks_postgres() {
    if let Some(p) = Project::postgres().await {
        twilio_story(p).await;
    }
}

impl Setup {
    /// Posts `body` to `/bounces` with `token` as the bearer token, if any.
    async fn bounces(&self, body: Value, token: Option<&str>) -> (u16, Value) {
        let mut r = self.http.post(format!("{}/bounces", self.base)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let (code, _, body) = self.send(r).await;
        (code, serde_json::from_str(&body).unwrap())
    }
}

async fn bounces_story(p: Project) {
    let s = setup(p).await;
    let post = |body: Value, token: Option<&'static str>| s.bounces(body, token);
    let good = json!([
        {"address": "Ann@Example.com", "reason": "550 5.1.1 user unknown"},
        {"address": "ben@example.com", "kind": "complaint"},
        {"address": "cat@example.com", "kind": "soft", "reason": "mailbox full"},
        {"address": "+1 555 123 0009", "channel": "sms", "kind": "hard"},
    ]);
    assert_eq!(
        post(good.clone(), None).await,
        (401, json!({"error": "a valid bearer token is required"}))
    );
    assert_eq!(
        post(good.clone(), Some("wrong")).await,
        (401, json!({"error": "a valid bearer token is required"}))
    );
    let bad = json!([
        {"address": "dan@example.com"},
        {"address": "nope"},
        {"address": "eve@example.com", "kind": "bounced"},
    ]);
    assert_eq!(
        post(bad, Some(HTTP_TOKEN)).await,
        (
            400,
            json!({"error": "2 bad entries; nothing was recorded: bounces[1]: `nope` is not an \
                             email address; bounces[2]: unknown `kind` `bounced`; write `hard`, \
                             `complaint` or `soft`"})
        )
    );
    assert_eq!(
        post(json!("dan@example.com"), Some(HTTP_TOKEN)).await.0,
        400
    );
    assert_eq!(s.blocks().await, [], "a refused batch writes nothing");

    assert_eq!(
        post(good.clone(), Some(HTTP_TOKEN)).await,
        (200, json!({"added": 3, "already": 0, "soft": 1}))
    );
    assert_eq!(
        post(good, Some(HTTP_TOKEN)).await,
        (200, json!({"added": 0, "already": 3, "soft": 1}))
    );
    // One object is a batch of one.
    assert_eq!(
        post(json!({"address": "ben@example.com"}), Some(HTTP_TOKEN)).await,
        (200, json!({"added": 0, "already": 1, "soft": 0}))
    );
    let b = |c: &str, a: &str, r: &str| (c.into(), a.into(), r.into(), "bounce".into());
    assert_eq!(
        s.blocks().await,
        [
            b(
                "email",
                "ann@example.com",
                "hard bounce: 550 5.1.1 user unknown"
            ),
            b("email", "ben@example.com", "complaint"),
            b("sms", "+15551230009", "hard bounce"),
        ]
    );
    // The next run emails neither Ann (hard bounce) nor Ben (complaint): both suppressed.
    let r = s.run("mail").await;
    assert_eq!(r["records_processed"].as_i64(), Some(0), "{r}");
    let mut suppressed: Vec<_> = log(&s.store)
        .await
        .into_iter()
        .filter(|(_, status, _)| status == "suppressed")
        .map(|(to, _, _)| to)
        .collect();
    suppressed.sort();
    assert_eq!(suppressed, ["Ann@Example.com", "ben@example.com"]);
    s.stop().await;
}

#[tokio::test]
async fn bounces_are_all_or_nothing_behind_the_bearer_token_sqlite() {
    bounces_story(Project::sqlite()).await;
}

#[tokio::test]
async fn bounces_are_all_or_nothing_behind_the_bearer_token_postgres() {
    if let Some(p) = Project::postgres().await {
        bounces_story(p).await;
    }
}

/// Without `unsubscribe_url` or `inbound_url`, their routes are not there.
#[tokio::test]
async fn unconfigured_opt_out_routes_are_not_served() {
    let p = Project::sqlite();
    let port = free_port();
    p.write_config(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[channels.email]\nfrom = \"s@acme.test\"\n"
        ),
    );
    let d = TestDaemon::start(p.config(), Utc::now()).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for r in [
        http.get(format!("{base}/unsubscribe/abc.def")),
        http.post(format!("{base}/unsubscribe/abc.def")),
        http.post(format!("{base}/twilio/inbound"))
            .body("From=%2B15551230001&Body=STOP"),
    ] {
        assert_eq!(r.send().await.unwrap().status().as_u16(), 404);
    }
    let unsigned = http
        .post(format!("{base}/bounces"))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(
        unsigned.status().as_u16(),
        401,
        "no `[http]` token: refused"
    );
    d.stop().await;
}

/// A secret the opt-out routes need and cannot read stops the start, as a payment secret does,
/// instead of refusing every unsubscribe later.
#[test]
fn the_daemon_does_not_start_without_the_unsubscribe_secret() {
    let p = Project::sqlite();
    let port = free_port();
    let missing = p.path().join("no-such-secret");
    p.write_config(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[channels.email]\nfrom = \"s@acme.test\"\n\
             unsubscribe_url = \"{PUBLIC}/unsubscribe\"\nunsubscribe_secret_file = \"{}\"\n",
            missing.display()
        ),
    );
    let mut child = p
        .daemon_command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = crate::helpers::wait_for_blocking(
        "the daemon to refuse to start",
        std::time::Duration::from_secs(30),
        || child.try_wait().unwrap(),
    );
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains(&format!(
            "cannot read the `[channels.email]` `unsubscribe_secret`: cannot read secret file `{}`",
            missing.display()
        )),
        "{err}"
    );
}
