//! Share offers (funding rounds): their terms, lifecycle and closing. See docs/rounds.md.

pub mod allocation;
pub mod ballot;
pub mod cap_table;
pub mod documents;
pub mod http;
pub mod lifecycle;
pub mod store;

use chrono::{DateTime, SubsecRound, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::fields::FieldError;
use crate::money::{Currency, Money};
use crate::projects::ProjectError;
use ballot::BallotError;

/// ECSP (Regulation (EU) 2020/1503) art. 1(2)(c): at most €5,000,000 over 12 months per project.
pub(crate) const ECSP_CAP_EUR: Decimal = Decimal::from_parts(5_000_000, 0, 0, false, 0);

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "offer_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum OfferStatus {
    Draft,
    Open,
    Closing,
    Succeeded,
    Failed,
    Cancelled,
}

impl OfferStatus {
    /// The name in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            OfferStatus::Draft => "draft",
            OfferStatus::Open => "open",
            OfferStatus::Closing => "closing",
            OfferStatus::Succeeded => "succeeded",
            OfferStatus::Failed => "failed",
            OfferStatus::Cancelled => "cancelled",
        }
    }
}

/// Why an offer could not be created, opened or moved on.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("no offer {0}")]
    NotFound(Uuid),
    /// The offer's project (`ProjectError::NotFound`).
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("a {} offer cannot be {action}", .status.as_str())]
    InvalidTransition { status: OfferStatus, action: &'static str },
    #[error("the project is archived")]
    ProjectArchived,
    #[error("the project is not published")]
    ProjectNotPublished,
    #[error("the offer's closing time has passed")]
    ClosingTimePassed,
    /// A project is archived only once none of its offers takes pledges.
    #[error("the project has an open offer; close or cancel it before archiving the project")]
    ProjectHasOpenOffers,
    /// A cap table is read only after the round succeeded.
    #[error("the offer has not succeeded (yet)")]
    NotSucceeded,
    /// ECSP art. 1(2)(c), see [`ECSP_CAP_EUR`].
    #[error(
        "the project's offers of the last 12 months total {committed} EUR; {asked} more would exceed the ECSP limit of {ECSP_CAP_EUR} EUR"
    )]
    EcspCapExceeded { committed: Decimal, asked: Decimal },
    /// ECSP art. 23: investors read the offer's Key Investment Information Sheet before pledging.
    #[error(
        "the offer has no key investment information sheet: add one (POST /v1/offers/{{id}}/documents, kind kiis) before opening it"
    )]
    KiisMissing,
    /// The same document (its SHA-256) was added to the offer before.
    #[error("the offer already has the document with sha256 {0}")]
    DocumentExists(String),
    #[error(transparent)]
    Ballot(#[from] BallotError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "allocation_method", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// Shares are reserved when the pledge is made; the cap is never crossed.
    FirstCome,
    /// Oversubscription is scaled down in whole shares by the largest-remainder method.
    ProRata,
    /// Oversubscription is settled by a verifiable draw (docs/ballot.md).
    Ballot,
}

/// An offer as stored.
#[derive(Clone, Debug)]
pub struct Offer {
    pub id: Uuid,
    pub project_id: Uuid,
    pub currency: Currency,
    pub share_price: Money,
    pub min_shares: i64,
    pub max_shares: i64,
    pub min_ticket: Money,
    pub max_ticket: Option<Money>,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    pub success_fee_rate: Decimal,
    pub allocation: Allocation,
    pub payment_window_seconds: i32,
    /// How long a bank-transfer pledge waits for its money, never past the close.
    pub bank_transfer_window_seconds: i32,
    pub oversubscription_limit: Decimal,
    pub reserve_limit: i64,
    pub status: OfferStatus,
    pub shares_reserved: i64,
    pub ballot_commitment: Option<String>,
    /// Ballot: stored only once the draw is made (or, for offers opened before migration 0023,
    /// since the open).
    pub ballot_seed: Option<Vec<u8>>,
    /// Ballot: the seed's nonce (`ballot::SeedKey::seed`).
    pub ballot_nonce: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub opened_at: Option<DateTime<Utc>>,
    pub closing_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The hashes of the current Key Investment Information Sheets, one per language: a pledge
    /// names one of them (`documents`).
    pub kiis_sha256s: Vec<String>,
}

impl Offer {
    /// The money for `shares` shares.
    pub(crate) fn price_of(&self, shares: i64) -> Money {
        Money::new(self.share_price.amount() * Decimal::from(shares), self.currency)
            .expect("a whole number of shares at a valid price has the currency's decimals")
    }

    pub fn min_target(&self) -> Money {
        self.price_of(self.min_shares)
    }

    pub fn max_target(&self) -> Money {
        self.price_of(self.max_shares)
    }

