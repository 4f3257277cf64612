//! Findings 2 and 10 of issue 20: the service's database role cannot forge a balance, whatever
//! the trigger depth (SQL-level, logged in as the service); verify names the entry that settled
//! every refund, payout and deposit; long reads have a time limit; and idempotency keys, inbound
//! events and webhook attempts are purged after their retention.

use serde_json::json;
use sqlx::{PgConnection, PgPool};

use crate::common::fixtures::*;
use crate::common::{self, SERVICE_ROLE, TestApp};

const APP_ROLE: &str = "crowdledger_app";

/// The SQLSTATE of a database error.
fn sqlstate(err: &sqlx::Error) -> Option<String> {
    err.as_database_error().and_then(|e| e.code()).map(|c| c.to_string())
}

/// Runs `sql` and asserts Postgres refused it for lack of privilege (42501), not for another
/// reason (a trigger raises P0001).
async fn assert_denied(conn: &mut PgConnection, sql: &str) {
    let err = sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .expect_err(&format!("{SERVICE_ROLE} was allowed: {sql}"));
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{sql}: {err}");
}

/// A sponsor funded with 100.00 EUR and a cheque of 40.00 from it: `cheque:<id>` holds 40.00.
async fn cheque_account(app: &TestApp) -> String {
    let sponsor = funded_sponsor(app, "Fondation Iroise", "100.00").await;
    let expires = (app.clock.now() + chrono::TimeDelta::days(30)).to_rfc3339();
    let cheque = ok(
        app.post(
            "/v1/cheques",
            json!({"sponsor_id": sponsor, "beneficiary_name": "Awa Diallo", "beneficiary_email": "awa@example.org",
                   "face_value": "40.00", "currency": "EUR", "expires_at": expires}),
        )
        .await,
        201,
    )
    .await;
    let code = format!("cheque:{}", cheque["id"].as_str().unwrap());
    assert_eq!(balance(app, &code).await, "40.00");
    code
}

