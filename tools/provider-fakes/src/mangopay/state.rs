//! What the Mangopay fake holds (objects, wallets' balances, tokens, saved answers, hooks) and
//! the state changes a test makes happen, as Mangopay's transactions move: `CREATED`, then
//! `SUCCEEDED` or `FAILED` with a `ResultCode` (docs/providers/mangopay-api.md section 5).

use std::collections::HashMap;
use std::time::Instant;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::Money;
use super::{DisputeOutcome, Fault, Hook, HookDelivery, Kind, ReceivedRequest};
use crate::next_replies::NextReplies;
use crate::{system_now, token};

/// `ResultCode`s the fake gives, with the `ResultMessage`s Mangopay's error-code pages show.
pub(super) const SUCCESS: &str = "000000";
pub(super) const INSUFFICIENT_BALANCE: &str = "001001";
pub(super) const AUTHOR_NOT_WALLET_OWNER: &str = "001002";
pub(super) const GENERIC_FAILURE: &str = "001999";
pub(super) const REFUND_EXCEEDS_INITIAL: &str = "005403";
pub(super) const REFUND_OF_DISPUTED: &str = "005408";
pub(super) const PAYOUT_AUTHOR_NOT_WALLET_OWNER: &str = "121002";
pub(super) const PAYOUT_AUTHOR_NOT_ACCOUNT_OWNER: &str = "121007";
pub(super) const GENERIC_PAYOUT_FAILURE: &str = "121999";

/// The `ResultMessage` of a `ResultCode` (docs:errors/codes/<code>, docs:guide/errors).
fn result_message(code: &str) -> &'static str {
    match code {
        SUCCESS => "Success",
        INSUFFICIENT_BALANCE => "Unsufficient wallet balance",
        AUTHOR_NOT_WALLET_OWNER => "Author is not the wallet owner",
        GENERIC_FAILURE => "Generic Operation error",
        REFUND_EXCEEDS_INITIAL => "The refund cannot exceed initial transaction amount",
        REFUND_OF_DISPUTED => "Due to repudiations against this transaction, you can not refund this amount.",
        PAYOUT_AUTHOR_NOT_WALLET_OWNER => "The author is not the wallet owner",
        PAYOUT_AUTHOR_NOT_ACCOUNT_OWNER => "The author is not the bank account owner",
        GENERIC_PAYOUT_FAILURE => "Generic withdrawal error",
        "101001" => "The user does not complete transaction",
        "101002" => "The transaction has been cancelled by the user",
        "101109" => "The payment period has expired",
        "001034" => "User has let the payment session expire without paying",
        _ => "Refused transaction",
    }
}

/// A stored object and what it is (Mangopay's objects carry no type field of their own).
pub(super) struct Stored {
    pub kind: Kind,
    pub object: Value,
}

/// The first answer given under an idempotency key, as `responses/{key}` shows it.
pub(super) struct Saved {
    pub status: StatusCode,
    pub body: Value,
    pub request_url: String,
    pub date: i64,
}

pub(super) struct State {
    pub now: Option<i64>,
    pub hook_url: Option<String>,
    pub objects: HashMap<String, Stored>,
    pub created: HashMap<Kind, usize>,
    /// Each token and when it stops working.
    pub tokens: HashMap<String, Instant>,
    pub token_requests: usize,
    /// Every token issued, expired or not.
    pub issued_tokens: Vec<String>,
    /// By idempotency key: the client is the fake's only one.
    pub responses: HashMap<String, Saved>,
    pub next_replies: NextReplies<Fault>,
    /// Calls received, which the `x-ratelimit` headers count.
    pub calls: u64,
    pub requests: Vec<ReceivedRequest>,
    pub hooks: Vec<Hook>,
    pub deliveries: Vec<HookDelivery>,
}

impl State {
    pub fn new() -> State {
        State {
            now: None,
            hook_url: None,
            objects: HashMap::new(),
            created: HashMap::new(),
            tokens: HashMap::new(),
            token_requests: 0,
            issued_tokens: Vec::new(),
            responses: HashMap::new(),
            next_replies: NextReplies::new(),
            calls: 0,
            requests: Vec::new(),
            hooks: Vec::new(),
            deliveries: Vec::new(),
        }
    }

