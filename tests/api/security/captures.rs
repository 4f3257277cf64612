//! Finding 4: money a provider says it captured is always booked. A success that arrives after
//! the provider declared the payment failed used to be stored as `ignored`, the captured money
//! nowhere in the books. Now it is captured and, the pledge having ended, refunded in full; a
//! deposit's is credited to the sponsor's budget. Repeats stay repeats, and a failure after a
//! success still moves nothing.

use serde_json::json;
use sqlx::PgPool;

use crate::common::fixtures::{self, ok};
use crate::common::sandbox::{event, signed};
use crate::common::{Reply, TestApp};

/// A signed sandbox event of `kind` for the provider object `payment`, delivered now.
async fn deliver(app: &TestApp, event_id: &str, kind: &str, payment: &str, amount: &str) -> Reply {
    let now = app.clock.now().timestamp();
    let r = signed(app, event_id, event(event_id, kind, payment, amount, "EUR", now), 0).await;
    assert_eq!(r.status, 200, "{event_id}: {:#}", r.body);
    r
}

/// What a repeat must leave as it is: every ledger row, refund, payment and deposit, and the
/// balances at the provider and owed back.
async fn books(app: &TestApp) -> (i64, i64, i64, String, String, String) {
    let (accounts, entries, postings) = app.row_counts().await;
    let rows: String = sqlx::query_scalar(
        "select concat_ws(' | ',
            (select string_agg(id || ' ' || status || ' ' || amount || ' ' || reason, ', ' order by id) from refunds),
            (select string_agg(id || ' ' || status || ' ' || coalesce(captured_entry_id::text, '-'), ', ' order by id)
               from payments),
            (select string_agg(id || ' ' || status, ', ' order by id) from deposits))",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    (
        accounts,
        entries,
        postings,
        rows,
        fixtures::balance(app, "psp:sandbox:eur").await,
        fixtures::balance(app, "refunds:sandbox:eur").await,
    )
}

