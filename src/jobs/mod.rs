//! Background work driven by the service clock: expiring unpaid pledges, ending pledges whose
//! time to reconfirm an amended KIIS has passed, closing offers whose time has come, reminding
//! winners of cheques about to expire and expiring them, and deleting records past their retention (`retention.rs`). `crate::background`
//! runs it every second and at once when a manual clock is moved. Several serve processes may run
//! it together: every item is handled under its rows' locks and re-checked there, so each is
//! acted on once.

pub mod retention;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use crate::offers::ballot::SeedKey;
use crate::rounds::ending::expire_unpaid;
use crate::rounds::{RoundError, closing};

/// One pass of every job at `now` (`seed_key` draws ballots).
pub(crate) async fn tick(
    pool: &PgPool,
    seed_key: Option<&SeedKey>,
    cheque_notice: TimeDelta,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    expire_unpaid(pool, now).await?;
    crate::rounds::reconfirmation::revoke_unconfirmed(pool, now).await?;
    closing::close_due(pool, seed_key, now, |_, _| {}).await?;
    crate::cheques::remind_expiring(pool, cheque_notice, now).await?;
    crate::cheques::expire_due(pool, now).await?;
    crate::matchfunding::end_expired(pool, now).await?;
    Ok(())
}