    pub fn now(&self) -> i64 {
        self.now.unwrap_or_else(system_now)
    }

    /// Stores `object` (which carries its `Id`) and answers it.
    pub fn insert(&mut self, kind: Kind, object: Value) -> Value {
        let id = object["Id"].as_str().expect("objects have ids").to_owned();
        self.objects.insert(
            id,
            Stored {
                kind,
                object: object.clone(),
            },
        );
        *self.created.entry(kind).or_default() += 1;
        object
    }

    pub fn get(&self, kind: Kind, id: &str) -> Option<&Value> {
        self.objects
            .get(id)
            .filter(|stored| stored.kind == kind)
            .map(|stored| &stored.object)
    }

    /// An object a control names; a test that names one the fake lacks is wrong, so this panics.
    fn expect_mut(&mut self, kind: Kind, id: &str) -> &mut Value {
        self.objects
            .get_mut(id)
            .filter(|stored| stored.kind == kind)
            .map(|stored| &mut stored.object)
            .unwrap_or_else(|| panic!("the Mangopay fake has no {} {id}", kind.ressource()))
    }

    pub fn balance(&self, wallet: &str) -> i64 {
        let wallet = self
            .get(Kind::Wallet, wallet)
            .unwrap_or_else(|| panic!("the Mangopay fake has no wallet {wallet}"));
        wallet["Balance"]["Amount"].as_i64().unwrap_or_default()
    }

    /// Adds `amount` (negative: takes it) to a wallet's balance.
    pub fn add_to_balance(&mut self, wallet: &str, amount: i64) {
        let balance = &mut self.expect_mut(Kind::Wallet, wallet)["Balance"]["Amount"];
        *balance = json!(balance.as_i64().unwrap_or_default() + amount);
    }

    /// The wallet's one owner.
    pub fn wallet_owner(&self, wallet: &str) -> Option<&str> {
        self.get(Kind::Wallet, wallet)?["Owners"][0].as_str()
    }

    /// Records a hook notification, dated now.
    pub fn hook(&mut self, event_type: &str, ressource_id: &str) -> Hook {
        let hook = Hook {
            event_type: event_type.to_owned(),
            ressource_id: ressource_id.to_owned(),
            date: self.now(),
        };
        self.hooks.push(hook.clone());
        hook
    }

    /// The hook a transaction's status calls for, if it has settled: `<TYPE>_NORMAL_<STATUS>`,
    /// or `<INITIAL TYPE>_REFUND_<STATUS>` for a refund (docs/providers/mangopay-api.md section 6).
    /// `…_CREATED` hooks are not sent (the service ignores them).
    pub fn settled_hook(&mut self, transaction: &Value) -> Option<Hook> {
        let status = transaction["Status"].as_str().filter(|s| *s != "CREATED")?;
        let event_type = if transaction["Nature"] == "REFUND" {
            format!("{}_REFUND_{status}", transaction["InitialTransactionType"].as_str()?)
        } else {
            format!("{}_NORMAL_{status}", transaction["Type"].as_str()?)
        };
        let id = transaction["Id"].as_str()?.to_owned();
        Some(self.hook(&event_type, &id))
    }

    /// Where a hook of `event_type` goes: the URL registered for it by `POST hooks`, else the
    /// test's.
    pub fn hook_url(&self, event_type: &str) -> Option<String> {
        self.objects
            .values()
            .filter(|stored| stored.kind == Kind::Hook)
            .find(|stored| stored.object["EventType"] == event_type && stored.object["Status"] == "ENABLED")
            .and_then(|stored| stored.object["Url"].as_str().map(str::to_owned))
            .or_else(|| self.hook_url.clone())
    }

    /// What the refunds of a transaction hold: the `DebitedFunds` of all but the failed ones.
    pub fn refunded(&self, initial: &str) -> i64 {
        self.objects
            .values()
            .filter(|stored| stored.kind == Kind::Refund)
            .map(|stored| &stored.object)
            .filter(|refund| refund["InitialTransactionId"] == initial && refund["Status"] != "FAILED")
            .map(|refund| Money::of(&refund["DebitedFunds"]).amount)
            .sum()
    }

