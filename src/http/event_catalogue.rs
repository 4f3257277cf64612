//! The event catalogue in the OpenAPI document: one entry per event type in its `webhooks`
//! section (OpenAPI 3.1), a POST whose body is `{id, type, created_at, data}` with that type's
//! `data` schema. The data is written where each change happens (`outbox::emit` calls in the
//! domains); these types only describe it, and `tests/api/events.rs` checks every event a real
//! round stores against them, so the document cannot drift from what is sent.
// Described, never built: the events' data is serialised where they are emitted.
#![expect(dead_code, reason = "schemas for the OpenAPI document only")]

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use utoipa::openapi::OpenApi;
use utoipa::{Modify, OpenApi as _, ToSchema};
use uuid::Uuid;

use crate::offers::OfferStatus;
use crate::outbox::EventType;
use crate::pledges::PledgeStatus;

/// `offer.opened`.
#[derive(ToSchema)]
pub(crate) struct OfferOpenedData {
    offer_id: Uuid,
    project_id: Uuid,
    status: OfferStatus,
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
}

/// `offer.closing`, `offer.succeeded`, `offer.failed`, `offer.cancelled`: the offer's new status.
#[derive(ToSchema)]
pub(crate) struct OfferData {
    offer_id: Uuid,
    project_id: Uuid,
    status: OfferStatus,
}

/// `pledge.created`, `pledge.funded`, `pledge.revoked`, `pledge.cancelled`,
/// `pledge.reconfirmation_required`, `pledge.reconfirmed`: the pledge and its status.
#[derive(ToSchema)]
pub(crate) struct PledgeData {
    pledge_id: Uuid,
    offer_id: Uuid,
    investor_id: Uuid,
    shares: i64,
    /// The pledge's whole amount, card and cheques.
    #[schema(example = "200.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    status: PledgeStatus,
    /// `pledge.reconfirmation_required`: until when the investor may reconfirm the pledge under
    /// the amended KIIS.
    reconfirm_by: Option<DateTime<Utc>>,
    /// `pledge.reconfirmed`: the KIIS the investor reconfirmed it under.
    kiis_sha256: Option<String>,
    /// Why a pledge ended, when it was not the investor's nor the round's doing:
    /// `not_reconfirmed` (the KIIS was amended and the pledge not reconfirmed in time).
    reason: Option<String>,
}

/// `offer.amended`: a new version of the offer's Key Investment Information Sheet while it is
/// open. Its live pledges of non-sophisticated investors must be reconfirmed by `reconfirm_by`
/// (each gets `pledge.reconfirmation_required`), or they are revoked and refunded.
#[derive(ToSchema)]
pub(crate) struct OfferAmendedData {
    offer_id: Uuid,
    project_id: Uuid,
    status: OfferStatus,
    /// The new version.
    document_id: Uuid,
    language: String,
    url: String,
    sha256: String,
    /// The version it replaces.
    supersedes: Uuid,
    reconfirm_by: DateTime<Utc>,
    /// How many pledges must be reconfirmed.
    pledges_to_reconfirm: i64,
}

/// `pledge.refunded`: money of a funded pledge given back. In full when its round failed or was
/// cancelled (status `refunded`, no allocation fields); in part after a round's allocation
/// (status `allocated` with the shares it kept, or `refunded` with none), with the money given
/// back in `refunded_amount`.
#[derive(ToSchema)]
pub(crate) struct PledgeRefundedData {
    pledge_id: Uuid,
    offer_id: Uuid,
    investor_id: Uuid,
    /// The shares pledged.
    shares: i64,
    #[schema(example = "200.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    status: PledgeStatus,
    /// After an allocation: the shares the pledge got.
    allocated_shares: Option<i64>,
    /// After an allocation: the money given back.
    #[schema(example = "50.00")]
    refunded_amount: Option<String>,
}

/// Where a card payment is at its provider.
#[derive(ToSchema)]
pub(crate) struct ProviderPayment {
    #[schema(example = "sandbox")]
    provider: String,
    /// The provider's id of the payment.
    payment_id: String,
}

/// `pledge.disputed`: the investor disputed the card payment of a pledge with their bank.
#[derive(ToSchema)]
pub(crate) struct PledgeDisputedData {
    pledge_id: Uuid,
    offer_id: Uuid,
    investor_id: Uuid,
    payment: ProviderPayment,
    /// The amount disputed.
    #[schema(example = "200.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
}

