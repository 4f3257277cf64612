//! Finding 7: the cheque-code limiter. The per-investor allowance (5) must hold however many
//! requests race, since each attempt is claimed before its code is tested; and wrong codes sent
//! for other investors through the same API key must never get an investor with no wrong code
//! refused (the key's count only raises an alert and tightens the allowance of investors who
//! guessed wrong).

use rand::Rng;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{self, ok};
use crate::common::{self, Reply, TestApp};
use crowdledger::keys::Role;

/// Crockford base32: digits and capitals without I, L, O, U.
const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A well-formed code drawn at random: with 80 bits, it names no cheque.
fn random_code() -> String {
    let mut rng = rand::rng();
    let groups: Vec<String> = (0..4)
        .map(|_| {
            (0..4)
                .map(|_| CROCKFORD[rng.random_range(0..CROCKFORD.len())] as char)
                .collect()
        })
        .collect();
    format!("CHQ-{}", groups.join("-"))
}

/// A funded sponsor, a 2,000.00 cheque (its code), and an open EUR offer at 10.00 a share.
async fn world(app: &TestApp) -> (String, String) {
    let sponsor = fixtures::funded_sponsor(app, "SenseTour Belgium", "10000.00").await;
    let expires_at = (app.clock.now() + chrono::TimeDelta::days(365)).to_rfc3339();
    let cheque = ok(
        app.post(
            "/v1/cheques",
            json!({"sponsor_id": sponsor, "beneficiary_name": "Awa Diallo",
                   "beneficiary_email": "awa@example.org", "face_value": "2000.00", "currency": "EUR",
                   "expires_at": expires_at}),
        )
        .await,
        201,
    )
    .await;
    let code = cheque["code"].as_str().unwrap().to_string();
    let project = fixtures::published_project(app).await;
    let offer = fixtures::open_offer(
        app,
        &project,
        json!({"min_target": "1000.00", "max_target": "100000.00"}),
        28,
    )
    .await;
    (offer, code)
}

/// A pledge of 10 shares paid by one cheque code, sent with `key` through `client`.
async fn redeem(client: &reqwest::Client, app: &TestApp, key: &str, offer: &str, investor: &str, code: &str) -> Reply {
    let body = json!({"investor_id": investor, "shares": 10,
                      "funding": [{"kind": "cheque", "cheque_code": code, "amount": "100.00"}],
                      "kiis_sha256": fixtures::KIIS_SHA256});
    let r = client
        .post(format!("{}/v1/offers/{offer}/pledges", app.base))
        .bearer_auth(key)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await
        .unwrap();
    common::read(r).await
}

/// `(tested, refused)`: the wrong codes answered 422 `unknown_code` (the service looked them up)
/// and those answered 429 `too_many_attempts` (refused before any lookup). Any other answer
/// fails the test.
fn tally(replies: &[Reply]) -> (usize, usize) {
    let (mut tested, mut refused) = (0, 0);
    for r in replies {
        match (r.status.as_u16(), r.body["code"].as_str()) {
            (422, Some("cheque_invalid")) => {
                assert_eq!(r.body["reason"], "unknown_code", "{:#}", r.body);
                tested += 1;
            }
            (429, Some("too_many_attempts")) => {
                let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=3600).contains(&wait), "retry-after {wait}");
                refused += 1;
            }
            _ => panic!("unexpected answer to a wrong code: {} {:#}", r.status, r.body),
        }
    }
    (tested, refused)
}

/// Sends all `requests` at once, each `(investor, code)`.
async fn race(app: &TestApp, key: &str, offer: &str, requests: Vec<(String, String)>) -> Vec<Reply> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(requests.len())
        .build()
        .unwrap();
    common::race(requests.len(), |i| {
        let (investor, code) = &requests[i];
        redeem(&client, app, key, offer, investor, code)
    })
    .await
}

