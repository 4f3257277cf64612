//! Pledges: an investor's commitment to buy shares in an offer, and the money behind it.

pub mod batcher;
pub mod http;
pub mod rules;
pub mod store;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::money::Money;

/// A non-sophisticated investor may revoke a pledge this long after making it (ECSP art. 22).
pub const REFLECTION_PERIOD_DAYS: i64 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "pledge_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum PledgeStatus {
    PendingPayment,
    Funded,
    Allocated,
    Refunded,
    Cancelled,
    Revoked,
}

#[derive(Clone, Debug)]
pub struct Pledge {
    pub id: Uuid,
    pub offer_id: Uuid,
    pub investor_id: Uuid,
    pub seq: i64,
    pub shares: i64,
    pub amount: Money,
    pub funding: serde_json::Value,
    pub card_amount: Decimal,
    pub status: PledgeStatus,
    pub risk_acknowledged: bool,
    pub reflection_ends_at: Option<DateTime<Utc>>,
    pub payment_due_at: DateTime<Utc>,
    pub allocated_shares: Option<i64>,
    pub refunded_amount: Option<Decimal>,
    pub created_at: DateTime<Utc>,
    pub funded_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}
