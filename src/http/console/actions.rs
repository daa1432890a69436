//! The console's actions (operators only; the caller checked the role and the CSRF token):
//! each does what its CLI command does, writes an audit row once it succeeded (pause and
//! resume write theirs in their own transaction), and answers with a redirect back carrying a
//! flash message in the session.

use std::collections::HashMap;

use crate::http::Body;
use hyper::Response;

use super::{Console, Who, decode_segment, encode_segment, redirect};
use crate::daemon::manual;
use crate::notify::blocks;
use crate::store::audit::{Action, Actor, Audit};
use crate::store::contacts::NewBlock;

/// Where to go back to: the form's `back` when it is a path of this console, else `fallback`.
/// Browsers drop tabs and newlines from a `Location` and read `\` as `/`, so `/\t/evil.example`
/// would lead to `//evil.example`: only printable ASCII without `//` or `\` is kept.
fn back_to(form: &HashMap<String, String>, fallback: &str) -> String {
    form.get("back")
        .filter(|b| {
            b.starts_with('/')
                && !b.contains("//")
                && !b.contains('\\')
                && b.bytes().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| fallback.to_string())
}

/// Does the action of `path` and redirects back with what happened.
pub async fn act(
    c: &Console,
    who: &Who,
    path: &str,
    form: &HashMap<String, String>,
) -> Response<Body> {
    let actor = Actor {
        who: who.user.clone(),
        origin: format!("console {}", who.client),
    };
    let (back, message) = match route(c, &actor, path, form).await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(error = %e, path, user = %who.user, "console action failed");
            (
                back_to(form, "/"),
                "the action failed: the database cannot be written now (the daemon's log says \
                 why)"
                    .to_string(),
            )
        }
    };
    tracing::info!(user = %who.user, path, outcome = %message, "console action");
    c.sessions.set_flash(&who.token, message);
    redirect(&back)
}

type Done = (String, String);

async fn route(
    c: &Console,
    actor: &Actor,
    path: &str,
    form: &HashMap<String, String>,
) -> Result<Done, crate::store::StoreError> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let store = &c.shared.store;
    let now = c.shared.clock.now();
    match parts.as_slice() {
        ["jobs", name, action] => {
            let Some(name) = decode_segment(name) else {
                return Ok((back_to(form, "/"), "unknown action".into()));
            };
            let back = back_to(form, &format!("/jobs/{}", encode_segment(&name)));
            let Some(spec) = c.shared.job(&name) else {
                return Ok((back_to(form, "/"), format!("there is no job `{name}`")));
            };
            let message = match *action {
                "run" => run_job(c, actor, spec).await?,
                "pause" => {
                    let reason = form.get("reason").map(|r| r.trim()).unwrap_or("");
                    if store.pause_job(&name, reason, actor, now).await? {
                        format!("paused `{name}`: its slots are recorded `paused` until resumed")
                    } else {
                        format!("`{name}` was paused already")
                    }
                }
                "resume" => {
                    if store.resume_job(&name, actor, now).await? {
                        format!("resumed `{name}`")
                    } else {
                        format!("`{name}` was not paused")
                    }
                }
                _ => return Ok((back, "unknown action".into())),
            };
            Ok((back, message))
        }
        ["tasks", id, action] => {
            let back = back_to(form, "/queue");
            if uuid::Uuid::parse_str(id).is_err() {
                return Ok((back, "that is not a task id".into()));
            }
            let audit = |action| {
                Some(Audit {
                    actor,
                    action,
                    target: id,
                    detail: None,
                })
            };
            let (changed, verb, from) = match *action {
                "retry" => (
                    store.retry_task(id, now, audit(Action::TaskRetry)).await?,
                    "retried",
                    "failed or cancelled",
                ),
                "cancel" => (
                    store
                        .cancel_task(id, now, audit(Action::TaskCancel))
                        .await?,
                    "cancelled",
                    "pending",
                ),
                "run-now" => (
                    store
                        .run_task_now(id, now, audit(Action::TaskRunNow))
                        .await?,
                    "made due now",
                    "pending",
                ),
                _ => return Ok((back, "unknown action".into())),
            };
            let message = match changed {
                None => {
                    format!("task {id} {verb}")
                }
                Some(status) => {
                    format!("task {id} is {status}, not {from}: nothing changed")
                }
            };
            Ok((back, message))
        }
        ["invoices", number, "paid"] => {
            let Some(number) = decode_segment(number) else {
                return Ok((back_to(form, "/invoices"), "unknown action".into()));
            };
            let back = back_to(form, "/invoices");
            let reference = form
                .get("reference")
                .map(|r| r.trim())
                .filter(|r| !r.is_empty());
            let Some(invoice) = store.invoice_by_number(&number).await? else {
                return Ok((back, format!("no invoice numbered `{number}`")));
            };
            if invoice.status != "open" {
                return Ok((
                    back,
                    format!("invoice `{number}` is {}: nothing changed", invoice.status),
                ));
            }
            let audit = Audit {
                actor,
                action: Action::InvoiceMarkPaid,
                target: &number,
                detail: reference,
            };
            if !store
                .mark_paid(&number, now, reference, Some(audit))
                .await?
            {
                return Ok((
                    back,
                    format!("invoice `{number}` changed meanwhile: look again"),
                ));
            }
            Ok((
                back,
                format!("invoice {number} marked paid; its pending reminders are cancelled"),
            ))
        }
        ["contacts", action @ ("block" | "unblock")] => {
            let back = back_to(form, "/messages");
            let field = |k: &str| form.get(k).map(|v| v.trim()).unwrap_or("");
            let channel = match blocks::parse_channel(field("channel")) {
                Ok(c) => c,
                Err(e) => return Ok((back, e.to_string())),
            };
            let address = match blocks::normalize(channel, field("address")) {
                Ok(a) => a,
                Err(e) => return Ok((back, e.to_string())),
            };
            let target = format!("{channel}:{address}");
            if *action == "block" {
                let block = NewBlock {
                    channel: channel.to_string(),
                    address: address.clone(),
                    reason: field("reason").to_string(),
                    source: "console".to_string(),
                };
                let audit = Audit {
                    actor,
                    action: Action::ContactBlock,
                    target: &target,
                    detail: Some(field("reason")).filter(|r| !r.is_empty()),
                };
                let added = store.add_contact_blocks(&[block], now, Some(audit)).await?;
                if added.is_empty() {
                    return Ok((
                        back,
                        format!("`{address}` is already blocked on `{channel}`"),
                    ));
                }
                Ok((back, format!("blocked `{address}` on `{channel}`")))
            } else {
                let audit = Audit {
                    actor,
                    action: Action::ContactUnblock,
                    target: &target,
                    detail: None,
                };
                if !store
                    .remove_contact_block(channel, &address, now, Some(audit))
                    .await?
                {
                    return Ok((back, format!("`{address}` is not blocked on `{channel}`")));
                }
                Ok((back, format!("unblocked `{address}` on `{channel}`")))
            }
        }
        _ => Ok((back_to(form, "/"), "unknown action".into())),
    }
}

