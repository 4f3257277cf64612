//! The cap table of a succeeded round: each investor's allocated shares and their price, as
//! JSON or as CSV (for the API and `crowdledger export cap-table`).

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{OfferError, OfferStatus, store};

/// Who holds a line's shares: an investor, or a sponsor whose pool matched pledges
/// (docs/matchfunding.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Holder {
    Investor,
    Sponsor,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CapTableLine {
    pub(crate) holder: Holder,
    /// The holder's id: the investor's, or on a `sponsor` line the sponsor's.
    pub(crate) investor_id: Uuid,
    /// The holder's name.
    pub(crate) investor_name: String,
    pub(crate) shares: i64,
    pub(crate) amount: String,
}

#[derive(Serialize, ToSchema)]
pub struct CapTable {
    offer_id: Uuid,
    pub(crate) currency: String,
    share_price: String,
    total_shares: i64,
    pub(crate) total_amount: String,
    pub(crate) investors: Vec<CapTableLine>,
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
    // Investors in the order of their first pledge, then sponsors in the order of their first
    // match's pledge.
    let rows: Vec<(bool, Uuid, String, i64)> = sqlx::query_as(
        "select * from (
           select false as sponsor, p.investor_id, i.name, sum(p.allocated_shares)::bigint as shares, min(p.seq) as seq
             from pledges p join investors i on i.id = p.investor_id
            where p.offer_id = $1 and p.allocated_shares > 0
            group by p.investor_id, i.name
           union all
           select true, s.id, s.name, sum(m.allocated_shares)::bigint, min(pl.seq)
             from matches m join match_pools mp on mp.id = m.pool_id join sponsors s on s.id = mp.sponsor_id
             join pledges pl on pl.id = m.pledge_id
            where m.offer_id = $1 and m.allocated_shares > 0
            group by s.id, s.name) t
          order by sponsor, seq",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    let rows: Vec<(Holder, Uuid, String, i64)> = rows
        .into_iter()
        .map(|(sponsor, id, name, shares)| {
            let holder = if sponsor { Holder::Sponsor } else { Holder::Investor };
            (holder, id, name, shares)
        })
        .collect();
    let total_shares: i64 = rows.iter().map(|r| r.3).sum();
    Ok(CapTable {
        offer_id: id,
        currency: offer.currency.code().to_string(),
        share_price: offer.share_price.amount_string(),
        total_shares,
        total_amount: offer.price_of(total_shares).amount_string(),
        investors: rows
            .into_iter()
            .map(|(holder, investor_id, investor_name, shares)| CapTableLine {
                holder,
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
    // `holder` last, so files read by column position before matchfunding read the same.
    let mut out = String::from("investor_id,investor_name,shares,amount,currency,holder\r\n");
    for line in &table.investors {
        out.push_str(&format!(
            "{},{},{},{},{},{}\r\n",
            line.investor_id,
            field(&line.investor_name),
            line.shares,
            line.amount,
            table.currency,
            match line.holder {
                Holder::Investor => "investor",
                Holder::Sponsor => "sponsor",
            }
        ));
    }
    out
}
