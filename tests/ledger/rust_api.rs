//! The ledger's Rust API: posting, idempotency by reference, reversal, balances, statements and
//! verify, against a real Postgres.

use chrono::Utc;
use crowdledger::ledger::{self, AccountCode, AccountKind, LedgerError, NewAccount, NewEntry};
use crowdledger::money::{Currency, Money};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::common;

fn eur(s: &str) -> Money {
    Money::new(s.parse().unwrap(), Currency::EUR).unwrap()
}

async fn open(conn: &mut PgConnection, code: &str, kind: AccountKind, no_overdraft: bool) -> Uuid {
    let new = NewAccount {
        code: AccountCode::parse(code).unwrap(),
        currency: Currency::EUR,
        kind,
        no_overdraft,
    };
    ledger::open_account(conn, &new, Utc::now()).await.unwrap().0.id
}

fn transfer(reference: &str, debit: Uuid, credit: Uuid, amount: &str) -> NewEntry {
    NewEntry::new("test.transfer", reference, Utc::now())
        .debit(debit, eur(amount))
        .credit(credit, eur(amount))
}

#[sqlx::test]
async fn posting_moves_balances_on_each_accounts_normal_side(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let psp = open(&mut conn, "psp:sandbox", AccountKind::Asset, false).await;
    let escrow = open(&mut conn, "offer:1:escrow", AccountKind::Liability, true).await;
    let fees = open(&mut conn, "platform:fees", AccountKind::Revenue, false).await;

    ledger::post(&mut conn, transfer("pay-1", psp, escrow, "1000.00"))
        .await
        .unwrap();
    let close = NewEntry::new("test.close", "close-1", Utc::now())
        .debit(escrow, eur("1000.00"))
        .credit(fees, eur("50.00"))
        .credit(psp, eur("950.00"));
    let posted = ledger::post(&mut conn, close).await.unwrap();
    assert!(!posted.replayed);
    assert_eq!(posted.entry.postings.len(), 3);

    assert_eq!(ledger::balance(&mut conn, psp).await.unwrap(), eur("50.00"));
    assert_eq!(ledger::balance(&mut conn, escrow).await.unwrap(), eur("0"));
    assert_eq!(ledger::balance(&mut conn, fees).await.unwrap(), eur("50.00"));
    assert!(ledger::verify(&pool).await.unwrap().iter().all(|c| c.ok));
}

#[sqlx::test]
async fn the_same_reference_is_posted_once(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let a = open(&mut conn, "t:a", AccountKind::Asset, false).await;
    let b = open(&mut conn, "t:b", AccountKind::Liability, false).await;
    let first = ledger::post(&mut conn, transfer("ref-1", a, b, "10.00")).await.unwrap();
    let again = ledger::post(&mut conn, transfer("ref-1", a, b, "10.00")).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.entry.id, first.entry.id);
    assert_eq!(ledger::balance(&mut conn, a).await.unwrap(), eur("10.00"));

    let err = ledger::post(&mut conn, transfer("ref-1", a, b, "10.01"))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::ReferenceReused(r) if r == "ref-1"));
    let err = ledger::post(&mut conn, transfer("ref-1", b, a, "10.00"))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::ReferenceReused(_)));
    assert_eq!(ledger::balance(&mut conn, a).await.unwrap(), eur("10.00"));
}

#[sqlx::test]
async fn concurrent_posts_of_one_reference_make_one_entry(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let a = open(&mut conn, "t:a", AccountKind::Asset, false).await;
    let b = open(&mut conn, "t:b", AccountKind::Liability, false).await;
    let results = common::race(20, |_| async {
        let mut conn = pool.acquire().await.unwrap();
        ledger::post(&mut conn, transfer("same", a, b, "5.00")).await.unwrap()
    })
    .await;
    let ids: std::collections::HashSet<Uuid> = results.into_iter().map(|r| r.entry.id).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(ledger::balance(&mut conn, a).await.unwrap(), eur("5.00"));
}

