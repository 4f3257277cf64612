//! Mangopay, inbound: its hooks are unsigned GETs naming a resource (`EventType`, `RessourceId`
//! with two s, `Date`), so anyone could send one. None is trusted: the resource is read back
//! from the API, and what the API says is what happens, whatever the hook claimed
//! (docs/providers/mangopay-api.md section 6, docs/mangopay.md). A resource the API does not
//! have, or one not tagged as ours, is not ours: recorded and ignored.

use serde_json::{Value, json};
use uuid::Uuid;

use super::client::MangopayClient;
use super::ours;
use crate::money::Money;
use crate::payments::calls::CallError;
use crate::payments::provider::{Event, Named, Object, Received};
use crate::payments::wire::from_minor;

/// A hook's query, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub event_type: String,
    pub ressource_id: String,
    pub date: i64,
}

/// What a notification is about, and where it is read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resource {
    PayIn,
    PayOut,
    Refund,
    Dispute,
}

impl Resource {
    /// The resource an event type names that we act on; None for the others (transfers, which
    /// the payout's own call settles, repudiations, KYC, …), stored and ignored unread.
    fn of(event_type: &str) -> Option<Resource> {
        let prefixed = |p: &str| event_type.starts_with(p);
        if prefixed("PAYIN_NORMAL_") {
            Some(Resource::PayIn)
        } else if prefixed("PAYOUT_NORMAL_") {
            Some(Resource::PayOut)
        } else if prefixed("PAYIN_REFUND_") || prefixed("PAYOUT_REFUND_") {
            Some(Resource::Refund)
        } else if matches!(event_type, "DISPUTE_CREATED" | "DISPUTE_CLOSED") {
            Some(Resource::Dispute)
        } else {
            None
        }
    }

    fn path(self) -> &'static str {
        match self {
            Resource::PayIn => "payins",
            Resource::PayOut => "payouts",
            Resource::Refund => "refunds",
            Resource::Dispute => "disputes",
        }
    }
}

impl Notification {
    /// The notification in a raw query string: `EventType` of 3 to 64 capitals and underscores,
    /// a `RessourceId` of at most 128 letters, digits, underscores or dashes (it goes into a
    /// path of the API), an integer `Date`. Other parameters are let through.
    pub fn parse(query: &str) -> Result<Notification, String> {
        let (mut event_type, mut ressource_id, mut date) = (None, None, None);
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "EventType" => event_type = Some(value.into_owned()),
                "RessourceId" => ressource_id = Some(value.into_owned()),
                "Date" => date = Some(value.into_owned()),
                _ => {}
            }
        }
        let event_type = event_type
            .filter(|t| (3..=64).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
            .ok_or("EventType must be 3 to 64 capitals or underscores")?;
        let ressource_id = ressource_id
            .filter(|id| super::calls::segment(id).is_ok())
            .ok_or("RessourceId must be 1 to 128 letters, digits, underscores or dashes")?;
        let date = date
            .and_then(|d| d.parse().ok())
            .ok_or("Date must be an integer (Unix seconds)")?;
        Ok(Notification {
            event_type,
            ressource_id,
            date,
        })
    }

    /// What the notification is deduplicated by: Mangopay sends a failed one again, unchanged.
    pub fn event_id(&self) -> String {
        format!("{}:{}:{}", self.event_type, self.ressource_id, self.date)
    }
}

impl MangopayClient {
    /// Reads back what `notification` names and says what it means, with the body to store: the
    /// notification and the resource as the API answered. Err when the API could not be asked
    /// (the notification is then refused, and Mangopay sends it again).
    pub async fn read_back(&self, notification: &Notification) -> Result<(Received, Vec<u8>), CallError> {
        let resource = match Resource::of(&notification.event_type) {
            Some(resource) => {
                let path = format!("{}/{}", resource.path(), notification.ressource_id);
                self.read(&path).await?.map(|object| (resource, object))
            }
            None => None,
        };
        let body = serde_json::to_vec(&json!({
            "EventType": notification.event_type,
            "RessourceId": notification.ressource_id,
            "Date": notification.date,
            "Resource": resource.as_ref().map(|(_, object)| object),
        }))
        .expect("JSON serialises");
        let id = notification.event_id();
        let kind = notification.event_type.clone();
        let received = match (Resource::of(&notification.event_type), resource) {
            (None, _) => Received::read(id, kind, Ok(vec![Event::Other]), &body),
            (Some(_), None) => Received::read(id, kind, Ok(vec![Event::Other]), &body).noting(NOT_OURS),
            (Some(_), Some((resource, object))) => {
                let meaning = meaning(resource, &object);
                let mut received = Received::read(id, kind, meaning.events, &body).naming(meaning.named);
                if let Some(note) = meaning.note {
                    received = received.noting(note);
                }
                received
            }
        };
        Ok((received, body))
    }
}

