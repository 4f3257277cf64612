//! A sponsor's self-service (PRODUCT.md section 13): withdrawals of unused budget, paid back
//! through the provider, and the statement of every move of the budget, whose net is the
//! ledger's balance of `sponsor:<id>:budget:<cur>`. Every scenario ends with the books verified.

use std::collections::BTreeMap;

use crowdledger::keys::Role;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{self, DAY, budget, ok};
use crate::common::sandbox::{event, signed};
use crate::common::{self, OPERATOR_KEY, Reply, TestApp, send_as};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Asks the provider for a deposit of `amount` EUR; returns its id and the provider's id.
async fn request_deposit(app: &TestApp, sponsor: &str, amount: &str) -> (String, String) {
    let d = ok(
        app.post(
            &format!("/v1/sponsors/{sponsor}/deposits"),
            json!({"amount": amount, "currency": "EUR"}),
        )
        .await,
        201,
    )
    .await;
    (
        d["id"].as_str().unwrap().to_string(),
        d["payment"]["payment_id"].as_str().unwrap().to_string(),
    )
}

async fn sandbox_succeeds(app: &TestApp, what: &str, provider_id: &str) -> Value {
    let sent = ok(
        app.post(&format!("/v1/sandbox/{what}/{provider_id}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(sent["applied"], true, "{sent:#}");
    sent
}

async fn withdraw(app: &TestApp, sponsor: &str, body: Value) -> Reply {
    app.post(&format!("/v1/sponsors/{sponsor}/withdrawals"), body).await
}

/// Withdraws `amount` (answered 201); returns the withdrawal.
async fn withdrawn(app: &TestApp, sponsor: &str, amount: &str) -> Value {
    ok(withdraw(app, sponsor, json!({"amount": amount})).await, 201).await
}

fn provider_id(withdrawal: &Value) -> String {
    withdrawal["payment"]["payment_id"].as_str().unwrap().to_string()
}

/// Issues a EUR cheque of `face` expiring in `days`: `(id, code)`.
async fn cheque(app: &TestApp, sponsor: &str, face: &str, days: i64) -> (String, String) {
    let c = fixtures::issue_cheque(app, sponsor, face, days).await;
    (
        c["id"].as_str().unwrap().to_string(),
        c["code"].as_str().unwrap().to_string(),
    )
}

/// A pledge of `shares` at 10.00 paid by the cheque `code` alone: funded at once.
async fn cheque_pledge(app: &TestApp, offer: &str, investor: &str, shares: i64, code: &str) -> String {
    let body = json!({"investor_id": investor, "shares": shares,
                      "funding": [{"kind": "cheque", "cheque_code": code, "amount": format!("{}.00", shares * 10)}],
                      "kiis_sha256": fixtures::KIIS_SHA256});
    let p = ok(fixtures::pledge_at(&app.client, &app.base, offer, &body).await, 201).await;
    assert_eq!(p["status"], "funded", "{p:#}");
    p["id"].as_str().unwrap().to_string()
}

/// The budget account's balance as its owner reads it in the database.
async fn budget_in_db(app: &TestApp, sponsor: &str) -> Decimal {
    let balance: Option<Decimal> = sqlx::query_scalar("select balance from ledger_accounts where code = $1")
        .bind(format!("sponsor:{sponsor}:budget:eur"))
        .fetch_optional(&app.pool)
        .await
        .unwrap();
    balance.unwrap_or_default()
}

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not an amount string: {v}"))
        .parse()
        .unwrap()
}

/// What a refused request must leave untouched.
async fn written(app: &TestApp) -> ((i64, i64, i64), i64, i64) {
    let (withdrawals, events): (i64, i64) =
        sqlx::query_as("select (select count(*) from withdrawals), (select count(*) from outbox_events)")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    (app.row_counts().await, withdrawals, events)
}

/// RFC 4180 rows (quoted fields, doubled quotes, CRLF line ends).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field, mut quoted, mut chars) = (Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "the CSV ends with a line break");
    rows
}

async fn statement_csv(app: &TestApp, sponsor: &str, key: &str) -> (reqwest::StatusCode, String, String) {
    let r = app
        .client
        .get(format!("{}/v1/sponsors/{sponsor}/statement", app.base))
        .bearer_auth(key)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    (status, content_type, r.text().await.unwrap())
}

// ---------------------------------------------------------------------------------------------
// The statement
// ---------------------------------------------------------------------------------------------

/// Two deposits (the second confirmed first), four cheques: one partly spent in a round that
/// succeeds, one in a round that fails (its money back to the cheque), one cancelled, one that
/// expires with money left and whose pledge's money, given back after, goes to the sponsor; a
/// withdrawal paid and one pending. The statement's totals, lines and closing balance are the
/// ledger's, in JSON and CSV alike.
#[sqlx::test]
async fn the_statement_accounts_for_every_move_of_the_budget(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::sponsor(&app, "Fondation Iroise").await;
    let (first, first_provider) = request_deposit(&app, &sponsor, "5000.00").await;
    let (second, second_provider) = request_deposit(&app, &sponsor, "3000.00").await;
    sandbox_succeeds(&app, "deposits", &second_provider).await;
    sandbox_succeeds(&app, "deposits", &first_provider).await;

    let project = fixtures::published_project(&app).await;
    let succeeds = fixtures::open_offer(
        &app,
        &project,
        json!({"min_target": "100.00", "max_target": "1000.00"}),
        9,
    )
    .await;
    let fails = fixtures::open_offer(
        &app,
        &project,
        json!({"min_target": "1000.00", "max_target": "2000.00"}),
        5,
    )
    .await;
    let winners = fixtures::investors(&app, 3).await;

    let (kept, kept_code) = cheque(&app, &sponsor, "1000.00", 365).await;
    let (back, back_code) = cheque(&app, &sponsor, "500.00", 365).await;
    let (cancelled, _) = cheque(&app, &sponsor, "400.00", 365).await;
    let (expiring, expiring_code) = cheque(&app, &sponsor, "250.00", 3).await;
    cheque_pledge(&app, &succeeds, &winners[0], 30, &kept_code).await;
    cheque_pledge(&app, &fails, &winners[1], 20, &back_code).await;
    cheque_pledge(&app, &fails, &winners[2], 10, &expiring_code).await;
    ok(
        app.post(&format!("/v1/cheques/{cancelled}/cancel"), json!({})).await,
        200,
    )
    .await;
    let closed = ok(app.post(&format!("/v1/offers/{succeeds}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");

    // The fourth cheque expires (its rest, 150.00, goes back); then the round it went to fails,
    // after it ended: its 100.00 goes to the sponsor, the second cheque's 200.00 to that cheque.
    app.clock.advance(4 * DAY).unwrap();
    app.wait_for(&format!("/v1/cheques/{expiring}"), |c| c["status"] == "expired")
        .await;
    app.clock.advance(2 * DAY).unwrap();
    app.wait_for(&format!("/v1/offers/{fails}"), |o| o["status"] == "failed")
        .await;
    let c = ok(app.get(&format!("/v1/cheques/{back}")).await, 200).await;
    assert_eq!(c["balance"], "500.00", "{c:#}");

    let paid = withdrawn(&app, &sponsor, "500.00").await;
    sandbox_succeeds(&app, "withdrawals", &provider_id(&paid)).await;
    let pending = withdrawn(&app, &sponsor, "250.00").await;

    // 8000 deposited − 2150 issued + 550 ended (400 cancelled, 150 expired) + 100 given back
    // − 750 withdrawn.
    let s = ok(app.get(&format!("/v1/sponsors/{sponsor}/statement")).await, 200).await;
    assert_eq!(s["sponsor_id"], sponsor.as_str());
    assert_eq!(s["currency"], "EUR");
    assert_eq!(
        s["totals"],
        json!({"deposits": "8000.00", "cheques_issued": "2150.00", "cheques_ended": "550.00",
               "given_back": "100.00", "withdrawn": "750.00", "match_pools_reserved": "0.00",
               "match_pools_returned": "0.00", "other": "0.00", "closing_balance": "5750.00"})
    );
    assert_eq!(budget(&app, &sponsor).await, "5750.00");
    assert_eq!(budget_in_db(&app, &sponsor).await, Decimal::new(575000, 2));
    let as_of: chrono::DateTime<chrono::Utc> = s["as_of"].as_str().unwrap().parse().unwrap();
    let now = app.clock.now();
    assert!(
        as_of <= now && now - as_of < chrono::TimeDelta::seconds(10),
        "{as_of} {now}"
    );

    // The lines, in order, each with its ids and the balance after it.
    let lines = s["lines"].as_array().unwrap();
    let id = |line: &Value, key: &str| line[key].as_str().unwrap_or("").to_string();
    let expected: Vec<(&str, &str, &str, (&str, &str))> = vec![
        (
            "deposit.confirmed",
            "3000.00",
            "3000.00",
            ("deposit_id", second.as_str()),
        ),
        (
            "deposit.confirmed",
            "5000.00",
            "8000.00",
            ("deposit_id", first.as_str()),
        ),
        ("cheque.issued", "-1000.00", "7000.00", ("cheque_id", kept.as_str())),
        ("cheque.issued", "-500.00", "6500.00", ("cheque_id", back.as_str())),
        ("cheque.issued", "-400.00", "6100.00", ("cheque_id", cancelled.as_str())),
        ("cheque.issued", "-250.00", "5850.00", ("cheque_id", expiring.as_str())),
        ("cheque.ended", "400.00", "6250.00", ("cheque_id", cancelled.as_str())),
        ("cheque.ended", "150.00", "6400.00", ("cheque_id", expiring.as_str())),
        (
            "cheque.returned_to_sponsor",
            "100.00",
            "6500.00",
            ("cheque_id", expiring.as_str()),
        ),
        (
            "withdrawal.requested",
            "-500.00",
            "6000.00",
            ("withdrawal_id", paid["id"].as_str().unwrap()),
        ),
        (
            "withdrawal.requested",
            "-250.00",
            "5750.00",
            ("withdrawal_id", pending["id"].as_str().unwrap()),
        ),
    ];
    let got: Vec<(String, String, String, String)> = lines
        .iter()
        .zip(&expected)
        .map(|(l, e)| (id(l, "kind"), id(l, "amount"), id(l, "balance"), id(l, e.3.0)))
        .collect();
    let want: Vec<(String, String, String, String)> = expected
        .iter()
        .map(|(k, a, b, (_, i))| (k.to_string(), a.to_string(), b.to_string(), i.to_string()))
        .collect();
    assert_eq!(got, want, "{s:#}");
    assert_eq!(lines.len(), expected.len(), "{s:#}");
    let sum: Decimal = lines.iter().map(|l| dec(&l["amount"])).sum();
    assert_eq!(sum, budget_in_db(&app, &sponsor).await);
    for line in lines {
        let reference = line["reference"].as_str().unwrap();
        let kind: String = sqlx::query_scalar("select kind from ledger_entries where reference = $1")
            .bind(reference)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(line["kind"], kind.as_str(), "{line:#}");
    }

    // What the cheques were spent on, with the shares the winners were allocated.
    assert_eq!(
        s["redeemed"],
        json!([
            {"project_id": project, "project_name": "Crois/Sens", "offer_id": succeeds, "spent": "300.00",
             "given_back_to_cheques": "0.00", "pledges": 1, "shares_allocated": 30},
            {"project_id": project, "project_name": "Crois/Sens", "offer_id": fails, "spent": "300.00",
             "given_back_to_cheques": "300.00", "pledges": 2, "shares_allocated": 0},
        ])
    );

    // The CSV: the same lines and amounts to the cent, then the closing balance.
    let (status, content_type, text) = statement_csv(&app, &sponsor, OPERATOR_KEY).await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let rows = parse_csv(&text);
    assert_eq!(
        rows[0],
        [
            "at",
            "kind",
            "reference",
            "amount",
            "balance",
            "currency",
            "cheque_id",
            "deposit_id",
            "withdrawal_id",
            "match_pool_id"
        ]
    );
    assert_eq!(rows.len(), lines.len() + 2, "{text}");
    for (row, line) in rows[1..].iter().zip(lines) {
        let at: chrono::DateTime<chrono::Utc> = row[0].parse().unwrap();
        let json_at: chrono::DateTime<chrono::Utc> = line["at"].as_str().unwrap().parse().unwrap();
        assert_eq!(at, json_at);
        assert_eq!(
            (&row[1], &row[2], &row[3], &row[4], &row[5]),
            (
                &id(line, "kind"),
                &id(line, "reference"),
                &id(line, "amount"),
                &id(line, "balance"),
                &"EUR".to_string()
            )
        );
        assert_eq!(row[3].parse::<Decimal>().unwrap(), dec(&line["amount"]));
        for (n, key) in [
            (6, "cheque_id"),
            (7, "deposit_id"),
            (8, "withdrawal_id"),
            (9, "match_pool_id"),
        ] {
            assert_eq!(row[n], id(line, key), "{key} of {row:?}");
        }
    }
    let last = rows.last().unwrap();
    assert_eq!(
        (&last[1], &last[4], &last[5]),
        (
            &"closing_balance".to_string(),
            &"5750.00".to_string(),
            &"EUR".to_string()
        )
    );

    // An auditor reads it too; the platform does not.
    let auditor = app.key(Role::Auditor).await;
    let mut r = send_as(
        &app,
        Method::GET,
        &format!("/v1/sponsors/{sponsor}/statement"),
        &auditor,
        &[],
        None,
    )
    .await;
    // The same, but for the time of the read (the clock goes on).
    r.body["as_of"] = s["as_of"].clone();
    assert_eq!(r.body, s);
    let mut audited = parse_csv(&statement_csv(&app, &sponsor, &auditor).await.2);
    let mut ours = rows.clone();
    for rows in [&mut audited, &mut ours] {
        rows.last_mut().unwrap()[0].clear();
    }
    assert_eq!(audited, ours);
    let platform = app.key(Role::Platform).await;
    send_as(
        &app,
        Method::GET,
        &format!("/v1/sponsors/{sponsor}/statement"),
        &platform,
        &[],
        None,
    )
    .await
    .assert_problem(403, "forbidden");
    app.get(&format!("/v1/sponsors/{}/statement", uuid::Uuid::new_v4()))
        .await
        .assert_problem(404, "not_found");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_new_sponsor_has_an_empty_statement_and_text_is_guarded_in_csv(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::sponsor(&app, "Fondation Iroise").await;
    let s = ok(app.get(&format!("/v1/sponsors/{sponsor}/statement")).await, 200).await;
    assert_eq!(s["totals"]["closing_balance"], "0.00");
    assert_eq!(s["lines"], json!([]));
    assert_eq!(s["redeemed"], json!([]));
    let (_, _, text) = statement_csv(&app, &sponsor, OPERATOR_KEY).await;
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(
        (&rows[1][1], &rows[1][4]),
        (&"closing_balance".to_string(), &"0.00".to_string())
    );
    assert_eq!(crowdledger::fields::csv_field("=1+2"), "'=1+2");
    assert_eq!(crowdledger::fields::csv_field("-a,\"b\""), "\"'-a,\"\"b\"\"\"");
}

// ---------------------------------------------------------------------------------------------
// Withdrawals
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn a_withdrawal_leaves_the_budget_at_once_and_the_books_when_the_provider_pays(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "1000.00").await;
    let w = withdrawn(&app, &sponsor, "400.00").await;
    assert_eq!(
        (&w["status"], &w["amount"], &w["currency"], &w["sponsor_id"]),
        (&json!("pending"), &json!("400.00"), &json!("EUR"), &json!(sponsor))
    );
    assert!(provider_id(&w).starts_with("wd_"), "{w:#}");
    assert_eq!(w["payment"]["provider"], "sandbox");
    assert_eq!(budget(&app, &sponsor).await, "600.00");
    assert_eq!(fixtures::balance(&app, "withdrawals:sandbox:eur").await, "400.00");
    let requested: Vec<Value> =
        sqlx::query_scalar("select payload from outbox_events where event_type = 'withdrawal.requested'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        requested.iter().map(|e| &e["data"]).collect::<Vec<_>>(),
        [&json!({"withdrawal_id": w["id"], "sponsor_id": sponsor, "amount": "400.00", "currency": "EUR"})]
    );
    app.assert_books_verify().await;

    // A confirmation for other money is quarantined and moves nothing.
    let id = provider_id(&w);
    let now = chrono::Utc::now().timestamp();
    for (n, (amount, currency)) in [("399.99", "EUR"), ("400.00", "USD")].into_iter().enumerate() {
        let event_id = format!("evt_wd_wrong_{n}");
        let r = signed(
            &app,
            &event_id,
            event(&event_id, "payout.paid", &id, amount, currency, now),
            0,
        )
        .await;
        assert_eq!(r.status, 200, "{:#}", r.body);
        assert_eq!(r.body["outcome"], "quarantined", "{:#}", r.body);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .starts_with("payout_mismatch: withdrawal"),
            "{:#}",
            r.body
        );
    }
    let one = ok(
        app.get(&format!("/v1/withdrawals/{}", w["id"].as_str().unwrap())).await,
        200,
    )
    .await;
    assert_eq!(one["status"], "pending");
    assert_eq!(fixtures::balance(&app, "withdrawals:sandbox:eur").await, "400.00");

    // The right one pays it: withdrawals → psp; its repeat is a duplicate, a second one ignored.
    let psp_before: Decimal = fixtures::balance(&app, "psp:sandbox:eur").await.parse().unwrap();
    let event_id = "evt_wd_paid";
    let r = signed(
        &app,
        event_id,
        event(event_id, "payout.paid", &id, "400.00", "EUR", now),
        0,
    )
    .await;
    assert_eq!(
        (r.body["outcome"].as_str(), &r.body["duplicate"]),
        (Some("applied"), &json!(false)),
        "{:#}",
        r.body
    );
    let again = signed(
        &app,
        event_id,
        event(event_id, "payout.paid", &id, "400.00", "EUR", now),
        0,
    )
    .await;
    assert_eq!(again.body["duplicate"], true, "{:#}", again.body);
    let control = ok(
        app.post(&format!("/v1/sandbox/withdrawals/{id}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(
        (&control["applied"], &control["outcome"]),
        (&json!(false), &json!("ignored"))
    );
    let one = ok(
        app.get(&format!("/v1/withdrawals/{}", w["id"].as_str().unwrap())).await,
        200,
    )
    .await;
    assert_eq!(one["status"], "paid");
    assert!(one["settled_at"].is_string(), "{one:#}");
    assert_eq!(fixtures::balance(&app, "withdrawals:sandbox:eur").await, "0.00");
    let psp_after: Decimal = fixtures::balance(&app, "psp:sandbox:eur").await.parse().unwrap();
    assert_eq!(psp_before - psp_after, Decimal::new(40000, 2));
    let paid: i64 = sqlx::query_scalar("select count(*) from outbox_events where event_type = 'withdrawal.paid'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(paid, 1);

    // Listed, newest first, by status.
    let second = withdrawn(&app, &sponsor, "100.00").await;
    let all = ok(app.get(&format!("/v1/sponsors/{sponsor}/withdrawals")).await, 200).await;
    let ids: Vec<&Value> = all["items"].as_array().unwrap().iter().map(|w| &w["id"]).collect();
    assert_eq!(ids, [&second["id"], &w["id"]]);
    let pending = ok(
        app.get(&format!("/v1/sponsors/{sponsor}/withdrawals?status=pending"))
            .await,
        200,
    )
    .await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 1);
    assert_eq!(pending["items"][0]["id"], second["id"]);
    app.get(&format!("/v1/withdrawals/{}", uuid::Uuid::new_v4()))
        .await
        .assert_problem(404, "not_found");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn refused_withdrawals_write_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "1000.00").await;
    let before = written(&app).await;
    let r = withdraw(&app, &sponsor, json!({"amount": "1000.01"})).await;
    r.assert_problem(422, "insufficient_sponsor_budget");
    assert_eq!(written(&app).await, before);
    for (body, code) in [
        (json!({"amount": "10.00", "currency": "USD"}), "currency_mismatch"),
        (json!({"amount": "0.00"}), "validation_failed"),
        (json!({"amount": "-5.00"}), "validation_failed"),
        (json!({"amount": "1.001"}), "validation_failed"),
        (json!({"amount": 10}), "validation_failed"),
        (json!({"amount": "10.00", "to": "elsewhere"}), "validation_failed"),
    ] {
        withdraw(&app, &sponsor, body.clone()).await.assert_problem(422, code);
        assert_eq!(written(&app).await, before, "{body}");
    }
    withdraw(&app, &uuid::Uuid::new_v4().to_string(), json!({"amount": "1.00"}))
        .await
        .assert_problem(404, "not_found");
    // Only operators withdraw.
    for role in [Role::Auditor, Role::Platform] {
        let key = app.key(role).await;
        let r = send_as(
            &app,
            Method::POST,
            &format!("/v1/sponsors/{sponsor}/withdrawals"),
            &key,
            &[],
            Some(&json!({"amount": "1.00"})),
        )
        .await;
        r.assert_problem(403, "forbidden");
    }
    assert_eq!(written(&app).await, before);
    // All of it, exactly, is fine; then nothing more.
    withdrawn(&app, &sponsor, "1000.00").await;
    withdraw(&app, &sponsor, json!({"amount": "0.01", "currency": "EUR"}))
        .await
        .assert_problem(422, "insufficient_sponsor_budget");
    assert_eq!(budget(&app, &sponsor).await, "0.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_replayed_withdrawal_is_one_withdrawal(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "1000.00").await;
    let path = format!("/v1/sponsors/{sponsor}/withdrawals");
    let headers = [("idempotency-key", "withdraw-once")];
    let body = json!({"amount": "300.00"});
    let first = send_as(&app, Method::POST, &path, OPERATOR_KEY, &headers, Some(&body)).await;
    assert_eq!(first.status, 201, "{:#}", first.body);
    let again = send_as(&app, Method::POST, &path, OPERATOR_KEY, &headers, Some(&body)).await;
    assert_eq!((again.status.as_u16(), &again.body), (201, &first.body));
    let other = json!({"amount": "301.00"});
    send_as(&app, Method::POST, &path, OPERATOR_KEY, &headers, Some(&other))
        .await
        .assert_problem(422, "idempotency_key_reused");
    assert_eq!(budget(&app, &sponsor).await, "700.00");
}

#[sqlx::test]
async fn racing_withdrawals_take_exactly_what_the_budget_holds(pool: PgPool) {
    const RACERS: usize = 20;
    const ROOM: usize = 7;
    let wide = common::wide_pool(&pool, 30).await;
    let app = TestApp::spawn(wide).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", &format!("{}.00", ROOM * 100)).await;
    let replies = common::race(RACERS, |_| {
        let (app, sponsor) = (&app, &sponsor);
        async move { withdraw(app, sponsor, json!({"amount": "100.00"})).await }
    })
    .await;
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    for r in &replies {
        *answers.entry(r.status.as_u16()).or_default() += 1;
        if r.status == 422 {
            r.assert_problem(422, "insufficient_sponsor_budget");
        }
    }
    assert_eq!(answers, BTreeMap::from([(201, ROOM), (422, RACERS - ROOM)]));
    assert_eq!(budget(&app, &sponsor).await, "0.00");
    assert_eq!(budget_in_db(&app, &sponsor).await, Decimal::ZERO);
    let rows: i64 = sqlx::query_scalar("select count(*) from withdrawals")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, ROOM as i64);
    let s = ok(app.get(&format!("/v1/sponsors/{sponsor}/statement")).await, 200).await;
    assert_eq!(s["totals"]["withdrawn"], format!("{}.00", ROOM * 100));
    assert_eq!(s["totals"]["closing_balance"], "0.00");
    app.assert_books_verify().await;
}
