//! The endpoints the service calls, on the fake's state: bodies checked as Mangopay's reference
//! lists their fields (docs/providers/mangopay-api.md section 5, from the Node SDK's typings),
//! objects shaped as it shows them, and the hooks a call that settles a transaction sends.
//!
//! A request that is wrong in itself is a 400 `param_error`; a transaction that is well formed but
//! cannot go through (an empty wallet, a disputed pay-in) is created `FAILED` with its
//! `ResultCode`, as Mangopay answers it.

use serde_json::{Map, Value, json};

use super::error::{ApiError, Body, Money};
use super::state::{
    AUTHOR_NOT_WALLET_OWNER, INSUFFICIENT_BALANCE, PAYOUT_AUTHOR_NOT_ACCOUNT_OWNER, PAYOUT_AUTHOR_NOT_WALLET_OWNER,
    REFUND_EXCEEDS_INITIAL, REFUND_OF_DISPUTED, State, fail, new_id, succeed,
};
use super::{Hook, Kind};
use crate::{iban, token};

/// What an endpoint answers with 200, and the hooks it caused (sent after the reply is decided).
pub(super) struct Reply {
    pub object: Value,
    pub hooks: Vec<Hook>,
}

impl Reply {
    fn quiet(object: Value) -> Reply {
        Reply {
            object,
            hooks: Vec::new(),
        }
    }

    /// A transaction just created, with its hook if it settled at once.
    fn transaction(state: &mut State, kind: Kind, transaction: Value) -> Reply {
        let object = state.insert(kind, transaction);
        let hooks = state.settled_hook(&object).into_iter().collect();
        Reply { object, hooks }
    }
}

const USER_CATEGORIES: [&str; 3] = ["PAYER", "OWNER", "PLATFORM"];
const LEGAL_PERSON_TYPES: [&str; 4] = ["BUSINESS", "ORGANIZATION", "SOLETRADER", "PARTNERSHIP"];
/// `Culture` of a card web pay-in: ISO 639-1, the values the reference lists.
const CULTURES: [&str; 16] = [
    "CS", "DA", "DE", "EL", "EN", "ES", "FI", "FR", "HU", "IT", "NL", "NO", "PL", "PT", "SK", "SV",
];
const CARD_TYPES: [&str; 4] = ["CB_VISA_MASTERCARD", "AMEX", "MAESTRO", "BCMC"];
const SECURE_MODES: [&str; 3] = ["DEFAULT", "FORCE", "NO_CHOICE"];
const PAYOUT_MODES: [&str; 4] = ["STANDARD", "INSTANT_PAYMENT", "INSTANT_PAYMENT_ONLY", "RTGS_PAYMENT"];
/// The event types a hook may be registered for: the ones docs/providers/mangopay-api.md section 6
/// lists (`typings/models/event.d.ts` has many more the service never needs).
const EVENT_TYPES: [&str; 30] = [
    "PAYIN_NORMAL_CREATED",
    "PAYIN_NORMAL_SUCCEEDED",
    "PAYIN_NORMAL_FAILED",
    "TRANSFER_NORMAL_CREATED",
    "TRANSFER_NORMAL_SUCCEEDED",
    "TRANSFER_NORMAL_FAILED",
    "PAYOUT_NORMAL_CREATED",
    "PAYOUT_NORMAL_SUCCEEDED",
    "PAYOUT_NORMAL_FAILED",
    "PAYIN_REFUND_CREATED",
    "PAYIN_REFUND_SUCCEEDED",
    "PAYIN_REFUND_FAILED",
    "TRANSFER_REFUND_CREATED",
    "TRANSFER_REFUND_SUCCEEDED",
    "TRANSFER_REFUND_FAILED",
    "PAYOUT_REFUND_CREATED",
    "PAYOUT_REFUND_SUCCEEDED",
    "PAYOUT_REFUND_FAILED",
    "DISPUTE_CREATED",
    "DISPUTE_SUBMITTED",
    "DISPUTE_ACTION_REQUIRED",
    "DISPUTE_FURTHER_ACTION_REQUIRED",
    "DISPUTE_CLOSED",
    "DISPUTE_SENT_TO_BANK",
    "PAYIN_REPUDIATION_CREATED",
    "PAYIN_REPUDIATION_SUCCEEDED",
    "PAYIN_REPUDIATION_FAILED",
    "TRANSFER_SETTLEMENT_CREATED",
    "TRANSFER_SETTLEMENT_SUCCEEDED",
    "TRANSFER_SETTLEMENT_FAILED",
];

