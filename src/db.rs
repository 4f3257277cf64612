//! The connection pool and the migrations (migrations/, embedded in the binary).

use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::PgPool;
use sqlx::error::DatabaseError;
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

/// Whether Postgres rolled the transaction back to break a deadlock or a serialisation conflict
/// (SQLSTATE 40P01, 40001): nothing of it was committed, and running it again is safe.
pub fn is_retryable(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("applying migrations")
}

/// Whether the pool's role could rewrite the journal (an owner or a superuser, say): then only
/// the triggers guard it, and a superuser can turn those off. The service should log in as a
/// member of `crowdledger_app` instead (docs/database-roles.md).
pub async fn can_rewrite_journal(pool: &PgPool) -> anyhow::Result<bool> {
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

/// Tells the violation of one named constraint apart from other database errors (as
/// launchbadge/realworld-axum-sqlx's `ResultExt::on_constraint`): migrations name their
/// constraints so that a domain maps the one it expects to its own error, never by matching
/// messages.
pub trait ResultExt<T> {
    /// `f`'s error when the statement broke the constraint `name`; any other database error as
    /// it is, in `E`.
    fn on_constraint<E: From<sqlx::Error>>(
        self,
        name: &str,
        f: impl FnOnce(Box<dyn DatabaseError>) -> E,
    ) -> Result<T, E>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn on_constraint<E: From<sqlx::Error>>(
        self,
        name: &str,
        f: impl FnOnce(Box<dyn DatabaseError>) -> E,
    ) -> Result<T, E> {
        self.map_err(|err| match err {
            sqlx::Error::Database(db) if db.constraint() == Some(name) => f(db),
            other => other.into(),
        })
    }
}
