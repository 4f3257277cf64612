//! Mangopay, outbound: what each queued call (`payments::calls::Call`) does there, step by step,
//! each step under its own idempotency key (`client`), every object tagged
//! `crowdledger:<kind>:<our uuid>` (docs/mangopay.md).
//!
//! - A card payment: the investor's user (a natural PAYER), the project's (a legal OWNER), the
//!   offer's escrow wallet, owned by the project, each made on first need and kept among our
//!   parties; then a card web pay-in into that wallet, whose `RedirectURL` the investor pays on.
//! - A refund: the pay-in's refund, by the pay-in's author.
//! - A payout: a transfer of the net and the platform's fee out of the offer's wallet (the fee
//!   to Mangopay's fees wallet, the net to the project's own wallet), the project's bank account
//!   registered, and a payout by wire from the project's wallet to it.

use futures::future::BoxFuture;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use super::client::{MangopayClient, Step};
use super::tag;
use crate::payments::calls::{
    BankInstructions, Call, CallError, Context, Created, Destination, Fetched, Method, Party, Payer, Remote,
    RemoteState,
};
use crate::payments::payee::{Address, BankAccount, Payee};
use crate::payments::provider::Object;
use crate::payments::wire::{from_minor, to_minor};

/// The party kind a bank account is kept under, by an id derived from its details
/// (`Destination::party_id`).
const BANK_ACCOUNT: &str = "bank_account";

impl Remote for MangopayClient {
    fn timeout(&self) -> std::time::Duration {
        self.call_timeout()
    }

    fn fetch<'a>(&'a self, object: Object, provider_id: &'a str) -> BoxFuture<'a, Result<Fetched, CallError>> {
        Box::pin(async move {
            // What moved: what the investor paid for a pay-in, what reached the card or the bank
            // for a refund or a payout.
            let (path, funds) = match object {
                Object::Payment => ("payins", "DebitedFunds"),
                Object::Refund => ("refunds", "CreditedFunds"),
                Object::Payout => ("payouts", "CreditedFunds"),
                Object::Deposit | Object::Withdrawal => {
                    return Err(CallError::Permanent {
                        status: None,
                        why: format!("{}s are not made through Mangopay", object.noun()),
                    });
                }
            };
            let read = self.read(&format!("{path}/{}", segment(provider_id)?)).await?;
            let read = read.ok_or_else(|| CallError::Permanent {
                status: Some(404),
                why: format!("Mangopay has no {} {provider_id}", object.noun()),
            })?;
            let state = match read["Status"].as_str() {
                Some("SUCCEEDED") => RemoteState::Succeeded,
                Some("FAILED") => RemoteState::Failed,
                _ => RemoteState::Pending,
            };
            let currency = read[funds]["Currency"].as_str().unwrap_or_default().to_owned();
            let minor = read[funds]["Amount"].as_i64().unwrap_or_default();
            let amount = from_minor(minor, &currency).map_or(Decimal::ZERO, |m| m.amount());
            Ok(Fetched {
                state,
                amount,
                currency,
                client_secret: None,
                redirect_url: (state == RemoteState::Pending)
                    .then(|| read["RedirectURL"].as_str().map(str::to_owned))
                    .flatten(),
            })
        })
    }

    fn call<'a>(&'a self, call: &'a Call, context: &'a Context) -> BoxFuture<'a, Result<Created, CallError>> {
        Box::pin(async move {
            let attempt = Attempt {
                client: self,
                context,
                made: Vec::new(),
            };
            let made: BoxFuture<'_, Result<Created, CallError>> = match call {
                Call::CreatePayment { .. } => Box::pin(attempt.payment(call)),
                Call::CreateRefund { .. } => Box::pin(attempt.refund(call)),
                Call::CreatePayout { .. } => Box::pin(attempt.payout(call)),
                // A web pay-in cannot be cancelled through the API; one not paid fails by itself
                // when its hosted session ends (15 minutes, result code 101109), before our
                // payment window does.
                Call::CancelPayment {
                    provider_payment_id, ..
                } => Box::pin(async move {
                    Ok(Created {
                        provider_id: provider_payment_id.clone(),
                        ..Created::default()
                    })
                }),
            };
            // Bounded as a whole, so that the lease on the call outlasts it.
            tokio::time::timeout(self.call_timeout(), made)
                .await
                .unwrap_or_else(|_| {
                    Err(CallError::Unknown {
                        why: "the call took longer than its lease allows".into(),
                    })
                })
        })
    }
}

/// One attempt of a call: the parties known before it, and those it made.
struct Attempt<'a> {
    client: &'a MangopayClient,
    context: &'a Context,
    made: Vec<Party>,
}

