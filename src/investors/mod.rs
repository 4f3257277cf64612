//! Investors: the people and companies who pledge, with their ECSP classification and the
//! operator's KYC decision. Only a verified investor can pledge.
//!
//! Pledges read them through [`store::get`].

pub mod appropriateness;
pub mod http;
pub mod store;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::fields::{self, Country, Email, FieldError};
use crate::money::{Amount, Currency, Money};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "investor_kind", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum InvestorKind {
    /// A person.
    Natural,
    /// A company, association or other legal person.
    Legal,
}

/// ECSP investor category (Regulation (EU) 2020/1503, art. 2(1)(j)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "investor_classification", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// The default: risk warnings above the threshold and a four-day reflection period.
    #[default]
    NonSophisticated,
    Sophisticated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "kyc_status", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum KycStatus {
    Pending,
    Verified,
    Rejected,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum InvestorError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("no investor {0}")]
    NotFound(Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A declared net worth as a client sends it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetWorthInput {
    pub amount: Amount,
    #[schema(value_type = crate::money::CurrencyCode)]
    pub currency: Currency,
}

/// An investor as a client describes them, before any rule is applied.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvestorInput {
    pub kind: InvestorKind,
    #[schema(example = "Camille Martin")]
    pub name: String,
    #[schema(example = "camille@example.org")]
    pub email: String,
    pub country: Country,
    /// Defaults to `non_sophisticated`.
    pub classification: Option<Classification>,
    /// Zero or more, in the currency's precision.
    pub net_worth: Option<NetWorthInput>,
}

/// An investor that satisfies every rule, ready to be stored. Serialises canonically, which
/// makes it the request's identity for `Idempotency-Key`.
#[derive(Debug, Serialize)]
pub struct NewInvestor {
    kind: InvestorKind,
    name: String,
    email: Email,
    country: Country,
    classification: Classification,
    #[serde(serialize_with = "money_json")]
    net_worth: Option<Money>,
}

fn money_json<S: Serializer>(money: &Option<Money>, s: S) -> Result<S::Ok, S::Error> {
    money
        .map(|m| serde_json::json!({"amount": m.amount_string(), "currency": m.currency().code()}))
        .serialize(s)
}

impl NewInvestor {
    pub fn parse(input: InvestorInput) -> Result<NewInvestor, FieldError> {
        let net_worth = input
            .net_worth
            .map(|nw| {
                if nw.amount.value() < Decimal::ZERO {
                    return Err(FieldError("net_worth.amount must not be negative".into()));
                }
                Money::exact(nw.amount.value(), nw.currency).map_err(|e| FieldError(format!("net_worth: {e}")))
            })
            .transpose()?;
        Ok(NewInvestor {
            kind: input.kind,
            name: fields::line("name", &input.name, 200)?,
            email: Email::parse(&input.email)?,
            country: input.country,
            classification: input.classification.unwrap_or_default(),
            net_worth,
        })
    }
}

/// An investor as stored.
#[derive(Clone, Debug)]
pub struct Investor {
    pub id: Uuid,
    pub kind: InvestorKind,
    pub name: String,
    pub email: String,
    pub country: Country,
    pub classification: Classification,
    pub kyc_status: KycStatus,
    pub net_worth: Option<Money>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When an operator last set `kyc_status`.
    pub kyc_decided_at: Option<DateTime<Utc>>,
    /// When an operator last set `classification`; null while the registration's stands.
    pub classification_decided_at: Option<DateTime<Utc>>,
    /// The latest appropriateness record (ECSP art. 21), valid or not; none until one is recorded.
    pub appropriateness: Option<appropriateness::Standing>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_have_the_usual_shape() {
        for good in ["a@b.co", "camille.martin+crowd@example.org", " x@y.fr "] {
            assert!(Email::parse(good).is_ok(), "{good:?} refused");
        }
        assert_eq!(Email::parse(" x@y.fr ").unwrap().as_str(), "x@y.fr");
        for bad in [
            "", "plain", "@b.co", "a@", "a@b", "a@.b", "a@b.", "a@@b.co", "a@b@c.co", "a b@c.co", "a@b .co",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.org", "a".repeat(242));
        assert_eq!(long.len(), 254);
        assert!(Email::parse(&long).is_ok());
        assert!(Email::parse(&format!("a{long}")).is_err());
    }

    fn input(net_worth: Option<(&str, &str)>) -> InvestorInput {
        InvestorInput {
            kind: InvestorKind::Natural,
            name: "Camille".into(),
            email: "c@example.org".into(),
            country: Country::parse("BE").unwrap(),
            classification: None,
            net_worth: net_worth.map(|(a, c)| NetWorthInput {
                amount: a.parse().unwrap(),
                currency: Currency::parse(c).unwrap(),
            }),
        }
    }

    #[test]
    fn net_worth_is_money_and_not_negative() {
        assert!(NewInvestor::parse(input(Some(("250000.00", "EUR")))).is_ok());
        assert!(NewInvestor::parse(input(Some(("0", "EUR")))).is_ok());
        assert!(NewInvestor::parse(input(Some(("1.005", "EUR")))).is_err());
        assert!(NewInvestor::parse(input(Some(("-1.00", "EUR")))).is_err());
        let plain = NewInvestor::parse(input(None)).unwrap();
        assert_eq!(plain.classification, Classification::NonSophisticated);
    }
}
