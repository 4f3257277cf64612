//! The endpoints the service calls, on the fake's state: parameters checked as Stripe checks them,
//! objects shaped as its reference shows them (stripe-node's interfaces, docs/providers/stripe-api.md
//! section 5), and the events a creation sends.

use serde_json::{Map, Value, json};

use super::error::{ApiError, Params};
use super::{Event, Kind, State, new_id, token};

/// What an endpoint answers with 200, and the events it caused (delivered after the reply).
pub(super) struct Reply {
    pub object: Value,
    pub events: Vec<Event>,
}

impl Reply {
    fn quiet(object: Value) -> Reply {
        Reply {
            object,
            events: Vec::new(),
        }
    }
}

/// The API request that caused an event, as the event's `request` field names it.
pub(super) struct Caller<'a> {
    pub request_id: &'a str,
    pub idempotency_key: Option<&'a str>,
}

/// The first API version on which `payment_method_types` is refused on PaymentIntents
/// (docs.stripe.com changelog `2026-09-30.endive`); dated versions sort by their date.
const NO_PAYMENT_METHOD_TYPES_FROM: &str = "2026-09-30";

/// `eu_bank_transfer.country` values Stripe's reference lists.
const EU_BANK_TRANSFER_COUNTRIES: [&str; 6] = ["BE", "DE", "ES", "FR", "IE", "NL"];

/// Statuses from which an intent may be cancelled (stripe-node's doc comment on `cancel`).
const CANCELLABLE: [&str; 5] = [
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
];

/// Refund statuses whose amount is no longer refundable: a failed or cancelled refund gives its
/// amount back.
const REFUND_HOLDS_AMOUNT: [&str; 3] = ["pending", "requires_action", "succeeded"];

pub(super) fn create_customer(state: &mut State, params: &Params) -> Result<Reply, ApiError> {
    params.only(&["email", "name", "metadata", "description", "phone", "expand"])?;
    let id = new_id("cus");
    let customer = json!({
        "id": id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": state.now(),
        "currency": null,
        "description": params.string("description")?,
        "email": params.string("email")?,
        "livemode": false,
        "metadata": params.metadata()?,
        "name": params.string("name")?,
        "phone": params.string("phone")?,
    });
    state.insert(Kind::Customer, customer.clone());
    Ok(Reply::quiet(customer))
}

