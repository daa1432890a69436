//! The optional `[http]` listener (127.0.0.1 by default): `GET /metrics` (Prometheus),
//! `GET /healthz` (the timer loop is going round and the database answers) and
//! `POST /jobs/{name}/run` (a manual run, behind a bearer token compared in constant time).
//! Anything else is 404; error details go to the log, never into a response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::metrics::Snapshot;
use super::runner::{Fire, Shared, run_fire};
use crate::config::secret::SecretSource;
use crate::store::RunTrigger;

/// The timer loop wakes at least every `MAX_SLEEP`; one that has not gone round in this long
/// is stuck.
const LOOP_STALE: Duration = Duration::from_secs(75);
/// How long a scrape or health check waits for the database.
const DB_PATIENCE: Duration = Duration::from_secs(2);

/// What the handlers see.
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub tracker: TaskTracker,
    pub token: Option<SecretSource>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {listen} (`[http] listen`): {cause}; pick a free port or remove the \
     `[http]` section"
)]
pub struct BindError {
    listen: SocketAddr,
    cause: std::io::Error,
}

pub async fn bind(listen: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(listen)
        .await
        .map_err(|cause| BindError { listen, cause })
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the `[http]` token: {0}")]
pub struct TokenError(String);

/// Reads the trigger's token once at start-up, so a missing file or variable stops the start
/// instead of refusing every request.
pub fn check_token(token: &Option<SecretSource>) -> Result<(), TokenError> {
    match token {
        Some(t) => t.read().map(|_| ()).map_err(TokenError),
        None => Ok(()),
    }
}

/// Serves connections until `stopping`.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, stopping: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, trigger = state.token.is_some(), "http listener started");
    }
    if state.token.is_none() {
        tracing::info!("POST /jobs/NAME/run is refused: no `[http]` token_file or token_env");
    }
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopping.cancelled() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, &state).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
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
    use super::same_token;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"s3cret", b"s3cret"));
        assert!(!same_token(b"s3cre", b"s3cret"));
        assert!(!same_token(b"s3cretX", b"s3cret"));
        assert!(!same_token(b"", b"s3cret"));
        assert!(!same_token(b"t3cret", b"s3cret"));
    }
}
