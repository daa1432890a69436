//! The edge of the daemon toward monitors and callers: the optional `[http]` listener (127.0.0.1 by default): `GET /metrics` (Prometheus),
//! `GET /healthz` (the timer loop is going round and the database answers) and
//! `POST /jobs/{name}/run` (a manual run, behind a bearer token compared in constant time;
//! `?wait=30s` answers with the finished run; `GET` too where `allow_get_trigger = true`) and
//! the signed payment webhooks `POST /payments/paystack` and `POST /payments/stripe` (where
//! `[payments.*]` configures them; see `payments.rs`), and `POST /invoices/{number}/payments`
//! (the application's own payments, behind the bearer token), and the opt-outs that come in by
//! themselves: `GET`/`POST /unsubscribe/{token}`, `POST /twilio/inbound` and `POST /bounces`
//! (see `optouts.rs`). Anything else is 404; error details go to the log, never into a response.
//!
//! The listener holds a bounded number of connections (`[http] max_connections`, lowered to
//! what the open-file limit leaves after a reserve for jobs and the database): a flood of idle
//! clients can neither exhaust the daemon's descriptors nor keep a monitor from `/healthz`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::config::payments::PaymentsConfig;
use crate::daemon::fdlimit;
use crate::daemon::manual::{self, Waited};
use crate::daemon::metrics::Snapshot;
use crate::daemon::{Edge, EdgeError, Shared};
use crate::notify::ChannelKind;
use crate::secret::SecretSource;
use crate::store::RunRow;
use crate::store::audit::{Action, Actor};
pub(crate) use body::Body;

mod body;
pub mod console;
mod optouts;
mod payments;

pub use optouts::OptOuts;

use crate::daemon::shared::LOOP_STALE;
/// How long a scrape or health check waits for the database.
const DB_PATIENCE: Duration = Duration::from_secs(2);
/// How long a connection may take to send a request's headers, counted from its start or from
/// its previous response: a client that connects and sends nothing, or an idle keep-alive
/// connection, is closed after this and gives its slot back.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait before `accept` is tried again after it failed (out of descriptors): the refused
/// connection stays queued, so trying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// While the listener is full and the connection asked to close is still answering, the next
/// oldest one is asked after this long.
const EVICT_PATIENCE: Duration = Duration::from_millis(250);
/// A repeated condition logged once is logged again at most this often, with its count.
const LOG_AGAIN_AFTER: Duration = Duration::from_secs(600);
/// The longest `?wait=` of a trigger: a caller holds a connection (one of `max_connections`)
/// while it waits, and a longer run is better followed in its ledger row.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// What the handlers see.
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub tracker: TaskTracker,
    pub token: Option<SecretSource>,
    /// `[http] max_connections`: the most connections served at once.
    pub max_connections: usize,
    /// `[http] allow_get_trigger`: `GET /jobs/{name}/run` runs the job as `POST` does.
    pub allow_get_trigger: bool,
    /// `[payments.*]`: the payment webhooks served and their signing secrets.
    pub payments: Arc<PaymentsConfig>,
    /// The unsubscribe links and Twilio replies served (from `[channels.*]`).
    pub optouts: Arc<OptOuts>,
}

