//! A real headless Chromium driven over WebDriver, for the operator console's tests: finds
//! Debian's `chromium` and `chromedriver`, starts chromedriver on a free loopback port as a
//! child of this test, opens a headless session with bounded timeouts, and offers the few
//! page actions a console test needs (go, fill, click, submit, read, wait, cookies,
//! screenshot). Every call is bounded; everything started is killed by pid when dropped.
//!
//! When the binaries are missing the test prints a `SKIPPING` line and returns, unless
//! `TICKLER_REQUIRE_BROWSER` is set (`.ci/run` sets it), in which case it fails and says what
//! to install.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

/// The bound on one WebDriver command (find, click, read...): a hung browser fails the test
/// with what it was doing instead of hanging it.
pub const STEP: Duration = Duration::from_secs(30);
/// How long a navigation may take before chromedriver gives up on it.
const PAGE_LOAD: Duration = Duration::from_secs(30);
/// How long chromedriver may take to answer `/status` as ready, and Chromium to open a
/// session (a cold start on a busy 2-core machine takes a few seconds).
const STARTUP: Duration = Duration::from_secs(60);
/// The window every screenshot is taken at.
pub const WINDOW: (u32, u32) = (1280, 900);

/// What the harness could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "no `{0}` found (looked on PATH and in /usr/bin, /usr/lib/chromium): install Debian's \
         `chromium` and `chromium-driver` (`apt-get install chromium chromium-driver`)"
    )]
    Missing(&'static str),
    #[error("cannot start `{path}`: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("chromedriver exited before it was ready ({status}); its log:\n{log}")]
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("chromedriver did not report ready on `/status` within {0:?}; its log:\n{1}")]
    NotReady(Duration, String),
    #[error("chromedriver could not open a Chromium session: {0}; its log:\n{1}")]
    Session(String, String),
}

