//! The `crowdledger` binary: migrate, keys, verify's exit code, configuration errors, and serve
//! with a graceful shutdown.

use std::process::{Command, Output};

use crowdledger::keys;
use sqlx::PgPool;

use crate::common;

fn crowdledger(db: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crowdledger"));
    cmd.args(args)
        .env("DATABASE_URL", db)
        .env_remove("CROWDLEDGER_CONFIG")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[sqlx::test]
async fn keys_are_created_listed_and_revoked_without_being_stored(pool: PgPool) {
    let db = common::database_url(&pool);
    let out = crowdledger(&db, &["migrate"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = crowdledger(
        &db,
        &["keys", "create", "--role", "auditor", "--name", "audit-firm"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_string();
    assert!(key.starts_with("clk_") && key.len() >= 40, "{key}");
    let mut conn = pool.acquire().await.unwrap();
    let (id, role) = keys::find_active(&mut conn, &keys::hash(&key))
        .await
        .unwrap()
        .expect("key is stored by hash");
    assert_eq!(role, keys::Role::Auditor);
    let stored: i64 = sqlx::query_scalar("select count(*) from api_keys where key_prefix = $1 or name = $2")
        .bind(&key[..8])
        .bind(&key)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(stored, 1, "only the prefix is kept, never the key");

    let out = crowdledger(&db, &["keys", "list"], &[]);
    let listing = text(&out.stdout);
    assert!(
        listing.contains("audit-firm") && listing.contains("auditor") && !listing.contains(&key),
        "{listing}"
    );

    let out = crowdledger(&db, &["keys", "revoke", &id.to_string()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(keys::find_active(&mut conn, &keys::hash(&key)).await.unwrap().is_none());
    let out = crowdledger(&db, &["keys", "revoke", &id.to_string()], &[]);
    assert!(!out.status.success());

    let out = crowdledger(&db, &["keys", "create", "--role", "janitor"], &[]);
    assert!(!out.status.success());
}

#[sqlx::test]
async fn verify_exits_1_and_names_the_broken_invariant(pool: PgPool) {
    let db = common::database_url(&pool);
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query(
        "insert into ledger_accounts (id, code, currency, kind, created_at)
         values (gen_random_uuid(), 't:a', 'EUR', 'asset', now()), (gen_random_uuid(), 't:b', 'EUR', 'liability', now())",
    )
    .execute(&mut *conn)
    .await
    .unwrap();

    let out = crowdledger(&db, &["verify"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let report = text(&out.stdout);
    for name in [
        "debits_equal_credits",
        "entries_balance",
        "balances_match_postings",
        "no_overdraft_respected",
    ] {
        assert!(
            report.lines().any(|l| l.starts_with("ok") && l.contains(name)),
            "{report}"
        );
    }

    sqlx::query("set session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("update ledger_accounts set balance = 5 where code = 't:a'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let out = crowdledger(&db, &["verify"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("balances_match_postings")),
        "{report}"
    );
    assert!(report.contains("t:a"), "{report}");
}

#[sqlx::test(migrations = false)]
async fn migrate_logs_in_as_the_owner_named_by_migrate_url(pool: PgPool) {
    let owner = common::database_url(&pool);
    let service = common::service_url(&pool);
    // The service's role owns nothing and may create nothing: alone, it cannot migrate.
    let out = crowdledger(&service, &["migrate"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("permission denied"), "{}", text(&out.stderr));

    let out = crowdledger(
        &service,
        &["migrate"],
        &[("CROWDLEDGER__DATABASE__MIGRATE_URL", &owner)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let owned_by_the_migrator: Option<bool> = sqlx::query_scalar(
        "select bool_and(pg_get_userbyid(relowner) = current_user) from pg_class where relname like 'ledger%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(owned_by_the_migrator, Some(true));
    // The other commands use database.url: the service's role reads the books.
    let out = crowdledger(&service, &["verify"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[sqlx::test]
async fn serve_warns_when_its_role_could_rewrite_the_journal(pool: PgPool) {
    let key = "warn-test-operator-key-0123456789abcdef";
    let warning = "serve as a member of crowdledger_app";
    let served = common::Served::start(&pool, key).await;
    let log = text(&served.terminate().await.stderr);
    assert!(!log.contains(warning), "{log}");

    let owner = common::database_url(&pool);
    let served = common::Served::start_with(&pool, key, &[("CROWDLEDGER__DATABASE__URL", &owner)]).await;
    let log = text(&served.terminate().await.stderr);
    assert!(log.contains(warning), "{log}");
}

#[sqlx::test(migrations = false)]
async fn serve_refuses_an_unmigrated_database(pool: PgPool) {
    let db = common::database_url(&pool);
    let out = crowdledger(&db, &["serve"], &[("CROWDLEDGER__HTTP__BIND", "127.0.0.1:0")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("crowdledger migrate"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_configuration_is_named_and_exits_2() {
    let out = crowdledger(
        "postgres://nobody@127.0.0.1:1/none",
        &["verify"],
        &[("CROWDLEDGER__HTTP__BIND", "nowhere")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("http.bind"), "{}", text(&out.stderr));
    let out = crowdledger(
        "postgres://nobody@127.0.0.1:1/none",
        &["verify"],
        &[("CROWDLEDGER__CLOCK__MOOD", "x")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("mood"), "{}", text(&out.stderr));
}

#[sqlx::test]
async fn serve_answers_and_stops_gracefully_on_sigterm(pool: PgPool) {
    let key = "serve-test-operator-key-0123456789abcdef";
    let served = common::Served::start(&pool, key).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/v1/ledger/verify", served.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let metrics = client
        .get(format!("{}/metrics", served.metrics_base))
        .send()
        .await
        .unwrap();
    assert!(metrics.text().await.unwrap().contains("http_requests_total"));

    let out = served.terminate().await;
    assert!(out.status.success(), "exit {:?}", out.status);
    let log = text(&out.stderr);
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(!log.contains(key), "the bootstrap key reached the log");
}
