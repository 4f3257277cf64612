//! A pledge as the API shows it. Its own module because two callers render it: the handlers,
//! and the pledge batcher, which stores the exact response with the request's idempotency key.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Pledge, PledgeStatus};
use crate::money::format_amount;
use crate::payments::card::Payment;
use crate::payments::provider::PaymentRef;

#[derive(Serialize, ToSchema)]
pub(crate) struct PledgeView {
    id: Uuid,
    offer_id: Uuid,
    investor_id: Uuid,
    /// Arrival order: one sequence numbers every pledge of the service, so within an offer a
    /// later pledge has a larger `seq` (not a count: numbers between two of an offer's pledges
    /// went to other offers).
    seq: i64,
    status: PledgeStatus,
    shares: i64,
    amount: String,
    currency: String,
    /// Where the money comes from: the sources given, without a cheque's code.
    #[schema(value_type = Vec<FundingView>)]
    funding: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment: Option<PaymentRef>,
    /// When the investor disputed the card payment with their bank (`pledge.disputed`); shown
    /// with `payment`, absent while undisputed. The pledge's status does not change until the
    /// bank decides: a dispute lost while the pledge is funded cancels it (`dispute.lost`,
    /// docs/disputes.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    disputed_at: Option<DateTime<Utc>>,
    risk_acknowledged: bool,
    /// Until then a non-sophisticated investor may revoke the pledge; null for sophisticated ones.
    reflection_ends_at: Option<DateTime<Utc>>,
    payment_due_at: DateTime<Utc>,
    allocated_shares: Option<i64>,
    /// All the money given back to the pledge: card refunds (owed or paid, see `refunds`) and
    /// cheque money returned to its cheques. Its whole amount once revoked or refunded, the part
    /// not allocated after a round's close; null while nothing was given back.
    refunded_amount: Option<String>,
    /// The ids of the pledge's refunds (`GET /v1/refunds/{id}`), oldest first.
    refunds: Vec<Uuid>,
    /// Whether any money was given back, so whether `refunds` may need reading.
    #[serde(skip)]
    gave_back: bool,
    /// Whether it was ever reconfirmed, so whether its reconfirmations need reading.
    #[serde(skip)]
    reconfirmed: bool,
    created_at: DateTime<Utc>,
    funded_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    /// What the investor consented to when pledging (docs/investor-protection.md); it never
    /// changes. Null for pledges made before the ECSP gate.
    consent: Option<ConsentView>,
    /// Set while the investor must reconfirm the pledge under its offer's amended KIIS
    /// (`POST /v1/pledges/{id}/reconfirm`); at that time an unconfirmed pledge is revoked and
    /// its money given back. Null otherwise.
    reconfirm_by: Option<DateTime<Utc>>,
}

/// The consent a pledge was made under, and its reconfirmations after amendments.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConsentView {
    /// The SHA-256 of the offer's key investment information sheet the investor read.
    kiis_sha256: Option<String>,
    /// The version of the risk-warning text the investor acknowledged; null when the pledge
    /// needed no acknowledgement and made none.
    risk_warning_version: Option<String>,
    /// The appropriateness record (`GET /v1/investors/{id}/appropriateness`) a non-sophisticated
    /// investor's pledge was judged under; null for a sophisticated investor.
    appropriateness_id: Option<Uuid>,
    /// When the investor consented: the pledge's creation.
    acknowledged_at: DateTime<Utc>,
    /// Each reconfirmation under an amended KIIS, oldest first.
    reconfirmations: Vec<ReconfirmationView>,
}

/// A pledge reconfirmed under a KIIS version.
#[derive(Serialize, ToSchema)]
pub(crate) struct ReconfirmationView {
    kiis_sha256: String,
    reconfirmed_at: DateTime<Utc>,
}

/// One source of a pledge's money as kept: its kind and amount, and for a cheque which one.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the stored JSON is sent as it is
pub(crate) struct FundingView {
    kind: super::rules::FundingKind,
    amount: String,
    /// For `cheque` sources: the cheque spent.
    cheque_id: Option<Uuid>,
}