#[sqlx::test]
async fn checks_before_the_database_with_precise_errors(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let a = open(&mut conn, "t:a", AccountKind::Asset, false).await;
    let b = open(&mut conn, "t:b", AccountKind::Liability, true).await;
    let usd = NewAccount {
        code: AccountCode::parse("t:usd").unwrap(),
        currency: Currency::parse("USD").unwrap(),
        kind: AccountKind::Asset,
        no_overdraft: false,
    };
    let usd = ledger::open_account(&mut conn, &usd, Utc::now()).await.unwrap().0.id;

    let one = NewEntry::new("t", "one", Utc::now()).debit(a, eur("1.00"));
    assert!(matches!(
        ledger::post(&mut conn, one).await,
        Err(LedgerError::TooFewPostings)
    ));
    let lopsided = NewEntry::new("t", "lop", Utc::now())
        .debit(a, eur("1.00"))
        .credit(b, eur("0.99"));
    assert!(matches!(ledger::post(&mut conn, lopsided).await, Err(LedgerError::Unbalanced(c)) if c == Currency::EUR));
    let ghost = Uuid::now_v7();
    let err = ledger::post(&mut conn, transfer("ghost", a, ghost, "1.00"))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::UnknownAccount(id) if id == ghost), "{err:?}");
    let err = ledger::post(&mut conn, transfer("mixed", a, usd, "1.00"))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::CurrencyMismatch), "{err:?}");
    let err = ledger::post(&mut conn, transfer("overdraw", b, a, "1.00"))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Overdraft), "{err:?}");

    // None of it was written, and the connection is still usable.
    let n: i64 = sqlx::query_scalar("select count(*) from ledger_entries")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(n, 0);
    ledger::post(&mut conn, transfer("fine", a, b, "1.00")).await.unwrap();
}

#[sqlx::test]
async fn posting_inside_a_callers_transaction_rolls_back_with_it(pool: PgPool) {
    use sqlx::Connection;
    let mut conn = pool.acquire().await.unwrap();
    let a = open(&mut conn, "t:a", AccountKind::Asset, false).await;
    let b = open(&mut conn, "t:b", AccountKind::Liability, true).await;
    let mut tx = conn.begin().await.unwrap();
    ledger::post(&mut tx, transfer("inner-1", a, b, "3.00")).await.unwrap();
    // A failed post inside the transaction does not poison it (savepoint).
    assert!(ledger::post(&mut tx, transfer("inner-2", b, a, "4.00")).await.is_err());
    ledger::post(&mut tx, transfer("inner-3", b, a, "1.00")).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(ledger::balance(&mut conn, a).await.unwrap(), eur("0"));
    assert!(
        ledger::entry_by_reference(&mut conn, "inner-1")
            .await
            .unwrap()
            .is_none()
    );
}

#[sqlx::test]
async fn reversal_mirrors_an_entry_once(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let a = open(&mut conn, "t:a", AccountKind::Asset, false).await;
    let b = open(&mut conn, "t:b", AccountKind::Liability, true).await;
    let original = ledger::post(&mut conn, transfer("orig", a, b, "25.00"))
        .await
        .unwrap()
        .entry;
    let meta = serde_json::json!({"why": "typo"});
    let reversal = ledger::reverse(&mut conn, original.id, None, Utc::now(), meta.clone())
        .await
        .unwrap();
    assert_eq!(reversal.entry.reverses, Some(original.id));
    assert_eq!(reversal.entry.metadata, meta);
    assert_eq!(ledger::balance(&mut conn, a).await.unwrap(), eur("0"));
    assert_eq!(ledger::balance(&mut conn, b).await.unwrap(), eur("0"));
    let reloaded = ledger::entry(&mut conn, original.id).await.unwrap().unwrap();
    assert_eq!(reloaded.reversed_by, Some(reversal.entry.id));

    // Same call again: the same reversal. Another reference: refused.
    let again = ledger::reverse(&mut conn, original.id, None, Utc::now(), meta)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.entry.id, reversal.entry.id);
    let err = ledger::reverse(
        &mut conn,
        original.id,
        Some("other".into()),
        Utc::now(),
        serde_json::json!({}),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LedgerError::AlreadyReversed(id) if id == original.id));
    let err = ledger::reverse(&mut conn, Uuid::now_v7(), None, Utc::now(), serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::UnknownEntry(_)));
}

