//! The console's pages: each reads one page of rows (see `store::console`) and renders one
//! template of `templates/`, escaped by minijinja (`.html` templates autoescape).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::http::Body;
use chrono::{DateTime, Utc};
use hyper::Response;
use hyper::StatusCode;
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use serde_json::json;

use super::chart::{self, Point};
use super::{Console, Who, auth, set_cookie};
use crate::billing::messages::money;
use crate::config::JobSpec;
use crate::config::users::Role;
use crate::daemon::overview::{self, OverviewQuery};
use crate::store::audit::AuditFilter;
use crate::store::console::{MessageFilter, lateness_ms};
use crate::store::{HistoryFilter, Status, StoreError};

/// Rows on a page of runs, messages, tasks and invoices.
const PAGE: i64 = 50;
/// Runs drawn in a job's chart.
const CHART_RUNS: i64 = 60;

/// The templates, compiled once.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // `urlencode` leaves `/` alone (`INV/2026/7` would become three segments): every path
    // segment a template builds goes through `segment` instead.
    env.add_filter("segment", |s: &str| super::encode_segment(s));
    env.add_filter("when", when);
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("job.html", include_str!("templates/job.html")),
        ("run.html", include_str!("templates/run.html")),
        ("queue.html", include_str!("templates/queue.html")),
        ("campaigns.html", include_str!("templates/campaigns.html")),
        ("messages.html", include_str!("templates/messages.html")),
        ("invoices.html", include_str!("templates/invoices.html")),
        ("audit.html", include_str!("templates/audit.html")),
        ("missing.html", include_str!("templates/missing.html")),
    ] {
        env.add_template(name, text)
            .expect("the console's templates compile");
    }
    env
}

fn render(c: &Console, name: &str, ctx: Value) -> Response<Body> {
    match c.pages.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => crate::http::reply(StatusCode::OK, "text/html; charset=utf-8", html),
        Err(e) => {
            tracing::error!(error = %e, template = name, "console: a page failed to render");
            super::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
        }
    }
}

/// Any serializable value for a template.
/// An instant as operators read it, `2026-11-23 09:00:05 UTC`: to the second, in UTC (each
/// job's own zone is shown beside its next fire). Text that is not RFC 3339 stays as it is;
/// none is empty.
fn when(t: Option<&str>) -> String {
    match t {
        None => String::new(),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|d| {
                d.with_timezone(&Utc)
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string()
            })
            .unwrap_or_else(|_| t.to_string()),
    }
}

fn v<T: serde::Serialize>(x: T) -> Value {
    Value::from(Serde(x))
}

fn me(who: &Who) -> Value {
    context! {
        user => who.user.clone(), role => who.role.as_str(), csrf => who.csrf.clone(),
        flash => who.flash.clone(),
    }
}

/// The login form, with a fresh pre-session token in a cookie and in the form.
/// The login form. Its double-submit token is the browser's `tickler_login` cookie when it
/// holds one of ours (`kept`), so a second tab, or a request the browser makes on its own
/// (`/favicon.ico` before it was answered 404), does not replace the token of a form already
/// shown; otherwise a new one.
pub fn login_page(c: &Console, error: Option<&str>, kept: Option<&str>) -> Response<Body> {
    let token = kept
        .filter(|t| auth::is_token(t))
        .map(str::to_string)
        .unwrap_or_else(auth::random_token);
    let mut r = render(
        c,
        "login.html",
        context! { csrf => token.clone(), error => error },
    );
    let secure = super::secure_attr(c);
    set_cookie(
        &mut r,
        &format!(
            "{}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}",
            auth::LOGIN_COOKIE
        ),
    );
    r
}

fn missing(c: &Console, who: &Who, what: &str) -> Response<Body> {
    let mut r = render(c, "missing.html", context! { me => me(who), what => what });
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

fn failed(e: StoreError) -> Response<Body> {
    tracing::error!(error = %e, "console: cannot read the database");
    super::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database cannot be read now; the daemon's log says why",
    )
}

/// A `GET` page.
pub async fn page(
    c: &Console,
    who: &Who,
    path: &str,
    q: &HashMap<String, String>,
) -> Response<Body> {
    let result = match path {
        "/" => overview_page(c, who, q).await,
        "/queue" => queue_page(c, who, q).await,
        "/campaigns" => campaigns_page(c, who, q).await,
        "/messages" => messages_page(c, who, q).await,
        "/invoices" => invoices_page(c, who, q).await,
        "/audit" => audit_page(c, who, q).await,
        _ => {
            if let Some(name) = path.strip_prefix("/jobs/") {
                let Some(name) = super::decode_segment(name) else {
                    return missing(c, who, "there is no such page");
                };
                job_page(c, who, &name, q).await
            } else if let Some(id) = path.strip_prefix("/runs/") {
                run_page(c, who, id).await
            } else {
                return missing(c, who, "there is no such page");
            }
        }
    };
    result.unwrap_or_else(failed)
}