impl PledgeView {
    /// The view without its refunds' ids and reconfirmations ([`PledgeView::fill_lists`] reads them): a pledge just
    /// made has none, and the hot path of pledging reads nothing more.
    pub fn new(p: Pledge, payment: Option<Payment>) -> Self {
        let currency = p.amount.currency();
        PledgeView {
            id: p.id,
            offer_id: p.offer_id,
            investor_id: p.investor_id,
            seq: p.seq,
            status: p.status,
            shares: p.shares,
            amount: p.amount.amount_string(),
            currency: currency.code().to_string(),
            funding: p.funding,
            disputed_at: payment.as_ref().and_then(|pay| pay.disputed_at),
            payment: payment.map(|pay| {
                PaymentRef::new(pay.provider, pay.provider_payment_id).wired_to(pay.instructions.map(|i| i.0))
            }),
            risk_acknowledged: p.risk_acknowledged,
            reflection_ends_at: p.reflection_ends_at,
            payment_due_at: p.payment_due_at,
            allocated_shares: p.allocated_shares,
            refunded_amount: p.refunded_amount.map(|r| format_amount(r, currency)),
            refunds: Vec::new(),
            gave_back: p.refunded_amount.is_some_and(|r| r > Decimal::ZERO),
            consent: p.consent.kiis_sha256.is_some().then(|| ConsentView {
                kiis_sha256: p.consent.kiis_sha256,
                risk_warning_version: p.consent.risk_warning_version,
                appropriateness_id: p.consent.appropriateness_id,
                acknowledged_at: p.created_at,
                reconfirmations: Vec::new(),
            }),
            reconfirm_by: p.reconfirm_by,
            reconfirmed: p.reconfirmed_at.is_some(),
            created_at: p.created_at,
            funded_at: p.funded_at,
            ended_at: p.ended_at,
        }
    }

    /// The view with the secret the investor's front-end confirms its card payment with, for the
    /// answer to the pledge's creation only (never stored).
    pub(crate) fn with_client_secret(mut self, secret: Option<secrecy::SecretString>) -> Self {
        use secrecy::ExposeSecret;
        if let Some(payment) = self.payment.as_mut() {
            payment.client_secret = secret.map(|s| s.expose_secret().to_owned());
        }
        self
    }

    /// The view with the page the investor pays on (Mangopay's hosted card page), for the answer
    /// to the pledge's creation only (never stored).
    pub(crate) fn with_redirect_url(mut self, url: Option<String>) -> Self {
        if let Some(payment) = self.payment.as_mut() {
            payment.redirect_url = url;
        }
        self
    }

    /// Reads what a list shows beyond the pledges' rows: the refunds' ids of those given money
    /// back, and the reconfirmations of those reconfirmed; one query for each, none when no
    /// pledge needs it.
    pub(crate) async fn fill_lists(conn: &mut PgConnection, views: &mut [PledgeView]) -> sqlx::Result<()> {
        let ids: Vec<Uuid> = views.iter().filter(|v| v.gave_back).map(|v| v.id).collect();
        if !ids.is_empty() {
            let mut refunds = crate::payments::refunds::ids_by_pledge(conn, &ids).await?;
            for view in views.iter_mut() {
                view.refunds = refunds.remove(&view.id).unwrap_or_default();
            }
        }
        let ids: Vec<Uuid> = views.iter().filter(|v| v.reconfirmed).map(|v| v.id).collect();
        if !ids.is_empty() {
            let mut by_pledge: std::collections::HashMap<Uuid, Vec<ReconfirmationView>> = Default::default();
            for r in super::store::reconfirmations(conn, &ids).await? {
                by_pledge.entry(r.pledge_id).or_default().push(ReconfirmationView {
                    kiis_sha256: r.kiis_sha256,
                    reconfirmed_at: r.reconfirmed_at,
                });
            }
            for view in views.iter_mut() {
                if let Some(consent) = view.consent.as_mut() {
                    consent.reconfirmations = by_pledge.remove(&view.id).unwrap_or_default();
                }
            }
        }
        Ok(())
    }

    /// [`PledgeView::new`] with its refunds' ids and reconfirmations.
    pub(crate) async fn read(conn: &mut PgConnection, p: Pledge, payment: Option<Payment>) -> sqlx::Result<Self> {
        let mut view = [PledgeView::new(p, payment)];
        PledgeView::fill_lists(conn, &mut view).await?;
        let [view] = view;
        Ok(view)
    }
}
