//! The cap table of a succeeded round: each investor's allocated shares and their price, as
//! JSON or as CSV (for the API and `crowdledger export cap-table`).

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{OfferError, OfferStatus, store};

#[derive(Serialize, ToSchema)]
pub(crate) struct CapTableLine {
    investor_id: Uuid,
    investor_name: String,
    shares: i64,
    amount: String,
}

#[derive(Serialize, ToSchema)]
pub struct CapTable {
    offer_id: Uuid,
    currency: String,
    share_price: String,
    total_shares: i64,
    total_amount: String,
    investors: Vec<CapTableLine>,
}

impl CapTable {
    pub fn investor_count(&self) -> usize {
        self.investors.len()
    }

    pub fn total_shares(&self) -> i64 {
        self.total_shares
    }
}

/// The cap table of a succeeded offer (used by the API and `crowdledger export cap-table`).
pub async fn build(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<CapTable, OfferError> {
    let offer = store::get(conn, id).await?.ok_or(OfferError::NotFound(id))?;
    if offer.status != OfferStatus::Succeeded {
        return Err(OfferError::NotSucceeded);
    }
    let rows: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "select p.investor_id, i.name, sum(p.allocated_shares)::bigint
           from pledges p join investors i on i.id = p.investor_id
          where p.offer_id = $1 and p.allocated_shares > 0
          group by p.investor_id, i.name
          order by min(p.seq)",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    let total_shares: i64 = rows.iter().map(|r| r.2).sum();
    Ok(CapTable {
        offer_id: id,
        currency: offer.currency.code().to_string(),
        share_price: offer.share_price.amount_string(),
        total_shares,
        total_amount: offer.price_of(total_shares).amount_string(),
        investors: rows
            .into_iter()
            .map(|(investor_id, investor_name, shares)| CapTableLine {
                investor_id,
                investor_name,
                shares,
                amount: offer.price_of(shares).amount_string(),
            })
            .collect(),
    })
}

/// RFC 4180 CSV; a field that a spreadsheet would run as a formula is guarded
/// ([`crate::fields::csv_field`]).
pub fn csv(table: &CapTable) -> String {
    use crate::fields::csv_field as field;
    let mut out = String::from("investor_id,investor_name,shares,amount,currency\r\n");
    for line in &table.investors {
        out.push_str(&format!(
            "{},{},{},{},{}\r\n",
            line.investor_id,
            field(&line.investor_name),
            line.shares,
            line.amount,
            table.currency
        ));
    }
    out
}