async fn run_job(
    c: &Console,
    actor: &Actor,
    spec: std::sync::Arc<crate::config::JobSpec>,
) -> Result<String, crate::store::StoreError> {
    let name = spec.name.to_string();
    if !spec.enabled {
        return Ok(format!(
            "`{name}` is disabled (`enabled = false`): set `enabled = true` and reload to run it"
        ));
    }
    if c.shared.stopping.is_cancelled() {
        return Ok("the daemon is stopping: nothing ran".into());
    }
    let started = manual::start(&c.shared, &c.tracker, spec);
    let id = started.id.to_string();
    let audited = c
        .shared
        .store
        .audit(
            actor,
            Action::Run,
            &name,
            Some(&format!("run {id}")),
            c.shared.clock.now(),
        )
        .await;
    if let Err(e) = audited {
        // The run has started: saying the action failed would invite a second click and a
        // second run. Its ledger row records it; only the audit row is missing.
        tracing::error!(job = %name, run_id = %id, error = %e, "the audit row of a console run could not be written");
        return Ok(format!(
            "started a run of `{name}` (run {id}); its audit row could not be written (the \
             daemon's log says why)"
        ));
    }
    Ok(format!("started a run of `{name}` (run {id})"))
}

#[cfg(test)]
mod tests {
    use super::back_to;

    #[test]
    fn only_a_path_of_the_console_is_a_way_back() {
        let back = |b: &str| back_to(&[("back".to_string(), b.to_string())].into(), "/x");
        assert_eq!(back("/queue?status=failed"), "/queue?status=failed");
        assert_eq!(back("/jobs/a%2Fb"), "/jobs/a%2Fb");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "/a\r\nSet-Cookie: x",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/ /evil.example",
            "/queue//evil.example",
            "/%09/x\u{a0}",
            "/caf\u{e9}",
            "queue",
            "",
        ] {
            assert_eq!(back(bad), "/x", "{bad:?}");
        }
    }
}
