//! Findings 1 and 11: the sandbox in production, and transport time.
//!
//! 1. Under the system clock the sandbox provider does not exist: its webhook answers 404 like
//!    any unknown path and changes nothing, money that needs a provider is refused with 422
//!    `payment_provider_unavailable` before anything is written, cheque-only pledges still work,
//!    and settings that would bring the sandbox back keep the service from starting.
//! 11. Webhook signature timestamps, in and out, are wall-clock time however far a manual clock
//!     has moved: the official Standard Webhooks library verifies our deliveries, and a provider
//!     signing with its real clock is accepted.
//!
//! Worlds that need the sandbox (a pending card payment, a funded sponsor, a succeeded offer)
//! are made through the API by an app on a manual clock, then served by one on the system clock
//! over the same database, as a database once served in development would be.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{self, ok};
use crate::common::{self, Reply, TestApp, sandbox};

const WEEKS_3: i64 = 21 * fixtures::DAY;
const STRIPE_SECRET: &str = "whsec_stripe-test-secret-for-production-tests";

async fn system_app(pool: &PgPool, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![("CROWDLEDGER__CLOCK__MODE", "system")];
    env.extend_from_slice(extra);
    TestApp::spawn_with(pool.clone(), &env).await
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// A sandbox event, correctly signed with the sandbox's built-in development secret (the one a
/// forger finds in the public repository), stamped `timestamp`.
async fn sandbox_event(app: &TestApp, id: &str, kind: &str, object: &str, amount: &str, timestamp: i64) -> Reply {
    let body = sandbox::event(id, kind, object, amount, "EUR", timestamp);
    let signature = crowdledger::webhooks::signature::signature_header(&[&sandbox::secret()], id, timestamp, &body);
    sandbox::deliver(app, Some(id), Some(timestamp.to_string()), Some(signature), body).await
}

/// What any path the service does not have answers.
async fn no_such_route(app: &TestApp) -> Reply {
    common::send(app, Method::POST, "/v1/no-such-route", &[], Some(&json!({}))).await
}

async fn pledge_with(app: &TestApp, offer: &str, key: &str, body: Value) -> Reply {
    common::send_as(
        app,
        Method::POST,
        &format!("/v1/offers/{offer}/pledges"),
        common::OPERATOR_KEY,
        &[("idempotency-key", key)],
        Some(&body),
    )
    .await
}

/// Money at the sandbox that only its confirmation would move: a pending card payment of a
/// pledge and a pending deposit of a sponsor, made under a manual clock.
struct Pending {
    pledge: String,
    payment: String,
    sponsor: String,
    deposit: String,
}

async fn pending_at_the_sandbox(pool: &PgPool) -> Pending {
    let app = TestApp::spawn(pool.clone()).await;
    let (_, offer) = fixtures::small_open_offer(&app).await;
    let who = fixtures::investor(&app, "Sophie", "sophisticated").await;
    let pledge = ok(fixtures::pledge(&app, &offer, &who, 10, "10.00").await, 201).await;
    let sponsor = fixtures::sponsor(&app, "SenseTour Belgium").await;
    let deposit = ok(
        app.post(
            &format!("/v1/sponsors/{sponsor}/deposits"),
            json!({"amount": "5000.00", "currency": "EUR"}),
        )
        .await,
        201,
    )
    .await;
    Pending {
        pledge: pledge["id"].as_str().unwrap().into(),
        payment: pledge["payment"]["payment_id"].as_str().unwrap().into(),
        sponsor,
        deposit: deposit["id"].as_str().unwrap().into(),
    }
}

#[sqlx::test]
async fn a_forged_sandbox_payment_is_a_404_under_the_system_clock(pool: PgPool) {
    let pending = pending_at_the_sandbox(&pool).await;
    let app = system_app(&pool, &[]).await;
    let deposit = ok(app.get(&format!("/v1/deposits/{}", pending.deposit)).await, 200).await;
    let deposit_payment = deposit["payment"]["payment_id"].as_str().unwrap().to_string();
    let before = app.row_counts().await;
    let unknown = no_such_route(&app).await;
    unknown.assert_problem(404, "not_found");

    // Signed with the public development secret, fresh by the wall clock: exactly what the
    // review forged. No sandbox to receive them.
    let now = Utc::now().timestamp();
    for (id, object, amount) in [
        ("evt_forged_payment", pending.payment.as_str(), "100.00"),
        ("evt_forged_deposit", deposit_payment.as_str(), "5000.00"),
    ] {
        let r = sandbox_event(&app, id, "payment.succeeded", object, amount, now).await;
        r.assert_problem(404, "not_found");
        assert_eq!(
            r.body, unknown.body,
            "{id}: the sandbox's webhook is told apart from no route"
        );
    }

    assert_eq!(count(&app.pool, "select count(*) from inbound_events").await, 0);
    assert_eq!(app.row_counts().await, before, "the ledger moved");
    let pledge = ok(app.get(&format!("/v1/pledges/{}", pending.pledge)).await, 200).await;
    assert_eq!(pledge["status"], "pending_payment", "{pledge:#}");
    let deposit = ok(app.get(&format!("/v1/deposits/{}", pending.deposit)).await, 200).await;
    assert_eq!(deposit["status"], "pending", "{deposit:#}");
    let sponsor = ok(app.get(&format!("/v1/sponsors/{}", pending.sponsor)).await, 200).await;
    assert_eq!(sponsor["budget"]["amount"], "0.00", "{sponsor:#}");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn money_that_needs_a_provider_is_refused_under_the_system_clock_before_anything_is_written(pool: PgPool) {
    // A succeeded offer whose project is owed a payout, made where the sandbox could pay.
    let manual = TestApp::spawn(pool.clone()).await;
    let (_, paid_offer) = fixtures::small_open_offer(&manual).await;
    let who = fixtures::investor(&manual, "Sophie", "sophisticated").await;
    fixtures::funded_pledge(&manual, &paid_offer, &who, 10).await;
    let closed = ok(
        manual.post(&format!("/v1/offers/{paid_offer}/close"), json!({})).await,
        200,
    )
    .await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    drop(manual);

    let app = system_app(&pool, &[]).await;
    let (_, offer) = fixtures::small_open_offer(&app).await;
    let investor = fixtures::investor(&app, "Léa", "sophisticated").await;
    let sponsor = fixtures::sponsor(&app, "SenseTour Belgium").await;
    let written = "select (select count(*) from pledges) + (select count(*) from payments)
                        + (select count(*) from deposits) + (select count(*) from payouts)
                        + (select count(*) from idempotency_keys) + (select count(*) from outbox_events)";
    let before = (count(&app.pool, written).await, app.row_counts().await);

    let card = json!({"investor_id": investor, "shares": 10, "funding": [{"kind": "card", "amount": "100.00"}],
                      "kiis_sha256": fixtures::KIIS_SHA256});
    for _ in 0..2 {
        // The same key again is refused again: no success was stored to replay.
        pledge_with(&app, &offer, "card-pledge", card.clone())
            .await
            .assert_problem(422, "payment_provider_unavailable");
    }
    // Many at once take the offer's batch: each refused too.
    let refused = common::race(8, |n| {
        let (app, offer, card) = (&app, &offer, card.clone());
        async move { pledge_with(app, offer, &format!("card-pledge-{n}"), card).await }
    })
    .await;
    for r in refused {
        r.assert_problem(422, "payment_provider_unavailable");
    }
    app.post(
        &format!("/v1/sponsors/{sponsor}/deposits"),
        json!({"amount": "5000.00", "currency": "EUR"}),
    )
    .await
    .assert_problem(422, "payment_provider_unavailable");
    app.post(&format!("/v1/offers/{paid_offer}/payouts"), json!({}))
        .await
        .assert_problem(422, "payment_provider_unavailable");

    assert_eq!(
        (count(&app.pool, written).await, app.row_counts().await),
        before,
        "a refused request wrote something"
    );
    let offer = ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await;
    assert_eq!(offer["shares_reserved"], 0, "{offer:#}");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn cheque_only_pledges_need_no_provider_under_the_system_clock(pool: PgPool) {
    // The sponsor's budget came in through the sandbox while one existed.
    let manual = TestApp::spawn(pool.clone()).await;
    let sponsor = fixtures::funded_sponsor(&manual, "SenseTour Belgium", "1000.00").await;
    drop(manual);

    let app = system_app(&pool, &[]).await;
    let (_, offer) = fixtures::small_open_offer(&app).await;
    let winner = fixtures::investor(&app, "Winner", "non_sophisticated").await;
    let cheque = ok(
        app.post(
            "/v1/cheques",
            json!({"sponsor_id": sponsor, "beneficiary_name": "Winner", "beneficiary_email": "winner@example.org",
                   "face_value": "200.00", "currency": "EUR",
                   "expires_at": (app.clock.now() + chrono::TimeDelta::days(30)).to_rfc3339()}),
        )
        .await,
        201,
    )
    .await;
    let code = cheque["code"].as_str().unwrap();

    // Part cheque, part card: the card part has nowhere to go, and the cheque keeps its money.
    let mixed = json!({"investor_id": winner, "shares": 15, "funding": [
        {"kind": "cheque", "cheque_code": code, "amount": "100.00"}, {"kind": "card", "amount": "50.00"}],
        "kiis_sha256": fixtures::KIIS_SHA256});
    pledge_with(&app, &offer, "mixed", mixed)
        .await
        .assert_problem(422, "payment_provider_unavailable");
    let read = ok(
        app.get(&format!("/v1/cheques/{}", cheque["id"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(read["balance"], "200.00", "{read:#}");

    let by_cheque = json!({"investor_id": winner, "shares": 10, "funding": [
        {"kind": "cheque", "cheque_code": code, "amount": "100.00"}], "kiis_sha256": fixtures::KIIS_SHA256});
    let pledge = pledge_with(&app, &offer, "by-cheque", by_cheque).await;
    common::assert_json(&pledge, 201);
    assert_eq!(pledge.body["status"], "funded", "{:#}", pledge.body);
    app.assert_books_verify().await;
}

/// Runs `crowdledger serve` with `env` over a database it cannot reach: settings are judged
/// before any connection, so a refusal exits 2 at once, and an accepted configuration gets as
/// far as the database (exit 1).
fn serve(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crowdledger"))
        .arg("serve")
        .env_remove("CROWDLEDGER_CONFIG")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("CROWDLEDGER__DATABASE__ACQUIRE_TIMEOUT_SECONDS", "1")
        .env("CROWDLEDGER__HTTP__BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[sqlx::test]
async fn the_service_refuses_to_start_with_the_sandbox_under_the_system_clock(pool: PgPool) {
    let system = ("CROWDLEDGER__CLOCK__MODE", "system");
    for (key, var, value) in [
        (
            "payments.sandbox.auto_confirm",
            "CROWDLEDGER__PAYMENTS__SANDBOX__AUTO_CONFIRM",
            "true",
        ),
        (
            "payments.sandbox.webhook_secret",
            "CROWDLEDGER__PAYMENTS__SANDBOX__WEBHOOK_SECRET",
            sandbox::SANDBOX_SECRET,
        ),
        (
            "payments.card_provider",
            "CROWDLEDGER__PAYMENTS__CARD_PROVIDER",
            "sandbox",
        ),
    ] {
        let (code, log) = serve(&[system, (var, value)]);
        assert_eq!(code, Some(2), "{key} = {value}: {log}");
        assert!(log.contains(key), "{key}: {log}");
        assert!(!log.contains(sandbox::SANDBOX_SECRET), "the secret is printed: {log}");
        // The same settings are what a manual clock is for.
        let (code, log) = serve(&[("CROWDLEDGER__CLOCK__MODE", "manual"), (var, value)]);
        assert_eq!(code, Some(1), "{key} = {value} with a manual clock: {log}");
    }

    // The shipped defaults, system clock and all, start and serve.
    let served = common::Served::start_with(&pool, common::OPERATOR_KEY, &[system]).await;
    let health = reqwest::get(format!("{}/health", served.base)).await.unwrap();
    assert_eq!(health.status(), 200);
    served.terminate().await;
}

/// A webhook receiver on loopback that keeps what it gets.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let kept = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let kept = kept.clone();
                async move {
                    kept.got.lock().unwrap().push((headers, body));
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    /// Waits until a delivery of event `kind` has arrived, and returns it.
    async fn delivery_of(&self, app: &TestApp, kind: &str) -> (HeaderMap, Bytes) {
        app.wait_for_value(
            || async {
                self.got
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(_, body)| serde_json::from_slice::<Value>(body).unwrap()["type"] == kind)
                    .cloned()
            },
            Option::is_some,
        )
        .await
        .unwrap()
    }
}

#[sqlx::test]
async fn outbound_deliveries_verify_with_the_official_library_after_the_clock_moved_weeks(pool: PgPool) {
    let app = TestApp::spawn_with(pool, &[("CROWDLEDGER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")]).await;
    let (receiver, url) = Receiver::start().await;
    let endpoint = ok(
        app.post(
            "/v1/webhook-endpoints",
            json!({"url": url, "events": ["pledge.created", "pledge.funded"]}),
        )
        .await,
        201,
    )
    .await;
    // The official Standard Webhooks library, which checks the timestamp against its own clock.
    let official = standardwebhooks::Webhook::new(endpoint["secret"].as_str().unwrap()).unwrap();

    // Weeks ahead, as a sandbox user does to see a round close.
    ok(
        app.post("/v1/sandbox/clock", json!({"advance_seconds": WEEKS_3})).await,
        200,
    )
    .await;
    let (_, offer) = fixtures::small_open_offer(&app).await;
    let who = fixtures::investor(&app, "Sophie", "sophisticated").await;
    // pledge.created, then pledge.funded through the sandbox's own signed webhook.
    fixtures::funded_pledge(&app, &offer, &who, 10).await;

    for kind in ["pledge.created", "pledge.funded"] {
        let (headers, body) = receiver.delivery_of(&app, kind).await;
        official
            .verify(&body, &headers)
            .unwrap_or_else(|e| panic!("{kind}: the official library refused our delivery: {e} ({headers:?})"));
    }
}

#[sqlx::test]
async fn inbound_signatures_are_judged_by_the_wall_clock_after_the_clock_moved_weeks(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        &[("CROWDLEDGER__PAYMENTS__STRIPE__WEBHOOK_SECRET", STRIPE_SECRET)],
    )
    .await;
    ok(
        app.post("/v1/sandbox/clock", json!({"advance_seconds": WEEKS_3})).await,
        200,
    )
    .await;
    let business = app.clock.now().timestamp();
    let wall = Utc::now().timestamp();
    assert!(business - wall >= WEEKS_3);

    let (_, offer) = fixtures::small_open_offer(&app).await;
    let who = fixtures::investor(&app, "Sophie", "sophisticated").await;
    let pledge = ok(fixtures::pledge(&app, &offer, &who, 10, "10.00").await, 201).await;
    let payment = pledge["payment"]["payment_id"].as_str().unwrap();

    // Stamped with the moved business time: weeks off the real time, stale.
    sandbox_event(&app, "evt_business", "payment.succeeded", payment, "100.00", business)
        .await
        .assert_problem(401, "invalid_signature");
    // Stamped by a provider's real clock: accepted, and the pledge funded.
    let r = sandbox_event(&app, "evt_wall", "payment.succeeded", payment, "100.00", wall).await;
    assert_eq!(
        (r.status.as_u16(), r.body["outcome"].as_str()),
        (200, Some("applied")),
        "{:#}",
        r.body
    );
    let funded = ok(
        app.get(&format!("/v1/pledges/{}", pledge["id"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(funded["status"], "funded", "{funded:#}");

    // The sandbox's own controls sign with the real time too, so they still verify.
    let other = fixtures::investor(&app, "Léa", "sophisticated").await;
    fixtures::funded_pledge(&app, &offer, &other, 5).await;

    // A real provider's test mode, after the same move: Stripe's signature by its clock is
    // accepted (pi_unknown is no payment of ours: quarantined), by ours refused.
    let body = serde_json::to_vec(&json!({"id": "evt_stripe", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_unknown", "amount": 100, "amount_received": 100, "currency": "eur"}}}))
    .unwrap();
    let stripe = |timestamp: i64| {
        let header = crowdledger::webhooks::signature::stripe_sign(STRIPE_SECRET.as_bytes(), timestamp, &body);
        let req = app
            .client
            .post(format!("{}/v1/webhooks/stripe", app.base))
            .header("stripe-signature", header)
            .body(body.clone());
        async move { common::read(req.send().await.unwrap()).await }
    };
    stripe(business).await.assert_problem(401, "invalid_signature");
    let r = stripe(wall).await;
    assert_eq!(
        (r.status.as_u16(), r.body["outcome"].as_str()),
        (200, Some("quarantined")),
        "{:#}",
        r.body
    );
    app.assert_books_verify().await;
}
