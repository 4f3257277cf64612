//! Money through payment providers, by job: which providers exist (`providers`), the adapter
//! each one is (`provider`: the trait; `sandbox`, `stripe`), card payments for pledges (`card`)
//! and refunds (`refunds`). Payments know pledges and offers only by id; what a provider's
//! confirmation does to a round is `rounds`'s.

pub mod card;

pub mod provider;
pub mod providers;
pub mod refunds;
pub mod sandbox;
pub mod stripe;

use rust_decimal::Decimal;

use crate::http::error::{ApiError, Code};
use crate::money::Money;

/// The built-in test-mode provider.
pub const SANDBOX: &str = "sandbox";

/// What a provider's confirmation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The state changed.
    Done,
    /// It had already been applied, or no longer applies; nothing changed.
    Nothing,
}

pub(crate) fn unknown(what: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("no {what} {id}"))
}

/// Refuses a confirmation whose money is not what the provider was asked for: 422 `code`
/// (`payment_mismatch`, `refund_mismatch`, `payout_mismatch`), so the event is quarantined and
/// moves nothing. Checked before the object's state, so a wrong amount is never taken for a
/// mere repeat.
pub(crate) fn expect_money(
    code: Code,
    what: &str,
    provider_id: &str,
    expected: Decimal,
    currency: &str,
    paid: Money,
) -> Result<(), ApiError> {
    if paid.amount() == expected && paid.currency().code() == currency {
        return Ok(());
    }
    Err(ApiError::new(
        code,
        format!("{what} {provider_id} is for {expected} {currency}, not {paid}"),
    ))
}
