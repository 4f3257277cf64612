//! Sponsors and their deposits: the budget grows only when the provider's signed webhook
//! confirms a deposit, once, for the right amount.

use crowdledger::keys::Role;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;

use crate::common::fixtures::{self, budget};
use crate::common::{TestApp, assert_json, id_of, send_as};

#[sqlx::test]
async fn a_sponsor_is_registered_with_an_empty_budget(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app
        .post(
            "/v1/sponsors",
            json!({"name": "  SenseTour Belgium ", "email": "prizes@sensetour.example"}),
        )
        .await;
    assert_json(&r, 201);
    assert_eq!(r.body["name"], "SenseTour Belgium");
    assert_eq!(r.body["currency"], "EUR");
    assert_eq!(r.body["budget"], json!({"amount": "0.00", "currency": "EUR"}));
    let id = id_of(&r);
    let read = app.get(&format!("/v1/sponsors/{id}")).await;
    assert_json(&read, 200);
    assert_eq!(read.body, r.body);

    let usd = app
        .post("/v1/sponsors", json!({"name": "Acme US", "currency": "USD"}))
        .await;
    assert_eq!(usd.body["budget"], json!({"amount": "0.00", "currency": "USD"}));
}

#[sqlx::test]
async fn bad_sponsors_are_refused_and_nothing_is_written(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for body in [
        json!({"name": ""}),
        json!({"name": "a\u{0}b"}),
        json!({"name": "x".repeat(201)}),
        json!({"name": "S", "email": "not-an-address"}),
        json!({"name": "S", "currency": "EURO"}),
        json!({"name": "S", "budget": "1000.00"}),
        json!({}),
    ] {
        app.post("/v1/sponsors", body.clone())
            .await
            .assert_problem(422, "validation_failed");
    }
    let count: i64 = sqlx::query_scalar("select count(*) from sponsors")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    app.get(&format!("/v1/sponsors/{}", uuid::Uuid::now_v7()))
        .await
        .assert_problem(404, "not_found");
    app.get("/v1/sponsors/not-a-uuid")
        .await
        .assert_problem(404, "not_found");
}

#[sqlx::test]
async fn only_operators_manage_sponsors(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::sponsor(&app, "SenseTour Belgium").await;
    for role in [Role::Platform, Role::Auditor] {
        let key = app.key(role).await;
        let body = json!({"name": "S"});
        send_as(&app, Method::POST, "/v1/sponsors", &key, &[], Some(&body))
            .await
            .assert_problem(403, "forbidden");
        let deposit = json!({"amount": "10.00", "currency": "EUR"});
        send_as(
            &app,
            Method::POST,
            &format!("/v1/sponsors/{sponsor}/deposits"),
            &key,
            &[],
            Some(&deposit),
        )
        .await
        .assert_problem(403, "forbidden");
        send_as(&app, Method::GET, &format!("/v1/sponsors/{sponsor}"), &key, &[], None)
            .await
            .assert_problem(403, "forbidden");
    }
}

