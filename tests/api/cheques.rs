//! Virtual prize cheques, black-box through HTTP: a sponsor sets value aside from its budget for
//! a contest winner, who spends it as pledge funding, alone or with a card. Value that comes back
//! (a failed round, a revoked or cancelled pledge) goes back to the cheque, or to the sponsor
//! once the cheque has ended. Every scenario ends with the books verified, `cheques_balance`
//! among the checks.

use std::collections::HashSet;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use crowdledger::keys::Role;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{self, DAY, budget, ok};
use crate::common::{self, OPERATOR_KEY, Reply, TestApp, assert_json, id_of, send, send_as};

/// Crockford base32: digits and capitals without I, L, O, U.
const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// RFC 3339 time `days` from the service's (manual) clock, to the second.
fn in_days(app: &TestApp, days: i64) -> String {
    (app.clock.now() + TimeDelta::days(days)).trunc_subsecs(0).to_rfc3339()
}

/// A EUR cheque request; `extra` adds or overrides fields.
fn cheque_body(sponsor: &str, face: &str, expires_at: &str, extra: Value) -> Value {
    let mut body = json!({
        "sponsor_id": sponsor, "beneficiary_name": "Awa Diallo", "beneficiary_email": "awa@example.org",
        "face_value": face, "currency": "EUR", "expires_at": expires_at,
    });
    for (k, v) in extra.as_object().expect("extra is an object") {
        body[k] = v.clone();
    }
    body
}

/// `POST /v1/cheques` as the operator, with an `Idempotency-Key` if given.
async fn issue_raw(app: &TestApp, body: &Value, key: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    send_as(app, Method::POST, "/v1/cheques", OPERATOR_KEY, &headers, Some(body)).await
}

/// Issues a cheque expiring in `expires_in_days`; returns its id and code.
async fn issue(app: &TestApp, sponsor: &str, face: &str, expires_in_days: i64, extra: Value) -> (String, String) {
    let body = cheque_body(sponsor, face, &in_days(app, expires_in_days), extra);
    let r = issue_raw(app, &body, None).await;
    assert_json(&r, 201);
    let code = r.body["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code in {:#}", r.body))
        .to_string();
    assert_code_format(&code);
    (id_of(&r), code)
}

/// `CHQ-XXXX-XXXX-XXXX-XXXX`, in Crockford base32.
fn assert_code_format(code: &str) {
    let groups: Vec<&str> = code.split('-').collect();
    assert_eq!(groups.len(), 5, "{code}");
    assert_eq!(groups[0], "CHQ", "{code}");
    for group in &groups[1..] {
        assert_eq!(group.len(), 4, "{code}");
        assert!(group.chars().all(|c| CROCKFORD.contains(c)), "{code}");
    }
}

/// A well-formed code that differs from `code` in one character (of group `n % 4`).
fn wrong_code(code: &str, n: usize) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let at = 4 + 5 * (n % 4) + n / 4 % 4; // inside group n % 4, never on a dash
    chars[at] = if chars[at] == '0' { '1' } else { '0' };
    let wrong: String = chars.into_iter().collect();
    assert_ne!(wrong, code);
    assert_code_format(&wrong);
    wrong
}

/// The key is absent or null.
fn absent(v: &Value, key: &str) -> bool {
    v.get(key).is_none_or(Value::is_null)
}

/// `GET /v1/cheques/{id}`; the read never shows the code.
async fn cheque(app: &TestApp, id: &str) -> Value {
    let r = app.get(&format!("/v1/cheques/{id}")).await;
    assert_json(&r, 200);
    assert!(absent(&r.body, "code"), "a read shows the code: {:#}", r.body);
    r.body
}

/// Asserts the cheque's status and balance, and that its ledger account holds that balance.
async fn assert_cheque(app: &TestApp, id: &str, status: &str, balance: &str) -> Value {
    let c = cheque(app, id).await;
    assert_eq!(
        (c["status"].as_str(), c["balance"].as_str()),
        (Some(status), Some(balance)),
        "{c:#}"
    );
    assert_eq!(
        fixtures::balance(app, &format!("cheque:{id}")).await,
        balance,
        "ledger account of cheque {id}"
    );
    c
}

async fn cancel(app: &TestApp, id: &str) -> Reply {
    app.post(&format!("/v1/cheques/{id}/cancel"), json!({})).await
}

/// A USD sponsor whose deposit of `amount` the sandbox has confirmed.
async fn funded_usd_sponsor(app: &TestApp, amount: &str) -> String {
    let id = fixtures::funded_sponsor_in(app, "Acme US", amount, "USD").await;
    assert_eq!(budget(app, &id).await, amount);
    id
}

fn by_cheque(code: &str, amount: &str) -> Value {
    json!({"kind": "cheque", "cheque_code": code, "amount": amount})
}

fn by_card(amount: &str) -> Value {
    json!({"kind": "card", "amount": amount})
}

/// A verified sophisticated investor (no reflection period, no risk warning).
async fn investor_named(app: &TestApp, name: &str) -> String {
    fixtures::investor(app, name, "sophisticated").await
}

/// Pledges with this body (a fresh Idempotency-Key each time).
async fn pledge_req(app: &TestApp, offer: &str, body: &Value) -> Reply {
    fixtures::pledge_at(&app.client, &app.base, offer, body).await
}

/// Pledges `shares` with this list of funding sources.
async fn pledge_with(app: &TestApp, offer: &str, investor: &str, shares: i64, funding: Value) -> Reply {
    let body = json!({"investor_id": investor, "shares": shares, "funding": funding,
                      "kiis_sha256": fixtures::KIIS_SHA256});
    pledge_req(app, offer, &body).await
}

/// A pledge paid by cheque alone: funded at once, no card payment, the code not echoed.
/// A pledge of `shares` paid partly by the cheque, partly by card: answered 201 and waiting for
/// the card. Returns the pledge's id and its card payment's id.
async fn mixed_pledge(
    app: &TestApp,
    offer: &str,
    investor: &str,
    shares: i64,
    (code, by_cheque_amount): (&str, &str),
    card: &str,
) -> (String, String) {
    let r = pledge_with(
        app,
        offer,
        investor,
        shares,
        json!([by_cheque(code, by_cheque_amount), by_card(card)]),
    )
    .await;
    assert_json(&r, 201);
    assert_eq!(r.body["status"], "pending_payment", "{:#}", r.body);
    let payment = r.body["payment"]["payment_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no card payment: {:#}", r.body))
        .to_string();
    (id_of(&r), payment)
}

/// The sandbox settles a card payment (`succeed` or `fail`); waits for the pledge to reach `status`.
async fn settle_card(app: &TestApp, payment: &str, outcome: &str, pledge: &str, status: &str) {
    ok(
        app.post(&format!("/v1/sandbox/payments/{payment}/{outcome}"), json!({}))
            .await,
        200,
    )
    .await;
    app.wait_for(&format!("/v1/pledges/{pledge}"), |p| p["status"] == status)
        .await;
}

