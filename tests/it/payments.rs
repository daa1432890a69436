//! Payment webhooks (issue 15, items 1 and 2) on the real listener, on SQLite and PostgreSQL:
//! `POST /payments/paystack` and `POST /payments/stripe` with right, tampered, wrongly keyed,
//! missing and (Stripe) stale or rotating signatures; only a signed event changes an invoice,
//! a replay changes nothing, an unknown invoice is kept and an unknown event type ignored.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Sha256, Sha512};
use tickler::store::Store;

use crate::billing::{customer, invoice};
use crate::helpers::{Project, TestDaemon, free_port, utc};

const PAYSTACK_KEY: &str = "sk_test_paystack";
const STRIPE_SECRET: &str = "whsec_current";

fn paystack_signature(key: &str, body: &str) -> String {
    let mut m = Hmac::<Sha512>::new_from_slice(key.as_bytes()).unwrap();
    m.update(body.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn stripe_v1(secret: &str, t: i64, body: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("{t}.{body}").as_bytes());
    hex::encode(m.finalize().into_bytes())
}

struct Hooks {
    base: String,
    http: reqwest::Client,
}

impl Hooks {
    /// Posts `body` to `/payments/{provider}` with `header` (name, value) if any; the status
    /// and the JSON answer.
    async fn post(
        &self,
        provider: &str,
        header: Option<(&str, String)>,
        body: &str,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}/payments/{provider}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some((name, value)) = header {
            r = r.header(name, value);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn paystack(&self, body: &str) -> (u16, Value) {
        let sig = paystack_signature(PAYSTACK_KEY, body);
        self.post("paystack", Some(("x-paystack-signature", sig)), body)
            .await
    }

    async fn stripe(&self, t: i64, body: &str) -> (u16, Value) {
        let header = format!("t={t},v1={}", stripe_v1(STRIPE_SECRET, t, body));
        self.post("stripe", Some(("stripe-signature", header)), body)
            .await
    }
}

async fn status(store: &Store, number: &str) -> String {
    store
        .invoice_by_number(number)
        .await
        .unwrap()
        .unwrap()
        .status
}

async fn payment_rows(store: &Store) -> usize {
    store.payments(None, 1000).await.unwrap().len()
}

async fn webhook_story(p: Project) {
    let port = free_port();
    std::fs::write(p.path().join("paystack-key"), format!("{PAYSTACK_KEY}\n")).unwrap();
    std::fs::write(p.path().join("stripe-secret"), format!("{STRIPE_SECRET}\n")).unwrap();
    p.write_config(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [payments.paystack]\nsecret_key_file = \"{}\"\n\n\
             [payments.stripe]\nwebhook_secret_file = \"{}\"\n",
            p.path().join("paystack-key").display(),
            p.path().join("stripe-secret").display()
        ),
    );
    let store = p.store().await;
    let c = customer("Amaka", Some("a@example.com"), None);
    let mut inv = vec![
        invoice(&c, "PS-1", 3),
        invoice(&c, "PS-2", 3),
        invoice(&c, "ST-1", 3),
    ];
    let ps1 = inv[0].id.clone();
    store
        .import(std::slice::from_ref(&c), &[], &mut inv, "INV-")
        .await
        .unwrap();
    store.set_provider_ref(&ps1, "PRQ_ps1").await.unwrap();

    let t0 = utc("2026-11-23T10:00:10Z");
    let now = t0.timestamp();
    let d = TestDaemon::start(p.config(), t0).await;
    let hooks = Hooks {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };

    // Paystack: a payment request paid in full, named by its request code.
    let request_paid = json!({"event": "paymentrequest.success", "data": {
        "id": 1089700, "request_code": "PRQ_ps1", "amount": 100000, "currency": "ZAR",
        "paid": true, "paid_at": "2026-11-23T09:59:00.000Z", "offline_reference": "336545"}})
    .to_string();
    let refused = "the `x-paystack-signature` header is not the HMAC-SHA512 of the body with \
                   the secret key";
    for (header, body, message) in [
        (
            None,
            request_paid.clone(),
            "missing `x-paystack-signature` header: the request is not signed",
        ),
        (
            Some(paystack_signature("sk_test_other", &request_paid)),
            request_paid.clone(),
            refused,
        ),
        (
            Some(paystack_signature(PAYSTACK_KEY, &request_paid)),
            request_paid.replace("100000", "900000"),
            refused,
        ),
        (Some("not-hex".into()), request_paid.clone(), refused),
    ] {
        let header = header.map(|h| ("x-paystack-signature", h));
        let (code, answer) = hooks.post("paystack", header, &body).await;
        assert_eq!((code, answer["error"].as_str()), (401, Some(message)));
    }
    assert_eq!(
        payment_rows(&store).await,
        0,
        "a refused request writes nothing"
    );
    assert_eq!(status(&store, "PS-1").await, "open");

    let (code, answer) = hooks.paystack(&request_paid).await;
    assert_eq!(
        (code, &answer),
        (200, &json!({"outcome": "paid", "invoice": "PS-1"}))
    );
    assert_eq!(status(&store, "PS-1").await, "paid");
    let (code, answer) = hooks.paystack(&request_paid).await;
    assert_eq!((code, &answer), (200, &json!({"outcome": "duplicate"})));
    assert_eq!(payment_rows(&store).await, 1, "a replay is recorded once");

    // A charge naming the invoice in its metadata, for part of it.
    let charge = |id: i64, number: &str, amount: i64| {
        json!({"event": "charge.success", "data": {"id": id, "status": "success",
            "reference": format!("T{id}"), "amount": amount, "currency": "ZAR",
            "paid_at": "2026-11-23T10:00:00Z", "metadata": {"invoice_number": number}}})
        .to_string()
    };
    let (code, answer) = hooks.paystack(&charge(5001, "PS-2", 40000)).await;
    assert_eq!(code, 200);
    assert_eq!(answer["outcome"], "partial");
    assert_eq!(answer["paid_minor"], 40000);
    assert_eq!(status(&store, "PS-2").await, "open");
    // An invoice we do not have: kept for a person, answered 200 so Paystack stops retrying.
    let (code, answer) = hooks.paystack(&charge(5002, "NOPE-1", 100)).await;
    assert_eq!(
        (code, &answer),
        (200, &json!({"outcome": "unknown_invoice"}))
    );
    // An event type we do not use: 200, nothing written.
    let other = json!({"event": "transfer.success", "data": {"id": 9}}).to_string();
    let (code, answer) = hooks.paystack(&other).await;
    assert_eq!(
        (code, &answer),
        (
            200,
            &json!({"ignored": "an event type tickler does not use"})
        )
    );
    // Signed but malformed: 400, nothing written.
    let (code, answer) = hooks.paystack("not json").await;
    assert_eq!(code, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not JSON: "),
        "{answer}"
    );
    let no_id = json!({"event": "charge.success", "data": {"reference": "PS-2",
        "amount": 1, "currency": "ZAR", "paid_at": "2026-11-23T10:00:00Z"}})
    .to_string();
    let (code, answer) = hooks.paystack(&no_id).await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (400, Some("`charge.success` event without `data.id`"))
    );
    assert_eq!(payment_rows(&store).await, 3);

    // Stripe: `invoice.paid` for ST-1.
    let paid = json!({"id": "evt_st1", "type": "invoice.paid", "created": now - 5,
        "data": {"object": {"id": "in_1", "amount_paid": 100000, "currency": "zar",
            "payment_intent": "pi_1", "metadata": {"invoice_number": "ST-1"}}}})
    .to_string();
    let stripe_refused = "no `v1` signature of the `Stripe-Signature` header is the endpoint's \
                          signing secret's";
    for (header, body, message) in [
        (
            None,
            paid.clone(),
            "missing `stripe-signature` header: the request is not signed".to_string(),
        ),
        (
            Some(format!(
                "t={now},v1={}",
                stripe_v1("whsec_other", now, &paid)
            )),
            paid.clone(),
            stripe_refused.to_string(),
        ),
        (
            Some(format!(
                "t={now},v1={}",
                stripe_v1(STRIPE_SECRET, now, &paid)
            )),
            paid.replace("ST-1", "ST-2"),
            stripe_refused.to_string(),
        ),
        (
            Some(format!(
                "t={},v1={}",
                now - 301,
                stripe_v1(STRIPE_SECRET, now - 301, &paid)
            )),
            paid.clone(),
            "the `Stripe-Signature` timestamp is 301s old, beyond the 5-minute tolerance: a \
             replayed request, or this server's clock is wrong"
                .to_string(),
        ),
    ] {
        let header = header.map(|h| ("stripe-signature", h));
        let (code, answer) = hooks.post("stripe", header, &body).await;
        assert_eq!(
            (code, answer["error"].as_str()),
            (401, Some(message.as_str()))
        );
    }
    assert_eq!(
        payment_rows(&store).await,
        3,
        "a refused request writes nothing"
    );
    assert_eq!(status(&store, "ST-1").await, "open");

    // During a secret's rotation Stripe sends one `v1` per secret: the second one is ours.
    let rotating = format!(
        "t={now},v1={},v1={}",
        stripe_v1("whsec_previous", now, &paid),
        stripe_v1(STRIPE_SECRET, now, &paid)
    );
    let (code, answer) = hooks
        .post("stripe", Some(("stripe-signature", rotating)), &paid)
        .await;
    assert_eq!(
        (code, &answer),
        (200, &json!({"outcome": "paid", "invoice": "ST-1"}))
    );
    assert_eq!(status(&store, "ST-1").await, "paid");
    let (code, answer) = hooks.stripe(now, &paid).await;
    assert_eq!((code, &answer), (200, &json!({"outcome": "duplicate"})));

    let unknown = json!({"id": "evt_st2", "type": "payment_intent.succeeded", "created": now,
        "data": {"object": {"id": "pi_2", "amount_received": 500, "currency": "zar",
            "metadata": {"invoice_number": "NOPE-2"}}}})
    .to_string();
    let (code, answer) = hooks.stripe(now, &unknown).await;
    assert_eq!(
        (code, &answer),
        (200, &json!({"outcome": "unknown_invoice"}))
    );
    let other = json!({"id": "evt_st3", "type": "customer.created", "created": now,
        "data": {"object": {}}})
    .to_string();
    let (code, answer) = hooks.stripe(now, &other).await;
    assert_eq!(
        (code, &answer),
        (
            200,
            &json!({"ignored": "an event type tickler does not use"})
        )
    );
    let (code, _) = hooks.stripe(now, "{\"type\": 3}").await;
    assert_eq!(code, 400);
    assert_eq!(payment_rows(&store).await, 5);

    // Only POST to a known provider is a webhook.
    let r = hooks
        .http
        .get(format!("{}/payments/stripe", hooks.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (code, _) = hooks.post("paypal", None, "{}").await;
    assert_eq!(code, 404);

    d.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_webhooks_apply_only_signed_events_once() {
    webhook_story(Project::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_webhooks_apply_only_signed_events_once_postgres() {
    if let Some(p) = Project::postgres().await {
        webhook_story(p).await;
    }
}

/// A provider without its `[payments.*]` section has no webhook; one whose secret cannot be
/// read any more answers 503 (the provider retries) rather than refusing or accepting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfigured_provider_is_not_served() {
    let p = Project::sqlite();
    let port = free_port();
    std::fs::write(p.path().join("stripe-secret"), "whsec_x\n").unwrap();
    p.write_config(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[payments.stripe]\n\
             webhook_secret_file = \"{}\"\n",
            p.path().join("stripe-secret").display()
        ),
    );
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:10Z")).await;
    let hooks = Hooks {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let body = json!({"event": "charge.success", "data": {}}).to_string();
    let (code, _) = hooks.paystack(&body).await;
    assert_eq!(code, 404);
    // A secret gone after the start: 503, so that Stripe retries once it is back.
    std::fs::remove_file(p.path().join("stripe-secret")).unwrap();
    let (code, answer) = hooks.stripe(1_795_000_000, "{}").await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (
            503,
            Some("payments are not set up: the signing secret cannot be read")
        )
    );
    d.stop().await;
}

/// `POST /invoices/NUMBER/payments` (issue 15, item 3): the application reports its own
/// payment with the `[http]` bearer token; once per `reference`; partial then full; no token,
/// a wrong token, an unknown invoice and a bad body change nothing, each with its answer.
async fn api_story(p: Project) {
    let port = free_port();
    std::fs::write(p.path().join("token"), "app-token\n").unwrap();
    p.write_config(
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n",
            p.path().join("token").display()
        ),
    );
    let store = p.store().await;
    let c = customer("Amaka", Some("a@example.com"), None);
    let mut inv = vec![invoice(&c, "AP-1", 3)];
    store
        .import(std::slice::from_ref(&c), &[], &mut inv, "INV-")
        .await
        .unwrap();
    let d = TestDaemon::start(p.config(), utc("2026-11-23T10:00:10Z")).await;
    let http = reqwest::Client::new();
    let post = |number: &str, token: Option<&str>, body: Value| {
        let mut r = http
            .post(format!(
                "http://127.0.0.1:{port}/invoices/{number}/payments"
            ))
            .json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let part =
        json!({"amount_minor": 30_000, "reference": "pay-1", "paid_at": "2026-11-23T09:00:00Z"});
    assert_eq!(post("AP-1", None, part.clone()).await.0, 401);
    assert_eq!(post("AP-1", Some("wrong"), part.clone()).await.0, 401);
    assert_eq!(payment_rows(&store).await, 0);
    let (code, answer) = post("AP-1", Some("app-token"), part.clone()).await;
    assert_eq!(
        (code, answer),
        (
            200,
            json!({"outcome": "partial", "invoice": "AP-1", "paid_minor": 30_000, "amount_minor": 100_000})
        )
    );
    let (code, answer) = post("AP-1", Some("app-token"), part.clone()).await;
    assert_eq!(
        (code, answer),
        (200, json!({"outcome": "duplicate"})),
        "a retry"
    );
    let (code, answer) = post("AP-404", Some("app-token"), part.clone()).await;
    assert_eq!(
        (code, answer),
        (404, json!({"error": "no invoice numbered `AP-404`"}))
    );
    let (code, answer) = post("AP-1", Some("app-token"), json!({"amount": 5})).await;
    assert_eq!(code, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("the body must be JSON like {\"amount_minor\": 150000, \"reference\": \"your payment id\""),
        "{answer}"
    );
    let (code, answer) = post(
        "AP-1",
        Some("app-token"),
        json!({"amount_minor": 0, "reference": "pay-0"}),
    )
    .await;
    assert_eq!(
        (code, answer),
        (
            400,
            json!({"error": "`amount_minor` must be a whole number of minor units above 0 (found 0)"})
        )
    );
    assert_eq!(payment_rows(&store).await, 1);
    let (code, answer) = post(
        "AP-1",
        Some("app-token"),
        json!({"amount_minor": 70_000, "reference": "pay-2"}),
    )
    .await;
    assert_eq!(
        (code, answer),
        (200, json!({"outcome": "paid", "invoice": "AP-1"}))
    );
    assert_eq!(status(&store, "AP-1").await, "paid");
    d.stop().await;
    store.close().await;
}

#[tokio::test]
async fn the_application_reports_its_own_payments() {
    api_story(Project::sqlite()).await;
}

#[tokio::test]
async fn the_application_reports_its_own_payments_postgres() {
    if let Some(p) = Project::postgres().await {
        api_story(p).await;
    }
}