#[sqlx::test]
async fn the_budget_is_credited_only_when_the_provider_confirms(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::sponsor(&app, "SenseTour Belgium").await;
    let before = app.row_counts().await;
    let r = app
        .post(
            &format!("/v1/sponsors/{sponsor}/deposits"),
            json!({"amount": "10000.00", "currency": "EUR"}),
        )
        .await;
    assert_json(&r, 201);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["sponsor_id"], sponsor.as_str());
    assert_eq!(
        (r.body["amount"].as_str(), r.body["currency"].as_str()),
        (Some("10000.00"), Some("EUR"))
    );
    assert_eq!(r.body["payment"]["provider"], "sandbox");
    let deposit = id_of(&r);
    let payment = r.body["payment"]["payment_id"].as_str().unwrap().to_string();

    // Requested, not paid: the books have not moved.
    assert_eq!(budget(&app, &sponsor).await, "0.00");
    assert_eq!(app.row_counts().await, before);

    let sent = app
        .post(&format!("/v1/sandbox/deposits/{payment}/succeed"), json!({}))
        .await;
    assert_json(&sent, 200);
    assert_eq!(
        (sent.body["applied"].as_bool(), sent.body["outcome"].as_str()),
        (Some(true), Some("applied"))
    );
    assert_eq!(budget(&app, &sponsor).await, "10000.00");
    assert_eq!(fixtures::balance(&app, "psp:sandbox:eur").await, "10000.00");
    assert_eq!(
        fixtures::balance(&app, &format!("sponsor:{sponsor}:budget:eur")).await,
        "10000.00"
    );
    let read = app.get(&format!("/v1/deposits/{deposit}")).await;
    assert_json(&read, 200);
    assert_eq!(read.body["status"], "succeeded");

    // A second confirmation (a new event for the same deposit) changes nothing.
    let again = app
        .post(&format!("/v1/sandbox/deposits/{payment}/succeed"), json!({}))
        .await;
    assert_eq!(again.body["applied"], false, "{:#}", again.body);
    assert_eq!(budget(&app, &sponsor).await, "10000.00");

    // A second deposit adds up.
    let r = app
        .post(
            &format!("/v1/sponsors/{sponsor}/deposits"),
            json!({"amount": "0.50", "currency": "EUR"}),
        )
        .await;
    let payment = r.body["payment"]["payment_id"].as_str().unwrap().to_string();
    app.post(&format!("/v1/sandbox/deposits/{payment}/succeed"), json!({}))
        .await;
    assert_eq!(budget(&app, &sponsor).await, "10000.50");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn bad_deposits_are_refused_and_nothing_is_written(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::sponsor(&app, "SenseTour Belgium").await;
    let path = format!("/v1/sponsors/{sponsor}/deposits");
    for body in [
        json!({"amount": "0.00", "currency": "EUR"}),
        json!({"amount": "-5.00", "currency": "EUR"}),
        json!({"amount": "1.001", "currency": "EUR"}),
        json!({"amount": 10, "currency": "EUR"}),
        json!({"amount": "1e3", "currency": "EUR"}),
        json!({"amount": "10.00", "currency": "XXX1"}),
        json!({"amount": "10.00"}),
        json!({"amount": "10.00", "currency": "EUR", "status": "succeeded"}),
    ] {
        app.post(&path, body.clone())
            .await
            .assert_problem(422, "validation_failed");
    }
    app.post(&path, json!({"amount": "10.00", "currency": "USD"}))
        .await
        .assert_problem(422, "currency_mismatch");
    app.post(
        &format!("/v1/sponsors/{}/deposits", uuid::Uuid::now_v7()),
        json!({"amount": "10.00", "currency": "EUR"}),
    )
    .await
    .assert_problem(404, "not_found");
    let count: i64 = sqlx::query_scalar("select count(*) from deposits")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    app.post("/v1/sandbox/deposits/dep_unknown/succeed", json!({}))
        .await
        .assert_problem(404, "not_found");
}

#[sqlx::test]
async fn a_repeated_deposit_request_is_one_deposit(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::sponsor(&app, "SenseTour Belgium").await;
    let path = format!("/v1/sponsors/{sponsor}/deposits");
    let key = app.key(Role::Operator).await;
    let body = json!({"amount": "2000.00", "currency": "EUR"});
    let mut replies = Vec::new();
    for _ in 0..2 {
        let headers = [("idempotency-key", "dep-1")];
        replies.push(send_as(&app, Method::POST, &path, &key, &headers, Some(&body)).await);
    }
    let (first, second) = (&replies[0], &replies[1]);
    assert_json(first, 201);
    assert_eq!(second.body, first.body);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    let other = json!({"amount": "2000.01", "currency": "EUR"});
    send_as(
        &app,
        Method::POST,
        &path,
        &key,
        &[("idempotency-key", "dep-1")],
        Some(&other),
    )
    .await
    .assert_problem(422, "idempotency_key_reused");
    let count: i64 = sqlx::query_scalar("select count(*) from deposits")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[sqlx::test]
async fn auto_confirm_credits_deposits_through_the_signed_webhook(pool: PgPool) {
    let app = TestApp::spawn_with(pool, &[("CROWDLEDGER__PAYMENTS__SANDBOX__AUTO_CONFIRM", "true")]).await;
    let sponsor = fixtures::sponsor(&app, "SenseTour Belgium").await;
    app.post(
        &format!("/v1/sponsors/{sponsor}/deposits"),
        json!({"amount": "750.00", "currency": "EUR"}),
    )
    .await;
    app.wait_for(&format!("/v1/sponsors/{sponsor}"), |s| {
        s["budget"]["amount"] == "750.00"
    })
    .await;
    // It went through the webhook endpoint: the event is stored as received.
    let events: Vec<(String, String)> =
        sqlx::query_as("select event_type, status::text from inbound_events where provider = 'sandbox'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(events, [("payment.succeeded".to_string(), "applied".to_string())]);
    app.assert_books_verify().await;
}
