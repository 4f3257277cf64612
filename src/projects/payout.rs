//! Where a project's money is paid out (docs/payout-details.md): a Stripe connected account, the
//! destination of Connect transfers, and a bank account, to which Mangopay pays out by wire. Set
//! whole by `PUT /v1/projects/{id}/payout-details`; shown with the IBAN masked.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::fields::{self, Bic, Country, FieldError, Iban};

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
                     "owner_address": {"line1": "12 rue de Siam", "city": "Brest", "postal_code": "29200", "country": "FR"}}
}))]
pub struct PayoutDetailsInput {
    /// The project's Stripe connected account (`acct_…`): where Connect transfers pay it.
    #[schema(pattern = "^acct_[A-Za-z0-9]{1,64}$")]
    pub stripe_account: Option<String>,
    /// The project's bank account: where Mangopay pays it by wire.
    pub bank_account: Option<BankAccountInput>,
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
}

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

impl PayoutDetails {
    pub fn parse(input: PayoutDetailsInput) -> Result<Self, FieldError> {
        let stripe_account = input
            .stripe_account
            .map(|a| StripeAccount::parse("stripe_account", &a))
            .transpose()?;
        let bank_account = input.bank_account.map(BankAccount::parse).transpose()?;
        Ok(PayoutDetails {
            stripe_account,
            bank_account,
        })
    }
}

impl BankAccount {
    fn parse(input: BankAccountInput) -> Result<Self, FieldError> {
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
}

/// Where a project is paid, as shown: the IBAN masked.
#[derive(Serialize, ToSchema)]
pub struct PayoutDetailsView {
    /// The Stripe connected account Connect transfers pay; null when none is set.
    stripe_account: Option<String>,
    /// The bank account Mangopay pays out to; null when none is set.
    bank_account: Option<BankAccountView>,
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
}