/// Where the fake says investors wire their money: Mangopay's own account, which it may change
/// without notice, hence read from each pay-in.
const COLLECTION_ACCOUNT_OWNER: &str = "MANGOPAY SA (fake)";
const COLLECTION_ACCOUNT_BIC: &str = "FAKEFRPPXXX";

// --- users ---

pub(super) fn create_natural_user(state: &mut State, fields: &Map<String, Value>) -> Result<Reply, ApiError> {
    let mut body = Body::new(fields);
    person_type(&mut body, "NATURAL");
    let category = body.choice("UserCategory", &USER_CATEGORIES);
    let first_name = body.required_text("FirstName");
    let last_name = body.required_text("LastName");
    let email = email(&mut body, "Email");
    // A PAYER needs names and an email only; any other user a birthday, a nationality and a
    // residence too (`CreateUserNaturalPayerData` against `CreateUserNaturalData`).
    let payer = category.as_deref() == Some("PAYER");
    let (birthday, nationality, residence) = if payer {
        (
            body.integer("Birthday"),
            body.country("Nationality"),
            body.country("CountryOfResidence"),
        )
    } else {
        (
            Some(body.required_integer("Birthday")),
            Some(body.required_country("Nationality")),
            Some(body.required_country("CountryOfResidence")),
        )
    };
    let terms = terms_accepted(&mut body, category.as_deref());
    let address = body.address("Address");
    let income_range = body.integer("IncomeRange");
    if income_range.is_some_and(|range| !(1..=6).contains(&range)) {
        body.refuse("IncomeRange", "The IncomeRange field must be between 1 and 6.");
    }
    let occupation = body.text("Occupation");
    let tag = body.tag();
    body.finish()?;

    let mut user = new_user(state, "NATURAL", email, category, terms, tag);
    extend(
        &mut user,
        json!({
            "FirstName": first_name,
            "LastName": last_name,
            "Birthday": birthday,
            "Nationality": nationality,
            "CountryOfResidence": residence,
            "Address": address,
            "Occupation": occupation,
            "IncomeRange": income_range,
            "ProofOfIdentity": null,
            "ProofOfAddress": null,
            "Capacity": "NORMAL",
        }),
    );
    Ok(Reply::quiet(state.insert(Kind::User, user)))
}

pub(super) fn create_legal_user(state: &mut State, fields: &Map<String, Value>) -> Result<Reply, ApiError> {
    let mut body = Body::new(fields);
    person_type(&mut body, "LEGAL");
    let category = body.choice("UserCategory", &USER_CATEGORIES);
    let legal_person_type = body.required_choice("LegalPersonType", &LEGAL_PERSON_TYPES);
    let name = body.required_text("Name");
    let representative_first_name = body.required_text("LegalRepresentativeFirstName");
    let representative_last_name = body.required_text("LegalRepresentativeLastName");
    let representative_birthday = body.required_integer("LegalRepresentativeBirthday");
    let representative_nationality = body.required_country("LegalRepresentativeNationality");
    let representative_residence = body.required_country("LegalRepresentativeCountryOfResidence");
    let email = email(&mut body, "Email");
    // An OWNER also needs its headquarters and company number (`RequiredUserLegalOwnerData`).
    let owner = category.as_deref() == Some("OWNER");
    let (headquarters, company_number) = if owner {
        (
            Some(body.required_address("HeadquartersAddress")),
            Some(body.required_text("CompanyNumber")),
        )
    } else {
        (body.address("HeadquartersAddress"), body.text("CompanyNumber"))
    };
    let terms = terms_accepted(&mut body, category.as_deref());
    let representative_email = body.text("LegalRepresentativeEmail");
    let representative_address = body.address("LegalRepresentativeAddress");
    let tag = body.tag();
    body.finish()?;

    let mut user = new_user(state, "LEGAL", email, category, terms, tag);
    extend(
        &mut user,
        json!({
            "LegalPersonType": legal_person_type,
            "Name": name,
            "HeadquartersAddress": headquarters,
            "CompanyNumber": company_number,
            "LegalRepresentativeFirstName": representative_first_name,
            "LegalRepresentativeLastName": representative_last_name,
            "LegalRepresentativeBirthday": representative_birthday,
            "LegalRepresentativeNationality": representative_nationality,
            "LegalRepresentativeCountryOfResidence": representative_residence,
            "LegalRepresentativeEmail": representative_email,
            "LegalRepresentativeAddress": representative_address,
        }),
    );
    Ok(Reply::quiet(state.insert(Kind::User, user)))
}

