//! Finding 3: `max_ticket` and the ECSP risk warning (art. 21(7): the higher of €1,000 and 5% of
//! net worth) apply to an investor's live pledges on an offer taken together, not to each pledge
//! alone, on every path a pledge takes (card batches, cheques, mixed) and under concurrency.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{self, ok, pledge_at};
use crate::common::{self, OPERATOR_KEY, Reply, TestApp};

/// An open offer at 10.00 a share (room for 10,000 shares) with these terms on top.
async fn offer_with(app: &TestApp, terms: Value) -> String {
    let project = fixtures::published_project(app).await;
    let mut all = json!({"min_target": "100.00", "max_target": "100000.00"});
    for (k, v) in terms.as_object().unwrap() {
        all[k] = v.clone();
    }
    fixtures::open_offer(app, &project, all, 9).await
}

/// A card pledge of `shares` at 10.00, acknowledging the risk warning or not.
fn card(investor: &str, shares: i64, risk_acknowledged: bool) -> Value {
    json!({"investor_id": investor, "shares": shares, "risk_acknowledged": risk_acknowledged,
           "funding": [{"kind": "card", "amount": format!("{shares}0.00")}], "kiis_sha256": fixtures::KIIS_SHA256})
}

async fn pledge(app: &TestApp, offer: &str, body: &Value) -> Reply {
    pledge_at(&app.client, &app.base, offer, body).await
}

async fn accepted(app: &TestApp, offer: &str, body: &Value) -> Value {
    let r = pledge(app, offer, body).await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    r.body
}

/// Asserts a refusal with `code` whose detail names the investor's total so far on the offer.
fn assert_refused(r: &Reply, code: &str, total_so_far: &str) {
    r.assert_problem(422, code);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains(total_so_far),
        "the detail should name the investor's total of {total_so_far}: {detail}"
    );
}

/// The sum of an investor's live pledges on an offer, as stored.
async fn live_total(app: &TestApp, offer: &str, investor: &str) -> String {
    let total: rust_decimal::Decimal = sqlx::query_scalar(
        "select coalesce(sum(amount), 0) from pledges
          where offer_id = $1::uuid and investor_id = $2::uuid
            and status in ('pending_payment', 'funded', 'allocated')",
    )
    .bind(offer)
    .bind(investor)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    total.to_string()
}

async fn revoke(app: &TestApp, pledge: &Value) -> Value {
    let id = pledge["id"].as_str().unwrap();
    ok(app.post(&format!("/v1/pledges/{id}/revoke"), json!({})).await, 200).await
}

/// Issues a EUR cheque of `face` from a freshly funded sponsor; returns its code.
async fn cheque_code(app: &TestApp, face: &str) -> String {
    let sponsor = fixtures::funded_sponsor(app, "SenseTour Belgium", face).await;
    let expires = (app.clock.now() + chrono::TimeDelta::days(90)).to_rfc3339();
    let body = json!({"sponsor_id": sponsor, "beneficiary_name": "Awa Diallo",
                      "beneficiary_email": "awa@example.org", "face_value": face, "currency": "EUR",
                      "expires_at": expires});
    let cheque = ok(app.post("/v1/cheques", body).await, 201).await;
    cheque["code"].as_str().unwrap().to_string()
}