/// Why the `[http]` listener could not start; the daemon does not start either.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "cannot listen on {listen} (`[http] listen`): {cause}; pick a free port or remove the \
         `[http]` section"
    )]
    Bind {
        listen: SocketAddr,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    #[error("cannot read the `[http]` token: {0}")]
    Token(#[from] crate::secret::SecretError),
    #[error("cannot read the `[payments.{provider}]` secret: {cause}")]
    PaymentSecret {
        provider: &'static str,
        cause: crate::secret::SecretError,
    },
    #[error("cannot read the `[channels.{channel}]` `{key}`: {cause}")]
    ChannelSecret {
        channel: &'static str,
        key: &'static str,
        cause: crate::secret::SecretError,
    },
}

/// The `[http]` listener as the daemon's [`Edge`]: bound during the daemon's start-up (after it
/// holds its database), then served.
pub struct Listener {
    listen: SocketAddr,
    listener: Option<TcpListener>,
    token: Option<SecretSource>,
    max_connections: usize,
    allow_get_trigger: bool,
    payments: Arc<PaymentsConfig>,
    optouts: Arc<OptOuts>,
    /// `[http.console]`, bound and served beside it on its own port.
    console: Option<console::Listener>,
}

/// The edge of `config`'s `[http]` section (none without one); nothing is opened yet.
pub fn edge(config: &Config) -> Option<Box<dyn Edge>> {
    let h = config.http.as_ref()?;
    Some(Box::new(Listener {
        listen: h.listen,
        listener: None,
        token: h.token.clone(),
        max_connections: h.max_connections,
        allow_get_trigger: h.allow_get_trigger,
        payments: config.payments.clone(),
        optouts: Arc::new(OptOuts {
            unsubscribe: config.notifier.unsubscribe().cloned(),
            sms: config.notifier.twilio_inbound(ChannelKind::Sms),
            whatsapp: config.notifier.twilio_inbound(ChannelKind::Whatsapp),
        }),
        console: h.console.clone().map(console::Listener::new),
    }))
}

impl Listener {
    /// Reads the trigger's token once, so a missing file or variable stops the start instead
    /// of refusing every request; then binds.
    async fn bind(&mut self) -> Result<(), HttpError> {
        if let Some(t) = &self.token {
            t.read()?;
        }
        for (provider, source) in [
            ("paystack", &self.payments.paystack),
            ("stripe", &self.payments.stripe),
        ] {
            if let Some(s) = source {
                s.read()
                    .map_err(|cause| HttpError::PaymentSecret { provider, cause })?;
            }
        }
        let o = &self.optouts;
        for (channel, key, source) in [
            (
                "email",
                "unsubscribe_secret",
                o.unsubscribe.as_ref().map(|u| u.secret()),
            ),
            ("sms", "auth_token", o.sms.as_ref().map(|i| &i.token)),
            (
                "whatsapp",
                "auth_token",
                o.whatsapp.as_ref().map(|i| &i.token),
            ),
        ] {
            if let Some(s) = source {
                s.read().map_err(|cause| HttpError::ChannelSecret {
                    channel,
                    key,
                    cause,
                })?;
            }
        }
        let listen = self.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|cause| HttpError::Bind { listen, cause })?;
        self.listener = Some(listener);
        if let Some(console) = &mut self.console {
            console.bind().await?;
        }
        Ok(())
    }
}

impl Edge for Listener {
    fn bind(&mut self) -> BoxFuture<'_, Result<(), EdgeError>> {
        Box::pin(async move { Listener::bind(self).await.map_err(EdgeError::from) })
    }

    fn serve(self: Box<Self>, shared: Arc<Shared>, tracker: TaskTracker) {
        let Some(listener) = self.listener else {
            return;
        };
        let stopping = shared.stopping.clone();
        if let Some(console) = self.console {
            console.serve(shared.clone(), tracker.clone());
        }
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(
                listen = %addr, trigger = self.token.is_some(),
                max_connections = self.max_connections, "http listener started"
            );
        }
        if self.token.is_none() {
            tracing::info!("POST /jobs/NAME/run is refused: no `[http]` token_file or token_env");
        }
        let max_connections = self.max_connections;
        let state = Arc::new(HttpState {
            shared,
            tracker,
            token: self.token,
            max_connections: self.max_connections,
            allow_get_trigger: self.allow_get_trigger,
            payments: self.payments,
            optouts: self.optouts,
        });
        tokio::spawn(serve(listener, state, max_connections, stopping));
    }
}

/// What a listener serves: one response per request, knowing the client's address.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> BoxFuture<'static, Response<Body>>;
}

impl Handler for HttpState {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> BoxFuture<'static, Response<Body>> {
        Box::pin(async move { handle(req, peer, &self).await })
    }
}

