//! Rounds through Stripe (issue 23, PRODUCT.md section 10): the service configured with
//! `payments.card_provider = "stripe"` against the local Stripe of tools/provider-fakes, which
//! follows Stripe's API reference (docs/providers/stripe-api.md). Card pledges create
//! PaymentIntents, a failed round's refunds are Stripe refunds, a payout is a Connect transfer;
//! every call goes out after commit with a key derived from our row, and is repeated until Stripe
//! answers, never doubled.

use std::time::Duration;

use crowdledger_provider_fakes::stripe::{Fault, Kind, PINNED_VERSION, StripeFake};
use serde_json::json;
use sqlx::PgPool;

use crate::common::TestApp;
use crate::common::fixtures::{self, DAY, ok};
use crate::common::providers::{attempts, payment_of};

const WEBHOOK_SECRET: &str = "whsec_stripe-provider-tests";
const ACCOUNT: &str = "acct_1CrowdLedgerTest";

/// The service on Stripe, and the fake sending its signed events to the service.
pub(crate) async fn on_stripe(pool: PgPool, timeout_seconds: &str) -> (TestApp, StripeFake) {
    let stripe = StripeFake::builder().webhook_secret(WEBHOOK_SECRET).start().await;
    let app = TestApp::spawn_with(
        pool,
        &[
            ("CROWDLEDGER__PAYMENTS__CARD_PROVIDER", "stripe"),
            ("CROWDLEDGER__PAYMENTS__STRIPE__SECRET_KEY", stripe.secret_key()),
            ("CROWDLEDGER__PAYMENTS__STRIPE__WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CROWDLEDGER__PAYMENTS__STRIPE__API_BASE", &stripe.base_url()),
            ("CROWDLEDGER__PAYMENTS__STRIPE__TIMEOUT_SECONDS", timeout_seconds),
        ],
    )
    .await;
    stripe.set_webhook_url(format!("{}/v1/webhooks/stripe", app.base));
    (app, stripe)
}

/// A project paid at its Stripe connected account, and its open offer of 10 to 100 shares at
/// 10.00 (`min_target` as given), closing in 9 days: `(project, offer)`.
pub(crate) async fn offer(app: &TestApp, min_target: &str) -> (String, String) {
    let project = fixtures::published_project(app).await;
    let details = json!({"stripe_account": ACCOUNT});
    ok(
        app.call(
            reqwest::Method::PUT,
            &format!("/v1/projects/{project}/payout-details"),
            Some(crate::common::OPERATOR_KEY),
            Some(&details),
        )
        .await,
        200,
    )
    .await;
    let terms = json!({"min_target": min_target, "max_target": "1000.00"});
    let offer = fixtures::open_offer(app, &project, terms, 9).await;
    (project, offer)
}

/// The requests the fake received at `path`, in order.
pub(crate) fn requests_to(stripe: &StripeFake, path: &str) -> Vec<crowdledger_provider_fakes::stripe::ReceivedRequest> {
    stripe
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .collect()
}

/// Moves the service's business clock. Stripe keeps signing by the wall clock, as the service
/// verifies signatures by it (PRODUCT.md section 7).
fn advance(app: &TestApp, seconds: i64) {
    app.clock.advance(seconds).unwrap();
}