pub(super) fn create_payment_intent(
    state: &mut State,
    params: &Params,
    stripe_version: Option<&str>,
) -> Result<Reply, ApiError> {
    // Refused before the unknown-parameter check: Stripe names the removal, not an unknown key.
    // Without a version header the account's default applies; the fake takes it as the pinned one.
    let refuses_types = stripe_version.is_none_or(|v| v >= NO_PAYMENT_METHOD_TYPES_FROM);
    if params.has("payment_method_types") && refuses_types {
        return Err(ApiError::invalid(
            "payment_method_types",
            Some("payment_method_types_no_longer_supported"),
            "The payment_method_types parameter is no longer supported on this API version. \
             Use allowed_payment_method_types instead.",
        ));
    }
    params.only(&[
        "amount",
        "currency",
        "metadata",
        "allowed_payment_method_types",
        "payment_method_types",
        "excluded_payment_method_types",
        "automatic_payment_methods",
        "customer",
        "transfer_group",
        "payment_method_data",
        "payment_method_options",
        "confirm",
        "capture_method",
        "description",
        "statement_descriptor_suffix",
        "receipt_email",
        "expand",
    ])?;
    let amount = params.required_integer("amount")?;
    let currency = currency(params)?;
    let minimum = minimum_amount(&currency);
    if amount < minimum {
        return Err(ApiError::invalid(
            "amount",
            Some("amount_too_small"),
            format!("Amount must be at least {minimum} in the smallest unit of {currency}"),
        ));
    }
    let mut allowed = params.strings("allowed_payment_method_types")?;
    if allowed.is_empty() {
        allowed = params.strings("payment_method_types")?;
    }
    if !allowed.is_empty() && params.has("automatic_payment_methods") {
        return Err(ApiError::invalid(
            "allowed_payment_method_types",
            Some("parameters_exclusive"),
            "You cannot specify both allowed_payment_method_types and automatic_payment_methods.",
        ));
    }
    let customer = match params.string("customer")? {
        Some(id) if state.get(Kind::Customer, &id).is_none() => {
            return Err(ApiError::no_such("customer", &id, "customer", false));
        }
        customer => customer,
    };
    let capture_method = params
        .choice("capture_method", &["automatic", "automatic_async", "manual"])?
        .unwrap_or_else(|| "automatic_async".into());
    let options = params.object("payment_method_options")?;
    let confirm = params.boolean("confirm")?;

    let id = new_id("pi");
    let mut status = "requires_payment_method";
    let mut next_action = Value::Null;
    let bank_transfer = options
        .get("customer_balance")
        .and_then(|cb| cb.get("funding_type"))
        .is_some_and(|f| f == "bank_transfer");
    if bank_transfer {
        let customer = customer.as_deref().ok_or_else(|| {
            ApiError::invalid(
                "customer",
                None,
                "A customer is required to use the customer_balance payment method.",
            )
        })?;
        let country = bank_transfer_country(&options)?;
        if confirm {
            status = "requires_action";
            let reference = token(12).to_uppercase();
            next_action = json!({
                "type": "display_bank_transfer_instructions",
                "display_bank_transfer_instructions": {
                    "amount_remaining": amount,
                    "currency": currency,
                    "reference": reference,
                    "type": "eu_bank_transfer",
                    "hosted_instructions_url": format!("https://payments.stripe.com/bank_transfers/instructions/{id}"),
                    "financial_addresses": [state.virtual_account(customer, &country)],
                },
            });
        }
    }
    let payment_method_types = if allowed.is_empty() {
        vec!["card".to_owned()]
    } else {
        allowed
    };
    let intent = json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": 0,
        "canceled_at": null,
        "cancellation_reason": null,
        "capture_method": capture_method,
        "client_secret": format!("{id}_secret_{}", token(25)),
        "confirmation_method": "automatic",
        "created": state.now(),
        "currency": currency,
        "customer": customer,
        "description": params.string("description")?,
        "last_payment_error": null,
        "latest_charge": null,
        "livemode": false,
        "metadata": params.metadata()?,
        "next_action": next_action,
        "payment_method": null,
        "payment_method_options": options,
        "payment_method_types": payment_method_types,
        "status": status,
        "transfer_group": params.string("transfer_group")?,
    });
    state.insert(Kind::PaymentIntent, intent.clone());
    Ok(Reply::quiet(intent))
}

pub(super) fn cancel_payment_intent(
    state: &mut State,
    id: &str,
    params: &Params,
    caller: &Caller,
) -> Result<Reply, ApiError> {
    params.only(&["cancellation_reason", "expand"])?;
    let reason = params.choice(
        "cancellation_reason",
        &["duplicate", "fraudulent", "requested_by_customer", "abandoned"],
    )?;
    let now = state.now();
    let intent = state
        .get_mut(Kind::PaymentIntent, id)
        .ok_or_else(|| ApiError::no_such("payment_intent", id, "intent", true))?;
    let status = intent["status"].as_str().unwrap_or_default().to_owned();
    if !CANCELLABLE.contains(&status.as_str()) {
        return Err(ApiError::refused(
            "payment_intent_unexpected_state",
            None,
            format!(
                "You cannot cancel this PaymentIntent because it has a status of {status}. Only a \
                 PaymentIntent with one of the following statuses may be canceled: {}.",
                CANCELLABLE.join(", ")
            ),
        ));
    }
    intent["status"] = json!("canceled");
    intent["canceled_at"] = json!(now);
    intent["cancellation_reason"] = json!(reason);
    intent["next_action"] = Value::Null;
    let intent = intent.clone();
    let event = state.event("payment_intent.canceled", &intent, None, Some(caller));
    Ok(Reply {
        object: intent,
        events: vec![event],
    })
}