impl Attempt<'_> {
    /// Creates an object under `kind`'s key for `ours`, at the call's key generation.
    async fn create(&self, kind: &str, ours: Uuid, path: &str, body: &Value) -> Result<Value, CallError> {
        self.client
            .create(Step { kind, ours }, self.context.key_generation, path, body)
            .await
    }

    /// One of our parties at Mangopay (`role` of `party_kind` `party_id`): known, made earlier in
    /// this attempt, or created now by `POST path` with `body` and kept.
    async fn party(
        &mut self,
        (party_kind, party_id): (&str, Uuid),
        role: &str,
        path: &str,
        body: impl FnOnce() -> Result<Value, CallError>,
    ) -> Result<String, CallError> {
        let kept = |p: &Party| p.party_kind == party_kind && p.party_id == party_id && p.role == role;
        if let Some(known) = self.context.party(party_kind, party_id, role) {
            return Ok(known.to_owned());
        }
        if let Some(made) = self.made.iter().find(|p| kept(p)) {
            return Ok(made.provider_id.clone());
        }
        let object = self.create(role, party_id, path, &body()?).await?;
        let provider_id = id_of(&object)?;
        self.made.push(Party {
            party_kind: party_kind.to_owned(),
            party_id,
            role: role.to_owned(),
            provider_id: provider_id.clone(),
        });
        Ok(provider_id)
    }

    /// The project's user (a legal OWNER), which owns its offers' escrow wallets.
    async fn owner(&mut self, project_id: Uuid, payee: &Payee) -> Result<String, CallError> {
        self.party(("project", project_id), "user", "users/legal", || {
            Ok(legal_owner(project_id, payee))
        })
        .await
    }

    /// The wallet of `party_kind` `party_id` in `currency`, owned by `owner`.
    async fn wallet(
        &mut self,
        (party_kind, party_id): (&str, Uuid),
        owner: &str,
        currency: &str,
        description: &str,
    ) -> Result<String, CallError> {
        self.party((party_kind, party_id), "wallet", "wallets", || {
            Ok(json!({
                "Owners": [owner],
                "Currency": currency,
                "Description": format!("crowdledger {party_kind} {party_id}: {description}"),
                "Tag": tag(party_kind, party_id),
            }))
        })
        .await
    }

    async fn payment(mut self, call: &Call) -> Result<Created, CallError> {
        let Call::CreatePayment {
            payment_id,
            offer_id,
            project_id,
            payer,
            method,
            amount,
            currency,
            payee,
            ..
        } = call
        else {
            unreachable!("called for payments only")
        };
        let payee = payee
            .as_ref()
            .ok_or_else(|| permanent("a Mangopay payment needs the project's payee"))?;
        let return_url = self
            .client
            .return_url
            .clone()
            .ok_or_else(|| permanent("payments.mangopay.return_url is not set"))?;
        let author = self
            .party(("investor", payer.investor_id), "user", "users/natural", || {
                Ok(natural_payer(payer))
            })
            .await?;
        let owner = self.owner(*project_id, payee).await?;
        let wallet = self.wallet(("offer", *offer_id), &owner, currency, "escrow").await?;
        let payin = match method {
            Method::Card => {
                self.create(
                    "payment",
                    *payment_id,
                    "payins/card/web",
                    &json!({
                        "AuthorId": author,
                        "CreditedWalletId": wallet,
                        "DebitedFunds": money(*amount, currency)?,
                        // We take no fees at pay-in: the escrow holds what the investor paid.
                        "Fees": money(Decimal::ZERO, currency)?,
                        "ReturnURL": return_url,
                        "Culture": self.client.culture,
                        "CardType": "CB_VISA_MASTERCARD",
                        "SecureMode": "DEFAULT",
                        "Tag": tag("payment", *payment_id),
                    }),
                )
                .await?
            }
            // The investor wires the declared amount to the account Mangopay shows, with its
            // reference; what arrives is read back when Mangopay says it succeeded.
            Method::BankTransfer => {
                self.create(
                    "payment",
                    *payment_id,
                    "payins/bankwire/direct",
                    &json!({
                        "AuthorId": author,
                        "CreditedWalletId": wallet,
                        "DeclaredDebitedFunds": money(*amount, currency)?,
                        "DeclaredFees": money(Decimal::ZERO, currency)?,
                        "Tag": tag("payment", *payment_id),
                    }),
                )
                .await?
            }
        };
        not_failed(&payin, "pay-in")?;
        // Read from each pay-in: Mangopay may change the account behind it without notice.
        let account = &payin["BankAccount"];
        let instructions = match (account["IBAN"].as_str(), payin["WireReference"].as_str()) {
            (Some(iban), Some(reference)) => Some(BankInstructions {
                iban: iban.to_owned(),
                bic: account["BIC"].as_str().map(str::to_owned),
                account_holder: account["OwnerName"].as_str().map(str::to_owned),
                reference: reference.to_owned(),
            }),
            _ => None,
        };
        Ok(Created {
            provider_id: id_of(&payin)?,
            redirect_url: payin["RedirectURL"].as_str().map(str::to_owned),
            parties: self.made,
            instructions,
            ..Created::default()
        })
    }

    async fn refund(self, call: &Call) -> Result<Created, CallError> {
        let Call::CreateRefund {
            refund_id,
            payment,
            amount,
            currency,
            ..
        } = call
        else {
            unreachable!("called for refunds only")
        };
        // A pay-in is refunded by its author, whom Mangopay knows best.
        let payin = self
            .client
            .read(&format!("payins/{}", segment(payment)?))
            .await?
            .ok_or_else(|| permanent(&format!("Mangopay has no pay-in {payment} to refund")))?;
        let refund = self
            .create(
                "refund",
                *refund_id,
                &format!("payins/{payment}/refunds"),
                &json!({
                    "AuthorId": payin["AuthorId"],
                    "DebitedFunds": money(*amount, currency)?,
                    "Fees": money(Decimal::ZERO, currency)?,
                    "Tag": tag("refund", *refund_id),
                }),
            )
            .await?;
        not_failed(&refund, "refund")?;
        Ok(Created {
            provider_id: id_of(&refund)?,
            ..Created::default()
        })
    }

    async fn payout(mut self, call: &Call) -> Result<Created, CallError> {
        let Call::CreatePayout {
            payout_id,
            offer_id,
            project_id,
            destination,
            amount,
            currency,
            fee,
        } = call
        else {
            unreachable!("called for payouts only")
        };
        let Destination::BankAccount { bank_account, payee } = destination else {
            return Err(permanent("Mangopay pays out to a bank account only"));
        };
        let owner = self.owner(*project_id, payee).await?;
        let escrow = self.wallet(("offer", *offer_id), &owner, currency, "escrow").await?;
        let wallet = self
            .wallet(("project", *project_id), &owner, currency, "payouts")
            .await?;
        // The round's money leaves the escrow: the fee to Mangopay's fees wallet (the platform's
        // revenue there), the net to the project's wallet.
        let transfer = self
            .create(
                "transfer",
                *payout_id,
                "transfers",
                &json!({
                    "AuthorId": owner,
                    "DebitedWalletId": escrow,
                    "CreditedWalletId": wallet,
                    "DebitedFunds": money(amount + fee, currency)?,
                    "Fees": money(*fee, currency)?,
                    "Tag": tag("payout", *payout_id),
                }),
            )
            .await?;
        self.settled(&transfer, "transfers").await?;
        let details = destination
            .party_id(*project_id)
            .expect("a bank account has a party id");
        let path = format!("users/{}/bankaccounts/iban", segment(&owner)?);
        let account = self
            .party((BANK_ACCOUNT, details), "bank_account", &path, || {
                Ok(iban_account(bank_account, *project_id))
            })
            .await?;
        let payout = self
            .create(
                "payout",
                *payout_id,
                "payouts/bankwire",
                &json!({
                    "AuthorId": owner,
                    "DebitedWalletId": wallet,
                    "DebitedFunds": money(*amount, currency)?,
                    "Fees": money(Decimal::ZERO, currency)?,
                    "BankAccountId": account,
                    "PaymentType": "BANK_WIRE",
                    "Tag": tag("payout", *payout_id),
                }),
            )
            .await?;
        not_failed(&payout, "payout")?;
        Ok(Created {
            provider_id: id_of(&payout)?,
            parties: self.made,
            ..Created::default()
        })
    }

    /// A transaction that must have gone through before the next step: `SUCCEEDED` as created or
    /// adopted, or once read again (what a saved answer shows is the object as it was created).
    async fn settled(&self, transaction: &Value, path: &str) -> Result<(), CallError> {
        not_failed(transaction, "transfer")?;
        if transaction["Status"] == "SUCCEEDED" {
            return Ok(());
        }
        let id = id_of(transaction)?;
        let now = self
            .client
            .read(&format!("{path}/{}", segment(&id)?))
            .await?
            .ok_or_else(|| permanent(&format!("Mangopay lost {path}/{id}")))?;
        not_failed(&now, "transfer")?;
        if now["Status"] == "SUCCEEDED" {
            Ok(())
        } else {
            Err(CallError::Retry {
                status: None,
                after: None,
                new_key: false,
                why: format!("{path}/{id} has not gone through yet"),
            })
        }
    }
}