/// `dispute.won`, `dispute.lost`: the bank decided a dispute of a pledge's card payment.
#[derive(ToSchema)]
pub(crate) struct DisputeData {
    /// Our id for the dispute.
    dispute_id: Uuid,
    pledge_id: Uuid,
    offer_id: Uuid,
    investor_id: Uuid,
    payment: ProviderPayment,
    /// The provider's id for the dispute (Stripe's `dp_…`).
    #[schema(example = "dp_1Q2w3E4r5T6y")]
    provider_dispute_id: String,
    /// The amount disputed: all of the payment or part of it.
    #[schema(example = "200.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    status: crate::payments::disputes::DisputeStatus,
    opened_at: DateTime<Utc>,
    closed_at: DateTime<Utc>,
    /// Lost only: the ledger entry (`dispute.lost`) that took the money back out of the
    /// provider's account (docs/disputes.md says from where).
    lost_entry_id: Option<Uuid>,
}

/// `payment.late`: card money captured after its pledge had ended (its payment window lapsed,
/// its round closed, or the provider had declared the payment failed). It is booked and owed
/// straight back: `refund_id` is the refund that returns it.
#[derive(ToSchema)]
pub(crate) struct PaymentLateData {
    pledge_id: Uuid,
    offer_id: Uuid,
    investor_id: Uuid,
    payment: ProviderPayment,
    #[schema(example = "200.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    /// `payment_after_pledge_ended` or `payment_after_failure`.
    #[schema(example = "payment_after_pledge_ended")]
    reason: String,
    refund_id: Uuid,
}

/// `cheque.issued`.
#[derive(ToSchema)]
pub(crate) struct ChequeIssuedData {
    cheque_id: Uuid,
    sponsor_id: Uuid,
    #[schema(example = "100.00")]
    face_value: String,
    #[schema(example = "EUR")]
    currency: String,
    expires_at: DateTime<Utc>,
}

/// `cheque.redeemed`: part of a cheque spent in a pledge.
#[derive(ToSchema)]
pub(crate) struct ChequeRedeemedData {
    cheque_id: Uuid,
    pledge_id: Uuid,
    offer_id: Uuid,
    /// Spent in this pledge.
    #[schema(example = "50.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    /// What is left on the cheque.
    #[schema(example = "50.00")]
    balance: String,
}

/// `cheque.expired`, `cheque.cancelled`: the cheque ended; what was left on it went back to its
/// sponsor's budget.
#[derive(ToSchema)]
pub(crate) struct ChequeEndedData {
    cheque_id: Uuid,
    sponsor_id: Uuid,
    #[schema(example = "50.00")]
    returned_to_budget: String,
    #[schema(example = "EUR")]
    currency: String,
}

/// `deposit.succeeded`: a sponsor's deposit arrived; its budget grew by `amount`.
#[derive(ToSchema)]
pub(crate) struct DepositSucceededData {
    deposit_id: Uuid,
    sponsor_id: Uuid,
    #[schema(example = "1000.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
}

/// `withdrawal.requested`, `withdrawal.paid`: unused budget paid back to a sponsor.
#[derive(ToSchema)]
pub(crate) struct WithdrawalData {
    withdrawal_id: Uuid,
    sponsor_id: Uuid,
    #[schema(example = "500.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
}

/// `payout.created`, `payout.paid`: a payout of what a succeeded round's project is owed.
#[derive(ToSchema)]
pub(crate) struct PayoutData {
    payout_id: Uuid,
    offer_id: Uuid,
    project_id: Uuid,
    #[schema(example = "950.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
}

/// `endpoint.disabled`: a webhook endpoint's delivery exhausted its retries.
#[derive(ToSchema)]
pub(crate) struct EndpointDisabledData {
    endpoint_id: Uuid,
    url: String,
}

/// `cheque.expiring`: what is left on the cheque, and when it goes back to its sponsor.
#[derive(ToSchema)]
pub(crate) struct ChequeExpiringData {
    cheque_id: Uuid,
    sponsor_id: Uuid,
    #[schema(example = "1200.00")]
    balance: String,
    #[schema(example = "EUR")]
    currency: String,
    expires_at: DateTime<Utc>,
}

/// `match.applied`: a funded pledge matched from a sponsor's pool; the shares are held in the
/// sponsor's name and count toward the offer's targets.
#[derive(ToSchema)]
pub(crate) struct MatchAppliedData {
    match_id: Uuid,
    match_pool_id: Uuid,
    sponsor_id: Uuid,
    pledge_id: Uuid,
    offer_id: Uuid,
    project_id: Uuid,
    shares: i64,
    #[schema(example = "250.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
}