/// The fields every user has, natural or legal (`entityBase.d.ts`, `user.d.ts`).
fn new_user(
    state: &State,
    person_type: &str,
    email: String,
    category: Option<String>,
    terms_accepted: bool,
    tag: Option<String>,
) -> Value {
    let now = state.now();
    json!({
        "Id": new_id(Kind::User),
        "Tag": tag,
        "CreationDate": now,
        "PersonType": person_type,
        "Email": email,
        "KYCLevel": "LIGHT",
        "UserCategory": category,
        "UserStatus": "ACTIVE",
        "TermsAndConditionsAccepted": terms_accepted,
        "TermsAndConditionsAcceptedDate": terms_accepted.then_some(now),
    })
}

/// `PersonType` may be left out (the path says it) but must not contradict the path.
fn person_type(body: &mut Body, expected: &str) {
    if body.text("PersonType").is_some_and(|sent| sent != expected) {
        body.refuse(
            "PersonType",
            format!("The PersonType must be {expected} on this endpoint."),
        );
    }
}

fn email(body: &mut Body, name: &str) -> String {
    let email = body.required_text(name);
    if !email.is_empty() && !email.contains('@') {
        body.refuse(name, format!("The {name} field is not a valid e-mail address."));
    }
    email
}

/// `TermsAndConditionsAccepted`, which an OWNER must have accepted.
fn terms_accepted(body: &mut Body, category: Option<&str>) -> bool {
    let accepted = body.boolean("TermsAndConditionsAccepted").unwrap_or(false);
    if category == Some("OWNER") && !accepted {
        body.refuse(
            "TermsAndConditionsAccepted",
            "An OWNER user must accept the terms and conditions.",
        );
    }
    accepted
}

// --- wallets ---

pub(super) fn create_wallet(state: &mut State, fields: &Map<String, Value>) -> Result<Reply, ApiError> {
    let mut body = Body::new(fields);
    // "For now, you only can set up a unique owner."
    let owner = match body.raw("Owners") {
        Value::Array(owners) if owners.len() == 1 && owners[0].is_string() => {
            owners[0].as_str().unwrap_or_default().to_owned()
        }
        Value::Null => {
            body.missing("Owners");
            String::new()
        }
        _ => {
            body.refuse("Owners", "The Owners field must list exactly one user id.");
            String::new()
        }
    };
    must_exist(state, &mut body, Kind::User, "Owners", &owner);
    let currency = body.required_currency("Currency");
    let description = body.required_text_at_most("Description", 255);
    let tag = body.tag();
    body.finish()?;

    let wallet = json!({
        "Id": new_id(Kind::Wallet),
        "Tag": tag,
        "CreationDate": state.now(),
        "Owners": [owner],
        "Currency": currency,
        "Description": description,
        "Balance": Money::new(&currency, 0).json(),
        "FundsType": "DEFAULT",
    });
    Ok(Reply::quiet(state.insert(Kind::Wallet, wallet)))
}

// --- pay-ins ---