    pub fn disputed(&self, payin: &str) -> bool {
        self.objects
            .values()
            .any(|stored| stored.kind == Kind::Dispute && stored.object["InitialTransactionId"] == payin)
    }

    // --- what a test makes happen ---

    pub fn succeed_card_payin(&mut self, id: &str) -> Hook {
        let now = self.now();
        let payin = self.expect_created(Kind::PayIn, id);
        assert_eq!(
            payin["PaymentType"], "CARD",
            "{id} is a bank-wire pay-in: receive_wire pays it"
        );
        succeed(payin, now);
        let (wallet, credited) = (payin["CreditedWalletId"].clone(), Money::of(&payin["CreditedFunds"]));
        self.add_to_balance(wallet.as_str().unwrap_or_default(), credited.amount);
        self.hook("PAYIN_NORMAL_SUCCEEDED", id)
    }

    pub fn fail_payin(&mut self, id: &str, result_code: &str) -> Hook {
        fail(self.expect_created(Kind::PayIn, id), result_code);
        self.hook("PAYIN_NORMAL_FAILED", id)
    }

    pub fn receive_wire(&mut self, id: &str, amount: i64) -> Hook {
        let now = self.now();
        let payin = self.expect_created(Kind::PayIn, id);
        assert_eq!(payin["PaymentType"], "BANK_WIRE", "{id} is not a bank-wire pay-in");
        let fees = Money::of(&payin["DeclaredFees"]);
        assert!(
            amount >= fees.amount,
            "a wire of {amount} cannot pay the {} of fees declared on {id}",
            fees.amount
        );
        let currency = fees.currency.clone();
        payin["DebitedFunds"] = Money::new(&currency, amount).json();
        payin["Fees"] = fees.json();
        payin["CreditedFunds"] = Money::new(&currency, amount - fees.amount).json();
        succeed(payin, now);
        let wallet = payin["CreditedWalletId"].as_str().unwrap_or_default().to_owned();
        self.add_to_balance(&wallet, amount - fees.amount);
        self.hook("PAYIN_NORMAL_SUCCEEDED", id)
    }

    /// A payout or pay-in refund that was `CREATED` `SUCCEEDED`; its money left the wallet when
    /// it was created.
    pub fn succeed_pending(&mut self, kind: Kind, id: &str) -> Hook {
        let now = self.now();
        let transaction = self.expect_created(kind, id);
        succeed(transaction, now);
        let transaction = transaction.clone();
        self.settled_hook(&transaction)
            .expect("a settled transaction has a hook")
    }

    /// A payout or pay-in refund that was `CREATED` `FAILED`: its money goes back to the wallet.
    pub fn fail_pending(&mut self, kind: Kind, id: &str, result_code: &str) -> Hook {
        let transaction = self.expect_created(kind, id);
        fail(transaction, result_code);
        let transaction = transaction.clone();
        let wallet = transaction["DebitedWalletId"].as_str().unwrap_or_default();
        self.add_to_balance(wallet, Money::of(&transaction["DebitedFunds"]).amount);
        self.settled_hook(&transaction)
            .expect("a settled transaction has a hook")
    }

