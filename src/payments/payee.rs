//! Who a project is to a provider that pays it out by wire and keeps it as a user of its own
//! (Mangopay's OWNER): its bank account, its legal identity and its legal representative. Here,
//! below projects, because a queued call carries them by value (`super::calls`); projects parse
//! and store them (`projects::payout`, docs/payout-details.md).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::fields::{Bic, Country, Iban};

/// A bank account as kept (`projects.payout_bank_account`): the IBAN in electronic form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankAccount {
    pub iban: Iban,
    pub bic: Option<Bic>,
    pub owner_name: String,
    pub owner_address: Address,
}

/// A postal address: as given (its lines checked when a bank account is parsed) and as kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub region: Option<String>,
    pub postal_code: String,
    pub country: Country,
}

/// The person who represents the project's legal entity, as a provider's KYC asks for them
/// (`projects.payout_legal_representative`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalRepresentative {
    pub first_name: String,
    pub last_name: String,
    pub birthday: NaiveDate,
    pub nationality: Country,
    pub country_of_residence: Country,
    pub email: String,
}

/// The project as the legal entity a provider holds money for and pays out to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payee {
    /// The project's registered name (`projects.legal_name`).
    pub legal_name: String,
    /// Its registration number (SIREN, KvK, …).
    pub company_number: String,
    /// Where it is registered: its bank account's owner address.
    pub headquarters: Address,
    pub representative: LegalRepresentative,
}