/// Serves connections until `stopping`, at most `max_connections` at once (fewer when
/// the open-file limit is low, see [`fdlimit::connection_bound`]).
///
/// When every slot is taken, a new connection is accepted and the oldest one is asked to
/// close (at once when it is idle between requests, after its response when it is busy): a
/// monitor's `/healthz` is then answered even while hundreds of idle clients try to hold
/// connections, as nginx drains idle keep-alive connections when its pool is full. Waiting
/// for a free slot instead would queue the monitor behind every idle client's header-read
/// timeout. Idle connections also close on their own after [`HEADER_READ_TIMEOUT`].
async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    max_connections: usize,
    stopping: CancellationToken,
) {
    let bound = connection_bound(max_connections);
    let slots = Arc::new(Semaphore::new(bound));
    let connections = Arc::new(Connections::default());
    let mut out_of_files = Throttle::default();
    let mut other_errors = Throttle::default();
    let mut full = Throttle::default();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopping.cancelled() => return,
        };
        let stream = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if is_out_of_files(&e) {
                    if let Some(times) = out_of_files.hit(Instant::now()) {
                        tracing::warn!(
                            error = %e, times,
                            "http accept failed: the process is out of file descriptors; new \
                             connections wait in the kernel's queue; raise `LimitNOFILE=` in the \
                             service unit or lower `[http] max_connections`"
                        );
                    }
                } else if let Some(times) = other_errors.hit(Instant::now()) {
                    tracing::warn!(error = %e, times, "http accept failed");
                }
                // The failed connection is still queued: trying again at once would spin.
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    _ = stopping.cancelled() => return,
                }
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(times) = full.hit(Instant::now()) {
                    tracing::warn!(
                        max_connections = bound,
                        times,
                        "http connection limit reached: each new connection now closes the \
                         oldest one (idle ones close anyway after 10s without a request); if \
                         these are real clients, raise `[http] max_connections` (and \
                         `LimitNOFILE=` in the service unit with it)"
                    );
                }
                match free_a_slot(&slots, &connections, &stopping).await {
                    Some(permit) => permit,
                    None => return,
                }
            }
        };
        let registered = connections.register();
        tokio::spawn(serve_connection(
            stream,
            handler.clone(),
            permit,
            registered,
        ));
    }
}

/// The configured bound lowered to what the open-file limit leaves after the reserve; says so
/// when it lowers it.
fn connection_bound(wanted: usize) -> usize {
    let limit = match fdlimit::current() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "http: serving up to `[http] max_connections` unchecked");
            return wanted;
        }
    };
    let open = fdlimit::open_now().unwrap_or_else(|| {
        tracing::warn!("http: cannot count open descriptors in `/proc/self/fd`; assuming 64");
        64
    });
    let bound = fdlimit::connection_bound(wanted, limit.soft, open);
    if bound < wanted {
        tracing::warn!(
            max_connections = wanted,
            lowered_to = bound,
            open_files_limit = limit.soft,
            open_now = open,
            reserved = fdlimit::reserve(limit.soft),
            "`[http] max_connections` lowered so that jobs and the database keep descriptors; \
             raise `LimitNOFILE=` in the service unit to serve more"
        );
    }
    bound
}

/// `accept` failed for want of descriptors (this process's or the system's) or kernel memory:
/// it will fail again until something closes.
fn is_out_of_files(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Asks the oldest connections to close, one more every [`EVICT_PATIENCE`] while the asked
/// ones are still answering, until a slot is free; `None` when the daemon stops first.
async fn free_a_slot(
    slots: &Arc<Semaphore>,
    connections: &Connections,
    stopping: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    loop {
        connections.close_oldest();
        tokio::select! {
            permit = slots.clone().acquire_owned() => return permit.ok(),
            _ = tokio::time::sleep(EVICT_PATIENCE) => {}
            _ = stopping.cancelled() => return None,
        }
    }
}

/// Serves one connection; its slot is given back only after its socket is closed, so the
/// count of slots in use never falls below the count of open sockets.
async fn serve_connection<H: Handler>(
    (stream, peer): (TcpStream, SocketAddr),
    handler: Arc<H>,
    permit: OwnedSemaphorePermit,
    registered: Registered,
) {
    {
        let service = hyper::service::service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle(req, peer).await) }
        });
        let io = hyper_util::rt::TokioIo::new(stream);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let conn = builder.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let served = tokio::select! {
            r = conn.as_mut() => r,
            _ = registered.close.cancelled() => {
                // Closes an idle connection now; a busy one after its response.
                conn.as_mut().graceful_shutdown();
                conn.as_mut().await
            }
        };
        if let Err(e) = served {
            tracing::debug!(error = %e, "http connection ended with an error");
        }
    }
    drop(registered);
    drop(permit);
}