#[sqlx::test]
async fn two_hundred_racing_wrong_codes_from_one_investor_get_at_most_five_tested(pool: PgPool) {
    const GUESSES: usize = 200;
    let wide = common::wide_pool(&pool, 40).await;
    let app = TestApp::spawn(wide).await;
    let (offer, code) = world(&app).await;
    let key = app.key(Role::Platform).await;
    let guesser = fixtures::investor(&app, "Mallory", "sophisticated").await;

    let replies = race(
        &app,
        &key,
        &offer,
        (0..GUESSES).map(|_| (guesser.clone(), random_code())).collect(),
    )
    .await;
    let (tested, refused) = tally(&replies);
    assert!(
        (1..=5).contains(&tested),
        "{tested} wrong codes were tested against an allowance of 5 ({refused} refused)"
    );
    assert_eq!(tested + refused, GUESSES);

    // Blocked now: even the right code is refused before it is looked at, and nothing is spent.
    let r = redeem(&app.client, &app, &key, &offer, &guesser, &code).await;
    r.assert_problem(429, "too_many_attempts");
    let pledges: i64 = sqlx::query_scalar("select count(*) from pledges")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(pledges, 0);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn wrong_codes_of_other_investors_never_block_an_investor_with_none(pool: PgPool) {
    // Enough guessers, each up to its own allowance, to take the key past its alert (100).
    const GUESSERS: usize = 24;
    let wide = common::wide_pool(&pool, 40).await;
    let app = TestApp::spawn(wide).await;
    let (offer, code) = world(&app).await;
    let key = app.key(Role::Platform).await;
    let investor = |name: String| {
        let app = &app;
        async move { fixtures::investor(app, &name, "sophisticated").await }
    };
    let guessers = fixtures::investors(&app, GUESSERS).await;
    // One investor mistyped once, before the storm.
    let typist = investor("Typist".into()).await;
    let (tested, _) = tally(&[redeem(&app.client, &app, &key, &offer, &typist, &random_code()).await]);
    assert_eq!(tested, 1);

    // Five wrong codes per guesser, all at once on one key: each is the guesser's own to test.
    let storm: Vec<(String, String)> = guessers
        .iter()
        .flat_map(|g| (0..5).map(move |_| (g.clone(), random_code())))
        .collect();
    let (tested, refused) = tally(&race(&app, &key, &offer, storm).await);
    assert_eq!((tested, refused), (GUESSERS * 5, 0));

    // The winner, with no wrong code, redeems on the same key at once.
    let winner = investor("Awa Diallo".into()).await;
    let r = redeem(&app.client, &app, &key, &offer, &winner, &code).await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    assert_eq!(r.body["status"], "funded", "{:#}", r.body);
    // So does an investor who never guessed, sending several at once.
    let careful = investor("Careful".into()).await;
    let replies = race(
        &app,
        &key,
        &offer,
        (0..3).map(|_| (careful.clone(), code.clone())).collect(),
    )
    .await;
    for r in &replies {
        assert_eq!(r.status, 201, "{:#}", r.body);
    }

    // The investor who guessed wrong before is slowed on this key: the next wrong code is their
    // last free one, where on a quiet key they would have four left.
    let (tested, _) = tally(&[redeem(&app.client, &app, &key, &offer, &typist, &random_code()).await]);
    assert_eq!(tested, 1);
    let r = redeem(&app.client, &app, &key, &offer, &typist, &random_code()).await;
    r.assert_problem(429, "too_many_attempts");

    let funded: Vec<Value> = fixtures::pledges_of(&app, &offer).await;
    assert_eq!(funded.len(), 4);
    app.assert_books_verify().await;
}

/// A claim is given back when the code was known: refusals for other reasons are not guesses,
/// and never use up the allowance.
#[sqlx::test]
async fn refusals_of_a_known_code_do_not_count_as_guesses(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (offer, code) = world(&app).await;
    let key = app.key(Role::Platform).await;
    let winner = fixtures::investor(&app, "Awa Diallo", "sophisticated").await;
    let too_much = |shares: i64| {
        json!({"investor_id": winner, "shares": shares,
               "funding": [{"kind": "cheque", "cheque_code": code, "amount": format!("{}.00", shares * 10)}],
               "kiis_sha256": fixtures::KIIS_SHA256})
    };
    for _ in 0..8 {
        let r = common::send_as(
            &app,
            reqwest::Method::POST,
            &format!("/v1/offers/{offer}/pledges"),
            &key,
            &[("idempotency-key", &uuid::Uuid::new_v4().to_string())],
            Some(&too_much(300)),
        )
        .await;
        r.assert_problem(422, "cheque_invalid");
        assert_eq!(r.body["reason"], "insufficient_balance", "{:#}", r.body);
    }
    let r = redeem(&app.client, &app, &key, &offer, &winner, &code).await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    app.assert_books_verify().await;
}
