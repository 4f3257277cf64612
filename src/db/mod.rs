//! The connection pool and the migrations (migrations/, embedded in the binary); what the
//! domains need to know of Postgres's errors is `errors`, at the bottom of the house.

pub mod errors;

use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

use crate::config::Settings;

pub static MIGRATOR: Migrator = sqlx::migrate!();

/// A pool logged in as the service's role (`database.url`): what `serve` and the other commands use.
pub async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    pool(settings, settings.database_url()?)
        .await
        .context("connecting to the database (database.url / DATABASE_URL)")
}

/// A pool logged in as the owner of the tables (`database.migrate_url`, else `database.url`).
pub async fn connect_migrator(settings: &Settings) -> anyhow::Result<PgPool> {
    pool(settings, settings.migrate_url()?)
        .await
        .context("connecting to the database (database.migrate_url, else database.url)")
}

async fn pool(settings: &Settings, url: &str) -> sqlx::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        .acquire_timeout(Duration::from_secs(settings.database.acquire_timeout_seconds))
        .connect(url)
        .await
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("applying migrations")
}

/// Whether the pool's role could rewrite the journal (an owner or a superuser, say): then only
/// the triggers guard it, and a superuser can turn those off. The service should log in as a
/// member of `crowdledger_app` instead (docs/database-roles.md).
pub(crate) async fn can_rewrite_journal(pool: &PgPool) -> anyhow::Result<bool> {
    sqlx::query_scalar(
        "select has_table_privilege('ledger_entries', 'update, delete, truncate')
             or has_table_privilege('ledger_postings', 'update, delete, truncate')",
    )
    .fetch_one(pool)
    .await
    .context("reading the database role's privileges")
}

/// Fails when the database lacks a migration this binary knows, so `serve` never runs on an
/// older schema. Migrations are applied by `crowdledger migrate`, on purpose and once.
pub async fn ensure_migrated(pool: &PgPool) -> anyhow::Result<()> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
            .fetch_all(pool)
            .await
        {
            Ok(v) => v,
            Err(_) => bail!("the database has no schema yet: run `crowdledger migrate` first"),
        };
    let missing: Vec<i64> = MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    if !missing.is_empty() {
        bail!("the database schema is behind (missing migrations {missing:?}): run `crowdledger migrate` first");
    }
    Ok(())
}
