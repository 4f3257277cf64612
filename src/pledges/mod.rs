//! Pledges: an investor's commitment to buy shares in an offer, and the money behind it.

pub mod http;
pub mod rules;
pub mod store;
pub mod view;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::money::{Currency, Money};

/// A non-sophisticated investor may revoke a pledge this long after making it (ECSP art. 22).
pub(crate) const REFLECTION_PERIOD_DAYS: i64 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "pledge_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum PledgeStatus {
    PendingPayment,
    Funded,
    Allocated,
    Refunded,
    Cancelled,
    Revoked,
}

#[derive(Clone, Debug)]
pub struct Pledge {
    pub id: Uuid,
    pub offer_id: Uuid,
    pub investor_id: Uuid,
    pub seq: i64,
    pub shares: i64,
    pub amount: Money,
    pub funding: serde_json::Value,
    pub card_amount: Decimal,
    pub status: PledgeStatus,
    pub risk_acknowledged: bool,
    pub reflection_ends_at: Option<DateTime<Utc>>,
    pub payment_due_at: DateTime<Utc>,
    pub allocated_shares: Option<i64>,
    pub refunded_amount: Option<Decimal>,
    pub created_at: DateTime<Utc>,
    pub funded_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The consent it was made under (docs/investor-protection.md); immutable.
    pub consent: Consent,
    /// Set while a reconfirmation under an amended KIIS is pending.
    pub reconfirm_by: Option<DateTime<Utc>>,
    /// When it was last reconfirmed (`pledge_reconfirmations` keeps each one).
    pub reconfirmed_at: Option<DateTime<Utc>>,
}

/// What an investor consented to when pledging: the KIIS read, the risk-warning text
/// acknowledged (when one was), and the appropriateness record the pledge was judged under
/// (non-sophisticated investors). Postgres refuses to change it (migration 0039). All none for
/// pledges made before the gate.
#[derive(Clone, Debug, Default)]
pub struct Consent {
    pub kiis_sha256: Option<String>,
    pub risk_warning_version: Option<String>,
    pub appropriateness_id: Option<Uuid>,
}

/// The data of a `pledge.*` event.
#[derive(serde::Serialize)]
pub(crate) struct PledgeEvent {
    pledge_id: Uuid,
    offer_id: Uuid,
    investor_id: Uuid,
    shares: i64,
    amount: String,
    currency: Currency,
    status: PledgeStatus,
    /// After a round's allocation: the shares the pledge got, and the money given back.
    #[serde(skip_serializing_if = "Option::is_none")]
    allocated_shares: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refunded_amount: Option<String>,
    /// `pledge.reconfirmation_required`: by when.
    #[serde(skip_serializing_if = "Option::is_none")]
    reconfirm_by: Option<DateTime<Utc>>,
    /// `pledge.reconfirmed`: under which KIIS.
    #[serde(skip_serializing_if = "Option::is_none")]
    kiis_sha256: Option<String>,
    /// Why it ended, when neither the investor nor the round ended it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl PledgeEvent {
    pub fn new(pledge: &Pledge, status: PledgeStatus) -> Self {
        PledgeEvent {
            pledge_id: pledge.id,
            offer_id: pledge.offer_id,
            investor_id: pledge.investor_id,
            shares: pledge.shares,
            amount: pledge.amount.amount_string(),
            currency: pledge.amount.currency(),
            status,
            allocated_shares: None,
            refunded_amount: None,
            reconfirm_by: None,
            kiis_sha256: None,
            reason: None,
        }
    }

    /// A reconfirmation asked by `by`.
    pub fn reconfirm_by(mut self, by: DateTime<Utc>) -> Self {
        self.reconfirm_by = Some(by);
        self
    }

    /// A reconfirmation made under the KIIS `sha256`.
    pub fn reconfirmed(mut self, sha256: &str) -> Self {
        self.kiis_sha256 = Some(sha256.to_owned());
        self
    }

    /// Ended for `reason` (a stable word).
    pub fn because(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// The outcome of allocation: `allocated` shares, `refunded` given back.
    pub fn allocated(mut self, allocated: i64, refunded: Money) -> Self {
        self.allocated_shares = Some(allocated);
        self.refunded_amount = Some(refunded.amount_string());
        self
    }
}

pub(crate) fn pledge_event(pledge: &Pledge, status: PledgeStatus) -> serde_json::Value {
    serde_json::to_value(PledgeEvent::new(pledge, status)).expect("a pledge event serialises")
}

impl Pledge {
    /// This pledge as the cheques see it: what their money funds.
    pub(crate) fn funded_by_cheques(&self) -> crate::cheques::redeem::Funded {
        crate::cheques::redeem::Funded {
            pledge_id: self.id,
            offer_id: self.offer_id,
            currency: self.amount.currency(),
        }
    }
}

/// Why a pledge is refused, or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PledgeError {
    /// A field of the request breaks a rule (the message names it).
    #[error("{0}")]
    Invalid(String),
    #[error("no offer {0}")]
    NoOffer(Uuid),
    #[error("{0}")]
    OfferNotOpen(String),
    #[error("{0}")]
    OfferFull(String),
    #[error("only an investor whose KYC is verified can pledge")]
    InvestorNotVerified,
    #[error("{0}")]
    BelowMinTicket(String),
    #[error("{0}")]
    AboveMaxTicket(String),
    #[error("{0}")]
    RiskWarningRequired(String),
    #[error(
        "a non-sophisticated investor pledges only once the platform has recorded their entry knowledge test and loss simulation (POST /v1/investors/{{id}}/appropriateness)"
    )]
    AppropriatenessRequired,
    #[error(
        "the investor's entry knowledge test and loss simulation were valid until {}; the platform records new ones (POST /v1/investors/{{id}}/appropriateness)", .0.to_rfc3339()
    )]
    AppropriatenessExpired(DateTime<Utc>),
    #[error("{0}")]
    KiisNotAcknowledged(String),
    /// The card provider keeps the project as a user of its own and needs a payout detail the
    /// project lacks.
    #[error(transparent)]
    PayoutDetailsMissing(#[from] crate::projects::payout::MissingDetail),
    /// What should never happen did: answered as an opaque 500, its cause logged.
    #[error("{0}")]
    Unaccounted(String),
    #[error(transparent)]
    Cheque(#[from] crate::cheques::ChequeError),
    #[error(transparent)]
    Payment(#[from] crate::payments::PaymentError),
    #[error(transparent)]
    Money(#[from] crate::money::MoneyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