/// `k=v&` pairs of the query's `keys` (for pagers that keep the filter).
fn keep(q: &HashMap<String, String>, keys: &[&str]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for k in keys {
        if let Some(v) = q.get(*k) {
            s.append_pair(k, v);
        }
    }
    let s = s.finish();
    if s.is_empty() { s } else { s + "&" }
}

async fn overview_page(
    c: &Console,
    who: &Who,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, StoreError> {
    let shared = &c.shared;
    let jobs = shared.jobs_now();
    let query = OverviewQuery {
        name: q.get("name").cloned(),
        state: q.get("state").cloned(),
        page: q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1),
        per_page: q
            .get("per_page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(100),
    };
    let known = shared.alerts.known_all();
    let o = overview::overview(&shared.store, &jobs, shared.clock.now(), &query, &known).await?;
    let age = shared
        .loop_tick
        .lock()
        .expect("loop tick lock")
        .elapsed()
        .as_secs();
    Ok(render(
        c,
        "overview.html",
        context! {
            me => me(who), o => v(&o), loop_ok => age < crate::daemon::shared::LOOP_STALE.as_secs(), loop_age_s => age,
            q => context! { name => query.name, state => query.state },
            qs => keep(q, &["name", "state", "per_page"]),
        },
    ))
}

async fn job_page(
    c: &Console,
    who: &Who,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, StoreError> {
    let shared = &c.shared;
    let Some(spec) = shared.job(name) else {
        return Ok(missing(
            c,
            who,
            &format!("there is no job `{name}` in the running config"),
        ));
    };
    let now = shared.clock.now();
    let line = overview::one_job(&shared.store, &spec, now, &shared.alerts.known_all()).await?;
    let status = q.get("status").filter(|s| Status::parse(s).is_some());
    let before = match (q.get("before"), q.get("before_id")) {
        (Some(at), Some(id)) => DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|t| (t.with_timezone(&Utc), id.clone())),
        _ => None,
    };
    let filtered = status.is_some() || before.is_some();
    let runs = shared
        .store
        .job_runs(name, status.map(String::as_str), before, PAGE)
        .await?;
    let recent = if filtered {
        shared.store.job_runs(name, None, None, CHART_RUNS).await?
    } else {
        runs.clone()
    };
    let points: Vec<Point> = recent
        .iter()
        .rev()
        .map(|r| Point {
            duration: r.duration_seconds,
            lateness: lateness_ms(r.metadata.as_deref()).map(|ms| ms as f64 / 1000.0),
        })
        .collect();
    let more = (runs.len() as i64 == PAGE).then(|| {
        let last = &runs[runs.len() - 1];
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(st) = status {
            s.append_pair("status", st);
        }
        s.append_pair("before", &last.scheduled_for.to_rfc3339());
        s.append_pair("before_id", &last.id);
        s.finish()
    });
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["lateness_ms"] = json!(lateness_ms(r.metadata.as_deref()));
            Value::from(Serde(v))
        })
        .collect();
    let next: Vec<Value> = upcoming(&spec, now)
        .into_iter()
        .map(|t| {
            context! {
                local => t.with_timezone(&spec.timezone).format("%Y-%m-%d %H:%M:%S %Z").to_string(),
                utc => t.to_rfc3339(),
            }
        })
        .collect();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    Ok(render(
        c,
        "job.html",
        context! {
            me => me(who), operator => who.role == Role::Operator, j => v(&line),
            can_pause => spec.enabled, chart => chart::svg(&points), next => next, runs => runs,
            statuses => statuses, status => status, more => more,
        },
    ))
}

/// The job's next 20 fires (none for a disabled job).
fn upcoming(spec: &Arc<JobSpec>, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    if !spec.enabled {
        return vec![];
    }
    spec.trigger.upcoming(now, spec.timezone, 20)
}