pub(super) fn create_refund(state: &mut State, params: &Params, caller: &Caller) -> Result<Reply, ApiError> {
    params.only(&[
        "payment_intent",
        "charge",
        "amount",
        "metadata",
        "reason",
        "instructions_email",
        "expand",
    ])?;
    let intent = match (params.string("payment_intent")?, params.string("charge")?) {
        (Some(id), _) => state
            .get(Kind::PaymentIntent, &id)
            .ok_or_else(|| ApiError::no_such("payment_intent", &id, "payment_intent", false))?,
        (None, Some(charge)) => state
            .intent_of_charge(&charge)
            .ok_or_else(|| ApiError::no_such("charge", &charge, "charge", false))?,
        (None, None) => return Err(ApiError::missing("payment_intent")),
    }
    .clone();
    let amount = params.positive_integer("amount")?;
    let reason = params.choice("reason", &["duplicate", "fraudulent", "requested_by_customer"])?;
    let metadata = params.metadata()?;

    let intent_id = intent["id"].as_str().unwrap_or_default();
    let Some(charge) = intent["latest_charge"]
        .as_str()
        .filter(|_| intent["status"] == "succeeded")
    else {
        return Err(ApiError::refused(
            "charge_not_found",
            Some("payment_intent"),
            format!("This PaymentIntent ({intent_id}) does not have a successful charge to refund."),
        ));
    };
    let received = intent["amount_received"].as_i64().unwrap_or_default();
    let remaining = received - state.refunded(intent_id);
    if remaining <= 0 {
        return Err(ApiError::refused(
            "charge_already_refunded",
            None,
            format!("Charge {charge} has already been refunded."),
        ));
    }
    let amount = amount.unwrap_or(remaining);
    if amount > remaining {
        return Err(ApiError::refused(
            "amount_too_large",
            Some("amount"),
            format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})"),
        ));
    }
    let refund = json!({
        "id": new_id("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": null,
        "charge": charge,
        "created": state.now(),
        "currency": intent["currency"],
        "failure_reason": null,
        "metadata": metadata,
        "payment_intent": intent_id,
        "pending_reason": "processing",
        "reason": reason,
        "status": "pending",
    });
    state.insert(Kind::Refund, refund.clone());
    let event = state.event("refund.created", &refund, None, Some(caller));
    Ok(Reply {
        object: refund,
        events: vec![event],
    })
}

pub(super) fn create_transfer(state: &mut State, params: &Params, caller: &Caller) -> Result<Reply, ApiError> {
    params.only(&[
        "amount",
        "currency",
        "destination",
        "transfer_group",
        "metadata",
        "description",
        "source_transaction",
        "source_type",
        "expand",
    ])?;
    let amount = params
        .positive_integer("amount")?
        .ok_or_else(|| ApiError::missing("amount"))?;
    let currency = currency(params)?;
    let destination = params.required_string("destination")?;
    if !destination.starts_with("acct_") {
        return Err(ApiError::no_such("destination", &destination, "destination", false));
    }
    let source_transaction = params.string("source_transaction")?;
    match &source_transaction {
        Some(charge) if state.intent_of_charge(charge).is_none() => {
            return Err(ApiError::no_such("charge", charge, "source_transaction", false));
        }
        // Funds from a named charge do not need the available balance (stripe-node's doc
        // comment on `source_transaction`).
        Some(_) => {}
        None => {
            let balance = state.available_balance(&currency);
            if balance < amount {
                return Err(ApiError::refused(
                    "balance_insufficient",
                    None,
                    "You have insufficient available funds in your Stripe account. Try adding funds \
                     directly to your available balance by creating Charges using the \
                     4000000000000077 test card.",
                ));
            }
            state.set_available_balance(&currency, balance - amount);
        }
    }
    let id = new_id("tr");
    let transfer = json!({
        "id": id,
        "object": "transfer",
        "amount": amount,
        "amount_reversed": 0,
        "balance_transaction": new_id("txn"),
        "created": state.now(),
        "currency": currency,
        "description": params.string("description")?,
        "destination": destination,
        "destination_payment": new_id("py"),
        "livemode": false,
        "metadata": params.metadata()?,
        "reversals": {"object": "list", "data": [], "has_more": false, "total_count": 0, "url": format!("/v1/transfers/{id}/reversals")},
        "reversed": false,
        "source_transaction": source_transaction,
        "source_type": params.string("source_type")?.unwrap_or_else(|| "card".into()),
        "transfer_group": params.string("transfer_group")?,
    });
    state.insert(Kind::Transfer, transfer.clone());
    let event = state.event("transfer.created", &transfer, None, Some(caller));
    Ok(Reply {
        object: transfer,
        events: vec![event],
    })
}

