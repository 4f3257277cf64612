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

// ---------------------------------------------------------------------------------------------
// Finding 10: verify ties refunds, payouts and deposits to their entries.
// ---------------------------------------------------------------------------------------------

const SETTLEMENT_CHECKS: [&str; 3] = ["refunds_paid", "payouts_paid", "deposits_captured"];

/// The ids of one settled refund, payout and deposit, made through the API.
struct Settled {
    refund: uuid::Uuid,
    payout: uuid::Uuid,
    deposit: uuid::Uuid,
}

/// A sponsor's deposit received; a round that succeeded, paid out; a round cancelled, its
/// pledge's refund paid back: each confirmed by the sandbox provider's signed webhook.
async fn settle_one_of_each(app: &TestApp) -> Settled {
    funded_sponsor(app, "Fondation Iroise", "100.00").await;

    let (project, offer) = small_open_offer(app).await;
    let alice = investor(app, "Alice", "sophisticated").await;
    funded_pledge(app, &offer, &alice, 20).await;
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    let payout = ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 201).await;
    confirm_payout(app, &payout).await;
    assert_eq!(balance(app, &format!("project:{project}:payable:eur")).await, "0.00");

    let (_, cancelled) = small_open_offer(app).await;
    let bob = investor(app, "Bob", "sophisticated").await;
    funded_pledge(app, &cancelled, &bob, 5).await;
    ok(
        app.post(&format!("/v1/offers/{cancelled}/cancel"), json!({})).await,
        200,
    )
    .await;
    let refund: String = sqlx::query_scalar("select id::text from refunds")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let paid = ok(
        app.post(&format!("/v1/sandbox/refunds/{refund}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(paid["status"], "succeeded", "{paid:#}");

    let (refund, payout, deposit) = sqlx::query_as(
        "select (select id from refunds where status = 'succeeded'), (select id from payouts where status = 'paid'),
                (select id from deposits where status = 'succeeded')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    Settled {
        refund,
        payout,
        deposit,
    }
}

/// The names of the checks `GET /v1/ledger/verify` reports failing, and its whole report.
async fn failing_checks(app: &TestApp) -> (Vec<String>, serde_json::Value) {
    let report = ok(app.get("/v1/ledger/verify").await, 200).await;
    let failing = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] != true)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    (failing, report)
}

async fn owner(app: &TestApp, sql: &str) {
    sqlx::query(sql).execute(&app.pool).await.unwrap();
}

#[sqlx::test]
async fn verify_checks_the_entry_that_settled_each_refund_payout_and_deposit(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let settled = settle_one_of_each(&app).await;
    let report = ok(app.get("/v1/ledger/verify").await, 200).await;
    for name in SETTLEMENT_CHECKS {
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("verify has no check {name}: {report:#}"));
        assert_eq!(check["ok"], true, "{check:#}");
    }
    assert_eq!(report["ok"], true, "{report:#}");

    // Each settled row names its entry, and Postgres refuses one that names none.
    let named: (String, String, String) = sqlx::query_as(
        "select (select e.kind from refunds r join ledger_entries e on e.id = r.paid_entry_id where r.id = $1),
                (select e.kind from payouts p join ledger_entries e on e.id = p.paid_entry_id where p.id = $2),
                (select e.kind from deposits d join ledger_entries e on e.id = d.captured_entry_id where d.id = $3)",
    )
    .bind(settled.refund)
    .bind(settled.payout)
    .bind(settled.deposit)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        named,
        ("refund.paid".into(), "payout.paid".into(), "deposit.confirmed".into())
    );
    for (sql, constraint) in [
        ("update refunds set paid_entry_id = null", "refunds_paid_once"),
        ("update payouts set paid_entry_id = null", "payouts_paid_once"),
        ("update deposits set captured_entry_id = null", "deposits_captured_once"),
    ] {
        let err = sqlx::query(sql).execute(&app.pool).await.unwrap_err();
        assert_eq!(
            err.as_database_error().and_then(|e| e.constraint()),
            Some(constraint),
            "{sql}"
        );
    }
}

