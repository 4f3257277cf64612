//! What a domain needs to know of a Postgres error: which named constraint it broke, and
//! whether its transaction may simply run again. Below every domain; knows none of them.

use sqlx::error::DatabaseError;

/// Whether Postgres rolled the transaction back to break a deadlock or a serialisation conflict
/// (SQLSTATE 40P01, 40001): nothing of it was committed, and running it again is safe.
pub(crate) fn is_retryable(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Tells the violation of one named constraint apart from other database errors (as
/// launchbadge/realworld-axum-sqlx's `ResultExt::on_constraint`): migrations name their
/// constraints so that a domain maps the one it expects to its own error, never by matching
/// messages.
pub(crate) trait ResultExt<T> {
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
