//! `POST /v1/webhooks/{provider}`: only correctly signed, fresh events get in; each is stored
//! raw and applied once; what does not match the books is quarantined, never applied.

use crowdledger::webhooks::signature::{self, WebhookSecret};
use crowdledger_provider_fakes::stripe::StripeFake;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::sandbox::{SANDBOX_SECRET, deliver, event, signed};
use crate::common::{self, Reply, TestApp, fixtures};

const STRIPE_SECRET: &str = "whsec_stripe_test_secret_for_crowdledger";

struct Books {
    offer: String,
    pledge: String,
    payment: String,
}

/// An open offer and one unpaid pledge of 12 shares at 10.00 (120.00 EUR).
async fn books(app: &TestApp) -> Books {
    let (_, offer) = fixtures::small_open_offer(app).await;
    let investor = fixtures::investor(app, "Fund", "sophisticated").await;
    let pledge = fixtures::ok(fixtures::pledge(app, &offer, &investor, 12, "10.00").await, 201).await;
    Books {
        offer,
        pledge: pledge["id"].as_str().unwrap().to_string(),
        payment: pledge["payment"]["payment_id"].as_str().unwrap().to_string(),
    }
}

/// A delivery's webhook-id, webhook-timestamp, webhook-signature (each may be missing) and body.
type Delivery<'a> = (Option<&'a str>, Option<String>, Option<String>, Vec<u8>);

async fn state(app: &TestApp, b: &Books) -> (String, String, i64, i64) {
    let pledge = app.get(&format!("/v1/pledges/{}", b.pledge)).await.body;
    let escrow = app
        .get(&format!("/v1/ledger/accounts?code_prefix=offer:{}:escrow", b.offer))
        .await
        .body;
    let escrow = escrow["items"][0]["balance"].as_str().unwrap_or("0.00").to_string();
    let (events, entries): (i64, i64) =
        sqlx::query_as("select (select count(*) from inbound_events), (select count(*) from ledger_entries)")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    (pledge["status"].as_str().unwrap().to_string(), escrow, events, entries)
}

#[sqlx::test]
async fn forged_stale_and_malformed_deliveries_get_401_and_change_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let before = state(&app, &b).await;
    let now = app.clock.now().timestamp();
    let body = event("evt_1", "payment.succeeded", &b.payment, "120.00", "EUR", now);
    let secret: WebhookSecret = SANDBOX_SECRET.parse().unwrap();
    let other = WebhookSecret::generate();
    let good = signature::sign(&secret, "evt_1", now, &body);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let attempts: Vec<Delivery> = vec![
        (None, None, None, body.clone()),
        (Some("evt_1"), Some(now.to_string()), None, body.clone()),
        (Some("evt_1"), None, Some(good.clone()), body.clone()),
        (
            Some("evt_1"),
            Some(now.to_string()),
            Some(signature::sign(&other, "evt_1", now, &body)),
            body.clone(),
        ),
        (Some("evt_1"), Some(now.to_string()), Some(good.clone()), tampered),
        (
            Some("evt_1"),
            Some(now.to_string()),
            Some(good[..good.len() - 4].to_string()),
            body.clone(),
        ),
        (Some("evt_1"), Some(now.to_string()), Some("v1,".into()), body.clone()),
        (
            Some("evt_1"),
            Some(now.to_string()),
            Some(good.replacen("v1,", "v2,", 1)),
            body.clone(),
        ),
        (Some("evt_2"), Some(now.to_string()), Some(good.clone()), body.clone()),
        (
            Some("evt_1"),
            Some((now + 1).to_string()),
            Some(good.clone()),
            body.clone(),
        ),
        (
            Some("evt_1"),
            Some("yesterday".into()),
            Some(good.clone()),
            body.clone(),
        ),
    ];
    for (id, ts, sig, body) in attempts {
        let r = deliver(&app, id, ts, sig, body).await;
        r.assert_problem(401, "invalid_signature");
        // A provider is not asked for an API key.
        assert!(!r.headers.contains_key("www-authenticate"), "{r:?}");
    }
    // Correctly signed, but stale or from the future by more than 300 s.
    for skew in [-301, 301, -86_400] {
        let body = event("evt_1", "payment.succeeded", &b.payment, "120.00", "EUR", now + skew);
        signed(&app, "evt_1", body, skew)
            .await
            .assert_problem(401, "invalid_signature");
    }
    assert_eq!(state(&app, &b).await, before);
    // Within the tolerance it is accepted.
    let body = event("evt_1", "payment.succeeded", &b.payment, "120.00", "EUR", now);
    let r = signed(&app, "evt_1", body, -299).await;
    assert_eq!(
        (r.status.as_u16(), r.body["outcome"].as_str()),
        (200, Some("applied")),
        "{:#}",
        r.body
    );
}

