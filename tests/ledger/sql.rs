//! Each ledger invariant is attempted directly in SQL, behind the Rust API's back, and the
//! database itself must refuse it.

use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

async fn account(conn: &mut PgConnection, code: &str, currency: &str, kind: &str, no_overdraft: bool) -> Uuid {
    sqlx::query_scalar(
        "insert into ledger_accounts (id, code, currency, kind, no_overdraft, created_at)
         values ($1, $2, $3, $4::ledger_account_kind, $5, now()) returning id",
    )
    .bind(Uuid::now_v7())
    .bind(code)
    .bind(currency)
    .bind(kind)
    .bind(no_overdraft)
    .fetch_one(conn)
    .await
    .unwrap()
}

async fn entry(conn: &mut PgConnection, reference: &str) -> Uuid {
    sqlx::query_scalar(
        "insert into ledger_entries (id, kind, reference, effective_at) values ($1, 'test', $2, now()) returning id",
    )
    .bind(Uuid::now_v7())
    .bind(reference)
    .fetch_one(conn)
    .await
    .unwrap()
}

async fn posting(
    conn: &mut PgConnection,
    entry: Uuid,
    account: Uuid,
    side: &str,
    amount: &str,
    currency: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into ledger_postings (entry_id, account_id, side, amount, currency)
         values ($1, $2, $3::ledger_side, $4::numeric, $5)",
    )
    .bind(entry)
    .bind(account)
    .bind(side)
    .bind(amount)
    .bind(currency)
    .execute(conn)
    .await
    .map(|_| ())
}

fn constraint(err: &sqlx::Error) -> String {
    err.as_database_error()
        .and_then(|e| e.constraint())
        .unwrap_or("<none>")
        .to_string()
}

struct Books {
    cash: Uuid,
    owed: Uuid,
    usd_cash: Uuid,
    usd_owed: Uuid,
}

async fn books(conn: &mut PgConnection) -> Books {
    Books {
        cash: account(conn, "t:cash", "EUR", "asset", false).await,
        owed: account(conn, "t:owed", "EUR", "liability", true).await,
        usd_cash: account(conn, "t:usd-cash", "USD", "asset", false).await,
        usd_owed: account(conn, "t:usd-owed", "USD", "liability", false).await,
    }
}

/// A committed, valid entry: cash 100 → owed 100.
async fn funded(conn: &mut PgConnection, b: &Books) -> Uuid {
    let mut tx = conn.begin().await.unwrap();
    let e = entry(&mut tx, "funding").await;
    posting(&mut tx, e, b.cash, "debit", "100", "EUR").await.unwrap();
    posting(&mut tx, e, b.owed, "credit", "100", "EUR").await.unwrap();
    tx.commit().await.unwrap();
    e
}