/// The connections being served, oldest first, each with the token that asks it to close.
#[derive(Default)]
struct Connections {
    open: Mutex<(u64, BTreeMap<u64, CancellationToken>)>,
}

/// A connection's place in [`Connections`], given up when dropped.
struct Registered {
    id: u64,
    close: CancellationToken,
    connections: Arc<Connections>,
}

impl Connections {
    fn register(self: &Arc<Self>) -> Registered {
        let close = CancellationToken::new();
        let mut open = self.open.lock().expect("connections lock");
        let id = open.0;
        open.0 += 1;
        open.1.insert(id, close.clone());
        Registered {
            id,
            close,
            connections: self.clone(),
        }
    }

    /// Asks the oldest connection not yet asked to close (none when all already were).
    fn close_oldest(&self) {
        let open = self.open.lock().expect("connections lock");
        if let Some(t) = open.1.values().find(|t| !t.is_cancelled()) {
            t.cancel();
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut open) = self.connections.open.lock() {
            open.1.remove(&self.id);
        }
    }
}

/// Decides when a condition that repeats (a full listener, a failing `accept`) gets a log
/// line: the first time, then at most once per [`LOG_AGAIN_AFTER`], so a flood of
/// connections cannot flood the journal too.
#[derive(Debug, Default)]
struct Throttle {
    last_line: Option<Instant>,
    since: u64,
}

impl Throttle {
    /// `Some(times it happened since the last line, this one included)` when this occurrence
    /// is to be logged.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        self.since += 1;
        match self.last_line {
            Some(t) if now.saturating_duration_since(t) < LOG_AGAIN_AFTER => None,
            _ => {
                self.last_line = Some(now);
                Some(std::mem::take(&mut self.since))
            }
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::from(Full::new(body.into())));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn json_reply(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    reply(status, "application/json", format!("{body}\n"))
}

fn not_found() -> Response<Body> {
    json_reply(StatusCode::NOT_FOUND, json!({"error": "not found"}))
}

/// A request's whole body, or the 413 to answer when it is over `limit` bytes (or breaks off).
async fn body_within(body: Incoming, limit: usize) -> Result<Bytes, Response<Body>> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => {
            tracing::warn!(error = %e, "http: cannot read a request's body");
            let most = if limit >= 1 << 20 {
                format!("{} MiB", limit >> 20)
            } else {
                format!("{} KiB", limit >> 10)
            };
            Err(json_reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": format!(
                    "the body could not be read whole (at most {most} is accepted)"
                )}),
            ))
        }
    }
}

async fn handle(req: Request<Incoming>, peer: SocketAddr, state: &HttpState) -> Response<Body> {
    if let Some(provider) = payments::Provider::of_path(req.uri().path()) {
        return match *req.method() {
            Method::POST => payments::webhook(req, provider, state).await,
            _ => not_found(),
        };
    }
    let paid_of = req
        .uri()
        .path()
        .strip_prefix("/invoices/")
        .and_then(|r| r.strip_suffix("/payments"))
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .map(str::to_string);
    if let Some(number) = paid_of {
        return match *req.method() {
            Method::POST => payments::invoice_payment(req, &number, state).await,
            _ => not_found(),
        };
    }
    let path = req.uri().path();
    if let Some(token) = path
        .strip_prefix("/unsubscribe/")
        .filter(|t| !t.is_empty() && !t.contains('/'))
        .map(str::to_string)
    {
        return match *req.method() {
            Method::GET | Method::POST => optouts::unsubscribe(req, &token, state).await,
            _ => not_found(),
        };
    }
    match (req.method(), path) {
        (&Method::POST, "/twilio/inbound") => return optouts::twilio_inbound(req, state).await,
        (&Method::POST, "/bounces") => return optouts::bounces(req, state).await,
        _ => {}
    }
    let run_of = path
        .strip_prefix("/jobs/")
        .and_then(|r| r.strip_suffix("/run"))
        .filter(|name| !name.is_empty());
    match (req.method(), path, run_of) {
        (&Method::GET, "/metrics", _) => metrics(state).await,
        (&Method::GET, "/healthz", _) => health(state).await,
        (&Method::POST, _, Some(name)) => trigger(&req, name, peer, state).await,
        (&Method::GET, _, Some(name)) if state.allow_get_trigger => {
            trigger(&req, name, peer, state).await
        }
        (&Method::GET, _, Some(_)) => get_refused(),
        _ => not_found(),
    }
}