#[sqlx::test]
async fn tampering_with_a_settlement_fails_exactly_its_check(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let Settled {
        refund,
        payout,
        deposit,
    } = settle_one_of_each(&app).await;
    assert_eq!(failing_checks(&app).await.0, Vec::<String>::new());

    // A refund pointed at another settlement's entry (the payout's).
    owner(
        &app,
        &format!(
            "update refunds set paid_entry_id = (select paid_entry_id from payouts where id = '{payout}')
              where id = '{refund}'"
        ),
    )
    .await;
    let (failing, report) = failing_checks(&app).await;
    assert_eq!(failing, ["refunds_paid"], "{report:#}");
    owner(
        &app,
        &format!(
            "update refunds set paid_entry_id = (select id from ledger_entries where reference = 'refund:{refund}:paid')
              where id = '{refund}'"
        ),
    )
    .await;
    assert_eq!(failing_checks(&app).await.0, Vec::<String>::new());

    // A payout's entry forgotten, which only the owner dropping the constraint allows.
    owner(&app, "alter table payouts drop constraint payouts_paid_once").await;
    owner(
        &app,
        &format!("update payouts set paid_entry_id = null where id = '{payout}'"),
    )
    .await;
    let (failing, report) = failing_checks(&app).await;
    assert_eq!(failing, ["payouts_paid"], "{report:#}");

    // A deposit recorded as received for more than its entry moved, and one naming no entry.
    owner(
        &app,
        &format!("update deposits set amount = amount + 1 where id = '{deposit}'"),
    )
    .await;
    owner(
        &app,
        &format!(
            "insert into deposits (id, provider, provider_deposit_id, sponsor_id, amount, currency, status,
                                   created_at, settled_at, captured_entry_id)
             select gen_random_uuid(), provider, 'forged', sponsor_id, 5000, currency, 'succeeded',
                    created_at, settled_at, gen_random_uuid()
               from deposits where id = '{deposit}'"
        ),
    )
    .await;
    let (failing, report) = failing_checks(&app).await;
    assert_eq!(failing, ["payouts_paid", "deposits_captured"], "{report:#}");
    let deposits = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "deposits_captured")
        .unwrap();
    assert_eq!(deposits["violations"], 2, "{deposits:#}");
}

// ---------------------------------------------------------------------------------------------
// Finding 10: full reads of the books have a time limit.
// ---------------------------------------------------------------------------------------------

/// A read held up past its limit is cancelled by Postgres and answered with a clear 503, on the
/// API and in `crowdledger verify`. What holds it up is the owner's lock on the ledger's tables
/// (a statement timeout counts the wait for a lock), so the read cannot finish in time however
/// fast the machine is, and nothing sleeps.
#[sqlx::test]
async fn a_read_of_the_books_past_its_time_limit_is_a_clear_503(pool: PgPool) {
    let limit = ("CROWDLEDGER__DATABASE__READ_STATEMENT_TIMEOUT_MS", "200");
    let app = TestApp::spawn_with(pool, &[limit]).await;
    let (_, offer) = small_open_offer(&app).await;
    let who = investor(&app, "Alice", "sophisticated").await;
    funded_pledge(&app, &offer, &who, 3).await;

    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("lock table ledger_accounts, ledger_postings in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    for path in ["/v1/ledger/verify", "/v1/ledger/trial-balance"] {
        let r = app.get(path).await;
        r.assert_problem(503, "statement_timeout");
    }
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_crowdledger"))
        .arg("verify")
        .env("DATABASE_URL", common::service_url(&app.pool))
        .env_remove("CROWDLEDGER_CONFIG")
        .env(limit.0, limit.1)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(!cli.status.success(), "{stderr}");
    assert!(
        stderr.contains("statement timeout") && stderr.contains("database.read_statement_timeout_ms"),
        "{stderr}"
    );
    lock.rollback().await.unwrap();

    // The limit is per statement of a read, not a broken connection: the same reads pass now.
    app.assert_books_verify().await;
    let trial = ok(app.get("/v1/ledger/trial-balance").await, 200).await;
    assert_eq!(trial["balanced"], true, "{trial:#}");
}

// ---------------------------------------------------------------------------------------------
// Finding 10: retention.
// ---------------------------------------------------------------------------------------------

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

/// `POST /v1/sponsors` with an Idempotency-Key: the reply's id, and whether it was a replay.
async fn sponsor_with_key(app: &TestApp, key: &str) -> (String, bool) {
    let r = common::send_as(
        app,
        reqwest::Method::POST,
        "/v1/sponsors",
        common::OPERATOR_KEY,
        &[("idempotency-key", key)],
        Some(&json!({"name": "Fondation Iroise", "currency": "EUR"})),
    )
    .await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    let replayed = r.headers.get("idempotent-replayed").is_some();
    (common::id_of(&r), replayed)
}