fn permanent(why: &str) -> CallError {
    CallError::Permanent {
        status: None,
        why: why.to_owned(),
    }
}

/// A created object's id; an answer without one cannot be trusted, and is asked again.
fn id_of(object: &Value) -> Result<String, CallError> {
    object["Id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CallError::Unknown {
            why: "Mangopay answered an object without an Id".into(),
        })
}

/// An id as a path segment: Mangopay's ids are letters, digits and underscores.
pub(super) fn segment(id: &str) -> Result<&str, CallError> {
    let safe =
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if safe {
        Ok(id)
    } else {
        Err(permanent(&format!("{id:?} is not a Mangopay id")))
    }
}

/// A transaction Mangopay created `FAILED` (an empty wallet, a disputed pay-in, …): an HTTP
/// success that no repeat changes, left to an operator.
fn not_failed(transaction: &Value, what: &str) -> Result<(), CallError> {
    if transaction["Status"] != "FAILED" {
        return Ok(());
    }
    Err(permanent(&format!(
        "Mangopay made the {what} {} FAILED: {} {}",
        transaction["Id"].as_str().unwrap_or("without an id"),
        transaction["ResultCode"].as_str().unwrap_or_default(),
        transaction["ResultMessage"].as_str().unwrap_or_default()
    )))
}

