//! Our books against a provider's (`crowdledger reconcile`, docs/providers.md): each payment,
//! refund and payout made through the provider since a time is read back from it and compared
//! with ours, state and money. What differs is listed for a person to settle: a capture whose
//! event never reached us, a refund that failed there, a call that never got an answer. Read
//! only: it changes nothing here or there.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::payments::calls::{Remote, RemoteState};
use crate::payments::provider::Object;

/// Read-backs in flight at once: enough to be quick, few enough for a provider's rate limit.
const IN_FLIGHT: usize = 8;

/// One of our objects at the provider, and what differs.
#[derive(Debug, Serialize)]
pub struct Difference {
    pub object: &'static str,
    pub id: Uuid,
    pub provider_id: Option<String>,
    /// Ours: state, amount and currency.
    pub ours: String,
    /// The provider's, when it could be read.
    pub theirs: Option<String>,
    pub why: String,
}

/// What was compared, and what differs.
#[derive(Debug, Serialize)]
pub struct Report {
    pub provider: String,
    pub since: DateTime<Utc>,
    pub compared: usize,
    pub differences: Vec<Difference>,
}

/// One of our rows as compared.
#[derive(sqlx::FromRow)]
struct Ours {
    object: String,
    id: Uuid,
    provider_id: Option<String>,
    status: String,
    amount: Decimal,
    currency: String,
    /// The call that creates it, when it has not been named: its status and last error.
    call: Option<String>,
}

/// Compares every payment, refund and payout made through `provider` since `since` with what
/// `remote` says of it.
pub async fn reconcile(
    pool: &PgPool,
    remote: &dyn Remote,
    provider: &str,
    since: DateTime<Utc>,
) -> sqlx::Result<Report> {
    let rows: Vec<Ours> = sqlx::query_as(
        "with ours as (
             select 'payment' as object, id, provider_payment_id as provider_id, status::text, amount, currency, created_at
               from payments where provider = $1 and created_at >= $2
             union all
             select 'refund', id, provider_refund_id, status::text, amount, currency, created_at
               from refunds where provider = $1 and created_at >= $2
             union all
             select 'payout', id, provider_payout_id, status::text, amount, currency, created_at
               from payouts where provider = $1 and created_at >= $2)
         select o.object, o.id, o.provider_id, o.status, o.amount, o.currency,
                (select c.status::text || coalesce(' after ' || c.attempts || ' attempt(s): ' || c.last_error, '')
                   from provider_calls c where c.object_id = o.id and c.provider = $1
                  order by c.created_at desc limit 1) as call
           from ours o order by o.created_at, o.id",
    )
    .bind(provider)
    .bind(since)
    .fetch_all(pool)
    .await?;
    let compared = rows.len();
    let differences = futures::stream::iter(rows)
        .map(|ours| compare(remote, ours))
        .buffered(IN_FLIGHT)
        .filter_map(|d| async move { d })
        .collect()
        .await;
    Ok(Report {
        provider: provider.to_owned(),
        since,
        compared,
        differences,
    })
}

async fn compare(remote: &dyn Remote, ours: Ours) -> Option<Difference> {
    let object = match ours.object.as_str() {
        "payment" => Object::Payment,
        "refund" => Object::Refund,
        _ => Object::Payout,
    };
    let mut difference = Difference {
        object: object.noun(),
        id: ours.id,
        provider_id: ours.provider_id.clone(),
        ours: format!("{} {} {}", ours.status, ours.amount, ours.currency),
        theirs: None,
        why: String::new(),
    };
    let Some(provider_id) = &ours.provider_id else {
        // Never named: still being asked for, or given up on.
        let call = ours.call.unwrap_or_else(|| "no call queued".into());
        if call.starts_with("pending") {
            return None;
        }
        difference.why = format!("never created at the provider: {call}");
        return Some(difference);
    };
    let theirs = match remote.fetch(object, provider_id).await {
        Ok(theirs) => theirs,
        Err(err) => {
            difference.why = format!("could not be read back: {err}");
            return Some(difference);
        }
    };
    difference.theirs = Some(format!("{:?} {} {}", theirs.state, theirs.amount, theirs.currency).to_lowercase());
    let settled = matches!(ours.status.as_str(), "succeeded" | "paid");
    let why = match (settled, theirs.state) {
        (true, RemoteState::Succeeded)
            if (theirs.amount, theirs.currency.as_str()) != (ours.amount, ours.currency.as_str()) =>
        {
            "settled for another amount"
        }
        (true, RemoteState::Succeeded) => return None,
        (true, _) => "settled here, not at the provider",
        (false, RemoteState::Succeeded) => "settled at the provider, not here: an event we never applied",
        (false, RemoteState::Failed) if ours.status == "pending" => "failed at the provider, still pending here",
        (false, _) => return None,
    };
    difference.why = why.into();
    Some(difference)
}
