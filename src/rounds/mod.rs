//! A round's money moves: what carries a pledge's money through its round's life, from the
//! provider's confirmation to the round's end. Funding on confirmation (`funding`), card
//! disputes and their chargebacks (`disputes`), cancelling,
//! revoking, expiry and refunds (`ending`), closing and allocation (`closing`), paying the
//! project out (`payouts`), and making the calls that create a round's payments, refunds and
//! payouts at a networked provider (`calls`), and comparing them with the provider's (`reconcile`); an offer's KIIS
//! amended while it is open, and its pledges reconfirmed or revoked (`reconfirmation`). The state machine lives here, above the domains it moves (offers,
//! pledges, payments, cheques), so those take ids and small types and import none of it.

pub mod calls;
pub mod closing;
pub mod disputes;
pub mod ending;
pub mod funding;
pub mod matching;
pub mod payouts;
pub mod reconcile;
pub mod reconfirmation;

use uuid::Uuid;

/// Why a round's money could not move as asked.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error("no offer {0}")]
    NoOffer(Uuid),
    #[error("no pledge {0}")]
    NoPledge(Uuid),
    /// A move the offer's status does not allow (the message says which).
    #[error("{0}")]
    InvalidTransition(String),
    #[error("{0}")]
    MinTargetNotReached(String),
    #[error("{0}")]
    NotRevocable(&'static str),
    /// The pledge has no reconfirmation pending, or its time to reconfirm has passed.
    #[error("{0}")]
    NotReconfirmable(String),
    /// A reconfirmation names no current KIIS of the offer.
    #[error("{0}")]
    KiisNotAcknowledged(String),
    /// A provider's close of a dispute names another amount than its opening did: it does not
    /// fit, and is quarantined.
    #[error("dispute {dispute} is for {} {}, not {said}", crate::money::format_amount(*expected, said.currency()), said.currency())]
    DisputeMismatch {
        dispute: String,
        expected: rust_decimal::Decimal,
        said: crate::money::Money,
    },
    #[error("the project has been paid everything it is owed for this offer")]
    NothingToPay,
    /// The provider needs to know where the project is paid: the field of the project's payout
    /// details that is not set.
    #[error(transparent)]
    PayoutDetailsMissing(#[from] crate::projects::payout::MissingDetail),
    /// What should never happen did: answered as an opaque 500, its cause logged.
    #[error("{0}")]
    Unaccounted(String),
    #[error(transparent)]
    Offer(#[from] crate::offers::OfferError),
    #[error(transparent)]
    Ballot(#[from] crate::offers::ballot::BallotError),
    #[error(transparent)]
    Cheque(#[from] crate::cheques::ChequeError),
    #[error(transparent)]
    Match(#[from] crate::matchfunding::MatchError),
    #[error(transparent)]
    Payment(#[from] crate::payments::PaymentError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error(transparent)]
    Money(#[from] crate::money::MoneyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