#[sqlx::test]
async fn a_round_through_stripe_creates_intents_funds_on_their_events_and_pays_out_by_transfer(pool: PgPool) {
    let (app, stripe) = on_stripe(pool, "10").await;
    let (_, offer) = offer(&app, "100.00").await;
    let investors = fixtures::investors(&app, 2).await;

    // Each card pledge creates a PaymentIntent at once and answers what the front-end needs.
    let mut pledges = Vec::new();
    for (investor, shares) in investors.iter().zip([12, 8]) {
        let p = ok(fixtures::pledge(&app, &offer, investor, shares, "10.00").await, 201).await;
        assert_eq!(p["payment"]["provider"], "stripe", "{p:#}");
        let intent = p["payment"]["payment_id"].as_str().expect("named at once").to_owned();
        let secret = p["payment"]["client_secret"].as_str().expect("a client secret");
        let at_stripe = stripe.object(&intent).expect("the intent exists at Stripe");
        assert_eq!(at_stripe["client_secret"], secret);
        assert_eq!(at_stripe["amount"], shares * 1000);
        assert_eq!(at_stripe["currency"], "eur");
        assert_eq!(at_stripe["metadata"]["pledge_id"], p["id"]);
        pledges.push((p["id"].as_str().unwrap().to_owned(), intent, shares));
    }
    let created = requests_to(&stripe, "/v1/payment_intents");
    assert_eq!(created.len(), 2);
    for (request, (pledge, _, _)) in created.iter().zip(&pledges) {
        let payment = payment_of(&app, pledge).await;
        assert_eq!(
            request.idempotency_key.as_deref(),
            Some(format!("crowdledger-payment-{payment}").as_str())
        );
        assert_eq!(request.stripe_version.as_deref(), Some(PINNED_VERSION));
        assert_eq!(request.params["metadata"]["payment_id"], payment.as_str());
        assert_eq!(request.params["allowed_payment_method_types"], json!(["card"]));
    }
    // The secret is never stored: a read shows the intent, not its secret; the payment session
    // asks Stripe for it again.
    let read = app.get(&format!("/v1/pledges/{}", pledges[0].0)).await;
    assert_eq!(read.body["payment"]["payment_id"], pledges[0].1.as_str());
    assert!(read.body["payment"].get("client_secret").is_none(), "{:#}", read.body);
    let stored: Vec<String> = sqlx::query_scalar("select response_body::text from idempotency_keys")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(stored.iter().all(|body| !body.contains("_secret_")), "{stored:?}");
    let session = app.get(&format!("/v1/pledges/{}/payment-session", pledges[0].0)).await;
    assert_eq!(session.status, 200, "{:#}", session.body);
    assert_eq!(
        session.body["client_secret"],
        stripe.object(&pledges[0].1).unwrap()["client_secret"]
    );

    // The investors pay; Stripe's signed events fund the pledges.
    for (pledge, intent, shares) in &pledges {
        stripe.succeed_payment(intent, shares * 1000).await;
        let funded = app.get(&format!("/v1/pledges/{pledge}")).await;
        assert_eq!(funded.body["status"], "funded", "{:#}", funded.body);
    }
    // Paid: there is no session left to open.
    app.get(&format!("/v1/pledges/{}/payment-session", pledges[0].0))
        .await
        .assert_problem(409, "payment_not_pending");
    assert_eq!(fixtures::balance(&app, "psp:stripe:eur").await, "200.00");

    // Closed: 200.00 raised, 5% to the platform, 190.00 owed to the project.
    ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    let payout = ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 201).await;
    assert_eq!(payout["amount"], "190.00");
    let payout_id = payout["id"].as_str().unwrap();
    // The transfer is made after commit; Stripe's `transfer.created` confirms it, whichever of
    // its event and the call's answer reaches us first.
    let paid = app
        .wait_for(&format!("/v1/payouts?offer_id={offer}"), |page| {
            page["items"][0]["status"] == "paid"
        })
        .await;
    let transfer_id = paid["items"][0]["payment"]["payment_id"].as_str().unwrap().to_owned();
    assert!(transfer_id.starts_with("tr_"), "{paid:#}");
    let transfer = stripe.object(&transfer_id).unwrap();
    assert_eq!(
        (
            &transfer["amount"],
            &transfer["destination"],
            &transfer["metadata"]["payout_id"]
        ),
        (&json!(19000), &json!(ACCOUNT), &json!(payout_id))
    );
    assert_eq!(stripe.created(Kind::Transfer), 1);
    assert_eq!(attempts(&app, payout_id).await, ["done"]);
    // What stays at Stripe is the platform's fee.
    assert_eq!(fixtures::balance(&app, "psp:stripe:eur").await, "10.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_failed_round_on_stripe_refunds_each_card_by_a_stripe_refund_confirmed_by_its_event(pool: PgPool) {
    let (app, stripe) = on_stripe(pool, "10").await;
    let (_, offer) = offer(&app, "1000.00").await;
    let investors = fixtures::investors(&app, 2).await;
    let mut pledges = Vec::new();
    for investor in &investors {
        let p = ok(fixtures::pledge(&app, &offer, investor, 10, "10.00").await, 201).await;
        let intent = p["payment"]["payment_id"].as_str().unwrap().to_owned();
        stripe.succeed_payment(&intent, 10_000).await;
        pledges.push((p["id"].as_str().unwrap().to_owned(), intent));
    }

    // Past its close below the minimum: the round fails, and each card's money is owed back.
    advance(&app, 10 * DAY);
    app.wait_for(&format!("/v1/offers/{offer}"), |o| o["status"] == "failed")
        .await;
    let refunds = app
        .wait_for(&format!("/v1/refunds?offer_id={offer}"), |page| {
            let items = page["items"].as_array().unwrap();
            items.len() == 2 && items.iter().all(|r| r["payment"]["payment_id"].is_string())
        })
        .await;
    let made = requests_to(&stripe, "/v1/refunds");
    assert_eq!(made.len(), 2, "{made:#?}");
    for refund in refunds["items"].as_array().unwrap() {
        let (id, re) = (
            refund["id"].as_str().unwrap(),
            refund["payment"]["payment_id"].as_str().unwrap(),
        );
        let intent = &pledges
            .iter()
            .find(|(p, _)| refund["pledge_id"] == p.as_str())
            .unwrap()
            .1;
        let request = made
            .iter()
            .find(|r| r.idempotency_key.as_deref() == Some(format!("crowdledger-refund-{id}").as_str()))
            .expect("the refund's call, keyed by our refund");
        assert_eq!(request.params["payment_intent"], intent.as_str());
        assert_eq!(request.params["amount"], "10000");
        assert_eq!(refund["status"], "pending");
        // Stripe's `charge.refunded` lists no refunds on the pinned version: it confirms nothing.
        stripe.charge_refunded(intent).await;
        assert_eq!(app.get(&format!("/v1/refunds/{id}")).await.body["status"], "pending");
        // The refund's own event does.
        let event = stripe.succeed_refund(re).await;
        assert_eq!(
            stripe.deliveries().last().map(|d| (&d.event_id, d.status)),
            Some((&event.id, Some(200)))
        );
        assert_eq!(app.get(&format!("/v1/refunds/{id}")).await.body["status"], "succeeded");
    }
    for (pledge, _) in &pledges {
        assert_eq!(
            app.get(&format!("/v1/pledges/{pledge}")).await.body["status"],
            "refunded"
        );
    }
    assert_eq!(stripe.created(Kind::Refund), 2);
    assert_eq!(fixtures::balance(&app, "psp:stripe:eur").await, "0.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_call_that_times_out_is_repeated_with_its_key_and_stripe_charges_once(pool: PgPool) {
    let (app, stripe) = on_stripe(pool, "1").await;
    let (_, offer) = offer(&app, "100.00").await;
    let investor = fixtures::investor(&app, "Late Answer", "sophisticated").await;

    // Stripe creates the intent but answers after our timeout: the pledge stands, its payment
    // not yet named, and no secret is made up.
    stripe.delay_next_reply("/v1/payment_intents", Duration::from_secs(3));
    let p = ok(fixtures::pledge(&app, &offer, &investor, 10, "10.00").await, 201).await;
    assert_eq!(p["status"], "pending_payment");
    assert_eq!(p["payment"], json!({"provider": "stripe", "payment_id": null}), "{p:#}");
    assert_eq!(stripe.created(Kind::PaymentIntent), 1);
    let payment = payment_of(&app, p["id"].as_str().unwrap()).await;
    assert_eq!(attempts(&app, &payment).await, ["unknown"]);
    // Until Stripe's answer is ours, the front-end is told to come back.
    let session = app
        .get(&format!("/v1/pledges/{}/payment-session", p["id"].as_str().unwrap()))
        .await;
    session.assert_problem(502, "provider_unavailable");
    assert_eq!(session.headers["retry-after"], "5");

    // After the backoff the worker asks again with the same key: Stripe answers what it made.
    advance(&app, 2);
    let named = app
        .wait_for(&format!("/v1/pledges/{}", p["id"].as_str().unwrap()), |p| {
            p["payment"]["payment_id"].is_string()
        })
        .await;
    assert_eq!(stripe.created(Kind::PaymentIntent), 1, "charged once");
    let keys: Vec<_> = requests_to(&stripe, "/v1/payment_intents")
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys, vec![Some(format!("crowdledger-payment-{payment}")); 2]);
    assert_eq!(attempts(&app, &payment).await, ["unknown", "done"]);
    // And its capture funds the pledge.
    let intent = named["payment"]["payment_id"].as_str().unwrap();
    stripe.succeed_payment(intent, 10_000).await;
    assert_eq!(
        app.get(&format!("/v1/pledges/{}", p["id"].as_str().unwrap()))
            .await
            .body["status"],
        "funded"
    );
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn rate_limits_and_outages_are_waited_out_and_the_call_repeated_with_its_key(pool: PgPool) {
    let (app, stripe) = on_stripe(pool, "10").await;
    let (_, offer) = offer(&app, "100.00").await;
    let investors = fixtures::investors(&app, 2).await;

    stripe.fail_next("/v1/payment_intents", 1, Fault::RateLimited);
    stripe.fail_next("/v1/payment_intents", 1, Fault::ServiceUnavailable);
    let p = ok(fixtures::pledge(&app, &offer, &investors[0], 10, "10.00").await, 201).await;
    let pledge = p["id"].as_str().unwrap().to_owned();
    assert!(p["payment"]["payment_id"].is_null(), "{p:#}");
    let payment = payment_of(&app, &pledge).await;
    assert_eq!(attempts(&app, &payment).await, ["retry"]);
    // Backoff on the service's clock: 1 s, then 5 s.
    advance(&app, 1);
    app.wait_for_value(|| attempts(&app, &payment), |a| a.len() == 2).await;
    advance(&app, 5);
    app.wait_for(&format!("/v1/pledges/{pledge}"), |p| {
        p["payment"]["payment_id"].is_string()
    })
    .await;
    assert_eq!(attempts(&app, &payment).await, ["retry", "retry", "done"]);
    let statuses: Vec<Option<i32>> = sqlx::query_scalar(
        "select a.http_status from provider_call_attempts a join provider_calls c on c.id = a.call_id
          where c.object_id = $1::uuid order by a.id",
    )
    .bind(&payment)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(statuses, [Some(429), Some(503), None]);
    assert_eq!(stripe.created(Kind::PaymentIntent), 1);

    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_refusal_no_repeat_can_cure_fails_the_payment_and_cancels_the_pledge_at_once(pool: PgPool) {
    let stripe = StripeFake::builder().webhook_secret(WEBHOOK_SECRET).start().await;
    // A key Stripe does not know: 401, which no repeat cures.
    let app = TestApp::spawn_with(
        pool,
        &[
            ("CROWDLEDGER__PAYMENTS__CARD_PROVIDER", "stripe"),
            ("CROWDLEDGER__PAYMENTS__STRIPE__SECRET_KEY", "sk_test_revoked"),
            ("CROWDLEDGER__PAYMENTS__STRIPE__WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CROWDLEDGER__PAYMENTS__STRIPE__API_BASE", &stripe.base_url()),
        ],
    )
    .await;
    let (_, offer) = offer(&app, "100.00").await;
    let investor = fixtures::investor(&app, "Refused", "sophisticated").await;
    let p = ok(fixtures::pledge(&app, &offer, &investor, 10, "10.00").await, 201).await;
    assert_eq!(p["status"], "cancelled", "{p:#}");
    assert!(p["payment"]["payment_id"].is_null() && p["payment"].get("client_secret").is_none());
    let payment = payment_of(&app, p["id"].as_str().unwrap()).await;
    assert_eq!(attempts(&app, &payment).await, ["failed"]);
    let (status, error): (String, String) =
        sqlx::query_as("select status::text, last_error from provider_calls where object_id = $1::uuid")
            .bind(&payment)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(error.contains("401"), "{error}");
    // Its shares are back on offer, and nothing is asked again however far the clock moves.
    let o = app.get(&format!("/v1/offers/{offer}")).await;
    assert_eq!(o.body["shares_reserved"], 0, "{:#}", o.body);
    app.clock.advance(DAY).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(attempts(&app, &payment).await, ["failed"]);
    assert_eq!(stripe.created(Kind::PaymentIntent), 0);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_crash_between_stripe_creating_the_intent_and_our_write_charges_once_after_restart(pool: PgPool) {
    let stripe = StripeFake::builder().webhook_secret(WEBHOOK_SECRET).start().await;
    // The world is set up in-process on the sandbox (whose process calls no Stripe); the pledge
    // goes to `crowdledger serve` processes on Stripe.
    let setup = TestApp::spawn(pool.clone()).await;
    let (_, offer) = offer(&setup, "100.00").await;
    let investor = fixtures::investor(&setup, "Crash", "sophisticated").await;
    let api_base = stripe.base_url();
    let env = [
        ("CROWDLEDGER__PAYMENTS__CARD_PROVIDER", "stripe"),
        ("CROWDLEDGER__PAYMENTS__STRIPE__SECRET_KEY", stripe.secret_key()),
        ("CROWDLEDGER__PAYMENTS__STRIPE__WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("CROWDLEDGER__PAYMENTS__STRIPE__API_BASE", api_base.as_str()),
    ];
    let first = crate::common::Served::start_with(&pool, crate::common::OPERATOR_KEY, &env).await;

    // Stripe creates the intent; the process dies before its answer is written.
    let mut held = stripe.hold_next_reply("/v1/payment_intents");
    let body = json!({"investor_id": investor, "shares": 10, "funding": [{"kind": "card", "amount": "100.00"}],
                      "kiis_sha256": fixtures::KIIS_SHA256});
    let asked = tokio::spawn({
        let url = format!("{}/v1/offers/{offer}/pledges", first.base);
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(crate::common::OPERATOR_KEY)
                .header("idempotency-key", "crash-between-call-and-write")
                .json(&body)
                .send()
                .await
        }
    });
    held.processed().await;
    first.crash();
    held.release();
    assert!(asked.await.unwrap().is_err(), "the process died before answering");
    let (pledge, payment, named): (uuid::Uuid, uuid::Uuid, Option<String>) =
        sqlx::query_as("select pledge_id, id, provider_payment_id from payments")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(named, None, "the answer was never written");
    assert_eq!(stripe.created(Kind::PaymentIntent), 1);

    // Restarted, the worker asks again once the dead process's lease has run out, with the same
    // key: Stripe answers the intent it made, and makes no other.
    let second = crate::common::Served::start_with(&pool, crate::common::OPERATOR_KEY, &env).await;
    stripe.set_webhook_url(format!("{}/v1/webhooks/stripe", second.base));
    let client = reqwest::Client::new();
    let moved = client
        .post(format!("{}/v1/sandbox/clock", second.base))
        .bearer_auth(crate::common::OPERATOR_KEY)
        .json(&json!({"advance_seconds": 120}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let intent = setup
        .wait_for_value(
            || async {
                sqlx::query_scalar::<_, Option<String>>("select provider_payment_id from payments where id = $1")
                    .bind(payment)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            },
            Option::is_some,
        )
        .await
        .unwrap();
    assert_eq!(stripe.created(Kind::PaymentIntent), 1, "charged once");
    let keys: Vec<_> = requests_to(&stripe, "/v1/payment_intents")
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys, vec![Some(format!("crowdledger-payment-{payment}")); 2]);
    assert_eq!(attempts(&setup, &payment.to_string()).await, ["done"]);

    // The investor pays that one intent, and the pledge is funded.
    stripe.succeed_payment(&intent, 10_000).await;
    let read = client
        .get(format!("{}/v1/pledges/{pledge}", second.base))
        .bearer_auth(crate::common::OPERATOR_KEY)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(read["status"], "funded", "{read:#}");
    assert_eq!(read["payment"]["payment_id"], intent.as_str());
    setup.assert_books_verify().await;
}

/// `crowdledger reconcile` on the service's database, against the fake (which answers from
/// this test's runtime while the command runs).
async fn reconcile(pool: &PgPool, stripe: &StripeFake, since: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_crowdledger"))
        .args(["reconcile", "--provider", "stripe", "--since", since])
        .env("DATABASE_URL", crate::common::service_url(pool))
        .env_remove("CROWDLEDGER_CONFIG")
        .env("RUST_LOG", "warn")
        .env("CROWDLEDGER__PAYMENTS__STRIPE__SECRET_KEY", stripe.secret_key())
        .env("CROWDLEDGER__PAYMENTS__STRIPE__API_BASE", stripe.base_url())
        .output()
        .await
        .unwrap()
}

#[sqlx::test]
async fn reconcile_lists_what_stripe_settled_that_our_books_never_heard_of(pool: PgPool) {
    let (app, stripe) = on_stripe(pool.clone(), "10").await;
    let since = app.clock.now().to_rfc3339();
    let (_, offer) = offer(&app, "100.00").await;
    let investors = fixtures::investors(&app, 2).await;
    let heard = ok(fixtures::pledge(&app, &offer, &investors[0], 10, "10.00").await, 201).await;
    let missed = ok(fixtures::pledge(&app, &offer, &investors[1], 5, "10.00").await, 201).await;
    stripe
        .succeed_payment(heard["payment"]["payment_id"].as_str().unwrap(), 10_000)
        .await;
    // The second capture's event is lost on its way.
    stripe.set_webhook_url("http://127.0.0.1:9/unreachable");
    let lost = stripe
        .succeed_payment(missed["payment"]["payment_id"].as_str().unwrap(), 5_000)
        .await;
    stripe.set_webhook_url(format!("{}/v1/webhooks/stripe", app.base));

    let out = reconcile(&pool, &stripe, &since).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let payment = payment_of(&app, missed["id"].as_str().unwrap()).await;
    assert!(
        lines[0].contains(&payment) && lines[0].contains("an event we never applied"),
        "{stdout}"
    );
    assert!(stderr.contains("2 object(s) at stripe"), "{stderr}");

    // Stripe sends it again; the books agree.
    assert_eq!(stripe.deliver(&lost.id).await, Some(200));
    let out = reconcile(&pool, &stripe, &since).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    app.assert_books_verify().await;
}

/// A bank-transfer pledge of `shares` at 10.00 by `investor`.
async fn wire_pledge(app: &TestApp, offer: &str, investor: &str, shares: i64) -> serde_json::Value {
    let amount = format!("{}.00", shares * 10);
    let body = json!({"investor_id": investor, "shares": shares,
                      "funding": [{"kind": "bank_transfer", "amount": amount}], "kiis_sha256": fixtures::KIIS_SHA256});
    ok(fixtures::pledge_at(&app.client, &app.base, offer, &body).await, 201).await
}

#[sqlx::test]
async fn a_bank_transfer_of_the_right_amount_funds_the_pledge_and_a_short_one_is_quarantined(pool: PgPool) {
    let (app, stripe) = on_stripe(pool, "10").await;
    let (_, offer) = offer(&app, "100.00").await;
    let investors = fixtures::investors(&app, 2).await;

    // The pledge answers where to wire the money: Stripe's virtual IBAN for the investor, and
    // the reference; the investor became a Stripe customer once.
    let p = wire_pledge(&app, &offer, &investors[0], 10).await;
    let payment = &p["payment"];
    let intent = payment["payment_id"].as_str().unwrap().to_owned();
    let at_stripe = stripe.object(&intent).unwrap();
    let shown = &at_stripe["next_action"]["display_bank_transfer_instructions"];
    assert_eq!(
        payment["iban"], shown["financial_addresses"][0]["iban"]["iban"],
        "{p:#}"
    );
    assert_eq!(payment["bic"], shown["financial_addresses"][0]["iban"]["bic"]);
    assert_eq!(payment["reference"], shown["reference"]);
    assert_eq!(at_stripe["payment_method_types"], json!(["customer_balance"]));
    assert_eq!(stripe.created(Kind::Customer), 1);
    // The investor has the offer's bank-transfer window (5 days by default) to pay.
    let due = chrono::DateTime::parse_from_rfc3339(p["payment_due_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        due.timestamp(),
        (app.clock.now() + chrono::TimeDelta::days(5)).timestamp()
    );
    // Read again, the pledge still shows where to wire.
    let read = app.get(&format!("/v1/pledges/{}", p["id"].as_str().unwrap())).await;
    assert_eq!(read.body["payment"]["iban"], payment["iban"]);
    // A second pledge of the same investor reuses its customer.
    let again = wire_pledge(&app, &offer, &investors[0], 1).await;
    assert_eq!(stripe.created(Kind::Customer), 1);
    assert_eq!(again["payment"]["iban"], payment["iban"]);

    // The exact amount arrives: funded.
    stripe.partially_fund(&intent, 10_000).await;
    let funded = app.get(&format!("/v1/pledges/{}", p["id"].as_str().unwrap())).await;
    assert_eq!(funded.body["status"], "funded", "{:#}", funded.body);

    // Another investor wires too little: quarantined, the books untouched, the pledge waiting.
    let short = wire_pledge(&app, &offer, &investors[1], 5).await;
    let short_intent = short["payment"]["payment_id"].as_str().unwrap().to_owned();
    let before = app.row_counts().await;
    let event = stripe.partially_fund(&short_intent, 3_000).await;
    let (status, detail): (String, String) =
        sqlx::query_as("select status::text, detail from inbound_events where event_id = $1")
            .bind(&event.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(status, "quarantined");
    assert!(
        detail.starts_with("bank_transfer_mismatch") && detail.contains("30.00 EUR"),
        "{detail}"
    );
    assert_eq!(app.row_counts().await, before);
    let waiting = app.get(&format!("/v1/pledges/{}", short["id"].as_str().unwrap())).await;
    assert_eq!(waiting.body["status"], "pending_payment");
    // The rest arrives: Stripe completes the intent and the pledge is funded.
    stripe.partially_fund(&short_intent, 2_000).await;
    let done = app.get(&format!("/v1/pledges/{}", short["id"].as_str().unwrap())).await;
    assert_eq!(done.body["status"], "funded", "{:#}", done.body);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_bank_transfer_that_never_comes_cancels_the_pledge_and_its_intent_when_the_window_ends(pool: PgPool) {
    let (app, stripe) = on_stripe(pool, "10").await;
    let (_, offer) = offer(&app, "100.00").await;
    let investor = fixtures::investor(&app, "Never Wires", "sophisticated").await;
    let p = wire_pledge(&app, &offer, &investor, 10).await;
    let pledge = p["id"].as_str().unwrap();
    let intent = p["payment"]["payment_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&format!("/v1/offers/{offer}")).await.body["shares_reserved"],
        10
    );

    // Four days on it still waits; past five it is cancelled, its shares back on offer, and
    // Stripe is told, so no money can arrive for it any more.
    advance(&app, 4 * DAY);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        app.get(&format!("/v1/pledges/{pledge}")).await.body["status"],
        "pending_payment"
    );
    advance(&app, DAY + 1);
    app.wait_for(&format!("/v1/pledges/{pledge}"), |p| p["status"] == "cancelled")
        .await;
    assert_eq!(app.get(&format!("/v1/offers/{offer}")).await.body["shares_reserved"], 0);
    let canceled = app
        .wait_for_value(
            || async { stripe.object(&intent).unwrap()["status"].clone() },
            |s| s == "canceled",
        )
        .await;
    assert_eq!(canceled, "canceled");
    let cancels = requests_to(&stripe, &format!("/v1/payment_intents/{intent}/cancel"));
    assert_eq!(cancels.len(), 1);
    let payment = payment_of(&app, pledge).await;
    assert_eq!(
        cancels[0].idempotency_key.as_deref(),
        Some(format!("crowdledger-cancel-{payment}").as_str())
    );
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn the_sandbox_takes_no_bank_transfers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, offer) = fixtures::small_open_offer(&app).await;
    let investor = fixtures::investor(&app, "Sandbox Wire", "sophisticated").await;
    let body = json!({"investor_id": investor, "shares": 10,
                      "funding": [{"kind": "bank_transfer", "amount": "100.00"}], "kiis_sha256": fixtures::KIIS_SHA256});
    fixtures::pledge_at(&app.client, &app.base, &offer, &body)
        .await
        .assert_problem(422, "payment_provider_unavailable");
    // Nor two provider-paid sources in one pledge.
    let both = json!({"investor_id": investor, "shares": 10,
                      "funding": [{"kind": "bank_transfer", "amount": "50.00"}, {"kind": "card", "amount": "50.00"}],
                      "kiis_sha256": fixtures::KIIS_SHA256});
    let r = fixtures::pledge_at(&app.client, &app.base, &offer, &both).await;
    assert_eq!(r.status, 422, "{:#}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("at most one card or bank_transfer"),
        "{:#}",
        r.body
    );
    assert_eq!(app.get(&format!("/v1/offers/{offer}")).await.body["shares_reserved"], 0);
}

#[sqlx::test]
async fn a_capture_after_the_pledge_was_cancelled_is_booked_and_refunded_through_stripe(pool: PgPool) {
    let (app, stripe) = on_stripe(pool, "10").await;
    let (_, offer) = offer(&app, "100.00").await;
    let investor = fixtures::investor(&app, "Late Payer", "sophisticated").await;
    let p = ok(fixtures::pledge(&app, &offer, &investor, 10, "10.00").await, 201).await;
    let pledge = p["id"].as_str().unwrap();
    let intent = p["payment"]["payment_id"].as_str().unwrap().to_owned();

    // The payment window (30 minutes) ends: the pledge is cancelled, and Stripe is to be told,
    // but is out of reach a moment.
    stripe.fail_next(
        &format!("/v1/payment_intents/{intent}/cancel"),
        1,
        Fault::ServiceUnavailable,
    );
    advance(&app, 31 * 60);
    app.wait_for(&format!("/v1/pledges/{pledge}"), |p| p["status"] == "cancelled")
        .await;
    // Meanwhile the investor paid: the money Stripe captured is booked and given back in full.
    stripe.succeed_payment(&intent, 10_000).await;
    let refunds = app
        .wait_for(&format!("/v1/refunds?pledge_id={pledge}"), |page| {
            page["items"][0]["payment"]["payment_id"].is_string()
        })
        .await;
    let refund = &refunds["items"][0];
    assert_eq!(
        (&refund["amount"], &refund["status"]),
        (&json!("100.00"), &json!("pending"))
    );
    let at_stripe = stripe
        .object(refund["payment"]["payment_id"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        (&at_stripe["payment_intent"], &at_stripe["amount"]),
        (&json!(intent), &json!(10_000))
    );
    assert_eq!(
        app.get(&format!("/v1/pledges/{pledge}")).await.body["status"],
        "cancelled"
    );
    let late: i64 = sqlx::query_scalar("select count(*) from outbox_events where event_type = 'payment.late'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(late, 1);
    // The cancellation, tried again, is refused by Stripe (the intent succeeded) and given up.
    advance(&app, 5);
    let payment = payment_of(&app, pledge).await;
    let cancel: String = app
        .wait_for_value(
            || async {
                sqlx::query_scalar::<_, String>(
                    "select status::text from provider_calls where object_id = $1::uuid and kind = 'cancel_payment'",
                )
                .bind(&payment)
                .fetch_one(&app.pool)
                .await
                .unwrap()
            },
            |s| s != "pending",
        )
        .await;
    assert_eq!(cancel, "failed");
    stripe
        .succeed_refund(refund["payment"]["payment_id"].as_str().unwrap())
        .await;
    assert_eq!(
        app.get(&format!("/v1/refunds/{}", refund["id"].as_str().unwrap()))
            .await
            .body["status"],
        "succeeded"
    );
    assert_eq!(fixtures::balance(&app, "psp:stripe:eur").await, "0.00");
    app.assert_books_verify().await;
}