#[sqlx::test]
async fn a_reversal_that_would_overdraw_is_refused(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let a = open(&mut conn, "t:a", AccountKind::Asset, false).await;
    let b = open(&mut conn, "t:b", AccountKind::Liability, true).await;
    let c = open(&mut conn, "t:c", AccountKind::Liability, false).await;
    let funding = ledger::post(&mut conn, transfer("fund", a, b, "10.00"))
        .await
        .unwrap()
        .entry;
    ledger::post(&mut conn, transfer("spend", b, c, "10.00")).await.unwrap();
    let err = ledger::reverse(&mut conn, funding.id, None, Utc::now(), serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Overdraft));
}

#[sqlx::test]
async fn statements_carry_running_balances_and_paginate(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let a = open(&mut conn, "t:a", AccountKind::Asset, false).await;
    let b = open(&mut conn, "t:b", AccountKind::Liability, false).await;
    for (i, amount) in ["10.00", "2.50", "0.01"].iter().enumerate() {
        ledger::post(&mut conn, transfer(&format!("in-{i}"), a, b, amount))
            .await
            .unwrap();
    }
    ledger::post(&mut conn, transfer("out", b, a, "5.00")).await.unwrap();
    let lines = ledger::account_lines(&mut conn, a, 0, 100).await.unwrap();
    let running: Vec<String> = lines.iter().map(|l| l.balance_after.to_string()).collect();
    assert_eq!(running, ["10.00", "12.50", "12.51", "7.51"]);
    assert_eq!(lines.iter().map(|l| l.account_seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let page = ledger::account_lines(&mut conn, a, 2, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].reference, "in-2");
    let account = ledger::account(&mut conn, a).await.unwrap().unwrap();
    assert_eq!((account.balance, account.posting_count), (Decimal::new(751, 2), 4));
}

#[sqlx::test]
async fn opening_an_account_is_idempotent_and_refuses_conflicts(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let spec = NewAccount {
        code: AccountCode::parse("sponsor:1:budget").unwrap(),
        currency: Currency::EUR,
        kind: AccountKind::Liability,
        no_overdraft: true,
    };
    let (first, created) = ledger::open_account(&mut conn, &spec, Utc::now()).await.unwrap();
    assert!(created);
    let (again, created) = ledger::open_account(&mut conn, &spec, Utc::now()).await.unwrap();
    assert!(!created);
    assert_eq!(first.id, again.id);
    let other = NewAccount {
        no_overdraft: false,
        ..spec.clone()
    };
    assert!(matches!(
        ledger::open_account(&mut conn, &other, Utc::now()).await,
        Err(LedgerError::AccountConflict(_))
    ));
    for bad in ["", "Upper:case", ":leading", "sp ace", "semi;colon"] {
        assert!(AccountCode::parse(bad).is_err(), "{bad:?} accepted");
    }
    let listed = ledger::list_accounts(&mut conn, "sponsor:", None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    // '_' and '%' in a prefix are literal characters, not patterns.
    assert!(
        ledger::list_accounts(&mut conn, "sponsor_", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        ledger::list_accounts(&mut conn, "%", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test]
async fn verify_names_what_was_tampered_with(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let a = open(&mut conn, "t:a", AccountKind::Asset, false).await;
    let b = open(&mut conn, "t:b", AccountKind::Liability, true).await;
    ledger::post(&mut conn, transfer("fund", a, b, "10.00")).await.unwrap();
    let checks = ledger::verify(&pool).await.unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "debits_equal_credits",
            "entries_balance",
            "balances_match_postings",
            "no_overdraft_respected"
        ]
    );
    assert!(checks.iter().all(|c| c.ok));

    // Only a superuser switching triggers off can do this; verify must still notice.
    sqlx::query("set session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("update ledger_accounts set balance = balance + 1 where code = 't:a'")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("update ledger_postings set amount = 11, balance_after = -1 where account_id = $1")
        .bind(b)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("set session_replication_role = origin")
        .execute(&mut *conn)
        .await
        .unwrap();

    let checks = ledger::verify(&pool).await.unwrap();
    let failed: Vec<(&str, i64)> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| (c.name, c.violations))
        .collect();
    assert_eq!(
        failed,
        [
            ("debits_equal_credits", 1),
            ("entries_balance", 1),
            ("balances_match_postings", 2),
            ("no_overdraft_respected", 1)
        ]
    );
    let balances = checks.iter().find(|c| c.name == "balances_match_postings").unwrap();
    assert!(
        balances.examples.iter().any(|e| e.starts_with("t:a")),
        "{:?}",
        balances.examples
    );
}