/// `GET /jobs/{name}/run` where `allow_get_trigger` is off: the resource exists, the method
/// does not run it.
fn get_refused() -> Response<Body> {
    let mut r = json_reply(
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"error": "`GET /jobs/NAME/run` runs nothing here: use POST, or set \
                          `allow_get_trigger = true` in `[http]` for a caller that can only GET"}),
    );
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    r
}

async fn metrics(state: &HttpState) -> Response<Body> {
    let shared = state.shared.clone();
    let counts = async {
        let tasks = shared.store.task_counts().await?;
        let messages = shared.store.open_message_counts().await?;
        Ok::<_, crate::store::StoreError>((tasks, messages))
    };
    let (queue, messages) = match tokio::time::timeout(DB_PATIENCE, counts).await {
        Ok(Ok((tasks, messages))) => (Some(tasks), Some(messages)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: cannot count tasks and messages");
            (None, None)
        }
        Err(_) => {
            tracing::warn!("metrics: counting tasks and messages took over 2s");
            (None, None)
        }
    };
    // A million series at 100,000 jobs take a while to write: off the runtime's workers, so
    // a scrape does not hold up the fires and runs that share them; one at a time, so a burst
    // of scrapes does not take every core. The text (57 MB there) is written as the scraper
    // reads it, a few pieces of 64 KiB ahead at most, never held whole; a scraper that reads
    // nothing for `STALL` has its response cut, so it cannot hold the scrapes behind it.
    static ONE_AT_A_TIME: Semaphore = Semaphore::const_new(1);
    // (Never closed: the permit, held in the `Ok`, is given back when the writing ends.)
    let turn = ONE_AT_A_TIME.acquire().await;
    let (mut writer, body) = body::Writer::new(body::STALL);
    let writing = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let snapshot = metrics_snapshot(&shared, queue, messages);
        let written = shared
            .metrics
            .render(snapshot, &mut writer)
            .and_then(|()| writer.finish());
        // (A daemon stopping closes its connections: nothing to say then.)
        if written.is_err() && !shared.stopping.is_cancelled() {
            tracing::info!(
                "metrics: a response was cut: the scraper left, or read nothing for {}s",
                body::STALL.as_secs()
            );
        }
        // What the scrape's series took goes back to the system (see `give_back_freed_heap`).
        crate::daemon::give_back_freed_heap();
    });
    tokio::spawn(async move {
        if let Err(e) = writing.await {
            tracing::error!(error = %e, "metrics: the exposition could not be written");
        }
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    r
}

/// What a scrape reports besides the daemon's counts, read from the running config now and
/// each job's next fire from the timer.
fn metrics_snapshot(
    shared: &Shared,
    queue: Option<Vec<(String, i64)>>,
    messages: Option<Vec<(String, i64)>>,
) -> Snapshot {
    let jobs = shared.jobs_now();
    // As the timer has them: nothing is worked out again here.
    let next_fires = shared.next_fires();
    let names = jobs.iter().map(|j| j.name.clone()).collect();
    // As last read by the daemon (before each batch of fires, and every minute).
    let paused: Vec<String> = shared
        .paused
        .lock()
        .expect("paused lock")
        .keys()
        .cloned()
        .collect();
    let deadlines = jobs
        .iter()
        .filter(|j| j.enabled)
        .filter_map(|j| {
            let within = j.alerts.expect_success_within?;
            Some((j.name.clone(), within, shared.alerts.known_since(&j.name)))
        })
        .collect();
    let loop_age = shared.loop_tick.lock().expect("loop tick lock").elapsed();
    Snapshot {
        jobs: names,
        next_fires,
        queue,
        messages,
        deadlines,
        paused,
        loop_age,
    }
}

async fn health(state: &HttpState) -> Response<Body> {
    let shared = &state.shared;
    let age = shared.loop_tick.lock().expect("loop tick lock").elapsed();
    let loop_ok = age < LOOP_STALE;
    let db_ok = match tokio::time::timeout(DB_PATIENCE, shared.store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "healthz: the database does not answer");
            false
        }
        Err(_) => {
            tracing::warn!("healthz: the database took over 2s to answer");
            false
        }
    };
    if !loop_ok {
        tracing::error!(
            seconds = age.as_secs(),
            "healthz: the timer loop has not gone round"
        );
    }
    let ok = loop_ok && db_ok && !shared.stopping.is_cancelled();
    json_reply(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        json!({
            "status": if ok { "ok" } else { "unhealthy" },
            "loop": if loop_ok { "ok" } else { "stalled" },
            "loop_age_s": age.as_secs(),
            "database": if db_ok { "ok" } else { "unreachable" },
            "stopping": shared.stopping.is_cancelled(),
        }),
    )
}