pub(super) fn create_card_web_payin(state: &mut State, fields: &Map<String, Value>) -> Result<Reply, ApiError> {
    let mut body = Body::new(fields);
    let parties = payin_parties(state, &mut body, ("DebitedFunds", "Fees"));
    let return_url = body.required_text_at_most("ReturnURL", 220);
    let culture = body.required_choice("Culture", &CULTURES);
    let card_type = body
        .choice("CardType", &CARD_TYPES)
        .unwrap_or_else(|| "CB_VISA_MASTERCARD".into());
    let secure_mode = body
        .choice("SecureMode", &SECURE_MODES)
        .unwrap_or_else(|| "DEFAULT".into());
    let statement_descriptor = body.text_at_most("StatementDescriptor", 10);
    if statement_descriptor
        .as_deref()
        .is_some_and(|s| !s.chars().all(|c| c.is_ascii_alphanumeric() || c == ' '))
    {
        body.refuse(
            "StatementDescriptor",
            "The StatementDescriptor may hold letters, digits and spaces only.",
        );
    }
    let (billing, shipping) = (body.raw("Billing"), body.raw("Shipping"));
    let tag = body.tag();
    body.finish()?;

    let mut payin = parties.payin(&parties.debited, &parties.fees, tag, state.now());
    let id = payin["Id"].as_str().unwrap_or_default().to_owned();
    // Mangopay sends the investor back to ReturnURL with the pay-in's id added (the API
    // response in docs:errors/codes/001034).
    let separator = if return_url.contains('?') { '&' } else { '?' };
    extend(
        &mut payin,
        json!({
            "PaymentType": "CARD",
            "ExecutionType": "WEB",
            "RedirectURL": format!("https://webpayment.mangopay-fake.invalid/?transactionId={id}"),
            "ReturnURL": format!("{return_url}{separator}transactionId={id}"),
            "Culture": culture,
            "CardType": card_type,
            "SecureMode": secure_mode,
            "StatementDescriptor": statement_descriptor,
            "Billing": billing,
            "Shipping": shipping,
        }),
    );
    Ok(Reply::transaction(state, Kind::PayIn, payin))
}

pub(super) fn create_bankwire_payin(state: &mut State, fields: &Map<String, Value>) -> Result<Reply, ApiError> {
    let mut body = Body::new(fields);
    let parties = payin_parties(state, &mut body, ("DeclaredDebitedFunds", "DeclaredFees"));
    let tag = body.tag();
    body.finish()?;

    // Until the money arrives the amounts are placeholders (docs:api-reference/bank-wire-payins/bank-wire-payin-object).
    let placeholder = Money::placeholder();
    let mut payin = parties.payin(&placeholder, &placeholder, tag, state.now());
    let serial = 1_000_000 + state.created.get(&Kind::PayIn).copied().unwrap_or(0) as u64;
    extend(
        &mut payin,
        json!({
            "PaymentType": "BANK_WIRE",
            "ExecutionType": "DIRECT",
            "DeclaredDebitedFunds": parties.debited.json(),
            "DeclaredFees": parties.fees.json(),
            "WireReference": token(10).to_uppercase(),
            "BankAccount": {
                "Type": "IBAN",
                "OwnerName": COLLECTION_ACCOUNT_OWNER,
                "OwnerAddress": {"AddressLine1": "1 Fake Street", "AddressLine2": null, "City": "Luxembourg", "Region": null, "PostalCode": "L-1000", "Country": "LU"},
                "IBAN": iban::generate("FR", "FAKE", serial),
                "BIC": COLLECTION_ACCOUNT_BIC,
            },
        }),
    );
    Ok(Reply::transaction(state, Kind::PayIn, payin))
}

// --- transfers ---