async fn cheque_pledge(app: &TestApp, offer: &str, investor: &str, shares: i64, code: &str, amount: &str) -> Value {
    let r = pledge_with(app, offer, investor, shares, json!([by_cheque(code, amount)])).await;
    assert_json(&r, 201);
    assert_eq!(r.body["status"], "funded", "{:#}", r.body);
    assert!(
        absent(&r.body, "payment"),
        "a cheque-only pledge has no card payment: {:#}",
        r.body
    );
    assert!(
        !r.body.to_string().contains(code),
        "the pledge shows the cheque code: {:#}",
        r.body
    );
    r.body
}

fn assert_refused(r: &Reply, reason: &str, case: &str) {
    assert_eq!(r.status.as_u16(), 422, "{case}: {:#}", r.body);
    r.assert_problem(422, "cheque_invalid");
    assert_eq!(r.body["reason"], reason, "{case}: {:#}", r.body);
}

async fn pledge(app: &TestApp, id: &str) -> Value {
    ok(app.get(&format!("/v1/pledges/{id}")).await, 200).await
}

async fn offer(app: &TestApp, id: &str) -> Value {
    ok(app.get(&format!("/v1/offers/{id}")).await, 200).await
}

async fn escrow(app: &TestApp, offer: &str) -> String {
    fixtures::balance(app, &format!("offer:{offer}:escrow")).await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

async fn events_of_type(app: &TestApp, event_type: &str) -> i64 {
    sqlx::query_scalar("select count(*) from outbox_events where event_type = $1")
        .bind(event_type)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// What a refused request must leave untouched: ledger rows, pledges, payments, cheques.
#[derive(Debug, PartialEq)]
struct Written {
    ledger: (i64, i64, i64),
    pledges: i64,
    payments: i64,
    cheques: i64,
}

async fn written(app: &TestApp) -> Written {
    Written {
        ledger: app.row_counts().await,
        pledges: count(app, "select count(*) from pledges").await,
        payments: count(app, "select count(*) from payments").await,
        cheques: count(app, "select count(*) from cheques").await,
    }
}

async fn advance(app: &TestApp, seconds: i64) {
    ok(
        app.post("/v1/sandbox/clock", json!({"advance_seconds": seconds})).await,
        200,
    )
    .await;
}

async fn eur_offer(app: &TestApp, project: &str, min: &str, max: &str, days: i64) -> String {
    fixtures::open_offer(app, project, json!({"min_target": min, "max_target": max}), days).await
}

/// Every check of the books passes, `cheques_balance` among them.
async fn verify_books(app: &TestApp) {
    app.assert_books_verify().await;
    let r = app.get("/v1/ledger/verify").await;
    let checks = r.body["checks"].as_array().expect("verify lists its checks");
    let cheques = checks
        .iter()
        .find(|c| c["name"] == "cheques_balance")
        .unwrap_or_else(|| panic!("no cheques_balance check: {:#}", r.body));
    assert_eq!(cheques["ok"], true, "{cheques:#}");
}

// ---------------------------------------------------------------------------------------------
// The story
// ---------------------------------------------------------------------------------------------

/// What most cheque tests start from: a sponsor funded with 10,000.00, a 2,000.00 cheque
/// expiring in `expires_in_days`, a project with one open EUR offer, and the winner.
struct World {
    app: TestApp,
    sponsor: String,
    id: String,
    code: String,
    project: String,
    offer: String,
    winner: String,
}

async fn world(pool: PgPool, expires_in_days: i64, min: &str, max: &str, offer_days: i64) -> World {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let (id, code) = issue(&app, &sponsor, "2000.00", expires_in_days, json!({})).await;
    let project = fixtures::published_project(&app).await;
    let offer = eur_offer(&app, &project, min, max, offer_days).await;
    let winner = investor_named(&app, "Awa Diallo").await;
    World {
        app,
        sponsor,
        id,
        code,
        project,
        offer,
        winner,
    }
}

#[sqlx::test]
async fn the_sensetour_prize_is_spent_in_two_rounds(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    assert_eq!(budget(&app, &sponsor).await, "10000.00");

    let expires_at = in_days(&app, 365);
    let body = cheque_body(
        &sponsor,
        "2000.00",
        &expires_at,
        json!({"memo": "SenseTour 2025, first prize"}),
    );
    let r = issue_raw(&app, &body, None).await;
    assert_json(&r, 201);
    let issued = r.body.clone();
    let id = id_of(&r);
    let code = issued["code"].as_str().expect("the code is shown once").to_string();
    assert_code_format(&code);
    assert_eq!(issued["status"], "active");
    assert_eq!(issued["face_value"], "2000.00");
    assert_eq!(issued["balance"], "2000.00");
    assert_eq!(issued["currency"], "EUR");
    assert_eq!(issued["sponsor_id"], sponsor.as_str());
    assert_eq!(issued["beneficiary_name"], "Awa Diallo");
    assert_eq!(issued["beneficiary_email"], "awa@example.org");
    assert_eq!(issued["eligible_themes"], json!([]));
    assert_eq!(issued["eligible_project_ids"], json!([]));
    assert_eq!(issued["memo"], "SenseTour 2025, first prize");
    let shown: DateTime<Utc> = issued["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(shown, expires_at.parse::<DateTime<Utc>>().unwrap());
    assert!(issued["created_at"].as_str().unwrap().parse::<DateTime<Utc>>().is_ok());

    // The value left the budget for the cheque's own account.
    assert_eq!(budget(&app, &sponsor).await, "8000.00");
    assert_eq!(
        fixtures::balance(&app, &format!("sponsor:{sponsor}:budget:eur")).await,
        "8000.00"
    );
    let read = assert_cheque(&app, &id, "active", "2000.00").await;
    let mut without_code = issued.clone();
    without_code.as_object_mut().unwrap().remove("code");
    let mut read = read.clone();
    read.as_object_mut().unwrap().remove("code");
    assert_eq!(read, without_code, "the read is the issued cheque without its code");

    // Offer A: the winner's €1,500 by cheque is funded at once; a friend adds €1,000 by card.
    let project_a = fixtures::published_project(&app).await;
    let project_b = fixtures::published_project(&app).await;
    let offer_a = eur_offer(&app, &project_a, "1000.00", "100000.00", 28).await;
    let offer_b = eur_offer(&app, &project_b, "1000.00", "100000.00", 28).await;
    let winner = fixtures::investor(&app, "Awa Diallo", "sophisticated").await;
    let first = cheque_pledge(&app, &offer_a, &winner, 150, &code, "1500.00").await;
    assert_eq!(first["amount"], "1500.00");
    assert_cheque(&app, &id, "active", "500.00").await;
    assert_eq!(escrow(&app, &offer_a).await, "1500.00");
    assert_eq!(offer(&app, &offer_a).await["shares_funded"], 150);
    let friend = investor_named(&app, "Bram Peeters").await;
    fixtures::funded_pledge(&app, &offer_a, &friend, 100).await;
    assert_eq!(escrow(&app, &offer_a).await, "2500.00");

    let closed = ok(app.post(&format!("/v1/offers/{offer_a}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    let first = pledge(&app, first["id"].as_str().unwrap()).await;
    assert_eq!(
        (first["status"].as_str(), first["allocated_shares"].as_i64()),
        (Some("allocated"), Some(150))
    );
    // The project gets 95% of the round's €2,500, cheque part included.
    assert_eq!(
        fixtures::balance(&app, &format!("project:{project_a}:payable:eur")).await,
        "2375.00"
    );
    assert_eq!(fixtures::balance(&app, "platform:fees:eur").await, "125.00");
    assert_eq!(escrow(&app, &offer_a).await, "0.00");
    assert_cheque(&app, &id, "active", "500.00").await;

    // Offer B: the last €500. The cheque is spent.
    cheque_pledge(&app, &offer_b, &winner, 50, &code, "500.00").await;
    assert_cheque(&app, &id, "spent", "0.00").await;
    assert_eq!(escrow(&app, &offer_b).await, "500.00");
    let r = pledge_with(&app, &offer_b, &winner, 1, json!([by_cheque(&code, "10.00")])).await;
    assert_refused(&r, "insufficient_balance", "a spent cheque");

    // The sponsor paid once; the events tell the story.
    assert_eq!(budget(&app, &sponsor).await, "8000.00");
    assert_eq!(events_of_type(&app, "cheque.issued").await, 1);
    assert_eq!(events_of_type(&app, "cheque.redeemed").await, 2);
    assert_eq!(events_of_type(&app, "cheque.expired").await, 0);
    verify_books(&app).await;
}

// ---------------------------------------------------------------------------------------------
// Giving back
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn a_failed_round_gives_the_value_back_to_the_cheque_to_spend_again(pool: PgPool) {
    let World {
        app,
        sponsor,
        id,
        code,
        project,
        offer: doomed,
        winner,
    } = world(pool, 365, "100000.00", "150000.00", 7).await;
    let p = cheque_pledge(&app, &doomed, &winner, 200, &code, "2000.00").await;
    assert_cheque(&app, &id, "spent", "0.00").await;

    // The round closes far below its minimum.
    advance(&app, 8 * DAY).await;
    app.wait_for(&format!("/v1/offers/{doomed}"), |o| o["status"] == "failed")
        .await;
    assert_eq!(pledge(&app, p["id"].as_str().unwrap()).await["status"], "refunded");
    assert_cheque(&app, &id, "active", "2000.00").await;
    assert_eq!(escrow(&app, &doomed).await, "0.00");
    // Nothing went to the card provider, nothing to the sponsor.
    assert_eq!(fixtures::balance(&app, "refunds:sandbox:eur").await, "0.00");
    assert_eq!(budget(&app, &sponsor).await, "8000.00");

    // Spent again, in full, elsewhere.
    let other = eur_offer(&app, &project, "1000.00", "100000.00", 28).await;
    cheque_pledge(&app, &other, &winner, 200, &code, "2000.00").await;
    assert_cheque(&app, &id, "spent", "0.00").await;
    assert_eq!(escrow(&app, &other).await, "2000.00");
    verify_books(&app).await;
}

#[sqlx::test]
async fn a_round_failing_after_the_cheque_expired_gives_the_value_to_the_sponsor(pool: PgPool) {
    let World {
        app,
        sponsor,
        id,
        code,
        offer: doomed,
        winner,
        ..
    } = world(pool, 3, "100000.00", "150000.00", 7).await;
    let p = cheque_pledge(&app, &doomed, &winner, 150, &code, "1500.00").await;
    assert_cheque(&app, &id, "active", "500.00").await;

    // Day 4: the cheque expires; its unspent €500 goes back to the sponsor.
    advance(&app, 4 * DAY).await;
    app.wait_for(&format!("/v1/cheques/{id}"), |c| c["status"] == "expired")
        .await;
    assert_cheque(&app, &id, "expired", "0.00").await;
    assert_eq!(budget(&app, &sponsor).await, "8500.00");
    assert_eq!(events_of_type(&app, "cheque.expired").await, 1);
    assert_eq!(offer(&app, &doomed).await["status"], "open");

    // Day 8: the round fails; the €1,500 cannot go back to an expired cheque: the sponsor gets it.
    advance(&app, 4 * DAY).await;
    app.wait_for(&format!("/v1/offers/{doomed}"), |o| o["status"] == "failed")
        .await;
    assert_eq!(pledge(&app, p["id"].as_str().unwrap()).await["status"], "refunded");
    assert_cheque(&app, &id, "expired", "0.00").await;
    assert_eq!(budget(&app, &sponsor).await, "10000.00");
    assert_eq!(escrow(&app, &doomed).await, "0.00");
    assert_eq!(fixtures::balance(&app, "refunds:sandbox:eur").await, "0.00");
    verify_books(&app).await;
}

#[sqlx::test]
async fn a_mixed_cheque_and_card_pledge_is_funded_when_the_card_is_paid(pool: PgPool) {
    let World {
        app,
        id,
        code,
        offer: offer_id,
        winner,
        ..
    } = world(pool, 365, "1000.00", "100000.00", 28).await;

    let (id_pledge, payment) = mixed_pledge(&app, &offer_id, &winner, 100, (&code, "600.00"), "400.00").await;
    // The cheque part is taken at once.
    assert_cheque(&app, &id, "active", "1400.00").await;

    settle_card(&app, &payment, "succeed", &id_pledge, "funded").await;
    assert_eq!(escrow(&app, &offer_id).await, "1000.00");
    assert_eq!(offer(&app, &offer_id).await["shares_funded"], 100);
    assert_cheque(&app, &id, "active", "1400.00").await;
    verify_books(&app).await;
}

#[sqlx::test]
async fn a_mixed_pledge_whose_card_payment_fails_gives_the_cheque_part_back(pool: PgPool) {
    let World {
        app,
        sponsor,
        id,
        code,
        offer: offer_id,
        winner,
        ..
    } = world(pool, 365, "1000.00", "100000.00", 28).await;

    let (id_pledge, payment) = mixed_pledge(&app, &offer_id, &winner, 100, (&code, "600.00"), "400.00").await;
    assert_cheque(&app, &id, "active", "1400.00").await;

    settle_card(&app, &payment, "fail", &id_pledge, "cancelled").await;
    assert_cheque(&app, &id, "active", "2000.00").await;
    let o = offer(&app, &offer_id).await;
    assert_eq!(
        (o["shares_reserved"].as_i64(), o["shares_funded"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(escrow(&app, &offer_id).await, "0.00");
    assert_eq!(fixtures::balance(&app, "refunds:sandbox:eur").await, "0.00");
    assert_eq!(budget(&app, &sponsor).await, "8000.00");

    // The whole value is there to spend.
    cheque_pledge(&app, &offer_id, &winner, 200, &code, "2000.00").await;
    assert_cheque(&app, &id, "spent", "0.00").await;
    verify_books(&app).await;
}

#[sqlx::test]
async fn an_unpaid_mixed_pledge_gives_the_cheque_part_back_when_its_window_lapses(pool: PgPool) {
    let World {
        app,
        sponsor,
        id,
        code,
        offer: offer_id,
        winner,
        ..
    } = world(pool, 365, "1000.00", "100000.00", 28).await;
    let (id_pledge, _payment) = mixed_pledge(&app, &offer_id, &winner, 100, (&code, "700.00"), "300.00").await;
    assert_cheque(&app, &id, "active", "1300.00").await;

    // The default payment window is 30 minutes.
    advance(&app, 31 * 60).await;
    app.wait_for(&format!("/v1/pledges/{id_pledge}"), |p| p["status"] == "cancelled")
        .await;
    assert_cheque(&app, &id, "active", "2000.00").await;
    assert_eq!(budget(&app, &sponsor).await, "8000.00");
    verify_books(&app).await;
}

#[sqlx::test]
async fn a_revoked_pledge_gives_the_cheque_part_back_and_refunds_the_card_part(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let (id, code) = issue(&app, &sponsor, "2000.00", 365, json!({})).await;
    let project = fixtures::published_project(&app).await;
    let offer_id = eur_offer(&app, &project, "1000.00", "100000.00", 28).await;
    // Non-sophisticated: 4 days to revoke; tickets under €1,000 need no risk warning.
    let carol = fixtures::investor(&app, "Carol", "non_sophisticated").await;

    let by_cheque_only = cheque_pledge(&app, &offer_id, &carol, 40, &code, "400.00").await;
    let (mixed, payment) = mixed_pledge(&app, &offer_id, &carol, 60, (&code, "300.00"), "300.00").await;
    settle_card(&app, &payment, "succeed", &mixed, "funded").await;
    assert_cheque(&app, &id, "active", "1300.00").await;
    assert_eq!(escrow(&app, &offer_id).await, "1000.00");

    let only = by_cheque_only["id"].as_str().unwrap();
    let revoked = ok(app.post(&format!("/v1/pledges/{only}/revoke"), json!({})).await, 200).await;
    assert_eq!(revoked["status"], "revoked");
    assert_cheque(&app, &id, "active", "1700.00").await;
    assert_eq!(fixtures::balance(&app, "refunds:sandbox:eur").await, "0.00");

    let revoked = ok(app.post(&format!("/v1/pledges/{mixed}/revoke"), json!({})).await, 200).await;
    assert_eq!(revoked["status"], "revoked");
    // The cheque gets its €300; the card's €300 goes back through the provider.
    assert_cheque(&app, &id, "active", "2000.00").await;
    assert_eq!(fixtures::balance(&app, "refunds:sandbox:eur").await, "300.00");
    assert_eq!(escrow(&app, &offer_id).await, "0.00");
    assert_eq!(budget(&app, &sponsor).await, "8000.00");
    verify_books(&app).await;
}

// ---------------------------------------------------------------------------------------------
// Ending a cheque: cancel and expiry
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn cancelling_a_cheque_gives_its_rest_back_to_the_sponsor(pool: PgPool) {
    let World {
        app,
        sponsor,
        id,
        code,
        offer: offer_id,
        winner,
        ..
    } = world(pool, 30, "1000.00", "100000.00", 28).await;
    let p = cheque_pledge(&app, &offer_id, &winner, 50, &code, "500.00").await;

    let r = cancel(&app, &id).await;
    assert_json(&r, 200);
    assert_eq!(
        (r.body["status"].as_str(), r.body["balance"].as_str()),
        (Some("cancelled"), Some("0.00")),
        "{:#}",
        r.body
    );
    assert_eq!(r.body["face_value"], "2000.00");
    assert!(absent(&r.body, "code"), "{:#}", r.body);
    assert_cheque(&app, &id, "cancelled", "0.00").await;
    assert_eq!(budget(&app, &sponsor).await, "9500.00");
    // What was already spent stays spent.
    assert_eq!(pledge(&app, p["id"].as_str().unwrap()).await["status"], "funded");
    assert_eq!(escrow(&app, &offer_id).await, "500.00");

    let before = written(&app).await;
    cancel(&app, &id).await.assert_problem(409, "invalid_state_transition");
    assert_eq!(written(&app).await, before);
    assert_eq!(budget(&app, &sponsor).await, "9500.00");
    cancel(&app, &uuid::Uuid::now_v7().to_string())
        .await
        .assert_problem(404, "not_found");
    verify_books(&app).await;
}

#[sqlx::test]
async fn an_expired_cheque_gives_its_rest_back_to_the_sponsor(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let (id, code) = issue(&app, &sponsor, "2000.00", 2, json!({})).await;
    let (untouched, _) = issue(&app, &sponsor, "1000.00", 30, json!({})).await;
    let project = fixtures::published_project(&app).await;
    let offer_id = eur_offer(&app, &project, "1000.00", "100000.00", 28).await;
    let winner = investor_named(&app, "Awa Diallo").await;
    let p = cheque_pledge(&app, &offer_id, &winner, 30, &code, "300.00").await;
    assert_eq!(budget(&app, &sponsor).await, "7000.00");

    advance(&app, 3 * DAY).await;
    app.wait_for(&format!("/v1/cheques/{id}"), |c| c["status"] == "expired")
        .await;
    assert_cheque(&app, &id, "expired", "0.00").await;
    assert_eq!(budget(&app, &sponsor).await, "8700.00");
    assert_eq!(events_of_type(&app, "cheque.expired").await, 1);
    // A cheque not yet due is left alone; the pledge made before expiry stands.
    assert_cheque(&app, &untouched, "active", "1000.00").await;
    assert_eq!(pledge(&app, p["id"].as_str().unwrap()).await["status"], "funded");
    assert_eq!(escrow(&app, &offer_id).await, "300.00");

    cancel(&app, &id).await.assert_problem(409, "invalid_state_transition");
    assert_eq!(budget(&app, &sponsor).await, "8700.00");
    verify_books(&app).await;
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn a_hundred_concurrent_redemptions_never_overspend_a_cheque(pool: PgPool) {
    const ATTEMPTS: usize = 100;
    let wide = common::wide_pool(&pool, 40).await;
    let app = TestApp::spawn(wide).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let (id, code) = issue(&app, &sponsor, "2000.00", 365, json!({})).await;
    let project = fixtures::published_project(&app).await;
    let offer_id = eur_offer(&app, &project, "1000.00", "150000.00", 28).await;
    let investors = fixtures::investors(&app, ATTEMPTS).await;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(ATTEMPTS)
        .build()
        .unwrap();
    let replies = common::race(ATTEMPTS, |i| {
        let request = client
            .post(format!("{}/v1/offers/{offer_id}/pledges", app.base))
            .bearer_auth(OPERATOR_KEY)
            .header("idempotency-key", format!("redeem-{i}"))
            .json(
                &json!({"investor_id": investors[i], "shares": 10, "funding": [by_cheque(&code, "100.00")],
                          "kiis_sha256": fixtures::KIIS_SHA256}),
            );
        async move { common::read(request.send().await.unwrap()).await }
    })
    .await;
    let (mut funded, mut refused) = (0, 0);
    for reply in replies {
        match reply.status.as_u16() {
            201 => {
                assert_eq!(reply.body["status"], "funded", "{:#}", reply.body);
                funded += 1;
            }
            422 => {
                assert_refused(&reply, "insufficient_balance", "concurrent redemption");
                refused += 1;
            }
            other => panic!("unexpected {other}: {:#}", reply.body),
        }
    }
    assert_eq!((funded, refused), (20, ATTEMPTS - 20));
    assert_cheque(&app, &id, "spent", "0.00").await;
    assert_eq!(count(&app, "select count(*) from pledges").await, 20);
    assert_eq!(offer(&app, &offer_id).await["shares_funded"], 200);
    assert_eq!(escrow(&app, &offer_id).await, "2000.00");
    assert_eq!(events_of_type(&app, "cheque.redeemed").await, 20);
    verify_books(&app).await;
}

#[sqlx::test]
async fn concurrent_issues_never_overdraw_the_sponsor_budget(pool: PgPool) {
    const ATTEMPTS: usize = 30;
    let wide = common::wide_pool(&pool, 40).await;
    let app = TestApp::spawn(wide).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "1000.00").await;
    let expires_at = in_days(&app, 365);
    let replies = common::race(ATTEMPTS, |i| {
        let body = cheque_body(
            &sponsor,
            "100.00",
            &expires_at,
            json!({"beneficiary_email": format!("winner{i}@example.org")}),
        );
        let request = app
            .client
            .post(format!("{}/v1/cheques", app.base))
            .bearer_auth(OPERATOR_KEY)
            .json(&body);
        async move { common::read(request.send().await.unwrap()).await }
    })
    .await;
    let mut codes = HashSet::new();
    let mut refused = 0;
    for reply in replies {
        match reply.status.as_u16() {
            201 => {
                let code = reply.body["code"].as_str().unwrap().to_string();
                assert_code_format(&code);
                codes.insert(code);
            }
            422 => {
                reply.assert_problem(422, "insufficient_sponsor_budget");
                refused += 1;
            }
            other => panic!("unexpected {other}: {:#}", reply.body),
        }
    }
    assert_eq!(
        (codes.len(), refused),
        (10, ATTEMPTS - 10),
        "ten cheques, each its own code"
    );
    assert_eq!(budget(&app, &sponsor).await, "0.00");
    assert_eq!(count(&app, "select count(*) from cheques").await, 10);
    assert_eq!(events_of_type(&app, "cheque.issued").await, 10);
    verify_books(&app).await;
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn each_refused_redemption_says_why_and_writes_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "20000.00").await;
    let usd_sponsor = funded_usd_sponsor(&app, "5000.00").await;
    let project = fixtures::published_project(&app).await; // themes: employment, inclusion
    let other_project = fixtures::published_project(&app).await;
    let offer_id = eur_offer(&app, &project, "1000.00", "100000.00", 28).await;

    let (good, good_code) = issue(&app, &sponsor, "2000.00", 365, json!({})).await;
    let (soon, soon_code) = issue(&app, &sponsor, "1000.00", 1, json!({})).await;
    let (_, usd_code) = issue(&app, &usd_sponsor, "1000.00", 365, json!({"currency": "USD"})).await;
    let (_, elsewhere_code) = issue(
        &app,
        &sponsor,
        "1000.00",
        365,
        json!({"eligible_project_ids": [other_project]}),
    )
    .await;
    let (_, green_code) = issue(
        &app,
        &sponsor,
        "1000.00",
        365,
        json!({"eligible_themes": ["environment"]}),
    )
    .await;
    let (cancelled, cancelled_code) = issue(&app, &sponsor, "1000.00", 365, json!({})).await;
    assert_json(&cancel(&app, &cancelled).await, 200);
    advance(&app, 2 * DAY).await;

    // Past its expiry the cheque is refused at once, whether or not the expiry job has acted yet.
    let early = investor_named(&app, "Early").await;
    let r = pledge_with(&app, &offer_id, &early, 10, json!([by_cheque(&soon_code, "100.00")])).await;
    assert_refused(&r, "expired", "an expired cheque, at once");
    assert_eq!(count(&app, "select count(*) from pledges").await, 0);
    // The job gives its value back to the sponsor (a ledger entry): let it, before counting rows.
    app.wait_for(&format!("/v1/cheques/{soon}"), |c| c["status"] == "expired")
        .await;

    let cases = [
        (
            "a mistyped code",
            wrong_code(&good_code, 0),
            10,
            "100.00",
            "unknown_code",
        ),
        ("an expired cheque", soon_code.clone(), 10, "100.00", "expired"),
        (
            "a USD cheque on a EUR offer",
            usd_code,
            10,
            "100.00",
            "currency_mismatch",
        ),
        (
            "a cheque for another project",
            elsewhere_code,
            10,
            "100.00",
            "project_not_eligible",
        ),
        (
            "a cheque for another theme",
            green_code,
            10,
            "100.00",
            "theme_not_eligible",
        ),
        ("a cancelled cheque", cancelled_code, 10, "100.00", "cancelled"),
        (
            "more than the balance",
            good_code.clone(),
            201,
            "2010.00",
            "insufficient_balance",
        ),
        (
            "more than the balance, with a card",
            good_code.clone(),
            300,
            "2000.01",
            "insufficient_balance",
        ),
    ];
    for (i, (case, code, shares, amount, reason)) in cases.into_iter().enumerate() {
        // A new investor each time: one wrong code must not throttle the next case.
        let who = investor_named(&app, &format!("Investor {i}")).await;
        let mut funding = vec![by_cheque(&code, amount)];
        let cheque_part: rust_decimal::Decimal = amount.parse().unwrap();
        let rest = rust_decimal::Decimal::from(shares * 10) - cheque_part;
        if rest > rust_decimal::Decimal::ZERO {
            funding.push(by_card(&format!("{rest:.2}")));
        }
        let before = written(&app).await;
        let r = pledge_with(&app, &offer_id, &who, shares, json!(funding)).await;
        assert_refused(&r, reason, case);
        assert_eq!(written(&app).await, before, "{case}: something was written");
    }

    // Nothing moved on the offer or the good cheque; the restrictions accept what they name.
    let o = offer(&app, &offer_id).await;
    assert_eq!(
        (o["shares_reserved"].as_i64(), o["pledge_count"].as_i64()),
        (Some(0), Some(0)),
        "{o:#}"
    );
    assert_cheque(&app, &good, "active", "2000.00").await;
    let (_, here_code) = issue(
        &app,
        &sponsor,
        "100.00",
        365,
        json!({"eligible_project_ids": [project]}),
    )
    .await;
    let (_, inclusive_code) = issue(&app, &sponsor, "100.00", 365, json!({"eligible_themes": ["inclusion"]})).await;
    let who = investor_named(&app, "Eligible").await;
    cheque_pledge(&app, &offer_id, &who, 10, &here_code, "100.00").await;
    cheque_pledge(&app, &offer_id, &who, 10, &inclusive_code, "100.00").await;
    cheque_pledge(&app, &offer_id, &who, 200, &good_code, "2000.00").await;
    assert_cheque(&app, &good, "spent", "0.00").await;
    verify_books(&app).await;
}

#[sqlx::test]
async fn a_cheque_beyond_the_sponsor_budget_is_refused_and_nothing_is_written(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let empty = fixtures::sponsor(&app, "Nobody Yet").await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "1000.00").await;
    let before = written(&app).await;
    for (who, face) in [(&empty, "10.00"), (&sponsor, "1000.01")] {
        let body = cheque_body(who, face, &in_days(&app, 30), json!({}));
        issue_raw(&app, &body, None)
            .await
            .assert_problem(422, "insufficient_sponsor_budget");
    }
    assert_eq!(written(&app).await, before);
    assert_eq!(events_of_type(&app, "cheque.issued").await, 0);
    assert_eq!(budget(&app, &sponsor).await, "1000.00");

    // To the cent, it fits; then nothing is left.
    let (id, _) = issue(&app, &sponsor, "1000.00", 30, json!({})).await;
    assert_cheque(&app, &id, "active", "1000.00").await;
    assert_eq!(budget(&app, &sponsor).await, "0.00");
    let body = cheque_body(&sponsor, "0.01", &in_days(&app, 30), json!({}));
    issue_raw(&app, &body, None)
        .await
        .assert_problem(422, "insufficient_sponsor_budget");
    assert_eq!(count(&app, "select count(*) from cheques").await, 1);
    verify_books(&app).await;
}

// ---------------------------------------------------------------------------------------------
// Issuing: validation, access, idempotency, the code's secrecy
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn bad_cheques_are_refused_and_nothing_is_written(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let later = in_days(&app, 30);
    let yesterday = in_days(&app, -1);
    let unknown_sponsor = uuid::Uuid::now_v7().to_string();
    let mut missing_email = cheque_body(&sponsor, "100.00", &later, json!({}));
    missing_email.as_object_mut().unwrap().remove("beneficiary_email");
    let cases = [
        ("empty name", json!({"beneficiary_name": ""})),
        ("bad email", json!({"beneficiary_email": "not-an-address"})),
        ("zero face value", json!({"face_value": "0.00"})),
        ("negative face value", json!({"face_value": "-5.00"})),
        ("face value as a number", json!({"face_value": 100})),
        ("too many decimals", json!({"face_value": "10.001"})),
        ("expiry in the past", json!({"expires_at": yesterday})),
        ("expiry not a time", json!({"expires_at": "next summer"})),
        ("unknown sponsor", json!({"sponsor_id": unknown_sponsor})),
        ("unknown theme", json!({"eligible_themes": ["space"]})),
        ("project id not a uuid", json!({"eligible_project_ids": ["not-a-uuid"]})),
    ];
    let before = written(&app).await;
    for (case, extra) in cases {
        let body = cheque_body(&sponsor, "100.00", &later, extra);
        let r = issue_raw(&app, &body, None).await;
        assert_eq!(r.status.as_u16(), 422, "{case}: {:#}", r.body);
        r.assert_problem(422, "validation_failed");
    }
    issue_raw(&app, &missing_email, None)
        .await
        .assert_problem(422, "validation_failed");
    let usd = cheque_body(&sponsor, "100.00", &later, json!({"currency": "USD"}));
    issue_raw(&app, &usd, None)
        .await
        .assert_problem(422, "currency_mismatch");
    assert_eq!(written(&app).await, before);
    assert_eq!(budget(&app, &sponsor).await, "10000.00");
    assert_eq!(events_of_type(&app, "cheque.issued").await, 0);
    verify_books(&app).await;
}

#[sqlx::test]
async fn only_operators_issue_read_and_cancel_cheques(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let (id, _) = issue(&app, &sponsor, "2000.00", 30, json!({})).await;
    let body = cheque_body(&sponsor, "100.00", &in_days(&app, 30), json!({}));
    for role in [Role::Platform, Role::Auditor] {
        let key = app.key(role).await;
        send_as(&app, Method::POST, "/v1/cheques", &key, &[], Some(&body))
            .await
            .assert_problem(403, "forbidden");
        send_as(&app, Method::GET, &format!("/v1/cheques/{id}"), &key, &[], None)
            .await
            .assert_problem(403, "forbidden");
        send_as(
            &app,
            Method::POST,
            &format!("/v1/cheques/{id}/cancel"),
            &key,
            &[],
            Some(&json!({})),
        )
        .await
        .assert_problem(403, "forbidden");
    }
    send(&app, Method::POST, "/v1/cheques", &[], Some(&body))
        .await
        .assert_problem(401, "unauthorized");
    assert_eq!(count(&app, "select count(*) from cheques").await, 1);
    assert_cheque(&app, &id, "active", "2000.00").await;
    assert_eq!(budget(&app, &sponsor).await, "8000.00");

    app.get(&format!("/v1/cheques/{}", uuid::Uuid::now_v7()))
        .await
        .assert_problem(404, "not_found");
    app.get("/v1/cheques/not-a-uuid").await.assert_problem(404, "not_found");
    verify_books(&app).await;
}

#[sqlx::test]
async fn a_replayed_issue_is_one_cheque_and_the_code_is_shown_once_and_stored_nowhere(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let body = cheque_body(&sponsor, "2000.00", &in_days(&app, 365), json!({"memo": "first prize"}));
    let first = issue_raw(&app, &body, Some("prize-2025-1")).await;
    assert_json(&first, 201);
    let code = first.body["code"].as_str().expect("shown the first time").to_string();
    assert_code_format(&code);
    let id = id_of(&first);

    let again = issue_raw(&app, &body, Some("prize-2025-1")).await;
    assert_json(&again, 201);
    assert_eq!(again.body["id"], id.as_str());
    assert!(again.body["code"].is_null(), "a replay shows no code: {:#}", again.body);
    let mut expected = first.body.clone();
    expected["code"] = Value::Null;
    assert_eq!(again.body, expected, "a replay is the same answer, but for the code");

    let mut other = body.clone();
    other["face_value"] = json!("2000.01");
    issue_raw(&app, &other, Some("prize-2025-1"))
        .await
        .assert_problem(422, "idempotency_key_reused");
    assert_eq!(count(&app, "select count(*) from cheques").await, 1);
    assert_eq!(budget(&app, &sponsor).await, "8000.00");
    assert_eq!(events_of_type(&app, "cheque.issued").await, 1);

    // A read never shows it.
    let read = app.get(&format!("/v1/cheques/{id}")).await;
    assert_json(&read, 200);
    assert!(!read.body.to_string().contains(&code), "{:#}", read.body);

    // Spend it, then look for it in every table: not there in clear, with or without dashes.
    let project = fixtures::published_project(&app).await;
    let offer_id = eur_offer(&app, &project, "1000.00", "100000.00", 28).await;
    let winner = investor_named(&app, "Awa Diallo").await;
    cheque_pledge(&app, &offer_id, &winner, 50, &code, "500.00").await;
    assert_cheque(&app, &id, "active", "1500.00").await;
    let compact: String = code.trim_start_matches("CHQ-").replace('-', "");
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables
          where table_schema = current_schema() and table_type = 'BASE TABLE'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "cheques"), "{tables:?}");
    for table in tables {
        let sql = format!(
            "select count(*) from \"{table}\" t
              where strpos(upper(to_jsonb(t)::text), $1) > 0 or strpos(upper(to_jsonb(t)::text), $2) > 0"
        );
        let hits: i64 = sqlx::query_scalar(&sql)
            .bind(&code)
            .bind(&compact)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(hits, 0, "the cheque code is stored in clear in {table}");
    }
    verify_books(&app).await;
}

// ---------------------------------------------------------------------------------------------
// Guessing codes
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn five_wrong_codes_block_the_investor_for_an_hour(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let (id, code) = issue(&app, &sponsor, "2000.00", 365, json!({})).await;
    let project = fixtures::published_project(&app).await;
    let offer_id = eur_offer(&app, &project, "1000.00", "100000.00", 28).await;
    let guesser = investor_named(&app, "Mallory").await;

    for n in 0..5 {
        let r = pledge_with(
            &app,
            &offer_id,
            &guesser,
            10,
            json!([by_cheque(&wrong_code(&code, n), "100.00")]),
        )
        .await;
        assert_refused(&r, "unknown_code", &format!("wrong code {}", n + 1));
    }

    // The sixth attempt is refused before the code is even looked at, right code or not.
    let before = written(&app).await;
    let r = pledge_with(&app, &offer_id, &guesser, 10, json!([by_cheque(&code, "100.00")])).await;
    r.assert_problem(429, "too_many_attempts");
    let retry_after: u64 = r
        .headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no retry-after: {:?}", r.headers))
        .to_str()
        .unwrap()
        .parse()
        .expect("retry-after in seconds");
    assert!((1..=3600).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(written(&app).await, before);
    assert_cheque(&app, &id, "active", "2000.00").await;

    // An hour later the honest code works.
    advance(&app, 3600).await;
    cheque_pledge(&app, &offer_id, &guesser, 10, &code, "100.00").await;
    assert_cheque(&app, &id, "active", "1900.00").await;
    verify_books(&app).await;
}

#[sqlx::test]
async fn unallocated_shares_give_the_card_money_back_first_then_the_cheques(pool: PgPool) {
    let World {
        app,
        sponsor,
        id,
        code,
        project,
        winner,
        ..
    } = world(pool, 365, "1000.00", "100000.00", 28).await;
    // 100 shares on offer, 200 pledged: pro rata, each pledge gets half.
    let terms = json!({"min_target": "100.00", "max_target": "1000.00", "allocation": "pro_rata"});
    let offer_id = fixtures::open_offer(&app, &project, terms, 28).await;
    let (mixed, payment) = mixed_pledge(&app, &offer_id, &winner, 100, (&code, "600.00"), "400.00").await;
    settle_card(&app, &payment, "succeed", &mixed, "funded").await;
    let other = investor_named(&app, "Bram Peeters").await;
    fixtures::funded_pledge(&app, &offer_id, &other, 100).await;
    let all_cheque = investor_named(&app, "Chloé Dubois").await;
    let (second, second_code) = issue(&app, &sponsor, "500.00", 365, json!({})).await;
    cheque_pledge(&app, &offer_id, &all_cheque, 50, &second_code, "500.00").await;

    ok(app.post(&format!("/v1/offers/{offer_id}/close"), json!({})).await, 200).await;
    app.wait_for(&format!("/v1/offers/{offer_id}"), |o| o["status"] == "succeeded")
        .await;
    let allocated = |p: &Value| (p["allocated_shares"].as_i64(), p["refunded_amount"].clone());
    // 250 shares pledged for 100: 40, 40 and 20 by largest remainder.
    assert_eq!(allocated(&pledge(&app, &mixed).await), (Some(40), json!("600.00")));
    assert_eq!(
        allocated(&pledge(&app, &pledge_of(&app, &offer_id, &all_cheque).await).await),
        (Some(20), json!("300.00"))
    );
    // The winner's 600.00 back: the 400.00 card part to the card, then 200.00 to the cheque.
    assert_cheque(&app, &id, "active", "1600.00").await;
    assert_cheque(&app, &second, "active", "300.00").await;
    let owed: Vec<(String, String)> = sqlx::query_as(
        "select r.amount::text, r.reason from refunds r join pledges p on p.id = r.pledge_id
          where p.investor_id = $1::uuid",
    )
    .bind(&winner)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(owed, [("400.00".to_string(), "not_allocated".to_string())]);
    assert_eq!(escrow(&app, &offer_id).await, "0.00");
    verify_books(&app).await;
}

/// A pro-rata close gives back the unallocated card money of every pledge in one ledger entry,
/// with one refund per pledge that the provider confirms on its own; a mixed pledge's cheque
/// part still goes back to its cheque.
#[sqlx::test]
async fn a_pro_rata_close_owes_all_card_refunds_in_one_entry_each_confirmed_on_its_own(pool: PgPool) {
    let World {
        app,
        id,
        code,
        project,
        winner,
        ..
    } = world(pool, 365, "1000.00", "100000.00", 28).await;
    // 100 shares on offer at 10.00, 250 pledged: quotas 0.4 × shares.
    let terms = json!({"min_target": "100.00", "max_target": "1000.00", "allocation": "pro_rata"});
    let offer_id = fixtures::open_offer(&app, &project, terms, 28).await;
    let mut by_card = Vec::new();
    for (i, shares) in [33, 47, 61, 29, 41].into_iter().enumerate() {
        let who = investor_named(&app, &format!("Investor {i}")).await;
        let p = fixtures::funded_pledge(&app, &offer_id, &who, shares).await;
        by_card.push(p["id"].as_str().unwrap().to_string());
    }
    // 39 shares, 390.00: 240.00 by cheque, 150.00 by card.
    let (mixed, payment) = mixed_pledge(&app, &offer_id, &winner, 39, (&code, "240.00"), "150.00").await;
    settle_card(&app, &payment, "succeed", &mixed, "funded").await;

    let closed = ok(app.post(&format!("/v1/offers/{offer_id}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    // 13.2, 18.8, 24.4, 11.6, 16.4 and 15.6: the three shares left go to .8, then the .6 ties
    // by arrival.
    let mut expected: Vec<(String, i64, &str)> = by_card
        .iter()
        .cloned()
        .zip([
            (13, "200.00"),
            (19, "280.00"),
            (24, "370.00"),
            (12, "170.00"),
            (16, "250.00"),
        ])
        .map(|(id, (allocated, back))| (id, allocated, back))
        .collect();
    expected.push((mixed.clone(), 16, "150.00"));
    let refunds: Vec<(String, String, String, String, Option<uuid::Uuid>)> = sqlx::query_as(
        "select pledge_id::text, amount::text, reason, provider_refund_id, owed_entry_id from refunds order by pledge_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(refunds.len(), 6, "{refunds:?}");
    for (pledge_id, allocated, back) in &expected {
        let p = pledge(&app, pledge_id).await;
        assert_eq!(p["allocated_shares"], *allocated, "{p:#}");
        let refund = refunds.iter().find(|r| &r.0 == pledge_id).unwrap();
        assert_eq!((refund.1.as_str(), refund.2.as_str()), (*back, "not_allocated"));
    }
    // The mixed pledge gets 230.00 back: its 150.00 card part to the card, 80.00 to the cheque.
    assert_eq!(pledge(&app, &mixed).await["refunded_amount"], "230.00");
    assert_cheque(&app, &id, "active", "1840.00").await;
    assert_eq!(escrow(&app, &offer_id).await, "0.00");
    assert_eq!(fixtures::balance(&app, "refunds:sandbox:eur").await, "1420.00");
    // One entry owes them all, and every refund names it.
    let owed: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "select e.id, sum(p.amount)::text from ledger_entries e join ledger_postings p on p.entry_id = e.id
          where e.kind = 'pledge.refund' and p.side = 'debit' group by e.id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert_eq!(owed[0].1, "1420.00");
    assert!(refunds.iter().all(|r| r.4 == Some(owed[0].0)), "{refunds:?}");
    assert_eq!(events_of_type(&app, "pledge.refunded").await, 6);
    verify_books(&app).await;

    // The provider confirms each refund on its own: refunds → psp, once each.
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("select id from refunds")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    for id in &ids {
        let path = format!("/v1/sandbox/refunds/{id}/succeed");
        assert_eq!(ok(app.post(&path, json!({})).await, 200).await["status"], "succeeded");
        assert_eq!(ok(app.post(&path, json!({})).await, 200).await["status"], "succeeded");
    }
    assert_eq!(events_of_type(&app, "refund.succeeded").await, 6);
    assert_eq!(fixtures::balance(&app, "refunds:sandbox:eur").await, "0.00");
    assert_eq!(
        count(
            &app,
            "select count(*) from refunds where status = 'succeeded' and settled_at is not null"
        )
        .await,
        6
    );
    // The sponsor's 10,000.00 deposit, 2,260.00 of card payments, 1,420.00 refunded.
    assert_eq!(fixtures::balance(&app, "psp:sandbox:eur").await, "10840.00");
    verify_books(&app).await;
}

/// The one pledge `investor` made on `offer`.
async fn pledge_of(app: &TestApp, offer: &str, investor: &str) -> String {
    let pledges = fixtures::pledges_of(app, offer).await;
    let mine: Vec<&Value> = pledges.iter().filter(|p| p["investor_id"] == investor).collect();
    assert_eq!(mine.len(), 1);
    mine[0]["id"].as_str().unwrap().to_string()
}

/// A cheque names real projects, one of which can take pledges; a project archived later leaves
/// the cheque valid for the others it names (PRODUCT.md section 13).
#[sqlx::test]
async fn a_cheques_projects_are_real_and_one_archived_leaves_the_others(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let expires = in_days(&app, 60);
    let (first, second) = (
        fixtures::published_project(&app).await,
        fixtures::published_project(&app).await,
    );
    let issued_before = written(&app).await;

    let unknown = uuid::Uuid::new_v4().to_string();
    let r = issue_raw(
        &app,
        &cheque_body(
            &sponsor,
            "500.00",
            &expires,
            json!({"eligible_project_ids": [first, unknown]}),
        ),
        None,
    )
    .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "eligible_project_ids", "{:#}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains(&unknown), "{:#}", r.body);

    // Archived before the issue, alone: a cheque that could never be spent.
    ok(app.post(&format!("/v1/projects/{first}/archive"), json!({})).await, 200).await;
    let r = issue_raw(
        &app,
        &cheque_body(&sponsor, "500.00", &expires, json!({"eligible_project_ids": [first]})),
        None,
    )
    .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "eligible_project_ids", "{:#}", r.body);
    // Refusals wrote nothing and left the budget whole.
    assert_eq!(written(&app).await, issued_before);
    assert_eq!(budget(&app, &sponsor).await, "10000.00");

    // With a live project beside it, the cheque is issued and spent on that one.
    let (id, code) = issue(
        &app,
        &sponsor,
        "500.00",
        60,
        json!({"eligible_project_ids": [first, second]}),
    )
    .await;
    let offer = eur_offer(&app, &second, "100.00", "1000.00", 9).await;
    let winner = investor_named(&app, "Awa Diallo").await;
    cheque_pledge(&app, &offer, &winner, 20, &code, "200.00").await;
    assert_cheque(&app, &id, "active", "300.00").await;

    // A project archived after the issue: the cheque stays good for the other one it names.
    let third = fixtures::published_project(&app).await;
    let (id, code) = issue(
        &app,
        &sponsor,
        "100.00",
        60,
        json!({"eligible_project_ids": [third, second]}),
    )
    .await;
    ok(app.post(&format!("/v1/projects/{third}/archive"), json!({})).await, 200).await;
    cheque_pledge(&app, &offer, &winner, 10, &code, "100.00").await;
    assert_cheque(&app, &id, "spent", "0.00").await;
    verify_books(&app).await;
}

/// The `cheque.expiring` events of the cheque `id`, as the platform reads them.
async fn expiring_events(app: &TestApp, id: &str) -> Vec<Value> {
    let page = ok(app.get("/v1/events?type=cheque.expiring&limit=1000").await, 200).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["cheque_id"] == id)
        .cloned()
        .collect()
}

/// Waits until the cheque `id` has been reminded.
async fn wait_reminded(app: &TestApp, id: &str) -> Value {
    app.wait_for("/v1/events?type=cheque.expiring&limit=1000", |page| {
        page["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|e| e["data"]["cheque_id"] == id))
    })
    .await;
    let mut reminders = expiring_events(app, id).await;
    assert_eq!(reminders.len(), 1, "{reminders:#?}");
    reminders.remove(0)
}

/// `cheque.expiring` reminds a winner once, 14 days before the cheque's rest would go back to
/// its sponsor, with the balance; never for a spent or cancelled cheque, never twice however the
/// clock moves (PRODUCT.md section 13).
#[sqlx::test]
async fn a_winner_is_reminded_once_two_weeks_before_the_cheque_expires(pool: PgPool) {
    let w = world(pool, 30, "100.00", "1000.00", 60).await;
    let app = &w.app;
    // Spent in part: reminded with what is left.
    cheque_pledge(app, &w.offer, &w.winner, 50, &w.code, "500.00").await;
    let (spent, spent_code) = issue(app, &w.sponsor, "100.00", 30, json!({})).await;
    cheque_pledge(app, &w.offer, &w.winner, 10, &spent_code, "100.00").await;
    let (cancelled, _) = issue(app, &w.sponsor, "100.00", 30, json!({})).await;
    ok(cancel(app, &cancelled).await, 200).await;
    // Issued within the notice: reminded at once.
    let (soon, _) = issue(app, &w.sponsor, "40.00", 10, json!({})).await;
    let reminder = wait_reminded(app, &soon).await;
    assert_eq!(reminder["data"]["balance"], "40.00");

    // 15 days left: not yet.
    advance(app, 15 * DAY).await;
    let (marker, _) = issue(app, &w.sponsor, "10.00", 1, json!({})).await;
    wait_reminded(app, &marker).await;
    assert!(expiring_events(app, &w.id).await.is_empty());

    // 13 days left: once, with the balance and the expiry.
    advance(app, 2 * DAY).await;
    let reminder = wait_reminded(app, &w.id).await;
    assert_eq!(reminder["data"]["balance"], "1500.00", "{reminder:#}");
    assert_eq!(reminder["data"]["currency"], "EUR");
    assert_eq!(reminder["data"]["sponsor_id"], w.sponsor.as_str());
    let shown = cheque(app, &w.id).await;
    assert_eq!(
        reminder["data"]["expires_at"]
            .as_str()
            .map(|t| t.parse::<DateTime<Utc>>().unwrap()),
        shown["expires_at"]
            .as_str()
            .map(|t| t.parse::<DateTime<Utc>>().unwrap())
    );

    // The clock moves again: no second reminder, none for the spent or cancelled cheques.
    advance(app, DAY).await;
    let (marker, _) = issue(app, &w.sponsor, "10.00", 1, json!({})).await;
    wait_reminded(app, &marker).await;
    assert_eq!(expiring_events(app, &w.id).await.len(), 1);
    assert!(expiring_events(app, &spent).await.is_empty());
    assert!(expiring_events(app, &cancelled).await.is_empty());
    assert_eq!(events_of_type(app, "cheque.expiring").await, 4);
    verify_books(app).await;
}
