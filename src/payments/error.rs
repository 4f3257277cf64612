//! What payments can fail with, as a domain says it: `http/error.rs` gives each case its status
//! and stable code.

use rust_decimal::Decimal;

use super::provider::{Object, ProviderError};
use crate::ledger::LedgerError;
use crate::money::{Money, MoneyError};
use crate::webhooks::signature::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// No object of ours by that id (a payment, refund or payout a provider names, an offer).
    #[error("no {what} {id}")]
    Unknown { what: &'static str, id: String },
    /// A provider's confirmation is for other money than it was asked for: the event is
    /// quarantined and moves nothing. A deposit is money paid to us, so it is a payment's.
    #[error("{} {provider_id} is for {} {currency}, not {paid}", object.noun(), shown(*expected, currency))]
    Mismatch {
        object: Object,
        provider_id: String,
        expected: Decimal,
        currency: String,
        paid: Money,
    },
    /// A provider disputes a payment we never captured: nothing of ours to dispute, so the
    /// event is quarantined.
    #[error("payment {provider_id} was never captured: there is nothing to dispute")]
    NotCaptured { provider_id: String },
    /// A provider confirms a refund that a lost dispute cancelled: the bank gave that money
    /// back already, so it left the provider twice. Quarantined for an operator.
    #[error("refund {provider_id} was cancelled by a lost dispute: the bank gave its money back already")]
    RefundCancelled { provider_id: String },
    /// Money that needs a provider to create it, where none is configured to.
    #[error("no payment provider is configured to take this money (payments.card_provider)")]
    Unavailable,
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A webhook delivery whose signature (or a header it needs) is refused.
    #[error("webhook signature refused: {0}")]
    InvalidSignature(#[from] SignatureError),
    /// A provider that does not exist here: its webhook is a path that does not exist.
    #[error("no such route")]
    NoSuchProvider,
    /// A provider whose webhook secret is not set: it receives no events.
    #[error("the {0} provider is not configured")]
    NotConfigured(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// An amount in its currency's decimals, as every message writes money.
fn shown(amount: Decimal, currency: &str) -> String {
    match crate::money::Currency::parse(currency) {
        Ok(currency) => crate::money::format_amount(amount, currency),
        Err(_) => amount.normalize().to_string(),
    }
}