/// Why a notification is ignored when it names nothing of ours.
const NOT_OURS: &str = "not ours";

/// What a resource, as the API says it is, means to us.
struct Meaning {
    events: Result<Vec<Event>, String>,
    named: Vec<Named>,
    note: Option<String>,
}

impl Meaning {
    fn of(events: Vec<Event>) -> Meaning {
        Meaning {
            events: Ok(events),
            named: Vec::new(),
            note: None,
        }
    }

    /// Nothing to do, and why.
    fn nothing(note: impl Into<String>) -> Meaning {
        Meaning {
            note: Some(note.into()),
            ..Meaning::of(vec![Event::Other])
        }
    }

    /// For an operator to look at: stored quarantined with `why`, never applied.
    fn held(why: String) -> Meaning {
        Meaning {
            events: Err(why),
            named: Vec::new(),
            note: None,
        }
    }
}

/// The meaning of `object`, read back as `resource`, by its status, never by the event type the
/// hook claimed.
fn meaning(resource: Resource, object: &Value) -> Meaning {
    let id = object["Id"].as_str().unwrap_or_default().to_owned();
    let status = object["Status"].as_str().unwrap_or_default();
    let outcome = format!(
        "{} {}",
        object["ResultCode"].as_str().unwrap_or_default(),
        object["ResultMessage"].as_str().unwrap_or_default()
    );
    let mut meaning = match resource {
        // A dispute is Mangopay's, untagged; its pay-in says whose it is.
        Resource::Dispute => return dispute(object),
        // A payout that bounced back into the project's wallet is made by Mangopay, untagged:
        // our books say the project was paid, so an operator must look.
        Resource::Refund if object["InitialTransactionType"] == "PAYOUT" => {
            return if status == "SUCCEEDED" {
                Meaning::held(format!(
                    "payout {} bounced back into the project's wallet ({}): refund {id}",
                    object["InitialTransactionId"].as_str().unwrap_or_default(),
                    object["RefundReason"]["RefundReasonType"]
                        .as_str()
                        .unwrap_or("no reason given")
                ))
            } else {
                Meaning::nothing(format!("a payout's refund is {status}"))
            };
        }
        Resource::Refund if object["InitialTransactionType"] != "PAYIN" => {
            return Meaning::nothing("not a pay-in's refund");
        }
        _ => match ours(object) {
            None => return Meaning::nothing(NOT_OURS),
            Some(_) => match (resource, status) {
                (Resource::PayIn, "SUCCEEDED") => {
                    with_money(object, "DebitedFunds", |amount| Event::PaymentSucceeded {
                        payment_id: id.clone(),
                        amount,
                    })
                }
                (Resource::PayIn, "FAILED") => Meaning::of(vec![Event::PaymentFailed { payment_id: id.clone() }]),
                (Resource::PayOut, "SUCCEEDED") => with_money(object, "CreditedFunds", |amount| Event::PayoutPaid {
                    payout_id: id.clone(),
                    amount,
                }),
                (Resource::Refund, "SUCCEEDED") => {
                    with_money(object, "CreditedFunds", |amount| Event::RefundSucceeded {
                        refund_id: id.clone(),
                        amount,
                    })
                }
                // No event of ours says a payout or a refund failed: the money is back in its
                // wallet, and our row waits; an operator must decide.
                (Resource::PayOut | Resource::Refund, "FAILED") => Meaning::held(format!(
                    "Mangopay says the {} {id} FAILED: {}",
                    resource.path().trim_end_matches('s'),
                    outcome.trim()
                )),
                _ => Meaning::nothing(format!("Mangopay says it is {status}")),
            },
        },
    };
    if let Some((kind, ours)) = ours(object) {
        meaning.named = named(resource, kind, ours, &id).into_iter().collect();
    }
    meaning
}