#[sqlx::test]
async fn each_event_is_applied_once_however_often_it_arrives(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let now = app.clock.now().timestamp();
    let body = event("evt_pay", "payment.succeeded", &b.payment, "120.00", "EUR", now);
    let first = signed(&app, "evt_pay", body.clone(), 0).await;
    assert_eq!(first.body["outcome"], "applied");
    assert_eq!(first.body["duplicate"], false);
    for _ in 0..3 {
        let again = signed(&app, "evt_pay", body.clone(), 0).await;
        assert_eq!((again.status.as_u16(), &again.body["duplicate"]), (200, &json!(true)));
    }
    // The same payment under another event id: recorded, nothing more happens.
    let other = signed(
        &app,
        "evt_pay_2",
        event("evt_pay_2", "payment.succeeded", &b.payment, "120.00", "EUR", now),
        0,
    )
    .await;
    assert_eq!(other.body["outcome"], "ignored");
    // A failure arriving after the success changes nothing, and is kept.
    let late = signed(
        &app,
        "evt_fail",
        event("evt_fail", "payment.failed", &b.payment, "120.00", "EUR", now),
        0,
    )
    .await;
    assert_eq!(late.body["outcome"], "ignored");
    let (status, escrow, events, _) = state(&app, &b).await;
    assert_eq!((status.as_str(), escrow.as_str(), events), ("funded", "120.00", 3));
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn events_that_do_not_match_the_books_are_quarantined(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let now = app.clock.now().timestamp();
    let (_, _, _, entries_before) = state(&app, &b).await;
    let cases = [
        (
            "evt_amount",
            event("evt_amount", "payment.succeeded", &b.payment, "119.99", "EUR", now),
            "payment_mismatch",
        ),
        (
            "evt_currency",
            event("evt_currency", "payment.succeeded", &b.payment, "120.00", "USD", now),
            "payment_mismatch",
        ),
        (
            "evt_unknown",
            event("evt_unknown", "payment.succeeded", "pay_nope", "120.00", "EUR", now),
            "not_found",
        ),
        (
            "evt_refund",
            event("evt_refund", "refund.succeeded", "re_nope", "1.00", "EUR", now),
            "not_found",
        ),
        ("evt_garbage", b"{\"not\": \"an event\"}".to_vec(), "unreadable"),
    ];
    for (id, body, why) in &cases {
        let r = signed(&app, id, body.clone(), 0).await;
        assert_eq!(r.status, 200, "{:#}", r.body);
        assert_eq!(r.body["outcome"], "quarantined", "{id}: {:#}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains(why), "{id}: {:#}", r.body);
    }
    let (status, escrow, events, entries) = state(&app, &b).await;
    assert_eq!(
        (status.as_str(), escrow.as_str(), events, entries),
        ("pending_payment", "0.00", 5, entries_before)
    );

    let listed = app.get("/v1/webhooks/quarantine").await;
    assert_eq!(listed.status, 200);
    assert!(listed.body.get("next_cursor").is_none(), "one page holds them all");
    let listed = listed.body["items"].as_array().unwrap().clone();
    assert_eq!(listed.len(), cases.len());
    let mismatch = listed.iter().find(|e| e["event_id"] == "evt_amount").unwrap();
    assert!(
        mismatch["body"].as_str().unwrap().contains("119.99"),
        "the raw body is kept"
    );
    let auditor = app.key(crowdledger::keys::Role::Auditor).await;
    let r = app
        .call(reqwest::Method::GET, "/v1/webhooks/quarantine", Some(&auditor), None)
        .await;
    r.assert_problem(403, "forbidden");

    // The right event still gets through afterwards.
    let ok = signed(
        &app,
        "evt_ok",
        event("evt_ok", "payment.succeeded", &b.payment, "120.00", "EUR", now),
        0,
    )
    .await;
    assert_eq!(ok.body["outcome"], "applied");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn an_unknown_provider_is_404(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = common::read(
        app.client
            .post(format!("{}/v1/webhooks/paypal", app.base))
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_problem(404, "not_found");
    // Stripe is not configured by default.
    let r = common::read(
        app.client
            .post(format!("{}/v1/webhooks/stripe", app.base))
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_problem(404, "not_found");
}

async fn stripe(app: &TestApp, header: String, body: Vec<u8>) -> Reply {
    let req = app
        .client
        .post(format!("{}/v1/webhooks/stripe", app.base))
        .header("stripe-signature", header)
        .body(body);
    common::read(req.send().await.unwrap()).await
}

#[sqlx::test]
async fn stripe_events_are_verified_mapped_and_deduplicated(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        &[("CROWDLEDGER__PAYMENTS__STRIPE__WEBHOOK_SECRET", STRIPE_SECRET)],
    )
    .await;
    let now = app.clock.now().timestamp();
    let body = serde_json::to_vec(&json!({"id": "evt_s1", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_123", "amount": 12000, "amount_received": 12000, "currency": "eur"}}}))
    .unwrap();
    let secret = STRIPE_SECRET.as_bytes();
    // Forged, tampered, stale: refused, nothing stored.
    for header in [
        signature::stripe_sign(b"another secret", now, &body),
        signature::stripe_sign(secret, now - 301, &body),
        format!("t={now}"),
        "v1=00".to_string(),
    ] {
        stripe(&app, header, body.clone())
            .await
            .assert_problem(401, "invalid_signature");
    }
    let mut tampered = body.clone();
    tampered[5] ^= 1;
    stripe(&app, signature::stripe_sign(secret, now, &body), tampered)
        .await
        .assert_problem(401, "invalid_signature");
    let stored: i64 = sqlx::query_scalar("select count(*) from inbound_events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);

    // Signed correctly: stored; pi_123 is no payment of ours, so it is quarantined, not applied.
    let r = stripe(&app, signature::stripe_sign(secret, now, &body), body.clone()).await;
    assert_eq!(
        (r.status.as_u16(), r.body["outcome"].as_str()),
        (200, Some("quarantined")),
        "{:#}",
        r.body
    );
    let again = stripe(&app, signature::stripe_sign(secret, now, &body), body.clone()).await;
    assert_eq!(again.body["duplicate"], true);
    // A type we do not act on is stored and ignored.
    let other =
        serde_json::to_vec(&json!({"id": "evt_s2", "type": "customer.created", "data": {"object": {}}})).unwrap();
    let r = stripe(&app, signature::stripe_sign(secret, now, &other), other).await;
    assert_eq!(r.body["outcome"], "ignored");
    let rows: Vec<(String, String)> =
        sqlx::query_as("select event_id, status::text from inbound_events where provider = 'stripe' order by event_id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("evt_s1".into(), "quarantined".into()),
            ("evt_s2".into(), "ignored".into())
        ]
    );
}

#[sqlx::test]
async fn a_stripe_capture_funds_the_pledge_it_pays(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        &[("CROWDLEDGER__PAYMENTS__STRIPE__WEBHOOK_SECRET", STRIPE_SECRET)],
    )
    .await;
    let b = books(&app).await;
    // Stripe's API is out of reach here, so no payment is ever opened there; stand in for one
    // the platform's front-end opened, as PaymentIntent pi_live_1 for this pledge.
    sqlx::query(
        "update payments set provider = 'stripe', provider_payment_id = 'pi_live_1' where provider_payment_id = $1",
    )
    .bind(&b.payment)
    .execute(&app.pool)
    .await
    .unwrap();
    let now = app.clock.now().timestamp();
    let secret = STRIPE_SECRET.as_bytes();
    let send = |id: &'static str, kind: &'static str, object: Value| {
        let body = serde_json::to_vec(&json!({"id": id, "type": kind, "data": {"object": object}})).unwrap();
        let app = &app;
        async move { stripe(app, signature::stripe_sign(secret, now, &body), body).await }
    };
    // What counts is what was captured, `amount_received`, not what was asked.
    let short = send(
        "evt_a",
        "payment_intent.succeeded",
        json!({"id": "pi_live_1", "object": "payment_intent", "amount": 12000, "amount_received": 11999,
               "currency": "eur", "status": "succeeded"}),
    )
    .await;
    assert_eq!(short.body["outcome"], "quarantined", "{:#}", short.body);
    let paid = send(
        "evt_b",
        "payment_intent.succeeded",
        json!({"id": "pi_live_1", "object": "payment_intent", "amount": 12000, "amount_received": 12000,
               "currency": "eur", "status": "succeeded"}),
    )
    .await;
    assert_eq!(paid.body["outcome"], "applied", "{:#}", paid.body);
    let late = send("evt_c", "payment_intent.payment_failed", json!({"id": "pi_live_1"})).await;
    assert_eq!(late.body["outcome"], "ignored", "{:#}", late.body);
    assert_eq!(
        app.get(&format!("/v1/pledges/{}", b.pledge)).await.body["status"],
        "funded"
    );
    assert_eq!(fixtures::balance(&app, "psp:stripe:eur").await, "120.00");
    assert_eq!(
        fixtures::balance(&app, &format!("offer:{}:escrow", b.offer)).await,
        "120.00"
    );
    app.assert_books_verify().await;
}

/// The local Stripe the provider tests use (tools/provider-fakes) and the service agree on
/// Stripe's envelope and signature: an intent made at the fake and captured there funds our
/// pledge through the event the fake signs and sends, for what it captured; a repeat is a
/// duplicate.
#[sqlx::test]
async fn a_capture_at_the_stripe_fake_funds_the_pledge_through_its_signed_event(pool: PgPool) {
    let stripe = StripeFake::builder().webhook_secret(STRIPE_SECRET).start().await;
    let app = TestApp::spawn_with(
        pool,
        &[("CROWDLEDGER__PAYMENTS__STRIPE__WEBHOOK_SECRET", STRIPE_SECRET)],
    )
    .await;
    stripe.set_webhook_url(format!("{}/v1/webhooks/stripe", app.base));
    let b = books(&app).await;
    // Made at the fake as the adapter will make it; our payment then names it.
    let intent: Value = reqwest::Client::new()
        .post(format!("{}/v1/payment_intents", stripe.base_url()))
        .bearer_auth(stripe.secret_key())
        .header("idempotency-key", format!("payment-{}", b.payment))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("amount=12000&currency=eur&metadata[pledge_id]={}", b.pledge))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pi = intent["id"].as_str().expect("an intent's id").to_string();
    sqlx::query("update payments set provider = 'stripe', provider_payment_id = $1 where provider_payment_id = $2")
        .bind(&pi)
        .bind(&b.payment)
        .execute(&app.pool)
        .await
        .unwrap();
    let status = || async { app.get(&format!("/v1/pledges/{}", b.pledge)).await.body["status"].clone() };

    // Short by a cent: delivered, verified, and quarantined, not applied.
    stripe.succeed_payment(&pi, 11999).await;
    assert_eq!(status().await, "pending_payment");
    let captured = stripe.succeed_payment(&pi, 12000).await;
    assert_eq!(status().await, "funded");
    assert_eq!(fixtures::balance(&app, "psp:stripe:eur").await, "120.00");
    let outcomes: Vec<(String, String)> = sqlx::query_as(
        "select event_id, status::text from inbound_events where provider = 'stripe' order by received_at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(outcomes[0].1, "quarantined");
    assert_eq!(outcomes[1], (captured.id.clone(), "applied".to_string()));
    assert!(
        stripe.deliveries().iter().all(|d| d.status == Some(200)),
        "{:?}",
        stripe.deliveries()
    );

    // Stripe delivers at least once: the same event again changes nothing.
    let entries = app.row_counts().await;
    assert_eq!(stripe.deliver(&captured.id).await, Some(200));
    assert_eq!(app.row_counts().await, entries);
    assert_eq!(status().await, "funded");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn the_sandbox_controls_go_through_the_signed_webhook(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let r = app
        .post(&format!("/v1/sandbox/payments/{}/succeed", b.payment), json!({}))
        .await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    assert_eq!(
        (r.body["applied"].as_bool(), r.body["outcome"].as_str()),
        (Some(true), Some("applied"))
    );
    // What arrived is a stored, verified event with the body the sandbox signed.
    let (event_id, body): (String, Vec<u8>) =
        sqlx::query_as("select event_id, body from inbound_events where provider = 'sandbox'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(Value::String(event_id.clone()), r.body["event_id"]);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["type"], "payment.succeeded");
    assert_eq!(body["data"]["amount"], "120.00");
    let (status, escrow, _, _) = state(&app, &b).await;
    assert_eq!((status.as_str(), escrow.as_str()), ("funded", "120.00"));
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn with_auto_confirm_the_sandbox_confirms_refunds_by_itself(pool: PgPool) {
    let app = TestApp::spawn_with(pool, &[("CROWDLEDGER__PAYMENTS__SANDBOX__AUTO_CONFIRM", "true")]).await;
    let b = books(&app).await;
    let r = app
        .post(&format!("/v1/sandbox/payments/{}/succeed", b.payment), json!({}))
        .await;
    assert_eq!(r.body["applied"], true, "{:#}", r.body);
    // Card payments wait for the control; refunds do not: cancel the round, and the refund is
    // confirmed through the signed webhook without anyone asking.
    assert_eq!(
        app.post(&format!("/v1/offers/{}/cancel", b.offer), json!({}))
            .await
            .status,
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (refunds, events): (String, i64) = sqlx::query_as(
            "select (select status::text from refunds limit 1),
                    (select count(*) from inbound_events where event_type = 'refund.succeeded')",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if refunds == "succeeded" {
            assert_eq!(events, 1);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the refund was not confirmed by itself"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let psp = app.get("/v1/ledger/accounts?code_prefix=psp:sandbox:eur").await.body;
    assert_eq!(psp["items"][0]["balance"], "0.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_deposit_is_credited_once_and_only_for_its_amount(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::sponsor(&app, "SenseTour Belgium").await;
    let deposit = |amount: &'static str| {
        let app = &app;
        let sponsor = &sponsor;
        async move {
            let d = app
                .post(
                    &format!("/v1/sponsors/{sponsor}/deposits"),
                    json!({"amount": amount, "currency": "EUR"}),
                )
                .await;
            d.body["payment"]["payment_id"].as_str().unwrap().to_string()
        }
    };
    let budget = async || {
        let s = app.get(&format!("/v1/sponsors/{sponsor}")).await;
        s.body["budget"]["amount"].as_str().unwrap().to_string()
    };
    let now = app.clock.now().timestamp();
    let first = deposit("1000.00").await;

    // The wrong amount or currency: quarantined, listed, the budget untouched.
    for (id, amount, currency) in [("evt_d1", "999.99", "EUR"), ("evt_d2", "1000.00", "USD")] {
        let r = signed(
            &app,
            id,
            event(id, "payment.succeeded", &first, amount, currency, now),
            0,
        )
        .await;
        assert_eq!(r.body["outcome"], "quarantined", "{:#}", r.body);
    }
    assert_eq!(budget().await, "0.00");
    let listed = app.get("/v1/webhooks/quarantine").await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    // The right one, delivered twice: credited once.
    let body = event("evt_d3", "payment.succeeded", &first, "1000.00", "EUR", now);
    assert_eq!(signed(&app, "evt_d3", body.clone(), 0).await.body["outcome"], "applied");
    assert_eq!(signed(&app, "evt_d3", body, 0).await.body["duplicate"], true);
    assert_eq!(budget().await, "1000.00");

    // A failure after the success changes nothing; money the provider captures after declaring
    // a deposit failed is credited all the same (issue 20, finding 4), once.
    let late = event("evt_d4", "payment.failed", &first, "1000.00", "EUR", now);
    assert_eq!(signed(&app, "evt_d4", late, 0).await.body["outcome"], "ignored");
    let second = deposit("500.00").await;
    let failed = event("evt_d5", "payment.failed", &second, "500.00", "EUR", now);
    assert_eq!(signed(&app, "evt_d5", failed, 0).await.body["outcome"], "applied");
    assert_eq!(budget().await, "1000.00");
    let paid = event("evt_d6", "payment.succeeded", &second, "500.00", "EUR", now);
    assert_eq!(signed(&app, "evt_d6", paid, 0).await.body["outcome"], "applied");
    let again = event("evt_d7", "payment.succeeded", &second, "500.00", "EUR", now);
    assert_eq!(signed(&app, "evt_d7", again, 0).await.body["outcome"], "ignored");
    assert_eq!(budget().await, "1500.00");
    let statuses: Vec<String> = sqlx::query_scalar("select status::text from deposits order by created_at")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(statuses, ["succeeded", "succeeded"]);
    app.assert_books_verify().await;
}

/// A flood of confirmations, each delivered twice under its own id, once more under another id,
/// and mixed with amount mismatches, all at once: every pledge is funded exactly once, in
/// batches (fewer transactions than confirmations), every mismatch is quarantined, and the
/// books verify.
#[sqlx::test]
async fn a_flood_of_duplicated_confirmations_funds_each_pledge_once(pool: PgPool) {
    const PLEDGES: usize = 60;
    let wide = common::wide_pool(&pool, 40).await;
    let app = TestApp::spawn(wide).await;
    let project = fixtures::published_project(&app).await;
    let offer = fixtures::open_offer(
        &app,
        &project,
        json!({"min_target": "100.00", "max_target": "10000.00"}),
        9,
    )
    .await;
    let investor = fixtures::investor(&app, "Fund", "sophisticated").await;
    let mut payments = Vec::new();
    for _ in 0..PLEDGES {
        let p = fixtures::ok(fixtures::pledge(&app, &offer, &investor, 2, "10.00").await, 201).await;
        payments.push(p["payment"]["payment_id"].as_str().unwrap().to_string());
    }
    let now = app.clock.now().timestamp();
    // (event id, body, what it is)
    let mut deliveries = Vec::new();
    for (n, payment) in payments.iter().enumerate() {
        let good = |id: String| {
            let body = event(&id, "payment.succeeded", payment, "20.00", "EUR", now);
            (id, body)
        };
        let (id, body) = good(format!("evt_{n}"));
        deliveries.push((id.clone(), body.clone(), "good"));
        deliveries.push((id, body, "good"));
        let (id, body) = good(format!("evt_{n}_again"));
        deliveries.push((id, body, "good"));
        if n % 10 == 0 {
            let id = format!("evt_{n}_wrong");
            let body = event(&id, "payment.succeeded", payment, "19.99", "EUR", now);
            deliveries.push((id, body, "mismatch"));
        }
    }
    let replies = common::race(deliveries.len(), |i| {
        let (id, body, _) = &deliveries[i];
        signed(&app, id, body.clone(), 0)
    })
    .await;
    let mut applied = 0;
    for ((_, _, what), reply) in deliveries.iter().zip(replies) {
        assert_eq!(reply.status, 200, "{:#}", reply.body);
        match (*what, reply.body["outcome"].as_str().unwrap()) {
            ("good", "applied") => applied += usize::from(reply.body["duplicate"] == false),
            ("good", "ignored") => {}
            ("mismatch", "quarantined") => {}
            other => panic!("{other:?}: {:#}", reply.body),
        }
    }
    assert_eq!(applied, PLEDGES, "one applied confirmation per payment");

    let funded: i64 =
        sqlx::query_scalar("select count(*) from pledges where offer_id = $1::uuid and status = 'funded'")
            .bind(&offer)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(funded, PLEDGES as i64);
    // Captured in batches: each payment names its entry, one entry per batch.
    let (captured, entries): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct e.id) from payments p join ledger_entries e on e.id = p.captured_entry_id
          where e.kind = 'pledge.funded'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(captured, PLEDGES as i64);
    assert!(
        entries < PLEDGES as i64,
        "{entries} entries for {PLEDGES} confirmations"
    );
    let quarantined = app.get("/v1/webhooks/quarantine").await.body;
    assert_eq!(quarantined["items"].as_array().unwrap().len(), PLEDGES / 10);
    assert_eq!(
        fixtures::balance(&app, &format!("offer:{offer}:escrow")).await,
        format!("{}.00", 20 * PLEDGES)
    );
    app.assert_books_verify().await;
}

/// A refund and a payout, each pending until its provider confirms it: 30.00 back to a card
/// from a cancelled round, and 9.50 (10.00 less the 5% fee) to a project whose round succeeded.
async fn refund_and_payout(app: &TestApp) -> ((String, String), (String, String)) {
    let project = fixtures::published_project(app).await;
    let investor = fixtures::investor(app, "Fund", "sophisticated").await;
    let terms = json!({"min_target": "10.00", "max_target": "1000.00"});
    let cancelled = fixtures::open_offer(app, &project, terms.clone(), 9).await;
    fixtures::funded_pledge(app, &cancelled, &investor, 3).await;
    fixtures::ok(
        app.post(&format!("/v1/offers/{cancelled}/cancel"), json!({})).await,
        200,
    )
    .await;
    let refund: (String, String) = sqlx::query_as("select provider_refund_id, amount::text from refunds")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let succeeded = fixtures::open_offer(app, &project, terms, 9).await;
    fixtures::funded_pledge(app, &succeeded, &investor, 1).await;
    let closed = fixtures::ok(app.post(&format!("/v1/offers/{succeeded}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    let payout = fixtures::ok(
        app.post(&format!("/v1/offers/{succeeded}/payouts"), json!({})).await,
        201,
    )
    .await;
    let payout = (
        payout["payment"]["payment_id"].as_str().unwrap().to_string(),
        payout["amount"].as_str().unwrap().to_string(),
    );
    (refund, payout)
}

#[sqlx::test]
async fn refund_and_payout_confirmations_must_be_for_their_amounts(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let ((refund, refunded), (payout, paid)) = refund_and_payout(&app).await;
    assert_eq!((refunded.as_str(), paid.as_str()), ("30.00", "9.50"));
    let now = app.clock.now().timestamp();
    let entries = app.row_counts().await;
    let cases = [
        ("evt_r1", "refund.succeeded", &refund, "29.99", "EUR", "refund_mismatch"),
        ("evt_r2", "refund.succeeded", &refund, "30.00", "USD", "refund_mismatch"),
        (
            "evt_r3",
            "refund.succeeded",
            &refund,
            "300.00",
            "EUR",
            "refund_mismatch",
        ),
        ("evt_p1", "payout.paid", &payout, "9.51", "EUR", "payout_mismatch"),
        ("evt_p2", "payout.paid", &payout, "9.50", "GBP", "payout_mismatch"),
    ];
    for (id, kind, object, amount, currency, code) in cases {
        let r = signed(&app, id, event(id, kind, object, amount, currency, now), 0).await;
        assert_eq!(r.status, 200, "{:#}", r.body);
        assert_eq!(r.body["outcome"], "quarantined", "{id}: {:#}", r.body);
        assert!(
            r.body["detail"].as_str().unwrap().starts_with(code),
            "{id}: {:#}",
            r.body
        );
    }
    // Nothing moved: no entry, the refund and the payout still wait, all five are listed.
    assert_eq!(app.row_counts().await, entries);
    let statuses: (String, String) =
        sqlx::query_as("select (select status::text from refunds), (select status::text from payouts)")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(statuses, ("pending".into(), "pending".into()));
    let listed = app.get("/v1/webhooks/quarantine").await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), cases.len());

    // The right amounts are applied, once; a wrong one afterwards is still quarantined, not
    // taken for a repeat.
    let psp = fixtures::balance(&app, "psp:sandbox:eur").await;
    assert_eq!(psp, "40.00");
    for (id, kind, object, amount) in [
        ("evt_r4", "refund.succeeded", &refund, "30.00"),
        ("evt_p3", "payout.paid", &payout, "9.50"),
    ] {
        let r = signed(&app, id, event(id, kind, object, amount, "EUR", now), 0).await;
        assert_eq!(r.body["outcome"], "applied", "{id}: {:#}", r.body);
    }
    let late = signed(
        &app,
        "evt_r5",
        event("evt_r5", "refund.succeeded", &refund, "1.00", "EUR", now),
        0,
    )
    .await;
    assert_eq!(late.body["outcome"], "quarantined", "{:#}", late.body);
    assert_eq!(fixtures::balance(&app, "psp:sandbox:eur").await, "0.50");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn the_quarantine_is_listed_page_by_page(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let now = app.clock.now().timestamp();
    let mut sent = Vec::new();
    for n in 0..7 {
        let id = format!("evt_q{n}");
        let r = signed(
            &app,
            &id,
            event(&id, "payment.succeeded", "pay_nope", "1.00", "EUR", now),
            0,
        )
        .await;
        assert_eq!(r.body["outcome"], "quarantined", "{:#}", r.body);
        sent.push(id);
        // Apart in business time, so newest first is also the order they were sent in, reversed.
        app.clock.advance(1).unwrap();
    }
    // Unreadable (no amount to speak of) is quarantined too.
    let unreadable = signed(
        &app,
        "evt_other",
        event("evt_other", "payment.succeeded", "pay_nope", "x", "EUR", now),
        0,
    )
    .await;
    assert_eq!(unreadable.body["outcome"], "quarantined", "{:#}", unreadable.body);

    let mut listed = Vec::new();
    let mut path = "/v1/webhooks/quarantine?limit=3".to_string();
    let mut pages = Vec::new();
    loop {
        let page = fixtures::ok(app.get(&path).await, 200).await;
        let items = page["items"].as_array().unwrap();
        pages.push(items.len());
        listed.extend(items.iter().map(|e| e["event_id"].as_str().unwrap().to_string()));
        let Some(next) = page["next_cursor"].as_str() else {
            break;
        };
        path = format!("/v1/webhooks/quarantine?limit=3&cursor={next}");
    }
    assert_eq!(pages, [3, 3, 2]);
    // Newest first: the unreadable one, sent last, then the seven in reverse.
    let mut expected = vec!["evt_other".to_string()];
    expected.extend(sent.iter().rev().cloned());
    assert_eq!(listed, expected);

    // A cursor must be one the list gave out; the old `before` is an unknown parameter.
    let r = app
        .get(&format!("/v1/webhooks/quarantine?cursor={}", uuid::Uuid::now_v7()))
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "cursor");
    let r = app
        .get(&format!("/v1/webhooks/quarantine?before={}", uuid::Uuid::now_v7()))
        .await;
    r.assert_problem(422, "validation_failed");
    app.get("/v1/webhooks/quarantine?limit=0")
        .await
        .assert_problem(422, "validation_failed");

    // The OpenAPI document describes the paging.
    let doc = app.get("/openapi.json").await.body;
    let op = &doc["paths"]["/v1/webhooks/quarantine"]["get"];
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["limit", "cursor"]);
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/QuarantinePage"
    );
    assert!(doc["components"]["schemas"]["QuarantinePage"]["properties"]["next_cursor"].is_object());
}

#[sqlx::test]
async fn a_captured_payment_names_its_entry_and_the_books_check_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let now = app.clock.now().timestamp();
    let r = signed(
        &app,
        "evt_cap",
        event("evt_cap", "payment.succeeded", &b.payment, "120.00", "EUR", now),
        0,
    )
    .await;
    assert_eq!(r.body["outcome"], "applied", "{:#}", r.body);
    let (payment, moved): (uuid::Uuid, String) = sqlx::query_as(
        "select p.id, po.amount::text from payments p
           join ledger_postings po on po.entry_id = p.captured_entry_id and po.side = 'debit'
          where p.provider_payment_id = $1",
    )
    .bind(&b.payment)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(moved, "120.00");
    app.assert_books_verify().await;

    // Postgres refuses a succeeded payment that names no entry, even from the owner.
    let err = sqlx::query("update payments set captured_entry_id = null where id = $1")
        .bind(payment)
        .execute(&app.pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.constraint()),
        Some("payments_captured_once")
    );
    // A payment whose amount no longer matches what its entry took is reported by name.
    sqlx::query("update payments set amount = amount + 1 where id = $1")
        .bind(payment)
        .execute(&app.pool)
        .await
        .unwrap();
    let report = app.get("/v1/ledger/verify").await.body;
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "payments_captured")
        .unwrap_or_else(|| panic!("no payments_captured check: {report:#}"));
    assert_eq!(check["ok"], false, "{check:#}");
    assert_eq!(report["ok"], false);
}
