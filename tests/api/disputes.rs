//! Card disputes and their money (PRODUCT.md section 10, docs/disputes.md), through the HTTP API
//! and the providers' signed events: the sandbox's controls, and Stripe's events from the local
//! fake. A dispute lost while the pledge is funded takes the money out of escrow and cancels the
//! pledge; one lost after the round settled is the platform's loss; one lost while the money is
//! owed back cancels that refund; a won one moves nothing; repeats change nothing. Every
//! scenario checks the balances to the cent and `verify`.

use crowdledger_provider_fakes::stripe::DisputeOutcome;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::TestApp;
use crate::common::fixtures::{self, balance, funded_pledge, funded_sponsor, investor, ok, small_open_offer};
use crate::common::sandbox::signed;

fn payment_of(pledge: &Value) -> String {
    pledge["payment"]["payment_id"].as_str().unwrap().to_string()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// The sandbox's control answers 200; what the webhook endpoint made of its event.
async fn control(app: &TestApp, path: &str, body: Value) -> Value {
    ok(app.post(path, body).await, 200).await
}

/// The investor disputes the payment (all of it, or `amount`): the control's answer.
async fn dispute(app: &TestApp, payment: &str, amount: Option<&str>) -> Value {
    let query = amount.map_or_else(String::new, |a| format!("?amount={a}"));
    control(
        app,
        &format!("/v1/sandbox/payments/{payment}/dispute{query}"),
        json!({}),
    )
    .await
}

/// The bank decides the dispute: `won` or `lost`.
async fn close(app: &TestApp, dispute: &str, outcome: &str) -> Value {
    control(
        app,
        &format!("/v1/sandbox/disputes/{dispute}/close"),
        json!({"outcome": outcome}),
    )
    .await
}

fn assert_outcome(sent: &Value, applied: bool, outcome: &str) {
    assert_eq!(
        (&sent["applied"], &sent["outcome"]),
        (&json!(applied), &json!(outcome)),
        "{sent:#}"
    );
}

/// The sandbox's id of a payment's dispute.
fn dispute_of(payment: &str) -> String {
    format!("dp_{}", payment.strip_prefix("pay_").unwrap())
}

/// The balances of these accounts, in order.
async fn balances(app: &TestApp, codes: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for code in codes {
        out.push(balance(app, code).await);
    }
    out
}

/// The events of a type, newest first.
async fn events(app: &TestApp, event_type: &str) -> Vec<Value> {
    let page = ok(app.get(&format!("/v1/events?type={event_type}")).await, 200).await;
    page["items"].as_array().unwrap().clone()
}

async fn get(app: &TestApp, path: &str) -> Value {
    ok(app.get(path).await, 200).await
}

/// The postings of a ledger entry, as `(side, account code, amount)`, sorted.
async fn postings(app: &TestApp, entry: &str) -> Vec<(String, String, String)> {
    let entry = get(app, &format!("/v1/ledger/entries/{entry}")).await;
    assert_eq!(entry["kind"], "dispute.lost", "{entry:#}");
    let mut out: Vec<(String, String, String)> = entry["postings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let field = |name: &str| p[name].as_str().unwrap().to_string();
            (field("side"), field("account_code"), field("amount"))
        })
        .collect();
    out.sort();
    out
}

fn posting(side: &str, account: &str, amount: &str) -> (String, String, String) {
    (side.into(), account.into(), amount.into())
}

/// Asserts the last lost dispute's entry took `amount` out of the provider's account `psp`,
/// from `from`.
async fn assert_lost_entry(app: &TestApp, psp: &str, from: &str, amount: &str) {
    let lost = &events(app, "dispute.lost").await[0]["data"];
    assert_eq!(
        postings(app, lost["lost_entry_id"].as_str().unwrap()).await,
        [posting("credit", psp, amount), posting("debit", from, amount)],
        "{lost:#}"
    );
}