#[sqlx::test]
async fn a_success_after_a_failure_is_captured_and_refunded_in_full(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, offer) = fixtures::small_open_offer(&app).await;
    let investor = fixtures::investor(&app, "Sophie", "sophisticated").await;
    let pledge = ok(fixtures::pledge(&app, &offer, &investor, 12, "10.00").await, 201).await;
    let pledge_id = pledge["id"].as_str().unwrap();
    let payment = pledge["payment"]["payment_id"].as_str().unwrap();

    // The provider declines the card: the pledge ends and its shares go back.
    let failed = deliver(&app, "evt_failed", "payment.failed", payment, "120.00").await;
    assert_eq!(failed.body["outcome"], "applied", "{:#}", failed.body);
    let ended = app.get(&format!("/v1/pledges/{pledge_id}")).await.body;
    assert_eq!(ended["status"], "cancelled", "{ended:#}");

    // Then it captures the money after all: booked, not ignored.
    let paid = deliver(&app, "evt_paid", "payment.succeeded", payment, "120.00").await;
    assert_eq!(
        (paid.body["outcome"].as_str(), paid.body["duplicate"].as_bool()),
        (Some("applied"), Some(false)),
        "{:#}",
        paid.body
    );
    // The pledge cannot be funded any more (its shares were released): the money is owed back
    // in full, by a refund waiting for the provider.
    let after = app.get(&format!("/v1/pledges/{pledge_id}")).await.body;
    assert_eq!(after["status"], "cancelled", "{after:#}");
    let offer_now = app.get(&format!("/v1/offers/{offer}")).await.body;
    assert_eq!(offer_now["shares_reserved"], 0, "{offer_now:#}");
    let refunds: Vec<(String, String, String, String)> =
        sqlx::query_as("select id::text, amount::text, status::text, reason from refunds where pledge_id = $1::uuid")
            .bind(pledge_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    let (refund, amount, status, reason) = &refunds[0];
    assert_eq!(
        (amount.as_str(), status.as_str(), reason.as_str()),
        ("120.00", "pending", "payment_after_failure")
    );
    let (payment_status, captured): (String, bool) = sqlx::query_as(
        "select status::text, captured_entry_id is not null from payments where provider_payment_id = $1",
    )
    .bind(payment)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((payment_status.as_str(), captured), ("succeeded", true));
    // The provider holds the money, and owes it back; the offer's escrow never saw it.
    assert_eq!(fixtures::balance(&app, "psp:sandbox:eur").await, "120.00");
    assert_eq!(fixtures::balance(&app, "refunds:sandbox:eur").await, "120.00");
    assert_eq!(fixtures::balance(&app, &format!("offer:{offer}:escrow")).await, "0.00");
    app.assert_books_verify().await;

    // The success again, as a retry (same id) or reissued (another id), and a late failure:
    // nothing more moves.
    let before = books(&app).await;
    let again = deliver(&app, "evt_paid", "payment.succeeded", payment, "120.00").await;
    assert_eq!(again.body["duplicate"], true, "{:#}", again.body);
    let reissued = deliver(&app, "evt_paid_2", "payment.succeeded", payment, "120.00").await;
    assert_eq!(reissued.body["outcome"], "ignored", "{:#}", reissued.body);
    let late = deliver(&app, "evt_failed_2", "payment.failed", payment, "120.00").await;
    assert_eq!(late.body["outcome"], "ignored", "{:#}", late.body);
    assert_eq!(books(&app).await, before);

    // The refund reaches the card: nothing is left at the provider or owed.
    let sent = ok(
        app.post(&format!("/v1/sandbox/refunds/{refund}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(sent["status"], "succeeded", "{sent:#}");
    // The cancelled pledge shows the money owed back to it, and the refund.
    let after = app.get(&format!("/v1/pledges/{pledge_id}")).await.body;
    assert_eq!(after["refunded_amount"], "120.00", "{after:#}");
    assert_eq!(after["refunds"], json!([refund]), "{after:#}");
    assert_eq!(fixtures::balance(&app, "psp:sandbox:eur").await, "0.00");
    assert_eq!(fixtures::balance(&app, "refunds:sandbox:eur").await, "0.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_deposit_that_succeeds_after_failing_credits_the_budget(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::sponsor(&app, "SenseTour Belgium").await;
    let deposit = ok(
        app.post(
            &format!("/v1/sponsors/{sponsor}/deposits"),
            json!({"amount": "500.00", "currency": "EUR"}),
        )
        .await,
        201,
    )
    .await;
    let payment = deposit["payment"]["payment_id"].as_str().unwrap();
    let budget = async || {
        let s = ok(app.get(&format!("/v1/sponsors/{sponsor}")).await, 200).await;
        s["budget"]["amount"].as_str().unwrap().to_string()
    };

    let failed = deliver(&app, "evt_d_failed", "payment.failed", payment, "500.00").await;
    assert_eq!(failed.body["outcome"], "applied", "{:#}", failed.body);
    assert_eq!(budget().await, "0.00");

    let paid = deliver(&app, "evt_d_paid", "payment.succeeded", payment, "500.00").await;
    assert_eq!(paid.body["outcome"], "applied", "{:#}", paid.body);
    assert_eq!(budget().await, "500.00");
    assert_eq!(
        fixtures::balance(&app, &format!("sponsor:{sponsor}:budget:eur")).await,
        "500.00"
    );
    assert_eq!(fixtures::balance(&app, "psp:sandbox:eur").await, "500.00");
    let status: String = sqlx::query_scalar("select status::text from deposits where provider_deposit_id = $1")
        .bind(payment)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "succeeded");
    app.assert_books_verify().await;

    // Credited once, however the success and a late failure come again.
    let before = books(&app).await;
    let again = deliver(&app, "evt_d_paid", "payment.succeeded", payment, "500.00").await;
    assert_eq!(again.body["duplicate"], true, "{:#}", again.body);
    let reissued = deliver(&app, "evt_d_paid_2", "payment.succeeded", payment, "500.00").await;
    assert_eq!(reissued.body["outcome"], "ignored", "{:#}", reissued.body);
    let late = deliver(&app, "evt_d_failed_2", "payment.failed", payment, "500.00").await;
    assert_eq!(late.body["outcome"], "ignored", "{:#}", late.body);
    assert_eq!(books(&app).await, before);
    assert_eq!(budget().await, "500.00");
    app.assert_books_verify().await;
}

/// The inverse order is not money lost: the success captured it, and a failure after it is a
/// stale message that moves nothing.
#[sqlx::test]
async fn a_failure_after_a_success_moves_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, offer) = fixtures::small_open_offer(&app).await;
    let investor = fixtures::investor(&app, "Sophie", "sophisticated").await;
    let pledge = ok(fixtures::pledge(&app, &offer, &investor, 12, "10.00").await, 201).await;
    let pledge_id = pledge["id"].as_str().unwrap();
    let payment = pledge["payment"]["payment_id"].as_str().unwrap();

    let paid = deliver(&app, "evt_paid", "payment.succeeded", payment, "120.00").await;
    assert_eq!(paid.body["outcome"], "applied", "{:#}", paid.body);
    let before = books(&app).await;
    let late = deliver(&app, "evt_failed", "payment.failed", payment, "120.00").await;
    assert_eq!(late.body["outcome"], "ignored", "{:#}", late.body);
    assert_eq!(books(&app).await, before);
    let funded = app.get(&format!("/v1/pledges/{pledge_id}")).await.body;
    assert_eq!(funded["status"], "funded", "{funded:#}");
    assert_eq!(
        fixtures::balance(&app, &format!("offer:{offer}:escrow")).await,
        "120.00"
    );
    assert_eq!(fixtures::balance(&app, "refunds:sandbox:eur").await, "0.00");
    app.assert_books_verify().await;
}