/// `match.returned`: matched money given back, to the pool while it is open, else to the
/// sponsor's budget.
#[derive(ToSchema)]
pub(crate) struct MatchReturnedData {
    match_id: Uuid,
    match_pool_id: Uuid,
    sponsor_id: Uuid,
    pledge_id: Uuid,
    offer_id: Uuid,
    #[schema(example = "250.00")]
    amount: String,
    #[schema(example = "EUR")]
    currency: String,
    /// `pool` or `sponsor`.
    #[schema(example = "pool")]
    to: String,
    /// `revoked`, `refunded`, `cancelled` or `not_allocated`.
    #[schema(example = "refunded")]
    reason: String,
}

/// `match_pool.ended`: a pool reached its expiry; what it still held went back to its sponsor.
#[derive(ToSchema)]
pub(crate) struct MatchPoolEndedData {
    match_pool_id: Uuid,
    sponsor_id: Uuid,
    #[schema(example = "1250.00")]
    returned: String,
    #[schema(example = "EUR")]
    currency: String,
}

/// Every data schema, with the schemas they use, for the document's components.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    OfferOpenedData,
    OfferData,
    OfferAmendedData,
    PledgeData,
    PledgeRefundedData,
    PledgeDisputedData,
    DisputeData,
    PaymentLateData,
    ChequeIssuedData,
    ChequeRedeemedData,
    ChequeEndedData,
    ChequeExpiringData,
    DepositSucceededData,
    WithdrawalData,
    PayoutData,
    MatchAppliedData,
    MatchReturnedData,
    MatchPoolEndedData,
    EndpointDisabledData,
    crate::payments::refunds::RefundView,
    EventType,
)))]
struct DataSchemas;

/// What each type's data is (its schema's name) and when it is emitted.
pub(crate) fn entry(event: EventType) -> (&'static str, &'static str) {
    match event {
        EventType::OfferOpened => (
            "OfferOpenedData",
            "An offer opened: it takes pledges until `closes_at`.",
        ),
        EventType::OfferClosing => (
            "OfferData",
            "An offer stopped taking pledges (closed by an operator or at its closing time); its funded pledges are being allocated.",
        ),
        EventType::OfferSucceeded => (
            "OfferData",
            "A round reached its minimum: shares allocated, money owed to the project.",
        ),
        EventType::OfferFailed => (
            "OfferData",
            "A round closed below its minimum: every funded pledge is refunded.",
        ),
        EventType::OfferCancelled => (
            "OfferData",
            "An operator cancelled an offer: unpaid pledges are cancelled, funded ones refunded.",
        ),
        EventType::OfferAmended => (
            "OfferAmendedData",
            "A new version of an open offer's Key Investment Information Sheet (ECSP art. 23): its live pledges of non-sophisticated investors must be reconfirmed by `reconfirm_by`, or they are revoked and refunded.",
        ),
        EventType::PledgeCreated => (
            "PledgeData",
            "An investor pledged; the pledge waits for its card payment.",
        ),
        EventType::PledgeFunded => (
            "PledgeData",
            "A pledge's money arrived (or cheques paid it all): it counts towards its round.",
        ),
        EventType::PledgeRevoked => (
            "PledgeData",
            "A funded pledge was revoked within its reflection period, or not reconfirmed in time after its offer's KIIS was amended (`reason`: `not_reconfirmed`): its money is given back.",
        ),
        EventType::PledgeCancelled => (
            "PledgeData",
            "An unpaid pledge ended: revoked, its payment declined or late, or its round closed or cancelled.",
        ),
        EventType::PledgeRefunded => (
            "PledgeRefundedData",
            "Money of a funded pledge was given back: all of it when its round failed or was cancelled, what was not allocated after a close.",
        ),
        EventType::PledgeDisputed => (
            "PledgeDisputedData",
            "The provider reported that the investor disputed a pledge's captured card payment with their bank (once per payment; `amount` is what is disputed). The pledge keeps its status and no money moves until the bank decides (`dispute.won`, `dispute.lost`): it shows `disputed_at`.",
        ),
        EventType::PledgeReconfirmationRequired => (
            "PledgeData",
            "The offer's KIIS was amended: the investor must reconfirm this pledge (`POST /v1/pledges/{id}/reconfirm`) by `reconfirm_by`, or it is revoked and its money given back.",
        ),
        EventType::PledgeReconfirmed => (
            "PledgeData",
            "The investor reconfirmed a pledge under the amended KIIS (`kiis_sha256`): it stands.",
        ),
        EventType::DisputeWon => (
            "DisputeData",
            "The bank decided a pledge's dispute for the platform (or it closed without a chargeback): no money moved, the pledge is as it was.",
        ),
        EventType::DisputeLost => (
            "DisputeData",
            "The bank decided a pledge's dispute for the investor and took `amount` back. While the pledge was funded its escrow gives the money up and the pledge is cancelled (its shares released, the rest of its money given back: `pledge.cancelled`); a refund still owed to it is cancelled instead of paid; money already settled or refunded is the platform's loss. See docs/disputes.md.",
        ),
        EventType::PaymentLate => (
            "PaymentLateData",
            "Card money arrived after its pledge had ended: it is booked and owed straight back (`refund_id`).",
        ),
        EventType::ChequeIssued => ("ChequeIssuedData", "A cheque was issued from its sponsor's budget."),
        EventType::ChequeRedeemed => ("ChequeRedeemedData", "Part or all of a cheque was spent in a pledge."),
        EventType::ChequeExpiring => (
            "ChequeExpiringData",
            "A cheque with money left expires within `cheques.expiring_notice_days` (14 by default): remind its winner. Sent once per cheque; not for a spent or ended one.",
        ),
        EventType::ChequeExpired => (
            "ChequeEndedData",
            "A cheque reached its expiry: what was left on it went back to its sponsor's budget.",
        ),
        EventType::ChequeCancelled => (
            "ChequeEndedData",
            "An operator cancelled a cheque: what was left on it went back to its sponsor's budget.",
        ),
        EventType::DepositSucceeded => ("DepositSucceededData", "A sponsor's deposit arrived: its budget grew."),
        EventType::WithdrawalRequested => (
            "WithdrawalData",
            "An operator withdrew unused budget for its sponsor: it left the budget at once and is asked of the provider.",
        ),
        EventType::WithdrawalPaid => ("WithdrawalData", "The provider paid a sponsor its withdrawal."),
        EventType::PayoutCreated => (
            "PayoutData",
            "A payout of what a succeeded round's project is owed was asked of the provider.",
        ),
        EventType::PayoutPaid => ("PayoutData", "The provider paid a project its payout."),
        EventType::MatchApplied => (
            "MatchAppliedData",
            "A funded pledge was matched from a sponsor's pool (`match:<pool> → escrow`): the matched money counts toward the offer's targets and its shares are held in the sponsor's name.",
        ),
        EventType::MatchReturned => (
            "MatchReturnedData",
            "Matched money was given back (its pledge revoked, refunded or cancelled, its round failed, or not all of it allocated): to the pool while it is open, else to the sponsor's budget.",
        ),
        EventType::MatchPoolEnded => (
            "MatchPoolEndedData",
            "A matchfunding pool reached its expiry: what it still held went back to its sponsor's budget.",
        ),
        EventType::EndpointDisabled => (
            "EndpointDisabledData",
            "A webhook endpoint was disabled: a delivery to it exhausted its retries.",
        ),
        EventType::RefundSucceeded => (
            "RefundView",
            "The provider confirmed a refund: the money is back on the investor's card. The data is the refund as `GET /v1/refunds/{id}` shows it.",
        ),
    }
}