    /// Whether a pledge may be made at `now`.
    pub(crate) fn accepts_pledges(&self, now: DateTime<Utc>) -> bool {
        self.status == OfferStatus::Open && self.opens_at <= now && now < self.closes_at
    }
}

/// Validated terms for a new offer.
#[derive(Clone, Debug)]
pub struct Terms {
    pub currency: Currency,
    pub share_price: Money,
    pub min_shares: i64,
    pub max_shares: i64,
    pub min_ticket: Money,
    pub max_ticket: Option<Money>,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    pub success_fee_rate: Decimal,
    pub allocation: Allocation,
    pub payment_window_seconds: i32,
    /// How long a bank-transfer pledge waits for its money, never past the close.
    pub bank_transfer_window_seconds: i32,
    pub oversubscription_limit: Decimal,
}

pub(crate) const DEFAULT_PAYMENT_WINDOW_SECONDS: i32 = 30 * 60;
/// Five days: a SEPA transfer ordered on a Friday evening arrives by Wednesday.
pub(crate) const DEFAULT_BANK_TRANSFER_WINDOW_SECONDS: i32 = 5 * 86_400;
pub(crate) const DEFAULT_OVERSUBSCRIPTION_LIMIT: Decimal = Decimal::from_parts(5, 0, 0, false, 0);

/// Raw terms as they arrive, before validation.
pub struct RawTerms {
    pub currency: String,
    pub share_price: Decimal,
    pub min_target: Decimal,
    pub max_target: Decimal,
    pub min_ticket: Decimal,
    pub max_ticket: Option<Decimal>,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    pub success_fee_rate: Decimal,
    pub allocation: Allocation,
    pub payment_window_seconds: Option<i32>,
    pub bank_transfer_window_seconds: Option<i32>,
    pub oversubscription_limit: Option<Decimal>,
}

impl Terms {
    /// Checks every rule a new offer's terms must meet; the message names the field.
    pub fn parse(raw: RawTerms) -> Result<Terms, FieldError> {
        let currency = Currency::parse(&raw.currency).map_err(|e| FieldError(format!("currency: {e}")))?;
        if currency != Currency::EUR {
            // The ECSP cap is in euros and the service has no exchange rates yet.
            return Err(FieldError("currency: only EUR offers are supported".into()));
        }
        let money = |field: &str, amount: Decimal| {
            Money::exact_positive(amount, currency).map_err(|e| FieldError(format!("{field}: {e}")))
        };
        let share_price = money("share_price", raw.share_price)?;
        let shares = |field: &str, amount: Decimal| -> Result<i64, FieldError> {
            let amount = money(field, amount)?;
            let count = amount.amount() / share_price.amount();
            if !count.fract().is_zero() {
                return Err(FieldError(format!(
                    "{field}: {amount} is not a whole number of shares at {share_price}"
                )));
            }
            i64::try_from(count).map_err(|_| FieldError(format!("{field}: too many shares")))
        };
        let min_shares = shares("min_target", raw.min_target)?;
        let max_shares = shares("max_target", raw.max_target)?;
        if min_shares > max_shares {
            return Err(FieldError("min_target: must not exceed max_target".into()));
        }
        if max_shares > 1_000_000_000 {
            return Err(FieldError("max_target: at most 1,000,000,000 shares".into()));
        }
        let min_ticket = money("min_ticket", raw.min_ticket)?;
        let max_ticket = raw.max_ticket.map(|t| money("max_ticket", t)).transpose()?;
        if max_ticket.is_some_and(|max| max.amount() < min_ticket.amount()) {
            return Err(FieldError("max_ticket: must not be below min_ticket".into()));
        }
        // Kept to the microsecond, as Postgres stores them: two times less than a microsecond
        // apart would be stored equal, against the table's own check.
        let (opens_at, closes_at) = (raw.opens_at.trunc_subsecs(6), raw.closes_at.trunc_subsecs(6));
        if opens_at >= closes_at {
            return Err(FieldError("closes_at: must be after opens_at".into()));
        }
        let rate = raw.success_fee_rate;
        if rate < Decimal::ZERO || rate >= Decimal::ONE || rate.normalize().scale() > 6 {
            return Err(FieldError(
                "success_fee_rate: a fraction from 0 up to (not including) 1, e.g. \"0.05\"".into(),
            ));
        }
        let window = raw.payment_window_seconds.unwrap_or(DEFAULT_PAYMENT_WINDOW_SECONDS);
        if !(60..=604_800).contains(&window) {
            return Err(FieldError("payment_window_seconds: from 60 to 604800".into()));
        }
        let bank_window = raw
            .bank_transfer_window_seconds
            .unwrap_or(DEFAULT_BANK_TRANSFER_WINDOW_SECONDS);
        if !(3600..=2_592_000).contains(&bank_window) {
            return Err(FieldError(
                "bank_transfer_window_seconds: from 3600 (an hour) to 2592000 (30 days)".into(),
            ));
        }
        let limit = raw.oversubscription_limit.unwrap_or(DEFAULT_OVERSUBSCRIPTION_LIMIT);
        if limit < Decimal::ONE || limit > Decimal::from(100) {
            return Err(FieldError(
                "oversubscription_limit: a multiple of the cap from 1 to 100".into(),
            ));
        }
        Ok(Terms {
            currency,
            share_price,
            min_shares,
            max_shares,
            min_ticket,
            max_ticket,
            opens_at,
            closes_at,
            success_fee_rate: rate,
            allocation: raw.allocation,
            payment_window_seconds: window,
            bank_transfer_window_seconds: bank_window,
            oversubscription_limit: limit,
        })
    }

