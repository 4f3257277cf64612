//! `POST /v1/cheques/lookup` (PRODUCT.md section 13): a winner, through the platform, reads a
//! cheque by its code without spending it — balance, expiry, restrictions and the open offers it
//! may be spent in. It writes nothing to the books or the outbox, and wrong codes count exactly
//! like wrong codes in pledges: the same allowance per investor, and per API key for lookups that
//! name no investor.

use crowdledger::keys::Role;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{self, DAY, ok};
use crate::common::{OPERATOR_KEY, Reply, TestApp, send_as};

fn lookup_body(code: &str, investor: Option<&str>) -> Value {
    match investor {
        Some(investor) => json!({"code": code, "investor_id": investor}),
        None => json!({"code": code}),
    }
}

/// `POST /v1/cheques/lookup` with `key`.
async fn lookup_as(app: &TestApp, key: &str, code: &str, investor: Option<&str>) -> Reply {
    send_as(
        app,
        Method::POST,
        "/v1/cheques/lookup",
        key,
        &[],
        Some(&lookup_body(code, investor)),
    )
    .await
}

/// A lookup for `investor` with the operator's key, answered 200.
async fn look_up(app: &TestApp, code: &str, investor: &str) -> Value {
    ok(lookup_as(app, OPERATOR_KEY, code, Some(investor)).await, 200).await
}

/// Issues a EUR cheque of `face` from `sponsor`, expiring in `days`, with `extra` fields;
/// returns it as issued (with its code).
async fn issue(app: &TestApp, sponsor: &str, face: &str, days: i64, extra: Value) -> Value {
    let expires = app.clock.now() + chrono::TimeDelta::days(days);
    let mut body = json!({"sponsor_id": sponsor, "beneficiary_name": "Awa Diallo",
                          "beneficiary_email": "awa@example.org", "face_value": face, "currency": "EUR",
                          "expires_at": expires.to_rfc3339()});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    ok(app.post("/v1/cheques", body).await, 201).await
}

fn code_of(cheque: &Value) -> String {
    cheque["code"].as_str().unwrap().to_string()
}

/// A well-formed code that names no cheque: `code` with one character changed.
fn wrong_code(code: &str, n: usize) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let at = 4 + 5 * (n % 4) + n / 4 % 4;
    chars[at] = if chars[at] == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

/// A draft offer of `project`, never opened.
async fn draft_offer(app: &TestApp, project: &str) -> String {
    let now = app.clock.now();
    let body = json!({
        "currency": "EUR", "share_price": "10.00", "min_target": "100.00", "max_target": "1000.00",
        "min_ticket": "10.00", "opens_at": now.to_rfc3339(),
        "closes_at": (now + chrono::TimeDelta::days(9)).to_rfc3339(),
        "success_fee_rate": "0.05", "allocation": "first_come",
    });
    let offer = ok(app.post(&format!("/v1/projects/{project}/offers"), body).await, 201).await;
    offer["id"].as_str().unwrap().to_string()
}

async fn small_offer(app: &TestApp, project: &str) -> String {
    fixtures::open_offer(
        app,
        project,
        json!({"min_target": "100.00", "max_target": "1000.00"}),
        9,
    )
    .await
}

