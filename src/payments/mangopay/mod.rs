//! Mangopay, the European e-money provider built for crowdfunding escrow (PRODUCT.md section 10,
//! docs/mangopay.md): investors pay by card on Mangopay's hosted page into one escrow wallet per
//! offer, owned by the project; a failed round's money goes back by pay-in refunds; a succeeded
//! round's leaves the escrow by a transfer and reaches the project's bank by a payout.
//!
//! Outbound (`client`, `token`, `calls`): queued calls made after commit, like Stripe's. Inbound
//! (`hooks`): unsigned notifications, read back from the API before anything is believed.

mod calls;
pub mod client;
pub mod hooks;
mod token;

use axum::http::HeaderMap;
use serde_json::Value;
use uuid::Uuid;

use super::PaymentError;
use super::provider::{Object, PaymentProvider, ProviderError, Received, WebhookSecrets};
use crate::money::Money;

pub(crate) const MANGOPAY: &str = "mangopay";

/// Every object our calls create says whose it is: `crowdledger:<kind>:<our uuid>`.
const TAG_PREFIX: &str = "crowdledger";

pub struct Mangopay;

impl PaymentProvider for Mangopay {
    fn name(&self) -> &'static str {
        MANGOPAY
    }

    fn networked(&self) -> bool {
        true
    }

    /// Bank-wire pay-ins (`payins/bankwire/direct`), with the account and reference they show.
    fn takes_bank_transfers(&self) -> bool {
        true
    }

    fn needs_payee(&self) -> bool {
        true
    }

    fn create(&self, object: Object, _id: Uuid, _amount: Money) -> Result<String, ProviderError> {
        Err(ProviderError::Unsupported {
            provider: MANGOPAY,
            object,
            why: "Mangopay names its objects when it creates them, through a queued call (payments::calls)",
        })
    }

    /// Mangopay posts nothing: its notifications are GETs, read back (`hooks`).
    fn read_webhook(
        &self,
        _secrets: &WebhookSecrets<'_>,
        _headers: &HeaderMap,
        _body: &[u8],
        _now: i64,
    ) -> Result<Received, PaymentError> {
        Err(PaymentError::NotConfigured(MANGOPAY))
    }
}

/// The tag of an object made for our `kind` of row `id`.
fn tag(kind: &str, id: Uuid) -> String {
    format!("{TAG_PREFIX}:{kind}:{id}")
}

/// Which of our rows an object read from Mangopay is, by its tag; None for one that is not ours.
fn ours(object: &Value) -> Option<(&str, Uuid)> {
    let rest = object["Tag"].as_str()?.strip_prefix(TAG_PREFIX)?.strip_prefix(':')?;
    let (kind, id) = rest.split_once(':')?;
    Some((kind, id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_say_whose_an_object_is() {
        let id = Uuid::from_u128(42);
        let tagged = serde_json::json!({"Tag": tag("payment", id)});
        assert_eq!(ours(&tagged), Some(("payment", id)));
        for foreign in [
            serde_json::json!({"Tag": null}),
            serde_json::json!({"Tag": "crowdledger:payment:not-a-uuid"}),
            serde_json::json!({"Tag": format!("other:payment:{id}")}),
            serde_json::json!({}),
        ] {
            assert_eq!(ours(&foreign), None, "{foreign}");
        }
    }
}
