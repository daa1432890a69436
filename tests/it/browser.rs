//! The browser harness proven on a real page: a tiny HTTP server in the test serves a login
//! form; a real headless Chromium fills it, submits it, and must land on the answer page
//! with the posted name shown and the session cookie set. The console tests use the same
//! harness against the real daemon.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};

use crate::helpers::browser::{Browser, Until};

const FORM: &str = r#"<!doctype html>
<html><head><title>Sign in</title></head><body>
<h1>Sign in</h1>
<form id="login" method="post" action="/login">
  <label>User <input type="text" name="user" id="user"></label>
  <label>Password <input type="password" name="password" id="password"></label>
  <button>Sign in</button>
</form>
</body></html>"#;

/// The forms posted to `/login`, as (name, value) pairs.
type Posted = Arc<Mutex<Vec<Vec<(String, String)>>>>;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn handle(req: Request<Incoming>, posted: Posted) -> Response<Full<Bytes>> {
    let html = |body: String| {
        Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/") => html(FORM.to_string()),
        (Method::POST, "/login") => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let fields: Vec<(String, String)> =
                form_urlencoded::parse(&body).into_owned().collect();
            let user = fields
                .iter()
                .find(|(k, _)| k == "user")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            posted.lock().unwrap().push(fields);
            let mut r = html(format!(
                "<!doctype html><html><head><title>Signed in</title></head><body>\
                 <p>Signed in as <span id=\"who\">{}</span></p></body></html>",
                escape(&user)
            ));
            r.headers_mut().insert(
                "set-cookie",
                "s=1; HttpOnly; SameSite=Strict; Path=/".parse().unwrap(),
            );
            r
        }
        _ => Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"not found")))
            .unwrap(),
    }
}

/// Serves the login page on a loopback port; returns its base URL.
async fn serve(posted: Posted) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let posted = posted.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let posted = posted.clone();
                    async move { Ok::<_, Infallible>(handle(req, posted).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_headless_browser_signs_in_through_a_form_and_keeps_the_cookie() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let posted = Posted::default();
    let base = serve(posted.clone()).await;
    let run = async {
        browser.goto(&format!("{base}/")).await;
        browser
            .wait_for(Until::Css("form#login"), Duration::from_secs(10))
            .await;
        assert!(
            browser.cookies().await.is_empty(),
            "no cookie before signing in"
        );
        browser.fill("#user", "ada <lovelace>").await;
        browser.fill("#password", "s3cret & more").await;
        browser.submit("form#login").await;
        browser
            .wait_for(Until::Text("Signed in as"), Duration::from_secs(10))
            .await;

        assert_eq!(browser.text_of("#who").await, "ada <lovelace>");
        assert!(
            browser.current_url().await.ends_with("/login"),
            "{}",
            browser.current_url().await
        );
        assert!(browser.page_source().await.contains("&lt;lovelace&gt;"));
        let posted = posted.lock().unwrap().clone();
        assert_eq!(
            posted,
            vec![vec![
                ("user".to_string(), "ada <lovelace>".to_string()),
                ("password".to_string(), "s3cret & more".to_string()),
            ]],
            "the browser posted the form once, with both fields as typed"
        );

        let cookies = browser.cookies().await;
        let s = cookies
            .iter()
            .find(|c| c.name() == "s")
            .unwrap_or_else(|| panic!("cookie `s` set by /login, got {cookies:?}"));
        assert_eq!(s.value(), "1");
        assert_eq!(s.http_only(), Some(true));
        assert_eq!(
            s.same_site().map(|v| v.to_string()).as_deref(),
            Some("Strict"),
            "{s:?}"
        );

        let shot = browser.screenshot("harness-signed-in").await;
        let png = std::fs::read(&shot).expect("the screenshot file");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is a PNG",
            shot.display()
        );
        assert!(png.len() > 1000, "a real picture, {} bytes", png.len());
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser test finishes within 120 s");
    browser.close().await;
}
