//! The service's database role (docs/database-roles.md): logged in as it, the journal can be read
//! and added to, never rewritten, and the triggers that guard the books cannot be switched off;
//! the whole flow of a round still works; and every table grants it what the service needs.

use std::collections::BTreeMap;

use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::common::fixtures::*;
use crate::common::{self, SERVICE_ROLE, TestApp};

const APP_ROLE: &str = "crowdledger_app";

/// Runs `sql` and asserts that Postgres refused it for lack of privilege (SQLSTATE 42501), not
/// for another reason (a trigger, say, which raises P0001).
async fn assert_denied(conn: &mut PgConnection, sql: &str) {
    let err = sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .expect_err(&format!("{SERVICE_ROLE} was allowed: {sql}"));
    let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("42501"), "{sql}: {err}");
}

/// A balanced entry between two fresh accounts, written in SQL as the service's role, the way a
/// psql session would (the triggers fill in each posting's place in its account's history).
async fn entry_as_service(service: &PgPool) -> Uuid {
    let mut tx = service.begin().await.unwrap();
    let mut accounts = Vec::new();
    for (code, kind) in [("t:cash", "asset"), ("t:owed", "liability")] {
        let id: Uuid = sqlx::query_scalar(
            "insert into ledger_accounts (id, code, currency, kind, no_overdraft, created_at)
             values ($1, $2, 'EUR', $3::ledger_account_kind, true, now()) returning id",
        )
        .bind(Uuid::now_v7())
        .bind(code)
        .bind(kind)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        accounts.push(id);
    }
    let entry = Uuid::now_v7();
    sqlx::query("insert into ledger_entries (id, kind, reference, effective_at) values ($1, 'test', 't:1', now())")
        .bind(entry)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "insert into ledger_postings (entry_id, account_id, side, amount, currency)
         values ($1, $2, 'debit', 25, 'EUR'), ($1, $3, 'credit', 25, 'EUR')",
    )
    .bind(entry)
    .bind(accounts[0])
    .bind(accounts[1])
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    entry
}

#[sqlx::test]
async fn the_service_role_cannot_rewrite_the_journal_or_switch_its_guards_off(pool: PgPool) {
    let service = common::service_pool(&pool).await;
    let mut conn = service.acquire().await.unwrap();
    let whoami: (String, bool) =
        sqlx::query_as("select current_user::text, (select rolsuper from pg_roles where rolname = current_user)")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(whoami, (SERVICE_ROLE.to_string(), false));

    // Appending works; the triggers that lock and move the accounts run as their owner.
    let entry = entry_as_service(&service).await;
    let balances: Vec<(String, String)> =
        sqlx::query_as("select code, balance::text from ledger_accounts order by code")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(
        balances,
        [
            ("t:cash".to_string(), "25".to_string()),
            ("t:owed".to_string(), "25".to_string())
        ]
    );

    for (table, column) in [("ledger_entries", "metadata"), ("ledger_postings", "amount")] {
        assert_denied(&mut conn, &format!("update {table} set {column} = {column}")).await;
        assert_denied(&mut conn, &format!("delete from {table}")).await;
        assert_denied(&mut conn, &format!("truncate {table}")).await;
        assert_denied(&mut conn, &format!("alter table {table} disable trigger all")).await;
        assert_denied(&mut conn, &format!("alter table {table} drop constraint {table}_pkey")).await;
    }
    assert_denied(&mut conn, "drop trigger ledger_entries_append_only on ledger_entries").await;
    assert_denied(&mut conn, "drop trigger ledger_postings_apply on ledger_postings").await;
    assert_denied(&mut conn, "drop function ledger_refuse_change() cascade").await;
    // Accounts: opened and moved by postings only; their overdraft rule stays as opened.
    assert_denied(&mut conn, "update ledger_accounts set no_overdraft = false").await;
    assert_denied(&mut conn, "delete from ledger_accounts").await;
    assert_denied(&mut conn, "truncate ledger_accounts").await;
    // What would get past the triggers: replica mode skips them, the owner could drop them.
    assert_denied(&mut conn, "set session_replication_role = replica").await;
    assert_denied(&mut conn, "set role crowdledger").await;
    assert_denied(&mut conn, "create table ledger_shadow (id int)").await;

    // Nothing moved.
    let (entries, postings, triggers): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from ledger_entries where id = $1),
                (select count(*) from ledger_postings where entry_id = $1),
                (select count(*) from pg_trigger
                  where tgrelid in ('ledger_entries'::regclass, 'ledger_postings'::regclass)
                    and not tgisinternal and tgenabled = 'O')",
    )
    .bind(entry)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!((entries, postings), (1, 2));
    assert_eq!(triggers, 8, "the journal's triggers are all there and enabled");
}