/// `{"Currency": "EUR", "Amount": 12050}`: minor units.
fn money(amount: Decimal, currency: &str) -> Result<Value, CallError> {
    Ok(json!({"Currency": currency, "Amount": to_minor(amount, currency)?}))
}

/// An investor as the natural PAYER who pays by card. Our investors have one name: its first word
/// is the first name and the rest the last name (a single word is both), which Mangopay only
/// uses to name the payer. A legal investor is its card holder's payer too: Mangopay's legal
/// users need a representative's birthday and nationality, which our investors do not carry.
fn natural_payer(payer: &Payer) -> Value {
    let name = payer.name.trim();
    let (first, last) = name.split_once(char::is_whitespace).unwrap_or((name, name));
    json!({
        "PersonType": "NATURAL",
        "UserCategory": "PAYER",
        "FirstName": first,
        "LastName": last.trim(),
        "Email": payer.email,
        "CountryOfResidence": payer.country,
        "Tag": tag("investor", payer.investor_id),
    })
}

/// The project as the legal OWNER of its offers' escrow wallets. The platform has the project
/// accept Mangopay's terms before giving its payout details (docs/payout-details.md).
fn legal_owner(project_id: Uuid, payee: &Payee) -> Value {
    let rep = &payee.representative;
    let birthday = rep
        .birthday
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp();
    json!({
        "PersonType": "LEGAL",
        "UserCategory": "OWNER",
        "LegalPersonType": "BUSINESS",
        "Name": payee.legal_name,
        "Email": rep.email,
        "CompanyNumber": payee.company_number,
        "HeadquartersAddress": address(&payee.headquarters),
        "LegalRepresentativeFirstName": rep.first_name,
        "LegalRepresentativeLastName": rep.last_name,
        "LegalRepresentativeBirthday": birthday,
        "LegalRepresentativeNationality": rep.nationality,
        "LegalRepresentativeCountryOfResidence": rep.country_of_residence,
        "LegalRepresentativeEmail": rep.email,
        "TermsAndConditionsAccepted": true,
        "Tag": tag("project", project_id),
    })
}

fn iban_account(account: &BankAccount, project_id: Uuid) -> Value {
    json!({
        "OwnerName": account.owner_name,
        "OwnerAddress": address(&account.owner_address),
        "IBAN": account.iban.as_str(),
        "BIC": account.bic.as_ref().map(|b| b.as_str()),
        "Tag": tag("project", project_id),
    })
}

fn address(a: &Address) -> Value {
    json!({
        "AddressLine1": a.line1,
        "AddressLine2": a.line2,
        "City": a.city,
        "Region": a.region,
        "PostalCode": a.postal_code,
        "Country": a.country,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payer(name: &str) -> Payer {
        Payer {
            investor_id: Uuid::nil(),
            kind: "natural".into(),
            name: name.into(),
            email: "a@example.org".into(),
            country: "FR".into(),
        }
    }

    #[test]
    fn a_name_splits_at_its_first_space_and_a_single_word_is_both_names() {
        let names = |name: &str| {
            let user = natural_payer(&payer(name));
            (user["FirstName"].clone(), user["LastName"].clone())
        };
        assert_eq!(
            names("Jean-Pierre de La Fontaine"),
            (json!("Jean-Pierre"), json!("de La Fontaine"))
        );
        assert_eq!(names("Camille"), (json!("Camille"), json!("Camille")));
        assert_eq!(names(" Ada  Lovelace "), (json!("Ada"), json!("Lovelace")));
    }

    #[test]
    fn only_mangopay_shaped_ids_go_into_a_path() {
        assert_eq!(segment("payin_m_01HSDQ").unwrap(), "payin_m_01HSDQ");
        assert_eq!(segment("142036728").unwrap(), "142036728");
        for bad in ["", "../users/1", "a/b", "a?b", &"x".repeat(129)] {
            assert!(segment(bad).is_err(), "{bad:?}");
        }
    }
}
