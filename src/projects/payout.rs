//! Where a project's money is paid out (docs/payout-details.md): a Stripe connected account, the
//! destination of Connect transfers, and a bank account, to which Mangopay pays out by wire, with
//! the legal identity Mangopay keeps the project under (its company number and legal
//! representative). Set whole by `PUT /v1/projects/{id}/payout-details`; shown with the IBAN
//! masked and without the representative's birthday and e-mail.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::fields::{self, Bic, Country, Email, FieldError, Iban};
pub use crate::payments::payee::{Address, BankAccount, LegalRepresentative, Payee};

/// A line of an address or a name, as long as Mangopay takes them.
const MAX_LINE: usize = 255;

/// Where a project is paid, as an operator gives it. Each part is optional; what is not given is
/// cleared, so the body is the whole of what is kept.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "stripe_account": "acct_1Nv0FGQ9RKHgCVdK",
    "bank_account": {"iban": "FR76 3000 6000 0112 3456 7890 189", "bic": "AGRIFRPP",
                     "owner_name": "Crois/Sens SCIC",
                     "owner_address": {"line1": "12 rue de Siam", "city": "Brest", "postal_code": "29200", "country": "FR"}},
    "company_number": "834 562 190",
    "legal_representative": {"first_name": "Maël", "last_name": "Le Goff", "birthday": "1981-04-12",
                             "nationality": "FR", "country_of_residence": "FR", "email": "mael@crois-sens.example"}
}))]
pub struct PayoutDetailsInput {
    /// The project's Stripe connected account (`acct_…`): where Connect transfers pay it.
    #[schema(pattern = "^acct_[A-Za-z0-9]{1,64}$")]
    pub stripe_account: Option<String>,
    /// The project's bank account: where Mangopay pays it by wire. Its owner's address is the
    /// project's registered address at Mangopay.
    pub bank_account: Option<BankAccountInput>,
    /// The project's registration number (SIREN, KvK, …): Mangopay keeps the project as a legal
    /// user that owns its offers' escrow wallets, and asks for it.
    #[schema(example = "834 562 190")]
    pub company_number: Option<String>,
    /// Who represents the project's legal entity, as Mangopay's KYC asks for them.
    pub legal_representative: Option<LegalRepresentativeInput>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegalRepresentativeInput {
    #[schema(example = "Maël")]
    pub first_name: String,
    #[schema(example = "Le Goff")]
    pub last_name: String,
    #[schema(value_type = String, format = Date, example = "1981-04-12")]
    pub birthday: NaiveDate,
    pub nationality: Country,
    pub country_of_residence: Country,
    #[schema(example = "mael@crois-sens.example")]
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BankAccountInput {
    /// Checked against its country's format and its check digits; spaces between groups of four
    /// are taken.
    #[schema(example = "FR76 3000 6000 0112 3456 7890 189")]
    pub iban: String,
    #[schema(example = "AGRIFRPP")]
    pub bic: Option<String>,
    /// Who holds the account, as the bank knows them.
    #[schema(example = "Crois/Sens SCIC")]
    pub owner_name: String,
    pub owner_address: Address,
}

/// Where a project is paid, every part checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PayoutDetails {
    pub stripe_account: Option<StripeAccount>,
    pub bank_account: Option<BankAccount>,
    pub company_number: Option<String>,
    pub legal_representative: Option<LegalRepresentative>,
}

/// A payout detail a provider needs that the project does not have: the field to set.
#[derive(Debug, thiserror::Error)]
#[error("the project's {0} is not set; set it with PUT /v1/projects/{{id}}/payout-details")]
pub struct MissingDetail(pub &'static str);

/// A Stripe connected account's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StripeAccount(String);

impl StripeAccount {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let id = value.trim();
        let shaped = id
            .strip_prefix("acct_")
            .is_some_and(|rest| (1..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !shaped {
            return Err(FieldError(format!(
                "{field} is not a Stripe connected account's id (acct_ and 1 to 64 letters or digits)"
            )));
        }
        Ok(StripeAccount(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PayoutDetails {
    pub fn parse(input: PayoutDetailsInput) -> Result<Self, FieldError> {
        let stripe_account = input
            .stripe_account
            .map(|a| StripeAccount::parse("stripe_account", &a))
            .transpose()?;
        let bank_account = input.bank_account.map(parse_bank_account).transpose()?;
        let company_number = input
            .company_number
            .map(|n| fields::line("company_number", &n, MAX_COMPANY_NUMBER))
            .transpose()?;
        let legal_representative = input.legal_representative.map(parse_representative).transpose()?;
        Ok(PayoutDetails {
            stripe_account,
            bank_account,
            company_number,
            legal_representative,
        })
    }

    /// The project as Mangopay keeps it (an OWNER legal user): its legal name, and from these
    /// details its company number, its bank account's owner address as its headquarters, and its
    /// legal representative; the first of them not set is named.
    pub fn payee(&self, legal_name: &str) -> Result<Payee, MissingDetail> {
        let representative = self
            .legal_representative
            .clone()
            .ok_or(MissingDetail("payout_details.legal_representative"))?;
        let company_number = self
            .company_number
            .clone()
            .ok_or(MissingDetail("payout_details.company_number"))?;
        let bank_account = self
            .bank_account
            .as_ref()
            .ok_or(MissingDetail("payout_details.bank_account"))?;
        Ok(Payee {
            legal_name: legal_name.to_owned(),
            company_number,
            headquarters: bank_account.owner_address.clone(),
            representative,
        })
    }
}

/// Registration numbers are short (a SIREN has 9 digits, a KvK number 8).
const MAX_COMPANY_NUMBER: usize = 64;

fn parse_representative(input: LegalRepresentativeInput) -> Result<LegalRepresentative, FieldError> {
    const FIELD: &str = "legal_representative";
    if input.birthday < NaiveDate::from_ymd_opt(1900, 1, 1).expect("a valid date") {
        return Err(FieldError(format!("{FIELD}.birthday must be after 1900")));
    }
    let email = Email::parse(&input.email)
        .map_err(|_| FieldError(format!("{FIELD}.email is not an address of the shape name@domain.tld")))?;
    Ok(LegalRepresentative {
        first_name: fields::line(&format!("{FIELD}.first_name"), &input.first_name, MAX_LINE)?,
        last_name: fields::line(&format!("{FIELD}.last_name"), &input.last_name, MAX_LINE)?,
        birthday: input.birthday,
        nationality: input.nationality,
        country_of_residence: input.country_of_residence,
        email: email.as_str().to_owned(),
    })
}

fn parse_bank_account(input: BankAccountInput) -> Result<BankAccount, FieldError> {
    let a = input.owner_address;
    let optional = |field: &str, v: Option<String>| {
        v.filter(|v| !v.trim().is_empty())
            .map(|v| fields::line(field, &v, MAX_LINE))
            .transpose()
    };
    Ok(BankAccount {
        iban: Iban::parse("bank_account.iban", &input.iban)?,
        bic: input.bic.map(|b| Bic::parse("bank_account.bic", &b)).transpose()?,
        owner_name: fields::line("bank_account.owner_name", &input.owner_name, MAX_LINE)?,
        owner_address: Address {
            line1: fields::line("bank_account.owner_address.line1", &a.line1, MAX_LINE)?,
            line2: optional("bank_account.owner_address.line2", a.line2)?,
            city: fields::line("bank_account.owner_address.city", &a.city, MAX_LINE)?,
            region: optional("bank_account.owner_address.region", a.region)?,
            postal_code: fields::line("bank_account.owner_address.postal_code", &a.postal_code, 16)?,
            country: a.country,
        },
    })
}

/// Where a project is paid, as shown: the IBAN masked, the representative without their
/// birthday and e-mail (kept whole for Mangopay, which no reader of the project needs).
#[derive(Serialize, ToSchema)]
pub struct PayoutDetailsView {
    /// The Stripe connected account Connect transfers pay; null when none is set.
    stripe_account: Option<String>,
    /// The bank account Mangopay pays out to; null when none is set.
    bank_account: Option<BankAccountView>,
    company_number: Option<String>,
    legal_representative: Option<LegalRepresentativeView>,
}

#[derive(Serialize, ToSchema)]
pub struct LegalRepresentativeView {
    first_name: String,
    last_name: String,
    nationality: Country,
    country_of_residence: Country,
}

#[derive(Serialize, ToSchema)]
pub struct BankAccountView {
    /// Masked: the country and check digits, then the last four characters.
    #[schema(example = "FR76•••••••••••••••••••0189")]
    iban: String,
    bic: Option<String>,
    owner_name: String,
    owner_address: Address,
}

impl From<&PayoutDetails> for PayoutDetailsView {
    fn from(d: &PayoutDetails) -> Self {
        PayoutDetailsView {
            stripe_account: d.stripe_account.as_ref().map(|a| a.as_str().to_string()),
            bank_account: d.bank_account.as_ref().map(|b| BankAccountView {
                iban: b.iban.masked(),
                bic: b.bic.as_ref().map(|b| b.as_str().to_string()),
                owner_name: b.owner_name.clone(),
                owner_address: b.owner_address.clone(),
            }),
            company_number: d.company_number.clone(),
            legal_representative: d.legal_representative.as_ref().map(|r| LegalRepresentativeView {
                first_name: r.first_name.clone(),
                last_name: r.last_name.clone(),
                nationality: r.nationality,
                country_of_residence: r.country_of_residence,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(body: serde_json::Value) -> PayoutDetailsInput {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn details_are_checked_part_by_part_and_named_where_wrong() {
        let address = serde_json::json!({"line1": " 12 rue de Siam ", "line2": "", "city": "Brest",
                                         "postal_code": "29200", "country": "FR"});
        let details = PayoutDetails::parse(input(serde_json::json!({
            "stripe_account": "acct_1Nv0FGQ9RKHgCVdK",
            "bank_account": {"iban": "FR76 3000 6000 0112 3456 7890 189", "owner_name": "Crois/Sens SCIC",
                             "owner_address": address}
        })))
        .unwrap();
        let bank = details.bank_account.as_ref().unwrap();
        assert_eq!(bank.iban.as_str(), "FR7630006000011234567890189");
        assert_eq!(bank.owner_address.line1, "12 rue de Siam");
        assert_eq!(bank.owner_address.line2, None);
        assert_eq!(details.stripe_account.unwrap().as_str(), "acct_1Nv0FGQ9RKHgCVdK");

        let refused = |body: serde_json::Value| PayoutDetails::parse(input(body)).unwrap_err().0;
        assert!(refused(serde_json::json!({"stripe_account": "acct_"})).starts_with("stripe_account "));
        assert!(refused(serde_json::json!({"stripe_account": "cus_123"})).starts_with("stripe_account "));
        assert!(refused(serde_json::json!({"stripe_account": "acct_12-3"})).starts_with("stripe_account "));
        let bank = |iban: &str, bic: &str, city: &str| {
            serde_json::json!({"bank_account": {"iban": iban, "bic": bic, "owner_name": "Crois/Sens",
                "owner_address": {"line1": "1 quai", "city": city, "postal_code": "29200", "country": "FR"}}})
        };
        assert!(refused(bank("FR7630006000011234567890188", "AGRIFRPP", "Brest")).starts_with("bank_account.iban "));
        assert!(refused(bank("FR7630006000011234567890189", "AGRI", "Brest")).starts_with("bank_account.bic "));
        assert!(
            refused(bank("FR7630006000011234567890189", "AGRIFRPP", " "))
                .starts_with("bank_account.owner_address.city ")
        );
    }

    #[test]
    fn mangopay_needs_the_legal_representative_the_company_number_and_the_bank_account() {
        let representative = serde_json::json!({"first_name": "Maël", "last_name": "Le Goff",
            "birthday": "1981-04-12", "nationality": "FR", "country_of_residence": "FR",
            "email": " mael@crois-sens.example "});
        let bank = serde_json::json!({"iban": "FR7630006000011234567890189", "owner_name": "Crois/Sens SCIC",
            "owner_address": {"line1": "12 rue de Siam", "city": "Brest", "postal_code": "29200", "country": "FR"}});
        let whole = PayoutDetails::parse(input(serde_json::json!({
            "bank_account": bank, "company_number": "834 562 190", "legal_representative": representative
        })))
        .unwrap();
        let payee = whole.payee("Crois/Sens SCIC").unwrap();
        assert_eq!(payee.representative.email, "mael@crois-sens.example");
        assert_eq!(payee.headquarters.city, "Brest");
        assert_eq!(payee.company_number, "834 562 190");
        let missing = |body: serde_json::Value| {
            PayoutDetails::parse(input(body))
                .unwrap()
                .payee("Crois/Sens SCIC")
                .unwrap_err()
                .0
        };
        assert_eq!(
            missing(serde_json::json!({"bank_account": bank, "company_number": "1"})),
            "payout_details.legal_representative"
        );
        assert_eq!(
            missing(serde_json::json!({"bank_account": bank, "legal_representative": representative})),
            "payout_details.company_number"
        );
        assert_eq!(
            missing(serde_json::json!({"company_number": "1", "legal_representative": representative})),
            "payout_details.bank_account"
        );
        let mut young = representative.clone();
        young["birthday"] = serde_json::json!("1850-01-01");
        let refused = PayoutDetails::parse(input(serde_json::json!({"legal_representative": young})));
        assert!(refused.unwrap_err().0.starts_with("legal_representative.birthday "));
        let mut unmailable = representative;
        unmailable["email"] = serde_json::json!("nobody");
        let refused = PayoutDetails::parse(input(serde_json::json!({"legal_representative": unmailable})));
        assert!(refused.unwrap_err().0.starts_with("legal_representative.email "));
    }
}