/// Asserts a refund's amount, reason and status.
async fn assert_refund(app: &TestApp, id: &str, amount: &str, reason: &str, status: &str) -> Value {
    let refund = get(app, &format!("/v1/refunds/{id}")).await;
    assert_eq!(
        (&refund["amount"], &refund["reason"], &refund["status"]),
        (&json!(amount), &json!(reason), &json!(status)),
        "{refund:#}"
    );
    refund
}

/// The id of a pledge's first refund.
async fn first_refund(app: &TestApp, pledge: &Value) -> String {
    let read = get(app, &format!("/v1/pledges/{}", id_of(pledge))).await;
    read["refunds"][0].as_str().unwrap().to_string()
}

#[sqlx::test]
async fn a_dispute_lost_while_the_pledge_is_funded_takes_it_out_of_escrow_and_cancels_the_pledge(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, offer) = small_open_offer(&app).await;
    let alice = investor(&app, "Alice", "sophisticated").await;
    let bob = investor(&app, "Bob", "sophisticated").await;
    let sponsor = funded_sponsor(&app, "SenseTour", "1000.00").await;
    let issued = fixtures::issue_cheque(&app, &sponsor, "100.00", 30).await;
    let (cheque, code) = (id_of(&issued), issued["code"].clone());
    // Alice: 20 shares, 50.00 from her prize cheque and 150.00 by card; Bob: 10 shares by card.
    let mixed = json!({"investor_id": alice, "shares": 20, "funding": [
        {"kind": "cheque", "cheque_code": code, "amount": "50.00"}, {"kind": "card", "amount": "150.00"}],
        "kiis_sha256": fixtures::KIIS_SHA256});
    let pledge = ok(fixtures::pledge_at(&app.client, &app.base, &offer, &mixed).await, 201).await;
    let (pledge_id, payment) = (id_of(&pledge), payment_of(&pledge));
    control(&app, &format!("/v1/sandbox/payments/{payment}/succeed"), json!({})).await;
    funded_pledge(&app, &offer, &bob, 10).await;
    let escrow = format!("offer:{offer}:escrow");
    let cheque_account = format!("cheque:{cheque}");
    let accounts = [
        escrow.as_str(),
        "psp:sandbox:eur",
        cheque_account.as_str(),
        "refunds:sandbox:eur",
    ];
    // The sponsor's 1000.00 and the cards' 250.00 are at the provider.
    assert_eq!(balances(&app, &accounts).await, ["300.00", "1250.00", "50.00", "0.00"]);

    // Opened: announced, nothing moves, the pledge stays funded.
    let opened = dispute(&app, &payment, None).await;
    assert_outcome(&opened, true, "applied");
    let dispute_id = dispute_of(&payment);
    assert_eq!(opened["dispute_id"], dispute_id.as_str());
    assert_eq!(events(&app, "pledge.disputed").await.len(), 1);
    assert_eq!(balances(&app, &accounts).await, ["300.00", "1250.00", "50.00", "0.00"]);
    assert_eq!(get(&app, &format!("/v1/pledges/{pledge_id}")).await["status"], "funded");

    // Lost: the bank took the card's 150.00 back out of the provider's account, from escrow; the
    // pledge is cancelled, its cheque money back on the cheque, its shares back to the offer, and
    // no refund is owed for card money the bank already returned.
    let closed = close(&app, &dispute_id, "lost").await;
    assert_outcome(&closed, true, "applied");
    assert_eq!(balances(&app, &accounts).await, ["100.00", "1100.00", "100.00", "0.00"]);
    let ended = get(&app, &format!("/v1/pledges/{pledge_id}")).await;
    assert_eq!(ended["status"], "cancelled", "{ended:#}");
    assert_eq!(ended["refunded_amount"], "200.00", "{ended:#}");
    assert_eq!(ended["refunds"], json!([]), "{ended:#}");
    assert!(ended["disputed_at"].is_string(), "{ended:#}");
    let figures = get(&app, &format!("/v1/offers/{offer}")).await;
    assert_eq!(
        (
            &figures["shares_reserved"],
            &figures["shares_funded"],
            &figures["amount_funded"]
        ),
        (&json!(10), &json!(10), &json!("100.00")),
        "{figures:#}"
    );
    let cancelled = events(&app, "pledge.cancelled").await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["data"]["pledge_id"], pledge_id.as_str());
    let lost = events(&app, "dispute.lost").await;
    assert_eq!(lost.len(), 1, "{lost:#?}");
    let data = &lost[0]["data"];
    assert_eq!(
        (
            &data["pledge_id"],
            &data["offer_id"],
            &data["investor_id"],
            &data["provider_dispute_id"]
        ),
        (&json!(pledge_id), &json!(offer), &json!(alice), &json!(dispute_id))
    );
    assert_eq!(
        (&data["amount"], &data["currency"], &data["status"]),
        (&json!("150.00"), &json!("EUR"), &json!("lost"))
    );
    assert_eq!(data["payment"], json!({"provider": "sandbox", "payment_id": payment}));
    assert_lost_entry(&app, "psp:sandbox:eur", &escrow, "150.00").await;
    app.assert_books_verify().await;

    // The same decision again (a new event), the same event delivered again, and a contrary one
    // change nothing; the contrary one is quarantined for an operator.
    assert_outcome(&close(&app, &dispute_id, "lost").await, false, "ignored");
    let event_id = closed["event_id"].as_str().unwrap();
    let body = json!({"id": event_id, "type": "dispute.closed", "created": chrono::Utc::now().timestamp(),
                      "data": {"payment_id": payment, "amount": "150.00", "currency": "EUR",
                               "dispute_id": dispute_id, "status": "lost"}});
    let again = signed(&app, event_id, serde_json::to_vec(&body).unwrap(), 0).await;
    assert_eq!(
        (again.status.as_u16(), &again.body["duplicate"]),
        (200, &json!(true)),
        "{:#}",
        again.body
    );
    assert_outcome(&close(&app, &dispute_id, "won").await, false, "quarantined");
    // A late opening of a dispute already decided changes nothing either.
    assert_outcome(&dispute(&app, &payment, None).await, false, "ignored");
    assert_eq!(balances(&app, &accounts).await, ["100.00", "1100.00", "100.00", "0.00"]);
    assert_eq!(events(&app, "dispute.lost").await.len(), 1);
    assert_eq!(events(&app, "pledge.cancelled").await.len(), 1);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_partial_dispute_lost_while_funded_books_exactly_its_amount_and_refunds_the_rest(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let world = fixtures::world(&app, 1).await;
    let pledge = funded_pledge(&app, &world.offer, &world.investors[0], 20).await;
    let (pledge_id, payment) = (id_of(&pledge), payment_of(&pledge));
    let escrow = format!("offer:{}:escrow", world.offer);
    let accounts = [escrow.as_str(), "psp:sandbox:eur", "refunds:sandbox:eur"];
    assert_eq!(balances(&app, &accounts).await, ["200.00", "200.00", "0.00"]);

    // What the sandbox is asked to dispute is checked like any amount; more than was paid is a
    // dispute the service quarantines.
    app.post(
        &format!("/v1/sandbox/payments/{payment}/dispute?amount=80.001"),
        json!({}),
    )
    .await
    .assert_problem(422, "validation_failed");
    // A dispute of nothing is no dispute (found by schemathesis: it was a 500).
    app.post(
        &format!("/v1/sandbox/payments/{payment}/dispute?amount=0.00"),
        json!({}),
    )
    .await
    .assert_problem(422, "validation_failed");
    assert_outcome(&dispute(&app, &payment, Some("200.01")).await, false, "quarantined");

    let opened = dispute(&app, &payment, Some("80.00")).await;
    assert_outcome(&opened, true, "applied");
    assert_eq!(events(&app, "pledge.disputed").await[0]["data"]["amount"], "80.00");
    assert_outcome(&close(&app, &dispute_of(&payment), "lost").await, true, "applied");

    // 80.00 went back through the bank, the other 120.00 is refunded to the card.
    assert_eq!(balances(&app, &accounts).await, ["0.00", "120.00", "120.00"]);
    let ended = get(&app, &format!("/v1/pledges/{pledge_id}")).await;
    assert_eq!(
        (&ended["status"], &ended["refunded_amount"]),
        (&json!("cancelled"), &json!("200.00")),
        "{ended:#}"
    );
    let refund = ended["refunds"][0].as_str().unwrap();
    assert_refund(&app, refund, "120.00", "dispute_lost", "pending").await;
    assert_lost_entry(&app, "psp:sandbox:eur", &escrow, "80.00").await;
    app.assert_books_verify().await;

    let paid = control(&app, &format!("/v1/sandbox/refunds/{refund}/succeed"), json!({})).await;
    assert_eq!(paid["status"], "succeeded", "{paid:#}");
    assert_eq!(balances(&app, &accounts).await, ["0.00", "0.00", "0.00"]);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_dispute_lost_after_the_round_settled_is_the_platforms_loss(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let world = fixtures::world(&app, 3).await;
    let (alice, bob, carol) = (&world.investors[0], &world.investors[1], &world.investors[2]);
    let pledge = funded_pledge(&app, &world.offer, alice, 20).await;
    let (pledge_id, payment) = (id_of(&pledge), payment_of(&pledge));
    funded_pledge(&app, &world.offer, bob, 10).await;
    dispute(&app, &payment, None).await;

    // The round succeeds while the dispute is open: 300.00 raised, 15.00 fee, 285.00 paid out.
    let closed = ok(
        app.post(&format!("/v1/offers/{}/close", world.offer), json!({})).await,
        200,
    )
    .await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    let payout = ok(
        app.post(&format!("/v1/offers/{}/payouts", world.offer), json!({}))
            .await,
        201,
    )
    .await;
    fixtures::confirm_payout(&app, &payout).await;
    let payable = format!("project:{}:payable:eur", world.project);
    let accounts = [
        "psp:sandbox:eur",
        "platform:fees:eur",
        payable.as_str(),
        "platform:losses:eur",
    ];
    assert_eq!(balances(&app, &accounts).await, ["15.00", "15.00", "0.00", "0.00"]);

    // The provider holds 15.00 of ours: a chargeback of 200.00 out of it would overdraw it, which
    // the ledger refuses; the close is quarantined for an operator and nothing moves.
    let dispute = dispute_of(&payment);
    let refused = close(&app, &dispute, "lost").await;
    assert_outcome(&refused, false, "quarantined");
    let quarantined = get(&app, "/v1/webhooks/quarantine").await;
    let detail = quarantined["items"][0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("insufficient_funds"), "{quarantined:#}");
    assert_eq!(balances(&app, &accounts).await, ["15.00", "15.00", "0.00", "0.00"]);

    // Once the provider holds enough (another round's pledge), the close the provider repeats is
    // booked: the money had left the round, so the platform bears it.
    let (_, other) = small_open_offer(&app).await;
    funded_pledge(&app, &other, carol, 50).await;
    assert_outcome(&close(&app, &dispute, "lost").await, true, "applied");
    assert_eq!(balances(&app, &accounts).await, ["315.00", "15.00", "0.00", "200.00"]);
    assert_lost_entry(&app, "psp:sandbox:eur", "platform:losses:eur", "200.00").await;
    // The shares were issued: the pledge keeps its allocation, and the round its figures.
    let kept = get(&app, &format!("/v1/pledges/{pledge_id}")).await;
    assert_eq!(
        (&kept["status"], &kept["allocated_shares"], &kept["refunded_amount"]),
        (&json!("allocated"), &json!(20), &json!("0.00")),
        "{kept:#}"
    );
    let round = get(&app, &format!("/v1/offers/{}", world.offer)).await;
    assert_eq!(
        (&round["shares_allocated"], &round["amount_raised"]),
        (&json!(30), &json!("300.00"))
    );
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_won_dispute_moves_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let world = fixtures::world(&app, 1).await;
    let pledge = funded_pledge(&app, &world.offer, &world.investors[0], 20).await;
    let (pledge_id, payment) = (id_of(&pledge), payment_of(&pledge));
    dispute(&app, &payment, None).await;
    let trial = get(&app, "/v1/ledger/trial-balance").await;
    let entries: i64 = sqlx::query_scalar("select count(*) from ledger_entries")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    let dispute = dispute_of(&payment);
    assert_outcome(&close(&app, &dispute, "won").await, true, "applied");
    let won = events(&app, "dispute.won").await;
    assert_eq!(won.len(), 1);
    assert_eq!(
        (&won[0]["data"]["status"], &won[0]["data"]["amount"]),
        (&json!("won"), &json!("200.00"))
    );
    assert!(won[0]["data"].get("lost_entry_id").is_none(), "{won:#?}");
    assert_eq!(
        get(&app, "/v1/ledger/trial-balance").await["currencies"],
        trial["currencies"]
    );
    let still: i64 = sqlx::query_scalar("select count(*) from ledger_entries")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(still, entries);
    assert_eq!(get(&app, &format!("/v1/pledges/{pledge_id}")).await["status"], "funded");

    // Decided once: the same decision again is ignored, the contrary one quarantined.
    assert_outcome(&close(&app, &dispute, "won").await, false, "ignored");
    assert_outcome(&close(&app, &dispute, "lost").await, false, "quarantined");
    assert_eq!(events(&app, "dispute.won").await.len(), 1);
    assert!(events(&app, "dispute.lost").await.is_empty());
    assert_eq!(
        get(&app, "/v1/ledger/trial-balance").await["currencies"],
        trial["currencies"]
    );
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_dispute_lost_while_its_money_is_owed_back_cancels_the_refund_instead_of_paying_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let world = fixtures::world(&app, 2).await;
    // The sponsor's money keeps the provider's account above what the chargebacks take.
    funded_sponsor(&app, "SenseTour", "1000.00").await;
    let alice = funded_pledge(&app, &world.offer, &world.investors[0], 20).await;
    let bob = funded_pledge(&app, &world.offer, &world.investors[1], 10).await;
    ok(
        app.post(&format!("/v1/offers/{}/cancel", world.offer), json!({})).await,
        200,
    )
    .await;
    let accounts = ["psp:sandbox:eur", "refunds:sandbox:eur", "platform:losses:eur"];
    assert_eq!(balances(&app, &accounts).await, ["1300.00", "300.00", "0.00"]);
    let (alice_refund, bob_refund) = (first_refund(&app, &alice).await, first_refund(&app, &bob).await);
    // Bob's refund reaches his card.
    control(&app, &format!("/v1/sandbox/refunds/{bob_refund}/succeed"), json!({})).await;
    assert_eq!(balances(&app, &accounts).await, ["1200.00", "200.00", "0.00"]);

    // Alice's bank takes 80.00 back before her refund of 200.00 is paid: that refund is
    // cancelled, never to be paid, and the 120.00 the bank did not return is owed anew.
    let alice_payment = payment_of(&alice);
    dispute(&app, &alice_payment, Some("80.00")).await;
    assert_outcome(&close(&app, &dispute_of(&alice_payment), "lost").await, true, "applied");
    assert_eq!(balances(&app, &accounts).await, ["1120.00", "120.00", "0.00"]);
    let cancelled = assert_refund(&app, &alice_refund, "200.00", "offer_cancelled", "cancelled").await;
    assert!(cancelled["cancelled_at"].is_string(), "{cancelled:#}");
    let read = get(&app, &format!("/v1/pledges/{}", id_of(&alice))).await;
    assert_eq!(
        (&read["status"], &read["refunded_amount"]),
        (&json!("refunded"), &json!("200.00"))
    );
    let anew = read["refunds"][1].as_str().unwrap().to_string();
    assert_refund(&app, &anew, "120.00", "offer_cancelled", "pending").await;
    assert_lost_entry(&app, "psp:sandbox:eur", "refunds:sandbox:eur", "80.00").await;
    app.assert_books_verify().await;
    // Confirming the cancelled refund would pay it twice: quarantined, nothing moves.
    let confirmed = control(&app, &format!("/v1/sandbox/refunds/{alice_refund}/succeed"), json!({})).await;
    assert_eq!(confirmed["status"], "cancelled", "{confirmed:#}");
    assert_eq!(balances(&app, &accounts).await, ["1120.00", "120.00", "0.00"]);
    control(&app, &format!("/v1/sandbox/refunds/{anew}/succeed"), json!({})).await;
    assert_eq!(balances(&app, &accounts).await, ["1000.00", "0.00", "0.00"]);

    // Bob's refund was paid: his bank's chargeback, whose close comes with no opening seen, is
    // the platform's loss. The dispute is opened as it is closed, and announced.
    let bob_payment = payment_of(&bob);
    assert_outcome(&close(&app, &dispute_of(&bob_payment), "lost").await, true, "applied");
    assert_eq!(balances(&app, &accounts).await, ["900.00", "0.00", "100.00"]);
    let announced = events(&app, "pledge.disputed").await;
    assert_eq!(announced.len(), 2);
    assert_eq!(announced[0]["data"]["pledge_id"], id_of(&bob).as_str());
    assert_eq!(
        get(&app, &format!("/v1/pledges/{}", id_of(&bob))).await["status"],
        "refunded"
    );
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_stripe_dispute_lost_while_funded_is_booked_from_its_signed_events(pool: PgPool) {
    use crate::providers_stripe::{offer, on_stripe, requests_to};
    let (app, stripe) = on_stripe(pool, "10").await;
    let (_, offer) = offer(&app, "1000.00").await;
    let investor = fixtures::investors(&app, 1).await.remove(0);
    let pledge = ok(fixtures::pledge(&app, &offer, &investor, 10, "10.00").await, 201).await;
    let pledge_id = id_of(&pledge);
    let intent = payment_of(&pledge);
    stripe.succeed_payment(&intent, 10_000).await;
    let escrow = format!("offer:{offer}:escrow");
    let accounts = [escrow.as_str(), "psp:stripe:eur", "refunds:stripe:eur"];
    assert_eq!(balances(&app, &accounts).await, ["100.00", "100.00", "0.00"]);

    // `charge.dispute.created` for 40.00 of the charge: announced, nothing moves.
    let opened = stripe.dispute(&intent, 4_000).await;
    let dispute = opened.object()["id"].as_str().unwrap().to_string();
    let disputed = events(&app, "pledge.disputed").await;
    assert_eq!(disputed.len(), 1);
    assert_eq!(
        disputed[0]["data"]["payment"],
        json!({"provider": "stripe", "payment_id": intent})
    );
    assert_eq!(balances(&app, &accounts).await, ["100.00", "100.00", "0.00"]);

    // `charge.dispute.closed`, lost: 40.00 out of escrow to Stripe's account, the pledge
    // cancelled, the other 60.00 refunded by a Stripe refund made after commit.
    let closed = stripe.close_dispute(&dispute, DisputeOutcome::Lost).await;
    assert_eq!(balances(&app, &accounts).await, ["0.00", "60.00", "60.00"]);
    let ended = get(&app, &format!("/v1/pledges/{pledge_id}")).await;
    assert_eq!(ended["status"], "cancelled", "{ended:#}");
    let lost = events(&app, "dispute.lost").await;
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0]["data"]["provider_dispute_id"], dispute.as_str());
    assert_lost_entry(&app, "psp:stripe:eur", &escrow, "40.00").await;
    let refunds = app
        .wait_for(&format!("/v1/refunds?pledge_id={pledge_id}"), |page| {
            page["items"][0]["payment"]["payment_id"].is_string()
        })
        .await;
    let refund = &refunds["items"][0];
    assert_eq!(
        (&refund["amount"], &refund["reason"]),
        (&json!("60.00"), &json!("dispute_lost"))
    );
    let asked = requests_to(&stripe, "/v1/refunds");
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].params["amount"], "6000");
    assert_eq!(asked[0].params["payment_intent"], intent.as_str());
    app.assert_books_verify().await;

    // Stripe delivers the close again: a repeat, nothing moves.
    assert_eq!(stripe.deliver(&closed.id).await, Some(200));
    assert_eq!(balances(&app, &accounts).await, ["0.00", "60.00", "60.00"]);
    assert_eq!(events(&app, "dispute.lost").await.len(), 1);

    let re = refund["payment"]["payment_id"].as_str().unwrap();
    stripe.succeed_refund(re).await;
    assert_eq!(balances(&app, &accounts).await, ["0.00", "0.00", "0.00"]);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn closes_racing_each_other_or_the_rounds_close_book_the_chargeback_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let world = fixtures::world(&app, 2).await;
    let alice = funded_pledge(&app, &world.offer, &world.investors[0], 20).await;
    funded_pledge(&app, &world.offer, &world.investors[1], 10).await;
    let alice_payment = payment_of(&alice);
    dispute(&app, &alice_payment, None).await;

    // The same decision, delivered four times at once: one applies it, the others find it done.
    let dispute = dispute_of(&alice_payment);
    let sent = crate::common::race(4, |_| close(&app, &dispute, "lost")).await;
    let applied = sent.iter().filter(|s| s["applied"] == true).count();
    assert_eq!(applied, 1, "{sent:#?}");
    assert!(
        sent.iter()
            .all(|s| s["outcome"] == "applied" || s["outcome"] == "ignored"),
        "{sent:#?}"
    );
    let escrow = format!("offer:{}:escrow", world.offer);
    let accounts = [escrow.as_str(), "psp:sandbox:eur", "platform:losses:eur"];
    assert_eq!(balances(&app, &accounts).await, ["100.00", "100.00", "0.00"]);
    app.assert_books_verify().await;

    // A chargeback racing the round's close: booked from escrow before it, or as the platform's
    // loss after it, never both; the books hold either way.
    let carol = investor(&app, "Carol", "sophisticated").await;
    let carol = funded_pledge(&app, &world.offer, &carol, 10).await;
    let carol_payment = payment_of(&carol);
    let (path, carol_dispute) = (format!("/v1/offers/{}/close", world.offer), dispute_of(&carol_payment));
    let (closed, lost) = futures::join!(app.post(&path, json!({})), close(&app, &carol_dispute, "lost"));
    assert_eq!(closed.status, 200, "{:#}", closed.body);
    assert_outcome(&lost, true, "applied");
    let carol = get(&app, &format!("/v1/pledges/{}", id_of(&carol))).await;
    let expected = match carol["status"].as_str().unwrap() {
        // Lost first: out of escrow, the pledge cancelled, the round closed on the other 100.00.
        "cancelled" => ["0.00", "100.00", "0.00"],
        // Closed first: the round settled 200.00, and the platform bears the chargeback.
        "allocated" => ["0.00", "100.00", "100.00"],
        other => panic!("carol's pledge is {other}: {carol:#}"),
    };
    assert_eq!(balances(&app, &accounts).await, expected);
    app.assert_books_verify().await;
}