/// Waits until the background job has deleted every row `sql` counts.
async fn wait_until_purged(app: &TestApp, sql: &str) {
    app.wait_for_value(|| count(app, sql), |n| *n == 0).await;
}

#[sqlx::test]
async fn records_past_their_retention_are_purged_and_recent_ones_kept(pool: PgPool) {
    // Idempotency keys keep the default, 30 days.
    let app = TestApp::spawn_with(
        pool,
        &[
            ("CROWDLEDGER__RETENTION__WEBHOOK_ATTEMPTS_DAYS", "10"),
            ("CROWDLEDGER__RETENTION__INBOUND_EVENTS_DAYS", "60"),
            ("CROWDLEDGER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
        ],
    )
    .await;
    let start = app.clock.now();

    // Day 0: a POST with a key; a provider event applied, one quarantined; failed deliveries to
    // an endpoint nobody listens on.
    let (first, replayed) = sponsor_with_key(&app, "sponsor-iroise").await;
    assert!(!replayed);
    assert_eq!(sponsor_with_key(&app, "sponsor-iroise").await, (first.clone(), true));
    funded_sponsor(&app, "Fondation Aber", "50.00").await;
    let now = app.clock.now().timestamp();
    let body = common::sandbox::event("evt_stray", "payment.succeeded", "pay_nope", "9.00", "EUR", now);
    let r = common::sandbox::signed(&app, "evt_stray", body, 0).await;
    assert_eq!(r.body["outcome"], "quarantined", "{:#}", r.body);
    let url = format!("http://127.0.0.1:{}/hooks", common::free_port());
    ok(
        app.post("/v1/webhook-endpoints", json!({"url": url, "events": ["offer.opened"]}))
            .await,
        201,
    )
    .await;
    small_open_offer(&app).await;
    app.wait_for_value(|| count(&app, "select count(*) from webhook_attempts"), |n| *n > 0)
        .await;
    let old = |table: &str, time: &str| {
        format!(
            "select count(*) from {table} where {time} < '{}'::timestamptz",
            start + chrono::TimeDelta::days(1)
        )
    };
    let keys = old("idempotency_keys", "created_at");
    let applied = old("inbound_events", "received_at") + " and status <> 'quarantined'";
    let quarantined = old("inbound_events", "received_at") + " and status = 'quarantined'";
    let attempts = old("webhook_attempts", "attempted_at");
    // Reading the trail stores every record of the writes answered before.
    ok(app.get("/v1/audit-log?limit=1").await, 200).await;
    let trail = count(&app, &old("audit_log", "at")).await;
    assert!(trail > 0);
    assert_eq!(
        (
            count(&app, &keys).await,
            count(&app, &applied).await,
            count(&app, &quarantined).await
        ),
        (1, 1, 1)
    );

    // Day 11: the attempts are past their 10 days; the rest is kept.
    app.clock.advance(11 * DAY).unwrap();
    wait_until_purged(&app, &attempts).await;
    assert_eq!(
        (
            count(&app, &keys).await,
            count(&app, &applied).await,
            count(&app, &quarantined).await
        ),
        (1, 1, 1)
    );
    assert_eq!(sponsor_with_key(&app, "sponsor-iroise").await, (first.clone(), true));

    // Day 31: the key is past its 30 days, and the same request with it is new again.
    app.clock.advance(20 * DAY).unwrap();
    wait_until_purged(&app, &keys).await;
    assert_eq!((count(&app, &applied).await, count(&app, &quarantined).await), (1, 1));
    let (again, replayed) = sponsor_with_key(&app, "sponsor-iroise").await;
    assert!(!replayed && again != first, "a purged key was replayed: {again}");

    // Day 60: the applied event is past its 60 days; the quarantined one waits for a person, and
    // the key used again on day 31 is 29 days old.
    app.clock.advance(29 * DAY).unwrap();
    wait_until_purged(&app, &applied).await;
    assert_eq!(count(&app, &quarantined).await, 1);
    assert_eq!(count(&app, "select count(*) from idempotency_keys").await, 1);
    assert_eq!(sponsor_with_key(&app, "sponsor-iroise").await, (again, true));
    // The audit trail is kept: no `retention.audit_log_days` is set.
    assert_eq!(count(&app, &old("audit_log", "at")).await, trail);
}