pub(super) fn create_transfer(state: &mut State, fields: &Map<String, Value>) -> Result<Reply, ApiError> {
    let mut body = Body::new(fields);
    let author = required_id(state, &mut body, Kind::User, "AuthorId");
    let debited_wallet = required_id(state, &mut body, Kind::Wallet, "DebitedWalletId");
    let credited_wallet = required_id(state, &mut body, Kind::Wallet, "CreditedWalletId");
    let (debited, fees) = amounts(&mut body, ("DebitedFunds", "Fees"));
    check_wallet_currency(state, &mut body, &debited_wallet, "DebitedWalletId", &debited);
    check_wallet_currency(state, &mut body, &credited_wallet, "CreditedWalletId", &debited);
    let credited_user = credited_user(state, &mut body, &credited_wallet);
    let tag = body.tag();
    body.finish()?;

    let now = state.now();
    let mut transfer = NewTransaction {
        kind: Kind::Transfer,
        type_: "TRANSFER",
        nature: "REGULAR",
        author: &author,
        credited_user,
        debited: &debited,
        fees: &fees,
        debited_wallet: Some(&debited_wallet),
        credited_wallet: Some(&credited_wallet),
        tag,
    }
    .json(now);
    // A transfer settles at once; the fees go to the platform's fees wallet, which the fake
    // does not keep.
    if state.wallet_owner(&debited_wallet) != Some(author.as_str()) {
        fail(&mut transfer, AUTHOR_NOT_WALLET_OWNER);
    } else if state.balance(&debited_wallet) < debited.amount {
        fail(&mut transfer, INSUFFICIENT_BALANCE);
    } else {
        succeed(&mut transfer, now);
        state.add_to_balance(&debited_wallet, -debited.amount);
        state.add_to_balance(&credited_wallet, debited.amount - fees.amount);
    }
    Ok(Reply::transaction(state, Kind::Transfer, transfer))
}

// --- bank accounts and payouts ---

pub(super) fn create_iban_account(
    state: &mut State,
    user: &str,
    fields: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    if state.get(Kind::User, user).is_none() {
        return Err(ApiError::not_found("User", user));
    }
    let mut body = Body::new(fields);
    let owner_name = body.required_text("OwnerName");
    let owner_address = body.required_address("OwnerAddress");
    let iban = body.required_text("IBAN");
    if !iban.is_empty() && !iban::is_valid(&iban) {
        body.refuse("IBAN", "The value is not a valid IBAN");
    }
    let bic = body.text("BIC");
    if bic
        .as_deref()
        .is_some_and(|bic| !matches!(bic.len(), 8 | 11) || !bic.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        body.refuse("BIC", "The value is not a valid BIC");
    }
    let tag = body.tag();
    body.finish()?;

    let account = json!({
        "Id": new_id(Kind::BankAccount),
        "Tag": tag,
        "CreationDate": state.now(),
        "UserId": user,
        "Type": "IBAN",
        "OwnerName": owner_name,
        "OwnerAddress": owner_address,
        "IBAN": iban,
        "BIC": bic,
        "Active": true,
    });
    Ok(Reply::quiet(state.insert(Kind::BankAccount, account)))
}

pub(super) fn create_payout(state: &mut State, fields: &Map<String, Value>) -> Result<Reply, ApiError> {
    let mut body = Body::new(fields);
    let author = required_id(state, &mut body, Kind::User, "AuthorId");
    let wallet = required_id(state, &mut body, Kind::Wallet, "DebitedWalletId");
    let account = required_id(state, &mut body, Kind::BankAccount, "BankAccountId");
    let (debited, fees) = amounts(&mut body, ("DebitedFunds", "Fees"));
    check_wallet_currency(state, &mut body, &wallet, "DebitedWalletId", &debited);
    body.choice("PaymentType", &["BANK_WIRE"]);
    let bank_wire_ref = body.text_at_most("BankWireRef", 12);
    let mode = body
        .choice("PayoutModeRequested", &PAYOUT_MODES)
        .unwrap_or_else(|| "STANDARD".into());
    let payment_ref = body.raw("PaymentRef");
    let tag = body.tag();
    body.finish()?;

    let now = state.now();
    let account_owner = state.get(Kind::BankAccount, &account).map(|a| a["UserId"].clone());
    let mut payout = NewTransaction {
        kind: Kind::PayOut,
        type_: "PAYOUT",
        nature: "REGULAR",
        author: &author,
        credited_user: None,
        debited: &debited,
        fees: &fees,
        debited_wallet: Some(&wallet),
        credited_wallet: None,
        tag,
    }
    .json(now);
    extend(
        &mut payout,
        json!({
            "PaymentType": "BANK_WIRE",
            "BankAccountId": account,
            "BankWireRef": bank_wire_ref,
            "ModeRequested": mode,
            "ModeApplied": mode,
            "FallbackReason": null,
            "PaymentRef": payment_ref,
        }),
    );
    if state.wallet_owner(&wallet) != Some(author.as_str()) {
        fail(&mut payout, PAYOUT_AUTHOR_NOT_WALLET_OWNER);
    } else if account_owner != Some(json!(author)) {
        fail(&mut payout, PAYOUT_AUTHOR_NOT_ACCOUNT_OWNER);
    } else if state.balance(&wallet) < debited.amount {
        fail(&mut payout, INSUFFICIENT_BALANCE);
    } else {
        // The money leaves the wallet when the payout is created, and comes back if it fails.
        state.add_to_balance(&wallet, -debited.amount);
    }
    Ok(Reply::transaction(state, Kind::PayOut, payout))
}