/// `POST /v1/test_helpers/customers/{customer}/fund_cash_balance` (a test-mode endpoint of the
/// real API): a bank transfer of `amount` arrives with `reference`. It goes to the customer's open
/// intent with that reference (partly funding or paying it); whatever no intent takes stays in
/// the customer's cash balance.
pub(super) fn fund_cash_balance(
    state: &mut State,
    customer: &str,
    params: &Params,
    caller: &Caller,
) -> Result<Reply, ApiError> {
    params.only(&["amount", "currency", "reference", "expand"])?;
    if state.get(Kind::Customer, customer).is_none() {
        return Err(ApiError::no_such("customer", customer, "customer", true));
    }
    let amount = params
        .positive_integer("amount")?
        .ok_or_else(|| ApiError::missing("amount"))?;
    let currency = currency(params)?;
    let reference = params.string("reference")?;
    let intent = reference
        .as_deref()
        .and_then(|r| state.awaiting_transfer(customer, &currency, r));
    let events = match intent {
        Some(intent) => vec![state.fund_intent(&intent, amount, Some(caller))],
        None => {
            state.add_cash_balance(customer, &currency, amount);
            Vec::new()
        }
    };
    let ending_balance = state.cash_balance(customer, &currency);
    let transaction = json!({
        "id": new_id("ccsbtxn"),
        "object": "customer_cash_balance_transaction",
        "created": state.now(),
        "currency": currency,
        "customer": customer,
        "ending_balance": ending_balance,
        "funded": {"bank_transfer": {"type": "eu_bank_transfer", "reference": reference, "eu_bank_transfer": null}},
        "livemode": false,
        "net_amount": amount,
        "type": "funded",
    });
    Ok(Reply {
        object: transaction,
        events,
    })
}

/// `GET /v1/<objects>/{id}`: the object as it is now. Only `expand` is taken, and ignored.
pub(super) fn retrieve(state: &State, kind: Kind, id: &str, params: &Params) -> Result<Reply, ApiError> {
    params.only(&["expand"])?;
    let param = if kind == Kind::PaymentIntent { "intent" } else { "id" };
    state
        .get(kind, id)
        .map(|object| Reply::quiet(object.clone()))
        .ok_or_else(|| ApiError::no_such(kind.object(), id, param, true))
}

/// A lower-case three-letter ISO code, as Stripe documents every `currency`.
fn currency(params: &Params) -> Result<String, ApiError> {
    let currency = params.required_string("currency")?;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(ApiError::invalid(
            "currency",
            None,
            format!("Invalid currency: {currency}. Stripe currencies are three-letter ISO codes in lowercase."),
        ));
    }
    Ok(currency)
}

/// Stripe's minimum charge amounts for the currencies it lists (docs.stripe.com
/// `currencies#minimum-and-maximum-charge-amounts`); 1 for the others, which the fake does not know.
fn minimum_amount(currency: &str) -> i64 {
    match currency {
        "eur" | "usd" | "chf" | "cad" | "aud" | "nzd" | "sgd" => 50,
        "gbp" => 30,
        _ => 1,
    }
}

fn bank_transfer_country(options: &Map<String, Value>) -> Result<String, ApiError> {
    const PARAM: &str = "payment_method_options[customer_balance][bank_transfer][eu_bank_transfer][country]";
    let bank_transfer = &options["customer_balance"]["bank_transfer"];
    match bank_transfer["type"].as_str().filter(|t| !t.is_empty()) {
        Some("eu_bank_transfer") => {}
        None => {
            return Err(ApiError::missing(
                "payment_method_options[customer_balance][bank_transfer][type]",
            ));
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "payment_method_options[customer_balance][bank_transfer][type]",
                None,
                format!("The fake serves eu_bank_transfer only, not {other}"),
            ));
        }
    }
    match bank_transfer["eu_bank_transfer"]["country"]
        .as_str()
        .filter(|c| !c.is_empty())
    {
        None => Err(ApiError::missing(PARAM)),
        Some(country) if EU_BANK_TRANSFER_COUNTRIES.contains(&country) => Ok(country.to_owned()),
        Some(country) => Err(ApiError::invalid(
            PARAM,
            None,
            format!(
                "Invalid country: {country}; one of {}",
                EU_BANK_TRANSFER_COUNTRIES.join(", ")
            ),
        )),
    }
}

/// Whether `status` is one whose refund amount counts as refunded.
pub(super) fn holds_amount(refund: &Value) -> bool {
    REFUND_HOLDS_AMOUNT.iter().any(|s| refund["status"] == *s)
}