#[sqlx::test]
async fn a_round_runs_end_to_end_as_the_service_role(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, json!({"min_target": "100.00"}), 28).await;
    let who = investor(&app, "Alice", "sophisticated").await;
    let pledge = funded_pledge(&app, &offer, &who, 30).await;
    let pledge = ok(
        app.get(&format!("/v1/pledges/{}", pledge["id"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(pledge["status"], "funded", "{pledge:#}");
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    let payout = ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 201).await;
    confirm_payout(&app, &payout).await;
    assert_eq!(balance(&app, &format!("project:{project}:payable:eur")).await, "0.00");
    assert_eq!(balance(&app, "platform:fees:eur").await, "15.00");
    app.assert_books_verify().await;

    // The app did all this through connections logged in as the service's role.
    let logins: Vec<String> = sqlx::query_scalar(
        "select distinct usename::text from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid()",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(logins.iter().any(|u| u == SERVICE_ROLE), "{logins:?}");
}

/// What the app role should hold on each table; a table not named here must hold `DOMAIN`.
const DOMAIN: &[&str] = &["select", "insert", "update", "delete"];
const EXCEPTIONS: &[(&str, &[&str])] = &[
    ("_sqlx_migrations", &["select"]),
    ("ledger_entries", &["select", "insert"]),
    ("ledger_postings", &["select", "insert"]),
    ("ledger_accounts", &["select", "insert"]),
    ("outbox_events", &["select", "insert"]),
    ("outbox_cursor", &["select", "update"]),
    // The audit trail: never rewritten; deleted only by retention when configured.
    ("audit_log", &["select", "insert", "delete"]),
    // Provider calls are queued and settled, never deleted; their attempts and the parties they
    // made are written once (migrations 0034, 0035).
    ("provider_calls", &["select", "insert", "update"]),
    ("provider_call_attempts", &["select", "insert"]),
    ("provider_parties", &["select", "insert"]),
    // Card disputes: opened, then closed once; never deleted (migration 0036).
    ("disputes", &["select", "insert", "update"]),
    // The ECSP evidence: appropriateness records, offers' documents and pledges' reconfirmations
    // are only ever added to (migration 0039).
    ("appropriateness_records", &["select", "insert"]),
    ("offer_documents", &["select", "insert"]),
    ("pledge_reconfirmations", &["select", "insert"]),
    // Matchfunding pools and their matches: created, then settled; never deleted (migration 0042).
    ("match_pools", &["select", "insert", "update"]),
    ("matches", &["select", "insert", "update"]),
    // Sponsors' withdrawals: requested, then paid once; never deleted (migration 0041).
    ("withdrawals", &["select", "insert", "update"]),
];

#[sqlx::test]
async fn every_table_grants_the_app_role_what_the_service_needs_and_no_more(pool: PgPool) {
    // Each table of schema public, with the table-wide privileges the app role holds on it.
    let held: Vec<(String, Vec<String>)> = sqlx::query_as(
        "select c.relname::text,
                array(select p from unnest(array['select', 'insert', 'update', 'delete', 'truncate',
                                                 'references', 'trigger']) p
                       where has_table_privilege($1, c.oid, p))
           from pg_class c
          where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
          order by 1",
    )
    .bind(APP_ROLE)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(held.len() > 20, "{held:?}");
    let exceptions: BTreeMap<&str, &[&str]> = EXCEPTIONS.iter().copied().collect();
    for (table, privileges) in &held {
        let expected = exceptions.get(table.as_str()).copied().unwrap_or(DOMAIN);
        assert_eq!(
            privileges, expected,
            "{APP_ROLE} on {table}: a migration that creates a table grants {APP_ROLE} what the \
             service needs on it (see migrations/0014_app_role.sql)"
        );
    }
    for table in exceptions.keys() {
        assert!(held.iter().any(|(t, _)| t == table), "no table {table}");
    }

    // On accounts, no column at all: postings move balances through the owner's functions
    // (migration 0020).
    let updatable: Vec<String> = sqlx::query_scalar(
        "select attname::text from pg_attribute
          where attrelid = 'ledger_accounts'::regclass and attnum > 0 and not attisdropped
            and has_column_privilege($1, attrelid, attnum, 'update')
          order by 1",
    )
    .bind(APP_ROLE)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(updatable, Vec::<String>::new());

    // The roles themselves: nothing owned, no power beyond the grants.
    let roles: Vec<(String, bool, bool, bool, bool, i64)> = sqlx::query_as(
        "select r.rolname::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,
                (select count(*) from pg_class c where c.relowner = r.oid
                    and c.relnamespace = 'public'::regnamespace)
           from pg_roles r where r.rolname in ($1, $2) order by 1",
    )
    .bind(APP_ROLE)
    .bind(SERVICE_ROLE)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        roles,
        [
            (APP_ROLE.to_string(), false, false, false, false, 0),
            (SERVICE_ROLE.to_string(), false, false, false, false, 0)
        ]
    );
    let (member, can_login): (bool, bool) =
        sqlx::query_as("select pg_has_role($2, $1, 'usage'), (select rolcanlogin from pg_roles where rolname = $1)")
            .bind(APP_ROLE)
            .bind(SERVICE_ROLE)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(member, "{SERVICE_ROLE} inherits {APP_ROLE}'s privileges");
    assert!(!can_login, "{APP_ROLE} is a group, not a login");
}
