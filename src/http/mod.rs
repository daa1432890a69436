//! The edge of the daemon toward monitors and callers: the optional `[http]` listener (127.0.0.1 by default): `GET /metrics` (Prometheus),
//! `GET /healthz` (the timer loop is going round and the database answers) and
//! `POST /jobs/{name}/run` (a manual run, behind a bearer token compared in constant time).
//! Anything else is 404; error details go to the log, never into a response.
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
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::daemon::fdlimit;
use crate::daemon::metrics::Snapshot;
use crate::daemon::runner::{Fire, run_fire};
use crate::daemon::{Edge, EdgeError, Shared};
use crate::secret::SecretSource;
use crate::store::RunTrigger;

/// The timer loop wakes at least every `MAX_SLEEP`; one that has not gone round in this long
/// is stuck.
const LOOP_STALE: Duration = Duration::from_secs(75);
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

/// What the handlers see.
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub tracker: TaskTracker,
    pub token: Option<SecretSource>,
    /// `[http] max_connections`: the most connections served at once.
    pub max_connections: usize,
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
    #[error("cannot read the `[http]` token: {0}")]
    Token(#[from] crate::secret::SecretError),
}

/// The `[http]` listener as the daemon's [`Edge`]: bound during the daemon's start-up (after it
/// holds its database), then served.
pub struct Listener {
    listen: SocketAddr,
    listener: Option<TcpListener>,
    token: Option<SecretSource>,
    max_connections: usize,
}

/// The edge of `config`'s `[http]` section (none without one); nothing is opened yet.
pub fn edge(config: &Config) -> Option<Box<dyn Edge>> {
    let h = config.http.as_ref()?;
    Some(Box::new(Listener {
        listen: h.listen,
        listener: None,
        token: h.token.clone(),
        max_connections: h.max_connections,
    }))
}

impl Listener {
    /// Reads the trigger's token once, so a missing file or variable stops the start instead
    /// of refusing every request; then binds.
    async fn bind(&mut self) -> Result<(), HttpError> {
        if let Some(t) = &self.token {
            t.read()?;
        }
        let listen = self.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|cause| HttpError::Bind { listen, cause })?;
        self.listener = Some(listener);
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
        let state = Arc::new(HttpState {
            shared,
            tracker,
            token: self.token,
            max_connections: self.max_connections,
        });
        tokio::spawn(serve(listener, state, stopping));
    }
}

/// Serves connections until `stopping`, at most `state.max_connections` at once (fewer when
/// the open-file limit is low, see [`fdlimit::connection_bound`]).
///
/// When every slot is taken, a new connection is accepted and the oldest one is asked to
/// close (at once when it is idle between requests, after its response when it is busy): a
/// monitor's `/healthz` is then answered even while hundreds of idle clients try to hold
/// connections, as nginx drains idle keep-alive connections when its pool is full. Waiting
/// for a free slot instead would queue the monitor behind every idle client's header-read
/// timeout. Idle connections also close on their own after [`HEADER_READ_TIMEOUT`].
async fn serve(listener: TcpListener, state: Arc<HttpState>, stopping: CancellationToken) {
    let bound = connection_bound(state.max_connections);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            listen = %addr, trigger = state.token.is_some(), max_connections = bound,
            "http listener started"
        );
    }
    if state.token.is_none() {
        tracing::info!("POST /jobs/NAME/run is refused: no `[http]` token_file or token_env");
    }
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
            Ok((stream, _)) => stream,
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
        tokio::spawn(serve_connection(stream, state.clone(), permit, registered));
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
async fn serve_connection(
    stream: TcpStream,
    state: Arc<HttpState>,
    permit: OwnedSemaphorePermit,
    registered: Registered,
) {
    {
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(req, &state).await) }
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

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn json_reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", format!("{body}\n"))
}

fn not_found() -> Response<Full<Bytes>> {
    json_reply(StatusCode::NOT_FOUND, json!({"error": "not found"}))
}

async fn handle(req: Request<Incoming>, state: &HttpState) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/metrics") => metrics(state).await,
        (&Method::GET, "/healthz") => health(state).await,
        (&Method::POST, p) => match p
            .strip_prefix("/jobs/")
            .and_then(|r| r.strip_suffix("/run"))
        {
            Some(name) => trigger(&req, name, state),
            None => not_found(),
        },
        _ => not_found(),
    }
}

async fn metrics(state: &HttpState) -> Response<Full<Bytes>> {
    let shared = &state.shared;
    let now = shared.clock.now();
    let jobs = shared.jobs.lock().expect("jobs lock").clone();
    let next_fires = jobs
        .iter()
        .filter(|j| j.enabled)
        .map(|j| (j.name.to_string(), j.trigger.next_after(now, j.timezone)))
        .collect();
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
    let names = jobs.iter().map(|j| j.name.to_string()).collect();
    let text = shared.metrics.render(Snapshot {
        jobs: names,
        next_fires,
        queue,
        messages,
    });
    reply(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        text,
    )
}

async fn health(state: &HttpState) -> Response<Full<Bytes>> {
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

/// Equal in time that depends only on the length of `presented` (the caller's input).
fn same_token(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, b) in presented.iter().enumerate() {
        diff |= b ^ expected.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

fn unauthorized() -> Response<Full<Bytes>> {
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

fn trigger(req: &Request<Incoming>, name: &str, state: &HttpState) -> Response<Full<Bytes>> {
    let Some(source) = &state.token else {
        tracing::warn!(
            job = name,
            "POST /jobs/NAME/run refused: no `[http]` token is configured"
        );
        return unauthorized();
    };
    let expected = match source.read() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "POST /jobs/NAME/run refused: cannot read the `[http]` token");
            return unauthorized();
        }
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same_token(presented.as_bytes(), expected.expose().as_bytes()) {
        tracing::warn!("POST /jobs/NAME/run refused: missing or wrong bearer token");
        return unauthorized();
    }
    let spec = state.shared.job(name);
    let Some(spec) = spec else {
        return not_found();
    };
    let shared = state.shared.clone();
    if shared.stopping.is_cancelled() {
        return json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "the daemon is stopping"}),
        );
    }
    let slot = shared.clock.now();
    tracing::info!(job = %spec.name, scheduled_for = %slot, "run requested over http");
    let fire = Fire::new(spec.clone(), slot, RunTrigger::Manual);
    state.tracker.spawn(async move {
        run_fire(shared, fire).await;
    });
    json_reply(
        StatusCode::ACCEPTED,
        json!({
            "job": &*spec.name,
            "trigger": "manual",
            "scheduled_for": slot.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::{LOG_AGAIN_AFTER, Throttle, same_token};
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
}