/// Where a test waits to arrive: an element, a text shown on the page, or a URL.
#[derive(Debug, Clone, Copy)]
pub enum Until<'a> {
    /// An element matching this CSS selector exists.
    Css(&'a str),
    /// The page's visible text (`body.innerText`) contains this.
    Text(&'a str),
    /// The current URL contains this (a path like `/console/jobs`).
    Url(&'a str),
}

/// chromedriver and the Chromium session it drives. Drop kills chromedriver's process group
/// (chromedriver and the Chromium it started), so a panicking test leaves nothing behind;
/// [`Browser::close`] ends the session politely first.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    /// Chromium's profile (`--user-data-dir`) and chromedriver's log.
    dir: tempfile::TempDir,
}

/// The first of `candidates` that is an executable file, looking `name` up on PATH first.
fn find_binary(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    on_path
        .chain(candidates.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

/// Where the screenshots of the console tests go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("console-screenshots")
}

impl Browser {
    /// A headless Chromium ready for commands, or `None` (after a loud `SKIPPING` line) when
    /// chromium or chromedriver is not installed and `TICKLER_REQUIRE_BROWSER` is unset.
    /// Any other failure to start fails the test: a broken browser must not pass as skipped.
    pub async fn start() -> Option<Browser> {
        match Self::try_start().await {
            Ok(b) => Some(b),
            Err(e @ BrowserError::Missing(_))
                if std::env::var_os("TICKLER_REQUIRE_BROWSER").is_none() =>
            {
                eprintln!("\n*** SKIPPING a browser test: {e} ***\n");
                None
            }
            Err(e) => panic!("cannot start the headless browser: {e}"),
        }
    }

    async fn try_start() -> Result<Browser, BrowserError> {
        let driver_bin = find_binary(
            "chromedriver",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        )
        .ok_or(BrowserError::Missing("chromedriver"))?;
        let chromium = find_binary(
            "chromium",
            &["/usr/bin/chromium", "/usr/lib/chromium/chromium"],
        )
        .ok_or(BrowserError::Missing("chromium"))?;

        let dir = tempfile::Builder::new()
            .prefix("tickler-browser-")
            .tempdir()
            .map_err(|source| BrowserError::Spawn {
                path: driver_bin.clone(),
                source,
            })?;
        let log = dir.path().join("chromedriver.log");
        let port = super::try_free_port().map_err(|e| BrowserError::Spawn {
            path: driver_bin.clone(),
            source: std::io::Error::other(e),
        })?;
        // Its own process group: Chromium and its helpers inherit it, so Drop kills them all.
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| BrowserError::Spawn {
                path: driver_bin.clone(),
                source,
            })?;
        let mut browser = Browser {
            client: None,
            driver,
            dir,
        };
        let url = format!("http://127.0.0.1:{port}");
        browser.wait_ready(&url).await?;

        let profile = browser.dir.path().join("profile");
        let caps = serde_json::json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", profile.display()),
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--password-store=basic",
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("a JSON object literal")
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let connect = builder.connect(&url);
        let client = match tokio::time::timeout(STARTUP, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(BrowserError::Session(e.to_string(), browser.log_tail())),
            Err(_) => {
                return Err(BrowserError::Session(
                    format!("no session within {STARTUP:?}"),
                    browser.log_tail(),
                ));
            }
        };
        browser.client = Some(client);
        let timeouts = TimeoutConfiguration::new(
            Some(Duration::from_secs(10)),
            Some(PAGE_LOAD),
            Some(Duration::ZERO),
        );
        browser
            .step("set the session timeouts", |c| async move {
                c.update_timeouts(timeouts).await
            })
            .await;
        Ok(browser)
    }

    /// Polls chromedriver's `/status` until it says ready, failing early if it exits.
    async fn wait_ready(&mut self, url: &str) -> Result<(), BrowserError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a plain HTTP client");
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(BrowserError::Exited {
                    status,
                    log: self.log_tail(),
                });
            }
            if let Ok(r) = http.get(format!("{url}/status")).send().await
                && let Ok(v) = r.json::<serde_json::Value>().await
                && v["value"]["ready"] == serde_json::Value::Bool(true)
            {
                return Ok(());
            }
            if start.elapsed() > STARTUP {
                return Err(BrowserError::NotReady(STARTUP, self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of chromedriver's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The WebDriver client, for anything the helpers below do not cover.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    /// The process id of chromedriver (Chromium runs in its process group).
    pub fn driver_pid(&self) -> u32 {
        self.driver.id()
    }

    /// Runs one WebDriver command bounded by [`STEP`]; panics with `what` when it fails or
    /// hangs.
    async fn step<T, F, Fut>(&self, what: &str, f: F) -> T
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        match tokio::time::timeout(STEP, f(self.client().clone())).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("browser: cannot {what}: {e}"),
            Err(_) => panic!("browser: {what} took longer than {STEP:?}"),
        }
    }

    async fn find(&self, css: &str) -> Element {
        self.step(&format!("find `{css}`"), |c| async move {
            c.find(Locator::Css(css)).await
        })
        .await
    }

    /// Navigates to `url` and returns once the page has loaded.
    pub async fn goto(&self, url: &str) {
        self.step(
            &format!("open `{url}`"),
            |c| async move { c.goto(url).await },
        )
        .await
    }

    /// Types `text` into the input matching `css`, after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.step(&format!("fill `{css}`"), |_| async move {
            el.clear().await?;
            el.send_keys(text).await
        })
        .await
    }

    /// Clicks the element matching `css` (a link, a button).
    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.step(
            &format!("click `{css}`"),
            |_| async move { el.click().await },
        )
        .await
    }

    /// Submits the form matching `form_css` by clicking its submit button, as a person would
    /// (a `<button>` without a type counts, as in HTML).
    pub async fn submit(&self, form_css: &str) {
        let form = self
            .step(&format!("find the form `{form_css}`"), |c| async move {
                c.form(Locator::Css(form_css)).await
            })
            .await;
        self.step(&format!("submit the form `{form_css}`"), |_| async move {
            form.submit_with(Locator::Css(
                "button:not([type]),button[type=submit],input[type=submit]",
            ))
            .await
        })
        .await
    }

    /// The visible text of the first element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.step(&format!("read `{css}`"), |_| async move { el.text().await })
            .await
    }

    /// Whether an element matches `css` now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        let found = self
            .step(&format!("look for `{css}`"), |c| async move {
                c.find_all(Locator::Css(css)).await
            })
            .await;
        !found.is_empty()
    }

    /// The current page's HTML as the browser holds it now.
    pub async fn page_source(&self) -> String {
        self.step("read the page source", |c| async move { c.source().await })
            .await
    }

    /// The URL the browser is on (after redirects).
    pub async fn current_url(&self) -> String {
        self.step(
            "read the current URL",
            |c| async move { c.current_url().await },
        )
        .await
        .to_string()
    }

    /// Polls every 50 ms until `until` holds; panics after `deadline` with the URL and the
    /// page's text, so a failing console test shows where it was.
    pub async fn wait_for(&self, until: Until<'_>, deadline: Duration) {
        let start = Instant::now();
        loop {
            let done = match until {
                Until::Css(css) => self.exists(css).await,
                Until::Text(text) => self.visible_text().await.contains(text),
                Until::Url(part) => self.current_url().await.contains(part),
            };
            if done {
                return;
            }
            if start.elapsed() > deadline {
                let url = self.current_url().await;
                let text = self.visible_text().await;
                panic!(
                    "browser: timed out after {deadline:?} waiting for {until:?}; on `{url}` \
                     showing:\n{text}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `document.body.innerText` (empty while there is no body yet).
    async fn visible_text(&self) -> String {
        let v = self
            .step("read the page text", |c| async move {
                c.execute(
                    "return document.body ? document.body.innerText : ''",
                    vec![],
                )
                .await
            })
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Every cookie the browser holds for the current page, HttpOnly ones included (WebDriver
    /// sees them; page scripts do not).
    pub async fn cookies(&self) -> Vec<Cookie<'static>> {
        self.step(
            "read the cookies",
            |c| async move { c.get_all_cookies().await },
        )
        .await
    }

    /// Saves a PNG of the window to `target/console-screenshots/NAME.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .step("take a screenshot", |c| async move { c.screenshot().await })
            .await;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create target/console-screenshots");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Ends the WebDriver session (Chromium quits), bounded by [`STEP`]; chromedriver is
    /// killed on drop. Call it at the end of a test; a panicking test still cleans up in drop.
    pub async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = tokio::time::timeout(STEP, c.close()).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pid = self.driver.id() as i32;
        // SAFETY: signalling the process group of a child we started with process_group(0).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