// --- refunds ---

/// `POST payins/{id}/refunds` and `transfers/{id}/refunds`. Both amounts or neither: without them
/// the refund takes back all the initial transaction credited and gives back its fees, so the
/// payer gets what they paid. A pay-in refund is `CREATED` until the card is credited; a transfer
/// refund settles at once.
pub(super) fn create_refund(
    state: &mut State,
    initial_kind: Kind,
    initial_id: &str,
    fields: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let initial = state
        .get(initial_kind, initial_id)
        .ok_or_else(|| ApiError::not_found(initial_kind.ressource(), initial_id))?
        .clone();
    let initial_credited = Money::of(&initial["CreditedFunds"]);
    let initial_fees = Money::of(&initial["Fees"]);
    let mut body = Body::new(fields);
    let author = required_id(state, &mut body, Kind::User, "AuthorId");
    let (debited, fees) = match (body.money("DebitedFunds"), body.money("Fees")) {
        (Some(debited), Some(fees)) => (debited, fees),
        (None, None) => (
            initial_credited.clone(),
            Money::new(&initial_fees.currency, -initial_fees.amount),
        ),
        (Some(debited), None) => {
            body.refuse("Fees", "Fees parameter must be defined");
            (debited, Money::placeholder())
        }
        (None, Some(fees)) => {
            body.refuse("DebitedFunds", "DebitedFunds parameter must be defined");
            (Money::placeholder(), fees)
        }
    };
    if debited.amount < 1 {
        body.refuse("DebitedFunds.Amount", "The refund amount must be at least 1.");
    }
    if debited.currency != initial_credited.currency || fees.currency != initial_credited.currency {
        body.refuse(
            "DebitedFunds.Currency",
            "The refund must be in the initial transaction's currency.",
        );
    }
    if initial["Status"] != "SUCCEEDED" {
        body.refuse("InitialTransactionId", "Only a SUCCEEDED transaction can be refunded.");
    }
    if initial["PaymentType"] == "BANK_WIRE" {
        body.refuse(
            "InitialTransactionId",
            "A bank-wire pay-in is refunded by a payout with a PaymentRef, not a refund.",
        );
    }
    let tag = body.tag();
    body.finish()?;

    let now = state.now();
    let wallet = initial["CreditedWalletId"].as_str().unwrap_or_default().to_owned();
    let is_payin = initial_kind == Kind::PayIn;
    let credited_wallet = (!is_payin).then(|| initial["DebitedWalletId"].as_str().unwrap_or_default().to_owned());
    let mut refund = NewTransaction {
        kind: Kind::Refund,
        type_: if is_payin { "PAYOUT" } else { "TRANSFER" },
        nature: "REFUND",
        author: &author,
        credited_user: None,
        debited: &debited,
        fees: &fees,
        debited_wallet: Some(&wallet),
        credited_wallet: credited_wallet.as_deref(),
        tag,
    }
    .json(now);
    extend(
        &mut refund,
        json!({
            "InitialTransactionId": initial_id,
            "InitialTransactionType": initial["Type"],
            "InitialTransactionNature": initial["Nature"],
            "RefundReason": {"RefundReasonMessage": null, "RefundReasonType": "INITIALIZED_BY_CLIENT"},
        }),
    );
    if is_payin && state.disputed(initial_id) {
        fail(&mut refund, REFUND_OF_DISPUTED);
    } else if state.refunded(initial_id) + debited.amount > initial_credited.amount {
        fail(&mut refund, REFUND_EXCEEDS_INITIAL);
    } else if state.balance(&wallet) < debited.amount {
        fail(&mut refund, INSUFFICIENT_BALANCE);
    } else {
        state.add_to_balance(&wallet, -debited.amount);
        if let Some(credited_wallet) = &credited_wallet {
            succeed(&mut refund, now);
            state.add_to_balance(credited_wallet, debited.amount - fees.amount);
        }
    }
    Ok(Reply::transaction(state, Kind::Refund, refund))
}