#[sqlx::test]
async fn an_unbalanced_entry_is_refused_at_commit(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let b = books(&mut conn).await;
    let mut tx = conn.begin().await.unwrap();
    let e = entry(&mut tx, "unbalanced").await;
    posting(&mut tx, e, b.cash, "debit", "100", "EUR").await.unwrap();
    posting(&mut tx, e, b.owed, "credit", "99.99", "EUR").await.unwrap();
    let err = tx.commit().await.unwrap_err();
    assert_eq!(constraint(&err), "ledger_entry_balanced");
    let n: i64 = sqlx::query_scalar("select count(*) from ledger_entries")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[sqlx::test]
async fn an_entry_must_balance_in_each_currency(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let b = books(&mut conn).await;
    // Debits equal credits in total (100 = 100), but not per currency.
    let mut tx = conn.begin().await.unwrap();
    let e = entry(&mut tx, "cross-currency").await;
    posting(&mut tx, e, b.cash, "debit", "100", "EUR").await.unwrap();
    posting(&mut tx, e, b.usd_owed, "credit", "100", "USD").await.unwrap();
    let err = tx.commit().await.unwrap_err();
    assert_eq!(constraint(&err), "ledger_entry_balanced");

    // Two currencies each balancing on their own are fine.
    let mut tx = conn.begin().await.unwrap();
    let e = entry(&mut tx, "two-currencies").await;
    posting(&mut tx, e, b.cash, "debit", "100", "EUR").await.unwrap();
    posting(&mut tx, e, b.owed, "credit", "100", "EUR").await.unwrap();
    posting(&mut tx, e, b.usd_cash, "debit", "7", "USD").await.unwrap();
    posting(&mut tx, e, b.usd_owed, "credit", "7", "USD").await.unwrap();
    tx.commit().await.unwrap();
}

#[sqlx::test]
async fn an_entry_with_fewer_than_two_postings_is_refused(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let b = books(&mut conn).await;
    let mut tx = conn.begin().await.unwrap();
    entry(&mut tx, "empty").await;
    let err = tx.commit().await.unwrap_err();
    assert_eq!(constraint(&err), "ledger_entry_min_postings");

    let mut tx = conn.begin().await.unwrap();
    let e = entry(&mut tx, "single").await;
    posting(&mut tx, e, b.cash, "debit", "100", "EUR").await.unwrap();
    let err = tx.commit().await.unwrap_err();
    assert_eq!(constraint(&err), "ledger_entry_min_postings");
}

#[sqlx::test]
async fn a_posting_in_another_currency_than_its_account_is_refused(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let b = books(&mut conn).await;
    let mut tx = conn.begin().await.unwrap();
    let e = entry(&mut tx, "wrong-currency").await;
    let err = posting(&mut tx, e, b.cash, "debit", "100", "USD").await.unwrap_err();
    assert_eq!(constraint(&err), "ledger_postings_account_currency_fkey");
}

#[sqlx::test]
async fn zero_and_negative_amounts_are_refused(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let b = books(&mut conn).await;
    for amount in ["0", "-5"] {
        let mut tx = conn.begin().await.unwrap();
        let e = entry(&mut tx, "bad-amount").await;
        let err = posting(&mut tx, e, b.cash, "debit", amount, "EUR").await.unwrap_err();
        assert_eq!(constraint(&err), "ledger_postings_amount_positive");
    }
}

#[sqlx::test]
async fn entries_and_postings_are_never_updated_deleted_or_truncated(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let b = books(&mut conn).await;
    let e = funded(&mut conn, &b).await;
    let attempts = [
        "update ledger_entries set reference = 'rewritten'",
        "update ledger_entries set metadata = '{\"x\": 1}'",
        "delete from ledger_entries",
        "update ledger_postings set amount = 1",
        "update ledger_postings set account_id = account_id",
        "delete from ledger_postings",
        "truncate ledger_postings",
        "truncate ledger_entries cascade",
        "truncate ledger_accounts cascade",
        "delete from ledger_accounts",
    ];
    for sql in attempts {
        let err = sqlx::query(sql).execute(&mut *conn).await.unwrap_err();
        assert_eq!(constraint(&err), "ledger_append_only", "{sql} was not refused: {err}");
    }
    let (entries, postings): (i64, i64) =
        sqlx::query_as("select (select count(*) from ledger_entries), (select count(*) from ledger_postings)")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!((entries, postings), (1, 2));
    let reference: String = sqlx::query_scalar("select reference from ledger_entries where id = $1")
        .bind(e)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(reference, "funding");
}

#[sqlx::test]
async fn a_committed_entry_takes_no_more_postings(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let b = books(&mut conn).await;
    let e = funded(&mut conn, &b).await;
    // Even a balanced pair would change the entry after the fact.
    let mut tx = conn.begin().await.unwrap();
    let err = posting(&mut tx, e, b.cash, "debit", "5", "EUR").await.unwrap_err();
    assert_eq!(constraint(&err), "ledger_entry_closed");
}

#[sqlx::test]
async fn an_account_balance_moves_only_through_postings(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let b = books(&mut conn).await;
    funded(&mut conn, &b).await;
    for sql in [
        "update ledger_accounts set balance = 1000000 where code = 't:cash'",
        "update ledger_accounts set posting_count = 0 where code = 't:cash'",
        "update ledger_accounts set currency = 'USD' where code = 't:cash'",
        "update ledger_accounts set kind = 'liability' where code = 't:cash'",
        "update ledger_accounts set code = 't:other' where code = 't:cash'",
    ] {
        let err = sqlx::query(sql).execute(&mut *conn).await.unwrap_err();
        assert_eq!(constraint(&err), "ledger_account_immutable", "{sql} was not refused");
    }
    let err = sqlx::query(
        "insert into ledger_accounts (id, code, currency, kind, balance, created_at)
         values (gen_random_uuid(), 't:rich', 'EUR', 'asset', 1000, now())",
    )
    .execute(&mut *conn)
    .await
    .unwrap_err();
    assert_eq!(constraint(&err), "ledger_account_immutable");
}

#[sqlx::test]
async fn an_account_opens_only_with_a_valid_code_and_currency(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    for (code, currency, refused_by) in [
        ("T:Upper", "EUR", "ledger_accounts_code_format"),
        ("-leading", "EUR", "ledger_accounts_code_format"),
        ("has space", "EUR", "ledger_accounts_code_format"),
        ("t:ok", "eur", "ledger_accounts_currency_format"),
        ("t:ok", "EURO", "ledger_accounts_currency_format"),
    ] {
        let err = sqlx::query(
            "insert into ledger_accounts (id, code, currency, kind, created_at)
             values (gen_random_uuid(), $1, $2, 'asset', now())",
        )
        .bind(code)
        .bind(currency)
        .execute(&mut *conn)
        .await
        .unwrap_err();
        assert_eq!(constraint(&err), refused_by, "{code} {currency}");
    }
    let opened: i64 = sqlx::query_scalar("select count(*) from ledger_accounts")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(opened, 0);
    account(&mut conn, "t:ok", "EUR", "asset", false).await;
}

#[sqlx::test]
async fn running_balances_are_computed_or_checked_by_the_database(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let b = books(&mut conn).await;
    let forge = "insert into ledger_postings (entry_id, account_id, side, amount, currency, account_seq, balance_after)
                 values ($1, $2, 'debit', 10, 'EUR', $4, $5), ($1, $3, 'credit', 10, 'EUR', 1, 10)";
    // A caller may state a posting's place and running balance, but only the true ones.
    for (seq, balance) in [(42_i64, "10"), (1, "999999"), (2, "20"), (0, "0")] {
        let mut tx = conn.begin().await.unwrap();
        let e = entry(&mut tx, "forged").await;
        let err = sqlx::query(forge)
            .bind(e)
            .bind(b.cash)
            .bind(b.owed)
            .bind(seq)
            .bind(rust_decimal::Decimal::from_str_exact(balance).unwrap())
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert_eq!(constraint(&err), "ledger_posting_running_balance", "{seq} {balance}");
    }
    let mut tx = conn.begin().await.unwrap();
    let e = entry(&mut tx, "true").await;
    sqlx::query(forge)
        .bind(e)
        .bind(b.cash)
        .bind(b.owed)
        .bind(1_i64)
        .bind(rust_decimal::Decimal::from(10))
        .execute(&mut *tx)
        .await
        .unwrap();
    // Without them, the database fills them in from each account's previous posting.
    let e = entry(&mut tx, "computed").await;
    posting(&mut tx, e, b.cash, "debit", "5", "EUR").await.unwrap();
    posting(&mut tx, e, b.owed, "credit", "5", "EUR").await.unwrap();
    tx.commit().await.unwrap();
    let rows: Vec<(i64, rust_decimal::Decimal)> =
        sqlx::query_as("select account_seq, balance_after from ledger_postings order by id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![(1, 10.into()), (1, 10.into()), (2, 15.into()), (2, 15.into())]
    );
    let stored: Vec<(rust_decimal::Decimal, i64)> =
        sqlx::query_as("select balance, posting_count from ledger_accounts where id = any($1) order by code")
            .bind([b.cash, b.owed])
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(stored, vec![(15.into(), 2), (15.into(), 2)]);
}

#[sqlx::test]
async fn entries_carry_the_transaction_and_time_that_record_them(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    for forged in [
        "insert into ledger_entries (id, kind, reference, effective_at, recorded_at)
         values (gen_random_uuid(), 'test', 'backdated', now(), now() - interval '1 day')",
        "insert into ledger_entries (id, kind, reference, effective_at, created_xact)
         values (gen_random_uuid(), 'test', 'foreign', now(), '1'::xid8)",
    ] {
        let err = sqlx::query(forged).execute(&mut *conn).await.unwrap_err();
        assert_eq!(constraint(&err), "ledger_entry_stamp", "{forged}");
    }
}

#[sqlx::test]
async fn a_no_overdraft_account_never_crosses_zero(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let b = books(&mut conn).await;
    funded(&mut conn, &b).await;
    // owed holds 100 (credit-normal); debiting it by 100.01 would cross zero.
    let mut tx = conn.begin().await.unwrap();
    let e = entry(&mut tx, "overdraw").await;
    let err = posting(&mut tx, e, b.owed, "debit", "100.01", "EUR").await.unwrap_err();
    assert_eq!(constraint(&err), "ledger_accounts_no_overdraft");
    drop(tx);
    // Exactly to zero is allowed.
    let mut tx = conn.begin().await.unwrap();
    let e = entry(&mut tx, "drain").await;
    posting(&mut tx, e, b.owed, "debit", "100", "EUR").await.unwrap();
    posting(&mut tx, e, b.cash, "credit", "100", "EUR").await.unwrap();
    tx.commit().await.unwrap();
    let balance: rust_decimal::Decimal = sqlx::query_scalar("select balance from ledger_accounts where id = $1")
        .bind(b.owed)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert!(balance.is_zero());
}