/// The row of ours a tagged object is, by the tag our calls gave it.
fn named(resource: Resource, kind: &str, ours: Uuid, provider_id: &str) -> Option<Named> {
    let object = match (resource, kind) {
        (Resource::PayIn, "payment") => Object::Payment,
        (Resource::PayOut, "payout") => Object::Payout,
        (Resource::Refund, "refund") => Object::Refund,
        _ => return None,
    };
    Some(Named {
        object,
        ours,
        provider_id: provider_id.to_owned(),
    })
}

/// An event carrying the money in `field` (`{"Currency", "Amount"}` in minor units); one that
/// cannot be read is quarantined, as the amount cannot be checked against ours.
fn with_money(object: &Value, field: &str, event: impl FnOnce(Money) -> Event) -> Meaning {
    match read_money(&object[field]) {
        Ok(amount) => Meaning::of(vec![event(amount)]),
        Err(why) => Meaning::held(format!("{field}: {why}")),
    }
}

fn read_money(funds: &Value) -> Result<Money, String> {
    let minor = funds["Amount"].as_i64().ok_or("no integer Amount")?;
    from_minor(minor, funds["Currency"].as_str().ok_or("no Currency")?)
}

/// A dispute of a card pay-in, by the pay-in's id, for `DisputedFunds`: open
/// (`PaymentDisputed`), or closed (`DisputeClosed`: `LOST` is lost; `WON` and `VOID`, where no
/// money was taken, are won), unless it is a mere retrieval request, which takes no money.
fn dispute(object: &Value) -> Meaning {
    if object["DisputeType"] == "RETRIEVAL" {
        return Meaning::nothing("a retrieval request takes no money");
    }
    let (Some(payin), Some(dispute)) = (object["InitialTransactionId"].as_str(), object["Id"].as_str()) else {
        return Meaning::held("a dispute without its id or its pay-in".into());
    };
    let (payment_id, dispute_id) = (payin.to_owned(), dispute.to_owned());
    if object["Status"] != "CLOSED" {
        return with_money(object, "DisputedFunds", |amount| Event::PaymentDisputed {
            payment_id,
            dispute_id,
            amount,
        });
    }
    let lost = match object["ResultCode"].as_str() {
        Some("LOST") => true,
        Some("WON" | "VOID") => false,
        other => return Meaning::nothing(format!("the dispute closed {}", other.unwrap_or("without a result"))),
    };
    with_money(object, "DisputedFunds", |amount| Event::DisputeClosed {
        payment_id,
        dispute_id,
        amount,
        lost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn eur(s: &str) -> Money {
        Money::new(s.parse().unwrap(), Currency::EUR).unwrap()
    }

    #[test]
    fn a_notification_is_checked_before_anything_is_asked() {
        let n = Notification::parse("EventType=PAYIN_NORMAL_SUCCEEDED&RessourceId=payin_m_01AB&Date=1764000000&x=1")
            .unwrap();
        assert_eq!(n.event_id(), "PAYIN_NORMAL_SUCCEEDED:payin_m_01AB:1764000000");
        for bad in [
            "",
            "EventType=payin&RessourceId=1&Date=1",
            "EventType=PAYIN_NORMAL_SUCCEEDED&Date=1",
            "EventType=PAYIN_NORMAL_SUCCEEDED&RessourceId=..%2Fusers%2F1&Date=1",
            "EventType=PAYIN_NORMAL_SUCCEEDED&RessourceId=1&Date=yesterday",
            "EventType=PAYIN_NORMAL_SUCCEEDED&ResourceId=1&Date=1",
        ] {
            assert!(Notification::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!(
            "EventType=PAYIN_NORMAL_SUCCEEDED&RessourceId={}&Date=1",
            "x".repeat(129)
        );
        assert!(Notification::parse(&long).is_err());
    }

    #[test]
    fn the_api_says_what_happened_not_the_hook() {
        let ours = Uuid::from_u128(9);
        let payin = |status: &str| {
            json!({"Id": "payin_m_1", "Status": status, "Tag": format!("crowdledger:payment:{ours}"),
                   "DebitedFunds": {"Currency": "EUR", "Amount": 12050},
                   "CreditedFunds": {"Currency": "EUR", "Amount": 12050}})
        };
        let paid = meaning(Resource::PayIn, &payin("SUCCEEDED"));
        assert_eq!(
            paid.events,
            Ok(vec![Event::PaymentSucceeded {
                payment_id: "payin_m_1".into(),
                amount: eur("120.50")
            }])
        );
        assert_eq!(
            paid.named,
            vec![Named {
                object: Object::Payment,
                ours,
                provider_id: "payin_m_1".into()
            }]
        );
        assert_eq!(
            meaning(Resource::PayIn, &payin("FAILED")).events,
            Ok(vec![Event::PaymentFailed {
                payment_id: "payin_m_1".into()
            }])
        );
        let waiting = meaning(Resource::PayIn, &payin("CREATED"));
        assert_eq!(waiting.events, Ok(vec![Event::Other]));
        let mut foreign = payin("SUCCEEDED");
        foreign["Tag"] = json!("someone-else:42");
        let foreign = meaning(Resource::PayIn, &foreign);
        assert_eq!(
            (foreign.events, foreign.note.as_deref()),
            (Ok(vec![Event::Other]), Some(NOT_OURS))
        );
    }

    #[test]
    fn payouts_refunds_and_disputes_map_onto_our_events_or_an_operator() {
        let ours = Uuid::from_u128(3);
        let payout = json!({"Id": "payout_m_1", "Status": "SUCCEEDED", "Tag": format!("crowdledger:payout:{ours}"),
                            "DebitedFunds": {"Currency": "EUR", "Amount": 19000},
                            "CreditedFunds": {"Currency": "EUR", "Amount": 19000}});
        assert_eq!(
            meaning(Resource::PayOut, &payout).events,
            Ok(vec![Event::PayoutPaid {
                payout_id: "payout_m_1".into(),
                amount: eur("190.00")
            }])
        );
        let mut failed = payout.clone();
        failed["Status"] = json!("FAILED");
        failed["ResultCode"] = json!("121999");
        assert!(
            meaning(Resource::PayOut, &failed)
                .events
                .unwrap_err()
                .contains("121999")
        );
        let refund = json!({"Id": "refund_m_1", "Status": "SUCCEEDED", "Tag": format!("crowdledger:refund:{ours}"),
                            "InitialTransactionType": "PAYIN", "CreditedFunds": {"Currency": "EUR", "Amount": 500}});
        assert_eq!(
            meaning(Resource::Refund, &refund).events,
            Ok(vec![Event::RefundSucceeded {
                refund_id: "refund_m_1".into(),
                amount: eur("5.00")
            }])
        );
        let bounced = json!({"Id": "refund_m_2", "Status": "SUCCEEDED", "Tag": null, "InitialTransactionType": "PAYOUT",
                             "InitialTransactionId": "payout_m_1",
                             "RefundReason": {"RefundReasonType": "BANKACCOUNT_HAS_BEEN_CLOSED"}});
        assert!(
            meaning(Resource::Refund, &bounced)
                .events
                .unwrap_err()
                .contains("BANKACCOUNT_HAS_BEEN_CLOSED")
        );
        let dispute = json!({"Id": "dispute_m_1", "Status": "PENDING_CLIENT_ACTION", "DisputeType": "CONTESTABLE",
                             "InitialTransactionId": "payin_m_1", "DisputedFunds": {"Currency": "EUR", "Amount": 12050}});
        assert_eq!(
            meaning(Resource::Dispute, &dispute).events,
            Ok(vec![Event::PaymentDisputed {
                payment_id: "payin_m_1".into(),
                dispute_id: "dispute_m_1".into(),
                amount: eur("120.50")
            }])
        );
        let mut lost = dispute.clone();
        lost["Status"] = json!("CLOSED");
        lost["ResultCode"] = json!("LOST");
        assert_eq!(
            meaning(Resource::Dispute, &lost).events,
            Ok(vec![Event::DisputeClosed {
                payment_id: "payin_m_1".into(),
                dispute_id: "dispute_m_1".into(),
                amount: eur("120.50"),
                lost: true
            }])
        );
        let mut retrieval = dispute;
        retrieval["DisputeType"] = json!("RETRIEVAL");
        assert_eq!(meaning(Resource::Dispute, &retrieval).events, Ok(vec![Event::Other]));
        assert_eq!(Resource::of("TRANSFER_NORMAL_SUCCEEDED"), None);
        assert_eq!(Resource::of("PAYIN_REPUDIATION_CREATED"), None);
    }
}
