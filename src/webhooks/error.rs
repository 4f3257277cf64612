//! What receiving a provider's event can fail with. Applying an event runs other domains' code
//! (rounds, sponsors' deposits, refunds); what their errors mean to the event is judged where
//! the stable codes live (`http/error.rs`, which builds [`WebhookError::Refused`] and
//! [`WebhookError::Failed`] from them): a refusal quarantines the event under its code, a
//! failure rolls it back so that the provider delivers it again.

use std::error::Error;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The event does not fit what we know (an unknown object, other money than was asked for,
    /// a state that refuses it): it is quarantined with `note` (`code: detail`), never applied.
    #[error("{note}")]
    Refused {
        note: String,
        source: Box<dyn Error + Send + Sync>,
    },
    /// Applying it failed otherwise: nothing of it is stored.
    #[error(transparent)]
    Failed(Box<dyn Error + Send + Sync>),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// An event of a batch was stored meanwhile by a concurrent delivery: the batch rolls back
    /// and its events are received one by one.
    #[error("an event of the batch was stored meanwhile")]
    StoredMeanwhile,
    #[error(transparent)]
    Lost(#[from] crate::batch::Lost),
}

impl WebhookError {
    /// Whether Postgres rolled the transaction back to break a deadlock or a serialisation
    /// conflict, here or in the domain that applied the event: nothing of it was committed,
    /// and receiving the event again is safe.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            WebhookError::Database(err) => crate::db::errors::is_retryable(err),
            WebhookError::Failed(err) => {
                // The database error may be wrapped: in the error of the domain that met it.
                let mut cause: Option<&(dyn Error + 'static)> = Some(&**err);
                while let Some(err) = cause {
                    if err
                        .downcast_ref::<sqlx::Error>()
                        .is_some_and(crate::db::errors::is_retryable)
                    {
                        return true;
                    }
                    cause = err.source();
                }
                false
            }
            WebhookError::Refused { .. } | WebhookError::StoredMeanwhile | WebhookError::Lost(_) => false,
        }
    }
}