// --- hooks, reads, saved responses ---

pub(super) fn create_hook(state: &mut State, fields: &Map<String, Value>) -> Result<Reply, ApiError> {
    let mut body = Body::new(fields);
    let event_type = body.required_choice("EventType", &EVENT_TYPES);
    let url = body.required_text("Url");
    if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
        body.refuse("Url", "The Url field must be an http(s) URL.");
    }
    // One URL per event type (docs:endpoints/v2.01/hooks); a second one is refused.
    let taken = state
        .objects
        .values()
        .any(|stored| stored.kind == Kind::Hook && stored.object["EventType"] == event_type);
    if taken {
        body.refuse("EventType", "A hook has already been registered for this EventType.");
    }
    let tag = body.tag();
    body.finish()?;

    let hook = json!({
        "Id": new_id(Kind::Hook),
        "Tag": tag,
        "CreationDate": state.now(),
        "EventType": event_type,
        "Url": url,
        "Status": "ENABLED",
        "Validity": "VALID",
    });
    Ok(Reply::quiet(state.insert(Kind::Hook, hook)))
}

/// `GET <objects>/{id}`: the object as it is now.
pub(super) fn view(state: &State, kind: Kind, id: &str) -> Result<Reply, ApiError> {
    view_if(state, kind, id, |_| true)
}

/// Like [`view`], for a path that also says whose or what the object is (`users/legal/{id}`,
/// `users/{user}/bankaccounts/{id}`): any other is not found there.
pub(super) fn view_if(
    state: &State,
    kind: Kind,
    id: &str,
    belongs: impl Fn(&Value) -> bool,
) -> Result<Reply, ApiError> {
    state
        .get(kind, id)
        .filter(|object| belongs(object))
        .map(|object| Reply::quiet(object.clone()))
        .ok_or_else(|| ApiError::not_found(kind.ressource(), id))
}

/// `GET responses/{key}`: the first answer given under the key, whatever its status
/// (docs:api-reference/api-responses/view-api-response).
pub(super) fn view_response(state: &State, key: &str) -> Result<Reply, ApiError> {
    let saved = state
        .responses
        .get(key)
        .ok_or_else(|| ApiError::not_found("Response", key))?;
    let date = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(saved.date).unwrap_or_default());
    Ok(Reply::quiet(json!({
        "StatusCode": saved.status.as_u16().to_string(),
        "ContentLength": saved.body.to_string().len().to_string(),
        "ContentType": "application/json; charset=utf-8",
        "Date": httpdate::fmt_http_date(date),
        "RequestURL": saved.request_url,
        "Resource": saved.body,
    })))
}

// --- shared checks and shapes ---

/// The fields every transaction has (`transaction.d.ts`), `CREATED`, with
/// `CreditedFunds = DebitedFunds - Fees`.
struct NewTransaction<'a> {
    kind: Kind,
    type_: &'static str,
    nature: &'static str,
    author: &'a str,
    credited_user: Option<String>,
    debited: &'a Money,
    fees: &'a Money,
    debited_wallet: Option<&'a str>,
    credited_wallet: Option<&'a str>,
    tag: Option<String>,
}

impl NewTransaction<'_> {
    fn json(&self, now: i64) -> Value {
        let credited = Money::new(&self.debited.currency, self.debited.amount - self.fees.amount);
        json!({
            "Id": new_id(self.kind),
            "Tag": self.tag,
            "CreationDate": now,
            "AuthorId": self.author,
            "CreditedUserId": self.credited_user,
            "DebitedFunds": self.debited.json(),
            "CreditedFunds": credited.json(),
            "Fees": self.fees.json(),
            "Status": "CREATED",
            "ResultCode": null,
            "ResultMessage": null,
            "ExecutionDate": null,
            "Type": self.type_,
            "Nature": self.nature,
            "DebitedWalletId": self.debited_wallet,
            "CreditedWalletId": self.credited_wallet,
        })
    }
}