/// The 401 to answer when `req` does not carry the `[http]` bearer token (compared in
/// constant time); `None` when it does. `what` names the request in the log.
fn unauthorized_unless_token<B>(
    req: &Request<B>,
    state: &HttpState,
    what: &str,
) -> Option<Response<Body>> {
    let Some(source) = &state.token else {
        tracing::warn!("{what} refused: no `[http]` token is configured");
        return Some(unauthorized());
    };
    let expected = match source.read() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "{what} refused: cannot read the `[http]` token");
            return Some(unauthorized());
        }
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .unwrap_or("");
    if !same_token(presented.as_bytes(), expected.expose().as_bytes()) {
        tracing::warn!("{what} refused: missing or wrong bearer token");
        return Some(unauthorized());
    }
    None
}

/// The credentials of an `Authorization` header whose scheme is `Bearer`, in any case
/// (RFC 7235: the scheme is case-insensitive), after one or more spaces.
fn bearer(header: &str) -> Option<&str> {
    let (scheme, credentials) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start_matches(' '))
}

/// Equal in time that depends only on the length of `presented` (the caller's input).
fn same_token(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, b) in presented.iter().enumerate() {
        diff |= b ^ expected.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

fn unauthorized() -> Response<Body> {
    let mut r = json_reply(
        StatusCode::UNAUTHORIZED,
        json!({"error": "a valid bearer token is required"}),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Why a trigger's `wait` query parameter is refused (400).
#[derive(Debug, PartialEq, thiserror::Error)]
enum WaitError {
    #[error(
        "invalid `wait` query parameter `{0}`: expected a duration such as `30s`, `2m` or `1m30s`"
    )]
    Invalid(String),
    #[error(
        "invalid `wait` query parameter `{0}`: at most 5m is accepted; follow a longer run with \
         `tickler history --run RUN_ID`"
    )]
    TooLong(String),
    #[error("the `wait` query parameter is given more than once")]
    Repeated,
}

/// The `wait` of a trigger's query (`?wait=30s`): `None` without one.
fn wait_of(query: Option<&str>) -> Result<Option<Duration>, WaitError> {
    let mut values = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| match pair.split_once('=') {
            Some(("wait", value)) => Some(value),
            None if pair == "wait" => Some(""),
            _ => None,
        });
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(WaitError::Repeated);
    }
    let wait =
        humantime::parse_duration(value).map_err(|_| WaitError::Invalid(value.to_string()))?;
    if wait > MAX_WAIT {
        return Err(WaitError::TooLong(value.to_string()));
    }
    Ok(Some(wait))
}