fn offer_ids(found: &Value) -> Vec<String> {
    let mut ids: Vec<String> = found["eligible_open_offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["offer_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn outbox_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from outbox_events")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// A cheque pledge of `shares` at 10.00 paid by `code` for `amount`.
async fn cheque_pledge(app: &TestApp, offer: &str, investor: &str, shares: i64, code: &str, amount: &str) -> Reply {
    let body = json!({"investor_id": investor, "shares": shares,
                      "funding": [{"kind": "cheque", "cheque_code": code, "amount": amount}],
                      "kiis_sha256": fixtures::KIIS_SHA256});
    fixtures::pledge_at(&app.client, &app.base, offer, &body).await
}

fn assert_unknown_code(r: &Reply) {
    r.assert_problem(422, "cheque_invalid");
    assert_eq!(r.body["reason"], "unknown_code", "{:#}", r.body);
    assert_eq!(r.body["detail"], "no cheque has this code", "{:#}", r.body);
}

fn assert_blocked(r: &Reply) -> u64 {
    r.assert_problem(429, "too_many_attempts");
    let wait: u64 = r
        .headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no retry-after: {:?}", r.headers))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "retry-after {wait}");
    wait
}

async fn advance(app: &TestApp, seconds: i64) {
    ok(
        app.post("/v1/sandbox/clock", json!({"advance_seconds": seconds})).await,
        200,
    )
    .await;
}

#[sqlx::test]
async fn a_right_code_shows_the_cheque_and_exactly_the_open_offers_it_may_go_to(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let named = fixtures::published_project(&app).await;
    let archived = fixtures::published_project(&app).await;
    let other = fixtures::published_project(&app).await;
    let eligible = small_offer(&app, &named).await;
    let second = small_offer(&app, &named).await;
    draft_offer(&app, &named).await;
    small_offer(&app, &other).await;
    small_offer(&app, &archived).await;
    // Archived behind the API's back, its offer still open: the lookup leaves it out anyway.
    sqlx::query("update projects set status = 'archived' where id = $1::uuid")
        .bind(&archived)
        .execute(&app.pool)
        .await
        .unwrap();

    let cheque = issue(
        &app,
        &sponsor,
        "2000.00",
        365,
        json!({"eligible_project_ids": [named, archived], "eligible_themes": ["inclusion"]}),
    )
    .await;
    let winner = fixtures::investor(&app, "Awa Diallo", "sophisticated").await;
    let before = (app.row_counts().await, outbox_count(&app).await);

    // Sloppy typing is forgiven, as when spending.
    let sloppy = code_of(&cheque).to_lowercase().replace('-', " ");
    let found = look_up(&app, &sloppy, &winner).await;
    assert_eq!(found["cheque_id"], cheque["id"]);
    assert_eq!(found["status"], "active");
    assert_eq!(found["balance"], json!({"amount": "2000.00", "currency": "EUR"}));
    assert_eq!(found["currency"], "EUR");
    assert_eq!(found["expires_at"], cheque["expires_at"]);
    assert_eq!(found["eligible_themes"], json!(["inclusion"]));
    let mut projects = vec![named.clone(), archived.clone()];
    projects.sort();
    assert_eq!(found["eligible_project_ids"], json!(projects));
    let mut expected = vec![eligible.clone(), second.clone()];
    expected.sort();
    assert_eq!(offer_ids(&found), expected, "{found:#}");
    for offer in found["eligible_open_offers"].as_array().unwrap() {
        assert_eq!(offer["project_id"], named.as_str());
        assert_eq!(offer["project_name"], "Crois/Sens");
    }
    assert!(found.get("code").is_none(), "{found:#}");

    // A theme none of the projects has: nothing to spend it on.
    let culture = issue(&app, &sponsor, "100.00", 365, json!({"eligible_themes": ["culture"]})).await;
    let found = look_up(&app, &code_of(&culture), &winner).await;
    assert_eq!(found["eligible_open_offers"], json!([]));
    // No restriction: every open EUR offer of a project not archived.
    let free = issue(&app, &sponsor, "100.00", 365, json!({})).await;
    let found = look_up(&app, &code_of(&free), &winner).await;
    assert_eq!(found["eligible_open_offers"].as_array().unwrap().len(), 3, "{found:#}");

    // Lookups write nothing to the books or the outbox (the two cheques above did, before).
    let middle = (app.row_counts().await, outbox_count(&app).await);
    assert_ne!(middle, before);
    for _ in 0..3 {
        look_up(&app, &code_of(&cheque), &winner).await;
        assert_unknown_code(&lookup_as(&app, OPERATOR_KEY, &wrong_code(&code_of(&cheque), 0), Some(&winner)).await);
    }
    assert_eq!((app.row_counts().await, outbox_count(&app).await), middle);

    // Spent in part: the lookup shows what is left.
    let r = cheque_pledge(&app, &eligible, &winner, 30, &code_of(&cheque), "300.00").await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    let found = look_up(&app, &code_of(&cheque), &winner).await;
    assert_eq!(found["balance"]["amount"], "1700.00");
    assert_eq!(found["status"], "active");

    // Spent in full: `spent`, nowhere left to go.
    let r = cheque_pledge(&app, &second, &winner, 10, &code_of(&culture), "100.00").await;
    r.assert_problem(422, "cheque_invalid");
    let r = cheque_pledge(&app, &second, &winner, 10, &code_of(&free), "100.00").await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    let found = look_up(&app, &code_of(&free), &winner).await;
    assert_eq!(
        (
            &found["status"],
            &found["balance"]["amount"],
            &found["eligible_open_offers"]
        ),
        (&json!("spent"), &json!("0.00"), &json!([]))
    );
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn an_expired_or_cancelled_cheque_answers_its_status_with_no_offers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let (_, offer) = fixtures::small_open_offer(&app).await;
    let winner = fixtures::investor(&app, "Awa Diallo", "sophisticated").await;
    let expiring = issue(&app, &sponsor, "200.00", 2, json!({})).await;
    let cancelled = issue(&app, &sponsor, "200.00", 30, json!({})).await;
    ok(
        app.post(
            &format!("/v1/cheques/{}/cancel", cancelled["id"].as_str().unwrap()),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    let found = look_up(&app, &code_of(&cancelled), &winner).await;
    assert_eq!(
        (
            &found["status"],
            &found["balance"]["amount"],
            &found["eligible_open_offers"]
        ),
        (&json!("cancelled"), &json!("0.00"), &json!([]))
    );

    let found = look_up(&app, &code_of(&expiring), &winner).await;
    assert_eq!(offer_ids(&found), [offer]);
    // Past its expiry the lookup says so at once, even before the job gives its rest back…
    app.clock.advance(3 * DAY).unwrap();
    let found = look_up(&app, &code_of(&expiring), &winner).await;
    assert_eq!(found["status"], "expired", "{found:#}");
    assert_eq!(found["eligible_open_offers"], json!([]));
    // … and after it, with nothing left.
    let id = expiring["id"].as_str().unwrap();
    app.wait_for(&format!("/v1/cheques/{id}"), |c| c["status"] == "expired")
        .await;
    let found = look_up(&app, &code_of(&expiring), &winner).await;
    assert_eq!(
        (
            &found["status"],
            &found["balance"]["amount"],
            &found["eligible_open_offers"]
        ),
        (&json!("expired"), &json!("0.00"), &json!([]))
    );
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn wrong_lookups_and_wrong_pledge_codes_share_the_investors_allowance(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let cheque = issue(&app, &sponsor, "2000.00", 365, json!({})).await;
    let code = code_of(&cheque);
    let (_, offer) = fixtures::small_open_offer(&app).await;
    let key = app.key(Role::Platform).await;
    let guesser = fixtures::investor(&app, "Mallory", "sophisticated").await;

    // Malformed and unknown codes answer as a pledge would.
    assert_unknown_code(&lookup_as(&app, &key, "not a code", Some(&guesser)).await);
    for n in 0..2 {
        let r = cheque_pledge(&app, &offer, &guesser, 1, &wrong_code(&code, n), "10.00").await;
        assert_unknown_code(&r);
    }
    // That was three; two more lookups use up the allowance of five.
    for n in 2..4 {
        assert_unknown_code(&lookup_as(&app, &key, &wrong_code(&code, n), Some(&guesser)).await);
    }
    // Blocked now: the right code is refused, to a lookup and to a pledge, and nothing moves.
    let before = (app.row_counts().await, outbox_count(&app).await);
    let wait = assert_blocked(&lookup_as(&app, &key, &code, Some(&guesser)).await);
    assert!(wait <= 60, "the first block is a minute: {wait}");
    assert_blocked(&cheque_pledge(&app, &offer, &guesser, 1, &code, "10.00").await);
    assert_eq!((app.row_counts().await, outbox_count(&app).await), before);
    // Another investor on the same key is not refused.
    let honest = fixtures::investor(&app, "Awa Diallo", "sophisticated").await;
    let found = ok(lookup_as(&app, &key, &code, Some(&honest)).await, 200).await;
    assert_eq!(found["cheque_id"], cheque["id"]);

    // Once the block ends the right code answers.
    advance(&app, 61).await;
    let found = ok(lookup_as(&app, &key, &code, Some(&guesser)).await, 200).await;
    assert_eq!(found["balance"]["amount"], "2000.00");

    // An unknown investor is refused as a pledge refuses one, and counts as no guess.
    let nobody = uuid::Uuid::new_v4().to_string();
    let r = lookup_as(&app, &key, &wrong_code(&code, 9), Some(&nobody)).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["detail"], format!("no investor {nobody}"), "{:#}", r.body);
    ok(lookup_as(&app, &key, &code, Some(&honest)).await, 200).await;
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_burst_of_wrong_codes_trips_the_limiter_and_holds_until_the_block_ends(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let code = code_of(&issue(&app, &sponsor, "2000.00", 365, json!({})).await);
    let guesser = fixtures::investor(&app, "Mallory", "sophisticated").await;

    // All at once: however they race, at most five are tested.
    let replies = crate::common::race(20, |n| {
        let (app, code, guesser) = (&app, &code, &guesser);
        async move { lookup_as(app, OPERATOR_KEY, &wrong_code(code, n), Some(guesser)).await }
    })
    .await;
    let tested = replies.iter().filter(|r| r.status == 422).count();
    let refused = replies.iter().filter(|r| r.status == 429).count();
    assert!((1..=5).contains(&tested), "{tested} tested");
    assert_eq!(tested + refused, 20);
    for r in &replies {
        if r.status == 422 {
            assert_unknown_code(r);
        } else {
            assert_blocked(r);
        }
    }
    // The block holds for the right code too, until it ends (at most an hour).
    let wait = assert_blocked(&lookup_as(&app, OPERATOR_KEY, &code, Some(&guesser)).await);
    advance(&app, wait as i64 - 1).await;
    assert_blocked(&lookup_as(&app, OPERATOR_KEY, &code, Some(&guesser)).await);
    advance(&app, 2).await;
    ok(lookup_as(&app, OPERATOR_KEY, &code, Some(&guesser)).await, 200).await;
}

#[sqlx::test]
async fn lookups_without_an_investor_are_limited_per_api_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let code = code_of(&issue(&app, &sponsor, "2000.00", 365, json!({})).await);
    let key = app.key(Role::Platform).await;
    let other_key = app.key(Role::Platform).await;

    let found = ok(lookup_as(&app, &key, &code, None).await, 200).await;
    assert_eq!(found["balance"]["amount"], "2000.00");
    for n in 0..5 {
        assert_unknown_code(&lookup_as(&app, &key, &wrong_code(&code, n), None).await);
    }
    // The key's anonymous lookups are blocked, right code or not: no free oracle.
    assert_blocked(&lookup_as(&app, &key, &code, None).await);
    assert_blocked(&lookup_as(&app, &key, &wrong_code(&code, 7), None).await);
    // Another key's anonymous lookups, and lookups naming an investor on this key, are their own.
    ok(lookup_as(&app, &other_key, &code, None).await, 200).await;
    let winner = fixtures::investor(&app, "Awa Diallo", "sophisticated").await;
    ok(lookup_as(&app, &key, &code, Some(&winner)).await, 200).await;
    // So are the bootstrap operator key's.
    ok(lookup_as(&app, OPERATOR_KEY, &code, None).await, 200).await;

    let scopes: Vec<String> = sqlx::query_scalar("select scope from cheque_code_failures order by scope")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(scopes.iter().any(|s| s.starts_with("lookup:client:")), "{scopes:?}");
    advance(&app, 3600).await;
    ok(lookup_as(&app, &key, &code, None).await, 200).await;
}

#[sqlx::test]
async fn the_platform_and_operators_look_cheques_up_and_nobody_else(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "10000.00").await;
    let code = code_of(&issue(&app, &sponsor, "2000.00", 365, json!({})).await);
    for role in [Role::Operator, Role::Platform] {
        let key = app.key(role).await;
        ok(lookup_as(&app, &key, &code, None).await, 200).await;
    }
    let auditor = app.key(Role::Auditor).await;
    lookup_as(&app, &auditor, &code, None)
        .await
        .assert_problem(403, "forbidden");
    let r = app
        .call(Method::POST, "/v1/cheques/lookup", None, Some(&json!({"code": code})))
        .await;
    r.assert_problem(401, "unauthorized");
    // Unknown fields are refused.
    let r = app
        .post("/v1/cheques/lookup", json!({"code": code, "amount": "10.00"}))
        .await;
    r.assert_problem(422, "validation_failed");
}
