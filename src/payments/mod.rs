//! Money through payment providers, by job: which providers exist (`providers`), the adapter
//! each one is (`provider`: the trait; `sandbox`, `stripe`, `mangopay`), the queue of calls to
//! networked ones (`calls`, what they share on the wire in `wire`, the project as a payee they
//! carry in `payee`), card payments for pledges (`card`), their disputes (`disputes`) and refunds
//! (`refunds`, listed and read over HTTP in `http`). Payments know pledges and
//! offers only by id; what a provider's confirmation does to a round is `rounds`'s.

pub mod calls;
pub mod card;
pub mod disputes;
mod error;
pub mod http;
pub mod mangopay;
pub mod payee;
pub mod provider;
pub mod providers;
pub mod refunds;
pub mod sandbox;
pub mod stripe;
mod wire;

pub use error::PaymentError;
use provider::Object;
use rust_decimal::Decimal;

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

/// No `what` of ours by that id.
pub(crate) fn unknown(what: &'static str, id: &str) -> PaymentError {
    PaymentError::Unknown {
        what,
        id: id.to_owned(),
    }
}

/// Refuses a confirmation of `object` whose money is not what the provider was asked for
/// ([`PaymentError::Mismatch`]), so the event is quarantined and moves nothing. Checked before
/// the object's state, so a wrong amount is never taken for a mere repeat.
pub(crate) fn expect_money(
    object: Object,
    provider_id: &str,
    expected: Decimal,
    currency: &str,
    paid: Money,
) -> Result<(), PaymentError> {
    if paid.amount() == expected && paid.currency().code() == currency {
        return Ok(());
    }
    Err(PaymentError::Mismatch {
        object,
        provider_id: provider_id.to_owned(),
        expected,
        currency: currency.to_owned(),
        paid,
    })
}