    pub fn return_payout(&mut self, id: &str, reason: &str) -> Hook {
        let now = self.now();
        let payout = self
            .get(Kind::PayOut, id)
            .filter(|payout| payout["Status"] == "SUCCEEDED")
            .unwrap_or_else(|| panic!("the Mangopay fake has no succeeded payout {id}"))
            .clone();
        let returned = Money::of(&payout["CreditedFunds"]);
        let wallet = payout["DebitedWalletId"].as_str().unwrap_or_default();
        // Money coming back into a wallet is a PAYIN by type, like the repudiation refunds the
        // API reference shows (docs:api-reference/refunds/list-refunds-repudiation).
        let mut refund = json!({
            "Id": new_id(Kind::Refund),
            "Tag": null,
            "CreationDate": now,
            "AuthorId": payout["AuthorId"],
            "CreditedUserId": payout["AuthorId"],
            "DebitedFunds": returned.json(),
            "CreditedFunds": returned.json(),
            "Fees": Money::new(&returned.currency, 0).json(),
            "Type": "PAYIN",
            "Nature": "REFUND",
            "InitialTransactionId": id,
            "InitialTransactionType": "PAYOUT",
            "InitialTransactionNature": "REGULAR",
            "DebitedWalletId": null,
            "CreditedWalletId": wallet,
            "RefundReason": {"RefundReasonMessage": null, "RefundReasonType": reason},
        });
        succeed(&mut refund, now);
        self.add_to_balance(wallet, returned.amount);
        let refund = self.insert(Kind::Refund, refund);
        self.settled_hook(&refund).expect("a settled transaction has a hook")
    }

    pub fn open_dispute(&mut self, payin: &str, amount: i64) -> Hook {
        let now = self.now();
        let initial = self
            .get(Kind::PayIn, payin)
            .filter(|p| p["Status"] == "SUCCEEDED" && p["PaymentType"] == "CARD")
            .unwrap_or_else(|| panic!("the Mangopay fake has no succeeded card pay-in {payin} to dispute"));
        let currency = Money::of(&initial["DebitedFunds"]).currency;
        let dispute = json!({
            "Id": new_id(Kind::Dispute),
            "Tag": null,
            "CreationDate": now,
            "InitialTransactionId": payin,
            "InitialTransactionType": "PAYIN",
            "InitialTransactionNature": "REGULAR",
            "DisputeType": "CONTESTABLE",
            "ContestDeadlineDate": now + 7 * 86_400,
            "DisputedFunds": Money::new(&currency, amount).json(),
            "ContestedFunds": null,
            "Status": "PENDING_CLIENT_ACTION",
            "StatusMessage": null,
            "DisputeReason": {"DisputeReasonType": "UNKNOWN", "DisputeReasonMessage": null},
            "ResultCode": null,
            "ResultMessage": null,
            "ClosedDate": null,
            "RepudiationId": format!("repud_m_{}", token(26).to_uppercase()),
        });
        let dispute = self.insert(Kind::Dispute, dispute);
        self.hook("DISPUTE_CREATED", dispute["Id"].as_str().unwrap_or_default())
    }

    pub fn close_dispute(&mut self, id: &str, outcome: DisputeOutcome) -> Hook {
        let now = self.now();
        let dispute = self.expect_mut(Kind::Dispute, id);
        assert_ne!(dispute["Status"], "CLOSED", "dispute {id} is closed already");
        dispute["Status"] = json!("CLOSED");
        dispute["ResultCode"] = json!(outcome.result_code());
        dispute["ClosedDate"] = json!(now);
        self.hook("DISPUTE_CLOSED", id)
    }

    /// A transaction a control moves, which must still be `CREATED`.
    fn expect_created(&mut self, kind: Kind, id: &str) -> &mut Value {
        let transaction = self.expect_mut(kind, id);
        assert_eq!(
            transaction["Status"],
            "CREATED",
            "{} {id} has settled already",
            kind.ressource()
        );
        transaction
    }
}

/// `<prefix>_m_<26 characters>`, the shape of Mangopay's newer ids.
pub(super) fn new_id(kind: Kind) -> String {
    format!("{}_m_{}", kind.id_prefix(), token(26).to_uppercase())
}

pub(super) fn succeed(transaction: &mut Value, now: i64) {
    transaction["Status"] = json!("SUCCEEDED");
    transaction["ResultCode"] = json!(SUCCESS);
    transaction["ResultMessage"] = json!(result_message(SUCCESS));
    transaction["ExecutionDate"] = json!(now);
}

pub(super) fn fail(transaction: &mut Value, result_code: &str) {
    transaction["Status"] = json!("FAILED");
    transaction["ResultCode"] = json!(result_code);
    transaction["ResultMessage"] = json!(result_message(result_code));
    transaction["ExecutionDate"] = Value::Null;
}