async fn stored_balance(pool: &PgPool, code: &str) -> (String, i64) {
    sqlx::query_as("select balance::text, posting_count from ledger_accounts where code = $1")
        .bind(code)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn the_service_role_may_create_no_temporary_table_or_function(pool: PgPool) {
    let service = common::service_pool(&pool).await;
    let mut conn = service.acquire().await.unwrap();
    assert_denied(&mut conn, "create temp table forge (x int)").await;
    assert_denied(&mut conn, "create temporary table forge as select 1 as x").await;
    assert_denied(
        &mut conn,
        "create function pg_temp.forge() returns int language sql as 'select 1'",
    )
    .await;
    for role in [APP_ROLE, SERVICE_ROLE] {
        let may: bool = sqlx::query_scalar("select has_database_privilege($1, current_database(), 'temporary')")
            .bind(role)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(!may, "{role} may create temporary objects");
    }
}

/// The finding as it was shown: a temporary table whose trigger updates `ledger_accounts` at
/// depth 2, past the guard, moved a cheque account to 1,000,000 with no posting.
#[sqlx::test]
async fn the_temp_table_trigger_exploit_cannot_forge_a_cheque_balance(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let cheque = cheque_account(&app).await;
    let before = stored_balance(&app.pool, &cheque).await;

    let service = common::service_pool(&app.pool).await;
    let mut conn = service.acquire().await.unwrap();
    let forge = format!(
        "create function pg_temp.forge() returns trigger language plpgsql as $$
         begin
             update public.ledger_accounts set balance = 1000000 where code = '{cheque}';
             return null;
         end $$"
    );
    let steps = [
        "create temp table forge (x int)",
        forge.as_str(),
        "create trigger forge after insert on forge for each row execute function pg_temp.forge()",
        "insert into forge values (1)",
    ];
    for step in steps {
        let err = sqlx::query(step)
            .execute(&mut *conn)
            .await
            .expect_err(&format!("{SERVICE_ROLE} was allowed: {step}"));
        // The first two are refused for want of TEMPORARY; the others find no table to act on.
        assert!(
            matches!(sqlstate(&err).as_deref(), Some("42501" | "42P01")),
            "{step}: {err}"
        );
    }
    assert_eq!(stored_balance(&app.pool, &cheque).await, before);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn no_direct_balance_change_by_the_service_passes_at_any_trigger_depth(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let cheque = cheque_account(&app).await;
    let before = stored_balance(&app.pool, &cheque).await;
    let service = common::service_pool(&app.pool).await;
    let mut conn = service.acquire().await.unwrap();

    // Directly: no UPDATE on the table at all, not even on the two columns postings move, and
    // so no row lock either.
    for sql in [
        format!("update ledger_accounts set balance = 1000000 where code = '{cheque}'"),
        format!("update ledger_accounts set posting_count = posting_count where code = '{cheque}'"),
        format!("select balance from ledger_accounts where code = '{cheque}' for update"),
        format!("select balance from ledger_accounts where code = '{cheque}' for no key update"),
    ] {
        assert_denied(&mut conn, &sql).await;
    }

    // At depth 2: a trigger the owner made, on a table the service may write, that updates an
    // account as whoever fires it. The service's statement is refused for want of privilege…
    for sql in [
        "create table forge_probe (x int)".to_string(),
        format!("grant insert on forge_probe to {APP_ROLE}"),
        format!(
            "create function forge_probe() returns trigger language plpgsql as $$
             begin
                 update ledger_accounts set balance = 1000000 where code = '{cheque}';
                 return null;
             end $$"
        ),
        "create trigger forge_probe after insert on forge_probe for each row execute function forge_probe()"
            .to_string(),
    ] {
        sqlx::query(&sql).execute(&app.pool).await.unwrap();
    }
    assert_denied(&mut conn, "insert into forge_probe values (1)").await;
    // …and the owner's own, at the same depth, by the guard: only a posting moves a balance.
    let err = sqlx::query("insert into forge_probe values (2)")
        .execute(&app.pool)
        .await
        .expect_err("the owner forged a balance through a trigger");
    assert_eq!(
        err.as_database_error().and_then(|e| e.constraint()),
        Some("ledger_account_immutable"),
        "{err}"
    );

    assert_eq!(stored_balance(&app.pool, &cheque).await, before);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn postings_still_move_balances_through_functions_run_as_the_owner(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // Through the API, served as the service: a card pledge paid, a cheque issued.
    let (_, offer) = small_open_offer(&app).await;
    let who = investor(&app, "Alice", "sophisticated").await;
    funded_pledge(&app, &offer, &who, 7).await;
    assert_eq!(balance(&app, &format!("offer:{offer}:escrow")).await, "70.00");
    let cheque = cheque_account(&app).await;
    assert_eq!(stored_balance(&app.pool, &cheque).await, ("40.00".to_string(), 1));
    app.assert_books_verify().await;

    // The app role may update no column of accounts; the functions that lock and move their rows
    // run as the owner, on a search path no caller's schema can come first on.
    let updatable: i64 = sqlx::query_scalar(
        "select count(*) from pg_attribute
          where attrelid = 'ledger_accounts'::regclass and attnum > 0 and not attisdropped
            and has_column_privilege($1, attrelid, attnum, 'update')",
    )
    .bind(APP_ROLE)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(updatable, 0);
    let functions: Vec<(String, bool, Vec<String>, bool)> = sqlx::query_as(
        "select p.proname::text, p.prosecdef, coalesce(p.proconfig, '{}'),
                p.proowner = (select relowner from pg_class where oid = 'ledger_accounts'::regclass)
           from pg_proc p
          where p.proname in ('ledger_postings_apply', 'ledger_postings_continue', 'ledger_lock_accounts')
          order by 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(functions.len(), 3, "{functions:?}");
    for (name, definer, config, owned) in &functions {
        assert!(*definer && *owned, "{name} runs as the tables' owner: {functions:?}");
        assert_eq!(
            config,
            &["search_path=pg_catalog, public, pg_temp".to_string()],
            "{name}"
        );
    }
    let callable: bool =
        sqlx::query_scalar("select has_function_privilege('public', 'ledger_lock_accounts(uuid[])', 'execute')")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!callable, "only the app role may lock accounts through the owner");
}