/// A finished run in the shape of seed 003's cron endpoints (`{"success", counts, "errors"}`):
/// `success` only when it `succeeded`; `errors` are its item errors (a `partial` run), else
/// its error message; `metadata` holds the kind's own counts.
fn run_result(row: &RunRow) -> serde_json::Value {
    let mut metadata = match &row.metadata {
        Some(serde_json::Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let errors = match metadata.remove("item_errors") {
        Some(serde_json::Value::Array(items)) if !items.is_empty() => items,
        _ => row.error_message.iter().map(|e| json!(e)).collect(),
    };
    json!({
        "success": row.status == "succeeded",
        "run_id": row.id,
        "job": row.job_name,
        "status": row.status,
        "records_processed": row.records_processed,
        "duration_seconds": row.duration_seconds,
        "errors": errors,
        "metadata": metadata,
    })
}

/// `POST /jobs/NAME/run`: starts a manual run and writes its audit row (who: the bearer
/// token's holder, from the client's address).
async fn trigger(
    req: &Request<Incoming>,
    name: &str,
    peer: SocketAddr,
    state: &HttpState,
) -> Response<Body> {
    if let Some(refused) = unauthorized_unless_token(req, state, "POST /jobs/NAME/run") {
        return refused;
    }
    let wait = match wait_of(req.uri().query()) {
        Ok(wait) => wait,
        Err(e) => return json_reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    };
    let spec = state.shared.job(name);
    let Some(spec) = spec else {
        return not_found();
    };
    if !spec.enabled {
        return json_reply(
            StatusCode::CONFLICT,
            json!({"error": format!(
                "job `{name}` is disabled (`enabled = false`); to run it, set `enabled = true` \
                 in its `[[job]]` and reload the daemon (`systemctl reload tickler`)"
            )}),
        );
    }
    let shared = &state.shared;
    if shared.stopping.is_cancelled() {
        return json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "the daemon is stopping"}),
        );
    }
    let started = manual::start(shared, &state.tracker, spec.clone());
    let (id, slot) = (started.id, started.slot);
    tracing::info!(job = %spec.name, run_id = %id, scheduled_for = %slot, "run requested over http");
    let actor = Actor {
        who: "bearer token".into(),
        origin: format!("http {}", peer.ip()),
    };
    let detail = format!("run {id}");
    let audited = shared
        .store
        .audit(
            &actor,
            Action::Run,
            &spec.name,
            Some(&detail),
            shared.clock.now(),
        )
        .await;
    if let Err(e) = audited {
        // The run has started and its ledger row says so; only the audit row is missing.
        tracing::error!(job = %spec.name, run_id = %id, error = %e, "the audit row of a run requested over http could not be written");
    }
    let Some(patience) = wait else {
        return json_reply(
            StatusCode::ACCEPTED,
            json!({
                "run_id": id.to_string(),
                "job": &*spec.name,
                "trigger": "manual",
                "scheduled_for": slot.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            }),
        );
    };
    let (status, error) = match manual::wait(shared, started, patience).await {
        Waited::Ended(row) => return json_reply(StatusCode::OK, run_result(&row)),
        Waited::Running => (
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "`{name}` is still running after {}; its row in `tickler history --run {id}` \
                 says how it ends",
                humantime::format_duration(patience)
            ),
        ),
        Waited::Stopping => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the daemon is stopping; the run goes on within its shutdown grace and \
                 `tickler history --run {id}` says how it ended"
            ),
        ),
        Waited::NotRun => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the run did not start (the daemon is stopping, or another run of the job holds \
             the same instant); nothing ran"
                .to_string(),
        ),
    };
    json_reply(
        status,
        json!({"error": error, "run_id": id.to_string(), "job": &*spec.name}),
    )
}

#[cfg(test)]
mod tests {
    use super::{LOG_AGAIN_AFTER, Throttle, WaitError, bearer, run_result, same_token, wait_of};
    use serde_json::json;
    use std::time::{Duration, Instant};