    /// How many shares pledges may reserve in total.
    pub(crate) fn reserve_limit(&self) -> i64 {
        match self.allocation {
            Allocation::FirstCome => self.max_shares,
            Allocation::ProRata | Allocation::Ballot => {
                let limit = (Decimal::from(self.max_shares) * self.oversubscription_limit).floor();
                i64::try_from(limit).unwrap_or(i64::MAX)
            }
        }
    }

    pub fn max_target(&self) -> Money {
        Money::new(
            self.share_price.amount() * Decimal::from(self.max_shares),
            self.currency,
        )
        .expect("whole shares at a valid price")
    }
}

/// The data of an `offer.*` event.
pub(crate) fn offer_event(offer: &Offer, status: OfferStatus) -> serde_json::Value {
    serde_json::json!({ "offer_id": offer.id, "project_id": offer.project_id, "status": status })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawTerms {
        RawTerms {
            currency: "EUR".into(),
            share_price: "10.00".parse().unwrap(),
            min_target: "100000".parse().unwrap(),
            max_target: "150000".parse().unwrap(),
            min_ticket: "10".parse().unwrap(),
            max_ticket: None,
            opens_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            closes_at: "2026-01-29T00:00:00Z".parse().unwrap(),
            success_fee_rate: "0.05".parse().unwrap(),
            allocation: Allocation::ProRata,
            payment_window_seconds: None,
            bank_transfer_window_seconds: None,
            oversubscription_limit: None,
        }
    }

    #[test]
    fn status_names_are_their_json_names() {
        use OfferStatus::*;
        for status in [Draft, Open, Closing, Succeeded, Failed, Cancelled] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }

    #[test]
    fn targets_are_whole_shares() {
        let t = Terms::parse(raw()).unwrap();
        assert_eq!(
            (t.min_shares, t.max_shares, t.reserve_limit()),
            (10_000, 15_000, 75_000)
        );
        let err = Terms::parse(RawTerms {
            max_target: "150005".parse().unwrap(),
            ..raw()
        })
        .unwrap_err();
        assert!(err.0.starts_with("max_target"), "{err}");
        let err = Terms::parse(RawTerms {
            min_target: "200000".parse().unwrap(),
            ..raw()
        })
        .unwrap_err();
        assert!(err.0.starts_with("min_target"), "{err}");
    }

    #[test]
    fn every_term_is_checked() {
        let cases: Vec<(RawTerms, &str)> = vec![
            (
                RawTerms {
                    currency: "USD".into(),
                    ..raw()
                },
                "currency",
            ),
            (
                RawTerms {
                    share_price: "0".parse().unwrap(),
                    ..raw()
                },
                "share_price",
            ),
            (
                RawTerms {
                    share_price: "0.001".parse().unwrap(),
                    ..raw()
                },
                "share_price",
            ),
            (
                RawTerms {
                    max_ticket: Some("5".parse().unwrap()),
                    ..raw()
                },
                "max_ticket",
            ),
            (
                RawTerms {
                    closes_at: "2025-12-31T00:00:00Z".parse().unwrap(),
                    ..raw()
                },
                "closes_at",
            ),
            (
                RawTerms {
                    success_fee_rate: "1".parse().unwrap(),
                    ..raw()
                },
                "success_fee_rate",
            ),
            (
                RawTerms {
                    success_fee_rate: "-0.01".parse().unwrap(),
                    ..raw()
                },
                "success_fee_rate",
            ),
            (
                RawTerms {
                    payment_window_seconds: Some(10),
                    ..raw()
                },
                "payment_window_seconds",
            ),
            (
                RawTerms {
                    oversubscription_limit: Some("0.5".parse().unwrap()),
                    ..raw()
                },
                "oversubscription_limit",
            ),
        ];
        for (terms, field) in cases {
            let err = Terms::parse(terms).unwrap_err();
            assert!(err.0.starts_with(field), "{field}: {err}");
        }
    }
}