#[sqlx::test]
async fn a_pledge_that_takes_the_investors_total_on_the_offer_past_max_ticket_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = offer_with(&app, json!({"max_ticket": "1000.00"})).await;
    let sophie = fixtures::investor(&app, "Sophie", "sophisticated").await;

    accepted(&app, &offer, &card(&sophie, 60, false)).await;
    // 600 + 500 > 1,000, though 500 alone is well under it.
    let r = pledge(&app, &offer, &card(&sophie, 50, false)).await;
    assert_refused(&r, "above_max_ticket", "600.00");
    // Up to the maximum exactly is fine.
    accepted(&app, &offer, &card(&sophie, 40, false)).await;
    pledge(&app, &offer, &card(&sophie, 1, false))
        .await
        .assert_problem(422, "above_max_ticket");
    assert_eq!(live_total(&app, &offer, &sophie).await, "1000.00");
    // Another investor has a ticket of her own.
    let other = fixtures::investor(&app, "Other", "sophisticated").await;
    accepted(&app, &offer, &card(&other, 100, false)).await;
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_second_750_pledge_of_a_non_sophisticated_investor_needs_the_risk_warning(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = offer_with(&app, json!({})).await;
    let carol = fixtures::investor(&app, "Carol", "non_sophisticated").await;

    accepted(&app, &offer, &card(&carol, 75, false)).await;
    let r = pledge(&app, &offer, &card(&carol, 75, false)).await;
    assert_refused(&r, "risk_warning_required", "750.00");
    assert_eq!(live_total(&app, &offer, &carol).await, "750.00");
    let second = accepted(&app, &offer, &card(&carol, 75, true)).await;
    assert_eq!(second["risk_acknowledged"], true);
    // Past the threshold already: even a small pledge needs the warning acknowledged.
    pledge(&app, &offer, &card(&carol, 1, false))
        .await
        .assert_problem(422, "risk_warning_required");
    assert_eq!(live_total(&app, &offer, &carol).await, "1500.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn cancelled_and_revoked_pledges_no_longer_count_toward_the_total(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = offer_with(&app, json!({"max_ticket": "2000.00"})).await;
    let carol = fixtures::investor(&app, "Carol", "non_sophisticated").await;

    // Revoked while unpaid: cancelled.
    let first = accepted(&app, &offer, &card(&carol, 75, false)).await;
    pledge(&app, &offer, &card(&carol, 75, false))
        .await
        .assert_problem(422, "risk_warning_required");
    assert_eq!(revoke(&app, &first).await["status"], "cancelled");
    // Revoked once paid: revoked, its money refunded.
    let second = fixtures::funded_pledge(&app, &offer, &carol, 75).await;
    pledge(&app, &offer, &card(&carol, 130, true))
        .await
        .assert_problem(422, "above_max_ticket");
    assert_eq!(revoke(&app, &second).await["status"], "revoked");

    accepted(&app, &offer, &card(&carol, 75, false)).await;
    accepted(&app, &offer, &card(&carol, 125, true)).await;
    assert_eq!(live_total(&app, &offer, &carol).await, "2000.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn pledges_on_another_offer_do_not_count(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let terms = json!({"max_ticket": "1000.00"});
    let (one, two) = (offer_with(&app, terms.clone()).await, offer_with(&app, terms).await);
    let carol = fixtures::investor(&app, "Carol", "non_sophisticated").await;
    let sophie = fixtures::investor(&app, "Sophie", "sophisticated").await;
    for offer in [&one, &two] {
        accepted(&app, offer, &card(&carol, 100, false)).await;
        accepted(&app, offer, &card(&sophie, 100, false)).await;
    }
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn cheque_and_mixed_pledges_count_toward_the_total_and_are_held_to_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let code = cheque_code(&app, "2000.00").await;
    let offer = offer_with(&app, json!({"max_ticket": "2000.00"})).await;
    let carol = fixtures::investor(&app, "Carol", "non_sophisticated").await;
    let by_cheque = |shares: i64, ack: bool| {
        json!({"investor_id": carol, "shares": shares, "risk_acknowledged": ack,
               "funding": [{"kind": "cheque", "cheque_code": code, "amount": format!("{shares}0.00")}],
               "kiis_sha256": fixtures::KIIS_SHA256})
    };
    let mixed = |shares: i64, ack: bool| {
        json!({"investor_id": carol, "shares": shares, "risk_acknowledged": ack,
               "funding": [{"kind": "cheque", "cheque_code": code, "amount": "50.00"},
                           {"kind": "card", "amount": format!("{}0.00", shares - 5)}],
               "kiis_sha256": fixtures::KIIS_SHA256})
    };

    // A card pledge, then a cheque one: the cheque pledge is held to the total.
    accepted(&app, &offer, &card(&carol, 50, false)).await;
    let r = pledge(&app, &offer, &by_cheque(60, false)).await;
    assert_refused(&r, "risk_warning_required", "500.00");
    accepted(&app, &offer, &by_cheque(30, false)).await;
    // A mixed pledge is held to the total, and counts toward the next card pledge's.
    let r = pledge(&app, &offer, &mixed(30, false)).await;
    assert_refused(&r, "risk_warning_required", "800.00");
    accepted(&app, &offer, &mixed(20, false)).await;
    let r = pledge(&app, &offer, &card(&carol, 101, true)).await;
    assert_refused(&r, "above_max_ticket", "1000.00");
    assert_eq!(live_total(&app, &offer, &carol).await, "1000.00");
    app.assert_books_verify().await;
}

/// Sends all `bodies` at once, spread over `bases`; returns the replies.
async fn race(bases: &[String], offer: &str, bodies: Vec<Value>) -> Vec<Reply> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    common::race(bodies.len(), |i| {
        pledge_at(&client, &bases[i % bases.len()], offer, &bodies[i])
    })
    .await
}

/// Asserts that exactly `accepted` of the replies created a pledge and every other was refused
/// with `code`, and that the investor's live pledges on the offer add up to `total`.
async fn assert_raced(
    app: &TestApp,
    offer: &str,
    investor: &str,
    replies: &[Reply],
    code: &str,
    accepted: usize,
    total: &str,
) {
    let mut created = 0;
    for r in replies {
        if r.status == 201 {
            created += 1;
        } else {
            r.assert_problem(422, code);
        }
    }
    assert_eq!(live_total(app, offer, investor).await, total);
    assert_eq!(created, accepted, "pledges accepted");
}

const RACERS: usize = 20;

#[sqlx::test]
async fn racing_pledges_of_one_investor_never_add_up_past_max_ticket(pool: PgPool) {
    let app = TestApp::spawn(common::wide_pool(&pool, 40).await).await;
    for allocation in ["first_come", "pro_rata"] {
        let offer = offer_with(&app, json!({"max_ticket": "1000.00", "allocation": allocation})).await;
        let sophie = fixtures::investor(&app, "Sophie", "sophisticated").await;
        // 20 pledges of 100.00 at once: 2,000.00 asked, 10 fit under the ticket.
        let bodies = (0..RACERS).map(|_| card(&sophie, 10, false)).collect();
        let replies = race(std::slice::from_ref(&app.base), &offer, bodies).await;
        assert_raced(&app, &offer, &sophie, &replies, "above_max_ticket", 10, "1000.00").await;
    }
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn racing_unacknowledged_pledges_never_add_up_past_the_risk_threshold(pool: PgPool) {
    let app = TestApp::spawn(common::wide_pool(&pool, 40).await).await;
    for allocation in ["first_come", "pro_rata"] {
        let offer = offer_with(&app, json!({"allocation": allocation})).await;
        let carol = fixtures::investor(&app, "Carol", "non_sophisticated").await;
        let bodies = (0..RACERS).map(|_| card(&carol, 10, false)).collect();
        let replies = race(std::slice::from_ref(&app.base), &offer, bodies).await;
        assert_raced(&app, &offer, &carol, &replies, "risk_warning_required", 10, "1000.00").await;
    }
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn racing_card_and_cheque_pledges_of_one_investor_never_add_up_past_max_ticket(pool: PgPool) {
    let app = TestApp::spawn(common::wide_pool(&pool, 40).await).await;
    let code = cheque_code(&app, "2000.00").await;
    let offer = offer_with(&app, json!({"max_ticket": "1000.00", "allocation": "pro_rata"})).await;
    let sophie = fixtures::investor(&app, "Sophie", "sophisticated").await;
    // Card pledges go through the offer's batch, cheque ones one by one: both paths race. (A
    // few cheque pledges only: an investor's cheque attempts are limited too.)
    let bodies = (0..RACERS)
        .map(|i| match i % 5 {
            0 => json!({"investor_id": sophie, "shares": 10,
                        "funding": [{"kind": "cheque", "cheque_code": code, "amount": "100.00"}],
                        "kiis_sha256": fixtures::KIIS_SHA256}),
            _ => card(&sophie, 10, false),
        })
        .collect();
    let replies = race(std::slice::from_ref(&app.base), &offer, bodies).await;
    assert_raced(&app, &offer, &sophie, &replies, "above_max_ticket", 10, "1000.00").await;
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn two_serve_processes_never_let_one_investors_pledges_past_max_ticket(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = offer_with(&app, json!({"max_ticket": "1000.00"})).await;
    let sophie = fixtures::investor(&app, "Sophie", "sophisticated").await;
    let a = common::Served::start(&app.pool, OPERATOR_KEY).await;
    let b = common::Served::start(&app.pool, OPERATOR_KEY).await;
    let bodies = (0..RACERS).map(|_| card(&sophie, 10, false)).collect();
    let replies = race(&[a.base.clone(), b.base.clone()], &offer, bodies).await;
    assert_raced(&app, &offer, &sophie, &replies, "above_max_ticket", 10, "1000.00").await;
    app.assert_books_verify().await;
}
