//! Many concurrent writers against one no_overdraft account: the database's row lock and check
//! constraint let exactly as many through as the balance covers, and the balance never dips
//! below zero, not even for a moment in the account's history.

use chrono::Utc;
use crowdledger::ledger::{self, AccountCode, AccountKind, LedgerError, NewAccount, NewEntry};
use crowdledger::money::{Currency, Money};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{self, TestApp};

const FUNDED_FOR: usize = 100;
const ATTEMPTS: usize = 200;

async fn lowest_balance_ever(pool: &PgPool, account: Uuid) -> Decimal {
    sqlx::query_scalar("select min(balance_after) from ledger_postings where account_id = $1")
        .bind(account)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn concurrent_debits_stop_exactly_at_zero(pool: PgPool) {
    let wide = common::wide_pool(&pool, 64).await;
    let mut conn = wide.acquire().await.unwrap();
    let open = |code: &str, kind, no_overdraft| NewAccount {
        code: AccountCode::parse(code).unwrap(),
        currency: Currency::EUR,
        kind,
        no_overdraft,
    };
    let now = Utc::now();
    let psp = ledger::open_account(&mut conn, &open("psp:test", AccountKind::Asset, false), now)
        .await
        .unwrap()
        .0
        .id;
    let budget = ledger::open_account(
        &mut conn,
        &open("sponsor:test:budget", AccountKind::Liability, true),
        now,
    )
    .await
    .unwrap()
    .0
    .id;
    let spent = ledger::open_account(&mut conn, &open("cheques:test", AccountKind::Liability, false), now)
        .await
        .unwrap()
        .0
        .id;
    let ticket = Money::new(Decimal::new(200_000, 2), Currency::EUR).unwrap();
    let total = Money::new(ticket.amount() * Decimal::from(FUNDED_FOR), Currency::EUR).unwrap();
    ledger::post(
        &mut conn,
        NewEntry::new("fund", "fund", now)
            .debit(psp, total)
            .credit(budget, total),
    )
    .await
    .unwrap();
    drop(conn);

    let results = common::race(ATTEMPTS, |i| {
        let wide = &wide;
        async move {
            let mut conn = wide.acquire().await.unwrap();
            let entry = NewEntry::new("issue", format!("issue-{i}"), Utc::now())
                .debit(budget, ticket)
                .credit(spent, ticket);
            ledger::post(&mut conn, entry).await
        }
    })
    .await;
    let (mut ok, mut refused) = (0, 0);
    for result in results {
        match result {
            Ok(_) => ok += 1,
            Err(LedgerError::Overdraft) => refused += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((ok, refused), (FUNDED_FOR, ATTEMPTS - FUNDED_FOR));
    let mut conn = wide.acquire().await.unwrap();
    assert!(ledger::balance(&mut conn, budget).await.unwrap().amount().is_zero());
    assert!(lowest_balance_ever(&wide, budget).await >= Decimal::ZERO);
    assert!(ledger::verify(&wide).await.unwrap().iter().all(|c| c.ok));
}

#[sqlx::test]
async fn concurrent_debits_over_http_stop_exactly_at_zero(pool: PgPool) {
    let wide = common::wide_pool(&pool, 64).await;
    let app = TestApp::spawn(wide.clone()).await;
    let account = |code: &str, kind: &str, no_overdraft: bool| json!({"code": code, "currency": "EUR", "kind": kind, "no_overdraft": no_overdraft});
    let bank = app
        .post("/v1/ledger/accounts", account("manual:bank", "asset", false))
        .await
        .body["id"]
        .clone();
    let pot = app
        .post("/v1/ledger/accounts", account("manual:pot", "liability", true))
        .await
        .body["id"]
        .clone();
    let paid = app
        .post("/v1/ledger/accounts", account("manual:paid", "liability", false))
        .await
        .body["id"]
        .clone();
    let entry = |reference: String, debit: &serde_json::Value, credit: &serde_json::Value, amount: &str| {
        json!({"reference": reference, "postings": [
            {"account_id": debit, "side": "debit", "amount": amount, "currency": "EUR"},
            {"account_id": credit, "side": "credit", "amount": amount, "currency": "EUR"},
        ]})
    };
    let r = app
        .post("/v1/ledger/entries", entry("fund".into(), &bank, &pot, "1000.00"))
        .await;
    assert_eq!(r.status, 201, "{:#}", r.body);

    let replies = common::race(ATTEMPTS, |i| {
        app.post("/v1/ledger/entries", entry(format!("pay-{i}"), &pot, &paid, "10.00"))
    })
    .await;
    let (mut created, mut refused) = (0, 0);
    for reply in replies {
        match reply.status.as_u16() {
            201 => created += 1,
            409 => {
                reply.assert_problem(409, "insufficient_funds");
                refused += 1;
            }
            other => panic!("unexpected {other}: {:#}", reply.body),
        }
    }
    assert_eq!((created, refused), (FUNDED_FOR, ATTEMPTS - FUNDED_FOR));
    let pot_id: Uuid = pot.as_str().unwrap().parse().unwrap();
    let r = app.get(&format!("/v1/ledger/accounts/{pot_id}")).await;
    assert_eq!(r.body["balance"], "0.00");
    assert!(lowest_balance_ever(&wide, pot_id).await >= Decimal::ZERO);
    app.assert_books_verify().await;
}