/// Adds `extra`'s fields to `object`.
fn extend(object: &mut Value, extra: Value) {
    if let (Some(object), Value::Object(extra)) = (object.as_object_mut(), extra) {
        object.extend(extra);
    }
}

/// A required id in the body that must name an object of `kind` (an unknown id is a
/// `param_error`, as the reference's own message says).
fn required_id(state: &State, body: &mut Body, kind: Kind, field: &str) -> String {
    let id = body.required_text(field);
    must_exist(state, body, kind, field, &id);
    id
}

fn must_exist(state: &State, body: &mut Body, kind: Kind, field: &str, id: &str) {
    if !id.is_empty() && state.get(kind, id).is_none() {
        body.refuse(field, format!("The {field} does not match any {}.", kind.ressource()));
    }
}

/// `CreditedUserId`: a known user when sent; the credited wallet's owner otherwise.
fn credited_user(state: &State, body: &mut Body, wallet: &str) -> Option<String> {
    match body.text("CreditedUserId") {
        Some(user) => {
            must_exist(state, body, Kind::User, "CreditedUserId", &user);
            Some(user)
        }
        None => state.wallet_owner(wallet).map(str::to_owned),
    }
}

/// Who pays how much into which wallet, as a pay-in's body names them (`DebitedFunds` and
/// `Fees`, or a bank wire's `DeclaredDebitedFunds` and `DeclaredFees`).
struct PayInParties {
    author: String,
    wallet: String,
    debited: Money,
    fees: Money,
    credited_user: Option<String>,
}

fn payin_parties(state: &State, body: &mut Body, amount_fields: (&str, &str)) -> PayInParties {
    let author = required_id(state, body, Kind::User, "AuthorId");
    let wallet = required_id(state, body, Kind::Wallet, "CreditedWalletId");
    let (debited, fees) = amounts(body, amount_fields);
    check_wallet_currency(state, body, &wallet, "CreditedWalletId", &debited);
    let credited_user = credited_user(state, body, &wallet);
    PayInParties {
        author,
        wallet,
        debited,
        fees,
        credited_user,
    }
}

impl PayInParties {
    /// The pay-in, `CREATED`, showing `debited` and `fees`.
    fn payin(&self, debited: &Money, fees: &Money, tag: Option<String>, now: i64) -> Value {
        NewTransaction {
            kind: Kind::PayIn,
            type_: "PAYIN",
            nature: "REGULAR",
            author: &self.author,
            credited_user: self.credited_user.clone(),
            debited,
            fees,
            debited_wallet: None,
            credited_wallet: Some(&self.wallet),
            tag,
        }
        .json(now)
    }
}

/// The debited funds and fees of a transaction: debited funds of at least 1, fees from 0 up to
/// them, both in one currency.
fn amounts(body: &mut Body, (debited_field, fees_field): (&str, &str)) -> (Money, Money) {
    let debited = body.required_money(debited_field);
    let fees = body.required_money(fees_field);
    if debited.amount < 1 {
        body.refuse(&format!("{debited_field}.Amount"), "The amount must be at least 1.");
    }
    if fees.amount < 0 || fees.amount > debited.amount {
        body.refuse(
            &format!("{fees_field}.Amount"),
            format!("The fees must be between 0 and the {debited_field} amount."),
        );
    }
    if fees.currency != debited.currency {
        body.refuse(
            &format!("{fees_field}.Currency"),
            format!("The fees must be in the {debited_field} currency."),
        );
    }
    (debited, fees)
}

/// The funds must be in the wallet's currency.
fn check_wallet_currency(state: &State, body: &mut Body, wallet: &str, field: &str, funds: &Money) {
    let currency = state.get(Kind::Wallet, wallet).and_then(|w| w["Currency"].as_str());
    if currency.is_some_and(|currency| currency != funds.currency) {
        body.refuse(field, format!("The wallet {wallet} does not hold {}.", funds.currency));
    }
}