/// The envelope of an event of type `event` whose data is the schema `data`.
fn envelope(event: EventType, data: &str) -> Value {
    json!({
        "type": "object",
        "required": ["id", "type", "created_at", "data"],
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "The event's id; the `webhook-id` header of its deliveries"},
            "type": {"type": "string", "enum": [event.as_str()]},
            "created_at": {"type": "string", "format": "date-time"},
            "data": {"$ref": format!("#/components/schemas/{data}")},
        },
    })
}

/// Adds the data schemas to the components and one webhook per event type.
pub(crate) struct EventWebhooks;

impl Modify for EventWebhooks {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        if let Some(schemas) = DataSchemas::openapi().components {
            components.schemas.extend(schemas.schemas);
        }
        let webhooks: serde_json::Map<String, Value> = EventType::ALL
            .iter()
            .map(|&event| {
                let (data, when) = entry(event);
                let operation = json!({
                    "post": {
                        "tags": ["events"],
                        "operationId": format!("event_{}", event.as_str().replace('.', "_")),
                        "summary": event.as_str(),
                        "description": format!("{when} Sent, signed (Standard Webhooks), to every active endpoint subscribed to `{}`; also listed by `GET /v1/events`.", event.as_str()),
                        "requestBody": {
                            "required": true,
                            "content": {"application/json": {"schema": envelope(event, data)}},
                        },
                        "responses": {
                            "2XX": {"description": "Received. Any other answer, or none within 15 s, is retried."},
                        },
                    },
                });
                (event.as_str().to_string(), operation)
            })
            .collect();
        // utoipa 5 has no `webhooks` field: an extension is serialised at the document's top
        // level under its own name, which is where OpenAPI 3.1 puts them.
        openapi
            .extensions
            .get_or_insert_with(Default::default)
            .insert("webhooks".into(), Value::Object(webhooks));
    }
}