    #[test]
    fn a_repeated_condition_is_logged_once_then_at_most_every_ten_minutes_with_its_count() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(t.hit(t0), Some(1));
        for i in 1..1000 {
            assert_eq!(t.hit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.hit(t0 + LOG_AGAIN_AFTER - Duration::from_secs(1)), None);
        assert_eq!(t.hit(t0 + LOG_AGAIN_AFTER), Some(1001));
        assert_eq!(t.hit(t0 + LOG_AGAIN_AFTER), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"s3cret", b"s3cret"));
        assert!(!same_token(b"s3cre", b"s3cret"));
        assert!(!same_token(b"s3cretX", b"s3cret"));
        assert!(!same_token(b"", b"s3cret"));
        assert!(!same_token(b"t3cret", b"s3cret"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_nothing_else_is_a_bearer() {
        for (header, credentials) in [
            ("Bearer t0k", Some("t0k")),
            ("bearer t0k", Some("t0k")),
            ("BEARER t0k", Some("t0k")),
            ("bEaReR   t0k", Some("t0k")),
            ("Bearer", None),
            ("Bearert0k", None),
            ("Basic t0k", None),
            ("t0k", None),
            ("Bearer ", Some("")),
        ] {
            assert_eq!(bearer(header), credentials, "{header:?}");
        }
    }

    #[test]
    fn wait_is_a_bounded_duration() {
        let ok = |q: Option<&str>| wait_of(q).unwrap();
        assert_eq!(ok(None), None);
        assert_eq!(ok(Some("")), None);
        assert_eq!(ok(Some("verbose=1")), None);
        assert_eq!(ok(Some("wait=30s")), Some(Duration::from_secs(30)));
        assert_eq!(ok(Some("a=b&wait=1m30s")), Some(Duration::from_secs(90)));
        assert_eq!(ok(Some("wait=5m")), Some(Duration::from_secs(300)));
        for (query, message) in [
            (
                "wait=soon",
                "invalid `wait` query parameter `soon`: expected a duration such as `30s`, `2m` \
                 or `1m30s`",
            ),
            (
                "wait=30",
                "invalid `wait` query parameter `30`: expected a duration such as `30s`, `2m` or \
                 `1m30s`",
            ),
            (
                "wait",
                "invalid `wait` query parameter ``: expected a duration such as `30s`, `2m` or \
                 `1m30s`",
            ),
            (
                "wait=301s",
                "invalid `wait` query parameter `301s`: at most 5m is accepted; follow a longer \
                 run with `tickler history --run RUN_ID`",
            ),
            (
                "wait=1s&wait=2s",
                "the `wait` query parameter is given more than once",
            ),
        ] {
            let e = wait_of(Some(query)).unwrap_err();
            assert_eq!(e.to_string(), message, "{query}");
        }
        assert_eq!(
            wait_of(Some("wait=1h")),
            Err(WaitError::TooLong("1h".into()))
        );
    }

    fn row(status: &str, error: Option<&str>, metadata: serde_json::Value) -> crate::store::RunRow {
        crate::store::RunRow {
            id: "0190b7e2-0000-7000-8000-000000000000".into(),
            job_name: "reminders".into(),
            status: status.into(),
            started_at: None,
            completed_at: None,
            duration_seconds: Some(0.5),
            records_processed: Some(12),
            error_message: error.map(String::from),
            metadata: Some(metadata),
            scheduled_for: chrono::DateTime::UNIX_EPOCH,
            trigger: "manual".into(),
            attempt: 1,
            instance: None,
            messages: None,
        }
    }

    #[test]
    fn a_finished_run_answers_in_the_seeds_shape() {
        let ok = run_result(&row(
            "succeeded",
            None,
            json!({"lateness_ms": 3, "sent": 12}),
        ));
        assert_eq!(ok["success"], true);
        assert_eq!(ok["status"], "succeeded");
        assert_eq!(ok["records_processed"], 12);
        assert_eq!(ok["errors"], json!([]));
        assert_eq!(ok["metadata"]["sent"], 12);
        assert_eq!(ok["run_id"], "0190b7e2-0000-7000-8000-000000000000");

        let partial = run_result(&row(
            "partial",
            Some("row 2: bad (and 1 more item errors)"),
            json!({"item_errors": ["row 2: bad", "row 5: worse"], "item_error_count": 2}),
        ));
        assert_eq!(partial["success"], false);
        assert_eq!(partial["errors"], json!(["row 2: bad", "row 5: worse"]));
        assert!(partial["metadata"].get("item_errors").is_none());
        assert_eq!(partial["metadata"]["item_error_count"], 2);

        let failed = run_result(&row("failed", Some("boom"), json!({})));
        assert_eq!(failed["success"], false);
        assert_eq!(failed["errors"], json!(["boom"]));
    }
}
