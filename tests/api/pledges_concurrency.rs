//! The hard cap under concurrency: many pledges at once on a first_come offer, through one
//! process and through two serve processes on one database, never reserve more than the cap.
//! And one Idempotency-Key sent twice at once makes one pledge.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{KIIS_SHA256, World, world};
use crate::common::{self, OPERATOR_KEY, TestApp};

const CAP_SHARES: i64 = 100;
const ATTEMPTS: usize = 500;

/// Fires `ATTEMPTS` one-share pledges at once, spread over `bases`; returns (created, full).
async fn flood(bases: &[String], offer: &str, investors: &[String]) -> (usize, usize) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let replies = common::race(ATTEMPTS, |i| {
        let request = client
            .post(format!("{}/v1/offers/{offer}/pledges", bases[i % bases.len()]))
            .bearer_auth(OPERATOR_KEY)
            .header("idempotency-key", format!("flood-{i}"))
            .json(&json!({"investor_id": investors[i % investors.len()], "shares": 1,
                          "funding": [{"kind": "card", "amount": "10.00"}], "kiis_sha256": KIIS_SHA256}));
        async move { common::read(request.send().await.unwrap()).await }
    })
    .await;
    let (mut created, mut full) = (0, 0);
    for reply in replies {
        match reply.status.as_u16() {
            201 => created += 1,
            409 => {
                reply.assert_problem(409, "offer_full");
                full += 1;
            }
            other => panic!("unexpected {other}: {:#}", reply.body),
        }
    }
    (created, full)
}

async fn assert_exactly_the_cap(app: &TestApp, offer: &str) {
    let o = app.get(&format!("/v1/offers/{offer}")).await.body;
    assert_eq!(o["shares_reserved"], CAP_SHARES);
    let pledged: i64 =
        sqlx::query_scalar("select coalesce(sum(shares), 0)::bigint from pledges where offer_id = $1::uuid")
            .bind(offer)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(pledged, CAP_SHARES);
}

#[sqlx::test]
async fn five_hundred_concurrent_pledges_reserve_exactly_the_cap(pool: PgPool) {
    let wide = common::wide_pool(&pool, 40).await;
    let app = TestApp::spawn(wide).await;
    let World { offer, investors, .. } = world(&app, 20).await;
    let (created, full) = flood(std::slice::from_ref(&app.base), &offer, &investors).await;
    assert_eq!((created, full), (CAP_SHARES as usize, ATTEMPTS - CAP_SHARES as usize));
    assert_exactly_the_cap(&app, &offer).await;
    // They were written in batches: fewer transactions than pledges.
    let transactions: i64 = sqlx::query_scalar("select count(distinct xmin::text) from pledges")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        transactions < CAP_SHARES,
        "{transactions} transactions for {CAP_SHARES} pledges"
    );
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_refused_pledge_leaves_its_key_free(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let World { offer, investors, .. } = world(&app, 1).await;
    let pledge = |key: &'static str, shares: i64| {
        let body = json!({"investor_id": investors[0], "shares": shares,
                          "funding": [{"kind": "card", "amount": format!("{shares}0.00")}], "kiis_sha256": KIIS_SHA256});
        let req = app
            .client
            .post(format!("{}/v1/offers/{offer}/pledges", app.base))
            .bearer_auth(OPERATOR_KEY)
            .header("idempotency-key", key)
            .json(&body);
        async move { common::read(req.send().await.unwrap()).await }
    };
    assert_eq!(pledge("fill", CAP_SHARES - 2).await.status, 201);
    // Refused: the key is not kept, so the same request is decided afresh, and so is another.
    pledge("late", 3).await.assert_problem(409, "offer_full");
    pledge("late", 3).await.assert_problem(409, "offer_full");
    let fits = pledge("late", 2).await;
    assert_eq!(fits.status, 201, "{:#}", fits.body);
    assert!(!fits.headers.contains_key("idempotent-replayed"));
    assert_exactly_the_cap(&app, &offer).await;
}

#[sqlx::test]
async fn two_serve_processes_on_one_database_never_oversell(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let World { offer, investors, .. } = world(&app, 20).await;
    let a = common::Served::start(&app.pool, OPERATOR_KEY).await;
    let b = common::Served::start(&app.pool, OPERATOR_KEY).await;
    let (created, full) = flood(&[a.base.clone(), b.base.clone()], &offer, &investors).await;
    assert_eq!((created, full), (CAP_SHARES as usize, ATTEMPTS - CAP_SHARES as usize));
    assert_exactly_the_cap(&app, &offer).await;
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn one_idempotency_key_sent_twice_at_once_makes_one_pledge(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let World { offer, investors, .. } = world(&app, 1).await;
    let body = json!({"investor_id": investors[0], "shares": 3, "funding": [{"kind": "card", "amount": "30.00"}],
                      "kiis_sha256": KIIS_SHA256});
    let send = |body: Value| {
        let req = app
            .client
            .post(format!("{}/v1/offers/{offer}/pledges", app.base))
            .bearer_auth(OPERATOR_KEY)
            .header("idempotency-key", "same-key")
            .json(&body);
        async move { common::read(req.send().await.unwrap()).await }
    };
    let (a, b) = tokio::join!(send(body.clone()), send(body.clone()));
    assert_eq!(
        (a.status.as_u16(), b.status.as_u16()),
        (201, 201),
        "{:#} {:#}",
        a.body,
        b.body
    );
    assert_eq!(a.body["id"], b.body["id"]);
    assert!(a.headers.contains_key("idempotent-replayed") ^ b.headers.contains_key("idempotent-replayed"));
    let count: i64 = sqlx::query_scalar("select count(*) from pledges")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);

    let mut other = body.clone();
    other["shares"] = json!(4);
    other["funding"][0]["amount"] = json!("40.00");
    send(other).await.assert_problem(422, "idempotency_key_reused");
    let reserved = app.get(&format!("/v1/offers/{offer}")).await.body["shares_reserved"].clone();
    assert_eq!(reserved, 3);

    // Without the header: refused before anything happens.
    let r = app.post(&format!("/v1/offers/{offer}/pledges"), body).await;
    r.assert_problem(400, "idempotency_key_required");
}

#[sqlx::test]
async fn a_replayed_pledge_answers_its_first_response_byte_for_byte(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let World { offer, investors, .. } = world(&app, 1).await;
    let body = json!({"investor_id": investors[0], "shares": 2, "funding": [{"kind": "card", "amount": "20.00"}],
                      "kiis_sha256": KIIS_SHA256});
    let send = || {
        app.client
            .post(format!("{}/v1/offers/{offer}/pledges", app.base))
            .bearer_auth(OPERATOR_KEY)
            .header("idempotency-key", "once")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first: Vec<u8> = first.bytes().await.unwrap().to_vec();
    let pledge: Value = serde_json::from_slice(&first).unwrap();
    // The pledge moves on; the answer to its key does not.
    let payment = pledge["payment"]["payment_id"].as_str().unwrap();
    let paid = app
        .post(&format!("/v1/sandbox/payments/{payment}/succeed"), json!({}))
        .await;
    assert_eq!(paid.status, 200, "{:#}", paid.body);
    assert_eq!(
        app.get(&format!("/v1/pledges/{}", pledge["id"].as_str().unwrap()))
            .await
            .body["status"],
        "funded"
    );
    let again = send().await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(again.bytes().await.unwrap().to_vec(), first);
}