async fn run_page(c: &Console, who: &Who, id: &str) -> Result<Response<Body>, StoreError> {
    let Ok(run) = uuid::Uuid::parse_str(id) else {
        return Ok(missing(c, who, "that is not a run id"));
    };
    let rows = c
        .shared
        .store
        .history(&HistoryFilter {
            run: Some(run),
            limit: 1,
            ..Default::default()
        })
        .await?;
    let Some(r) = rows.into_iter().next() else {
        return Ok(missing(c, who, "there is no such run"));
    };
    let mut metadata = match &r.metadata {
        Some(serde_json::Value::Object(m)) => m.clone(),
        _ => Default::default(),
    };
    let item_errors: Vec<String> = match metadata.remove("item_errors") {
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|i| {
                i.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect(),
        _ => vec![],
    };
    let mut output = String::new();
    for key in ["stdout_tail", "stderr_tail", "response_tail"] {
        if let Some(serde_json::Value::String(t)) = metadata.remove(key)
            && !t.is_empty()
        {
            output.push_str(&format!("--- {} ---\n{t}\n", key.trim_end_matches("_tail")));
        }
    }
    let messages = c.shared.store.messages_of_run(&r.id, 200).await?;
    let metadata = serde_json::to_string_pretty(&metadata).unwrap_or_default();
    Ok(render(
        c,
        "run.html",
        context! {
            me => me(who), r => v(&r), item_errors => item_errors, output => output,
            metadata => metadata, messages => v(&messages),
        },
    ))
}

async fn queue_page(
    c: &Console,
    who: &Who,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, StoreError> {
    let store = &c.shared.store;
    let mut counts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for t in store.open_task_counts().await? {
        counts
            .entry(t.task_type)
            .or_default()
            .insert(t.status, t.count);
    }
    let counts: Vec<Value> = counts
        .into_iter()
        .map(|(ty, by)| {
            let n = |s: &str| by.get(s).copied().unwrap_or(0);
            context! { type => ty, pending => n("pending"), executing => n("executing"), failed => n("failed") }
        })
        .collect();
    let status = q
        .get("status")
        .filter(|s| ["pending", "executing", "failed"].contains(&s.as_str()))
        .cloned()
        .unwrap_or_else(|| "pending".into());
    let task_type = q.get("type").cloned();
    let after = match (q.get("after"), q.get("after_id")) {
        (Some(at), Some(id)) => DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|t| (t.with_timezone(&Utc), id.clone())),
        _ => None,
    };
    let paged = after.is_some();
    let tasks = store
        .task_page(&status, task_type.as_deref(), after, PAGE)
        .await?;
    let more = (tasks.len() as i64 == PAGE).then(|| {
        let last = &tasks[tasks.len() - 1];
        form_urlencoded::Serializer::new(String::new())
            .append_pair("after", &last.scheduled_for.to_rfc3339())
            .append_pair("after_id", &last.id)
            .finish()
    });
    let actions_of = context! {
        pending => ["run-now", "cancel"], failed => ["retry", "cancel"],
    };
    let mut back = form_urlencoded::Serializer::new(String::new());
    back.append_pair("status", &status);
    if let Some(t) = &task_type {
        back.append_pair("type", t);
    }
    Ok(render(
        c,
        "queue.html",
        context! {
            me => me(who), operator => who.role == Role::Operator, counts => counts,
            status => status, task_type => task_type, more => more, paged => paged,
            tasks => v(&tasks), qs => keep(q, &["status", "type"]),
            actions_of => actions_of, back => format!("/queue?{}", back.finish()),
        },
    ))
}

async fn campaigns_page(
    c: &Console,
    who: &Who,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, StoreError> {
    // Members a page: 200 unless `per_page` (1-500) says otherwise.
    let per_page = q
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(200)
        .clamp(1, 500);
    let store = &c.shared.store;
    let campaigns: Vec<Value> = store
        .campaigns()
        .await?
        .into_iter()
        .map(|s| {
            let stages: Vec<String> = serde_json::from_str(&s.campaign.stages).unwrap_or_default();
            context! {
                id => s.campaign.id, name => s.campaign.name, status => s.campaign.status,
                stages => stages, days_between_emails => s.campaign.days_between_emails,
                active => s.active, pending => s.pending,
            }
        })
        .collect();
    let mut chosen = None;
    let mut members = vec![];
    let mut next_page = None;
    if let Some(id) = q.get("id")
        && let Some(campaign) = store.campaign(id).await?
    {
        let after = match (q.get("after_due"), q.get("after")) {
            (Some(due), Some(number)) => due
                .parse::<chrono::NaiveDate>()
                .ok()
                .map(|d| (d, number.clone())),
            _ => None,
        };
        let mut page = store
            .campaign_member_page(&campaign.id, after, per_page as i64 + 1)
            .await?;
        let more_members = page.len() > per_page;
        page.truncate(per_page);
        next_page = page
            .last()
            .filter(|_| more_members)
            .map(|m| (m.due_date.to_string(), m.number.clone()));
        members = page;
        chosen = Some((campaign.id.clone(), campaign.name.clone()));
    }
    Ok(render(
        c,
        "campaigns.html",
        context! {
            me => me(who), campaigns => campaigns, chosen => chosen.as_ref().map(|c| &c.1),
            chosen_id => chosen.as_ref().map(|c| &c.0), members => v(&members),
            next_page => next_page, per_page => per_page,
        },
    ))
}

async fn messages_page(
    c: &Console,
    who: &Who,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, StoreError> {
    let before = match (q.get("before"), q.get("before_id")) {
        (Some(at), Some(id)) => DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|t| (t.with_timezone(&Utc), id.clone())),
        _ => None,
    };
    let filter = MessageFilter {
        status: q.get("status").cloned(),
        channel: q.get("channel").cloned(),
        job: q.get("job").cloned(),
        before,
        limit: PAGE,
    };
    let messages = c.shared.store.message_log(&filter).await?;
    let more = (messages.len() as i64 == PAGE).then(|| {
        let last = &messages[messages.len() - 1];
        let mut s = keep(q, &["status", "channel", "job"]);
        s.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .append_pair("before", &last.created_at.to_rfc3339())
                .append_pair("before_id", &last.id)
                .finish(),
        );
        s
    });
    Ok(render(
        c,
        "messages.html",
        context! {
            me => me(who), operator => who.role == Role::Operator, messages => v(&messages),
            more => more,
            f => context! { status => filter.status, channel => filter.channel, job => filter.job },
        },
    ))
}

async fn invoices_page(
    c: &Console,
    who: &Who,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, StoreError> {
    let store = &c.shared.store;
    let today = c.shared.clock.now().date_naive();
    let levels: Vec<Value> = store
        .invoice_levels(today)
        .await?
        .into_iter()
        .map(|l| {
            context! {
                escalation_level => l.escalation_level, currency => l.currency.clone(),
                open => l.open, overdue => l.overdue,
                outstanding => money(l.outstanding_minor, &l.currency),
            }
        })
        .collect();
    let overdue = q.contains_key("overdue");
    let after = match (q.get("after"), q.get("after_id")) {
        (Some(d), Some(id)) => d.parse().ok().map(|d| (d, id.clone())),
        _ => None,
    };
    let page = store
        .open_invoice_page(overdue.then_some(today), after, PAGE)
        .await?;
    let more = (page.len() as i64 == PAGE).then(|| {
        let last = &page[page.len() - 1];
        let mut s = keep(q, &["overdue"]);
        s.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .append_pair("after", &last.due_date.to_string())
                .append_pair("after_id", &last.id)
                .finish(),
        );
        s
    });
    let invoices: Vec<Value> = page
        .into_iter()
        .map(|i| {
            context! {
                number => i.number, customer_name => i.customer_name, due_date => i.due_date.to_string(),
                amount => money(i.amount_minor, &i.currency), paid => money(i.paid_minor, &i.currency),
                escalation_level => i.escalation_level,
            }
        })
        .collect();
    let payments: Vec<Value> = store
        .payments(None, 20)
        .await?
        .into_iter()
        .map(|p| {
            context! {
                created_at => p.created_at.to_rfc3339(), provider => p.provider, number => p.number,
                invoice_ref => p.invoice_ref, amount => money(p.amount_minor, &p.currency),
                outcome => p.outcome,
            }
        })
        .collect();
    Ok(render(
        c,
        "invoices.html",
        context! {
            me => me(who), operator => who.role == Role::Operator, levels => levels,
            invoices => invoices, overdue => overdue, more => more, payments => payments,
        },
    ))
}

async fn audit_page(
    c: &Console,
    who: &Who,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, StoreError> {
    let rows = c
        .shared
        .store
        .audit_log(&AuditFilter {
            target: q.get("target").cloned(),
            before: q.get("before").and_then(|b| b.parse().ok()),
            limit: PAGE,
        })
        .await?;
    let more = (rows.len() as i64 == PAGE).then(|| {
        let mut s = keep(q, &["target"]);
        s.push_str(&format!("before={}", rows[rows.len() - 1].id));
        s
    });
    Ok(render(
        c,
        "audit.html",
        context! { me => me(who), rows => v(&rows), more => more },
    ))
}

#[cfg(test)]
mod tests {
    use super::when;

    #[test]
    fn instants_read_to_the_second_in_utc() {
        assert_eq!(
            when(Some("2026-12-01T00:33:29.621404927Z")),
            "2026-12-01 00:33:29 UTC"
        );
        assert_eq!(
            when(Some("2026-12-07T08:00:00+02:00")),
            "2026-12-07 06:00:00 UTC"
        );
        assert_eq!(when(Some("not a time")), "not a time");
        assert_eq!(when(None), "");
    }
}
