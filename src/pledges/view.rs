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
    created_at: DateTime<Utc>,
    funded_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
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
    /// The view without its refunds' ids ([`PledgeView::fill_refunds`] reads them): a pledge just
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

    /// Reads the refunds' ids of those views whose pledge was given money back: one query for
    /// them all, none when no pledge was.
    pub(crate) async fn fill_refunds(conn: &mut PgConnection, views: &mut [PledgeView]) -> sqlx::Result<()> {
        let ids: Vec<Uuid> = views.iter().filter(|v| v.gave_back).map(|v| v.id).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut refunds = crate::payments::refunds::ids_by_pledge(conn, &ids).await?;
        for view in views.iter_mut() {
            view.refunds = refunds.remove(&view.id).unwrap_or_default();
        }
        Ok(())
    }

    /// [`PledgeView::new`] with its refunds' ids.
    pub(crate) async fn read(conn: &mut PgConnection, p: Pledge, payment: Option<Payment>) -> sqlx::Result<Self> {
        let mut view = [PledgeView::new(p, payment)];
        PledgeView::fill_refunds(conn, &mut view).await?;
        let [view] = view;
        Ok(view)
    }
}
