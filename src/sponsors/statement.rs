//! A sponsor's statement (PRODUCT.md section 13): every move of its budget account, totalled by
//! kind of entry, and what its cheques were spent on. Read from the ledger on one snapshot, so the
//! lines, the totals and the closing balance are of one moment; the closing balance is checked
//! against the account's own balance before anything is answered.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::SponsorError;
use crate::books::{EntryKind, chart};
use crate::ledger::{self, AccountLine, Side};
use crate::money::{Currency, format_amount};

/// Each total is positive in its own direction; `closing_balance` = deposits − cheques_issued +
/// cheques_ended + given_back − withdrawn − match_pools_reserved + match_pools_returned + other.
#[derive(Serialize, ToSchema)]
pub(crate) struct Totals {
    /// Deposits the provider confirmed.
    #[schema(example = "10000.00")]
    deposits: String,
    /// Face values of the cheques issued.
    #[schema(example = "4000.00")]
    cheques_issued: String,
    /// What cheques still held when they expired or were cancelled.
    #[schema(example = "300.00")]
    cheques_ended: String,
    /// Money given back from pledges to cheques that had ended by then.
    #[schema(example = "50.00")]
    given_back: String,
    /// Withdrawals asked for (paid or still pending at the provider).
    #[schema(example = "1000.00")]
    withdrawn: String,
    /// Set aside in matchfunding pools (docs/matchfunding.md).
    #[schema(example = "0.00")]
    match_pools_reserved: String,
    /// Back from pools: what an ended pool held, and matches given back after it ended.
    #[schema(example = "0.00")]
    match_pools_returned: String,
    /// Net of postings of any other kind (+ into the budget), so none is ever left out.
    #[schema(example = "0.00")]
    other: String,
    /// What the budget holds: the ledger's balance of `sponsor:<id>:budget:<cur>`.
    #[schema(example = "5350.00")]
    closing_balance: String,
}

/// One posting on the budget account.
#[derive(Serialize, ToSchema)]
pub(crate) struct Line {
    /// The entry's business time.
    pub at: DateTime<Utc>,
    /// The entry's kind: `deposit.confirmed`, `cheque.issued`, `cheque.ended`,
    /// `cheque.returned_to_sponsor`, `withdrawal.requested`, `match_pool.reserved`, …
    #[schema(example = "cheque.issued")]
    pub kind: String,
    /// The entry's unique reference.
    pub reference: String,
    /// Signed: + into the budget, − out of it.
    #[schema(example = "-2000.00")]
    pub amount: String,
    /// The budget after this line.
    #[schema(example = "8000.00")]
    pub balance: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cheque_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deposit_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withdrawal_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_pool_id: Option<Uuid>,
}

/// What the sponsor's cheques were spent on in one offer.
#[derive(Serialize, ToSchema)]
pub(crate) struct RedeemedLine {
    project_id: Uuid,
    project_name: String,
    offer_id: Uuid,
    /// Spent by the sponsor's cheques in the offer's pledges.
    #[schema(example = "300.00")]
    spent: String,
    /// Given back from those pledges (a failed round, a revocation, shares not allocated): to
    /// the cheques, or to the budget once a cheque had ended.
    #[schema(example = "0.00")]
    given_back_to_cheques: String,
    /// The pledges those cheques paid (in part or in full).
    pledges: i64,
    /// The shares those pledges were allocated once the round succeeded; 0 otherwise.
    shares_allocated: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Statement {
    sponsor_id: Uuid,
    #[schema(example = "EUR")]
    pub currency: String,
    /// The service clock's time of the read.
    as_of: DateTime<Utc>,
    pub totals: Totals,
    /// Every posting on the budget account, by business time, then in the order recorded.
    pub lines: Vec<Line>,
    redeemed: Vec<RedeemedLine>,
}

/// Postings read per statement, at most, one page at a time.
const PAGE: i64 = 1000;

/// The statement of `sponsor_id` as of `now`, on one snapshot, each statement cancelled after
/// `timeout` (`database.read_statement_timeout_ms`).
pub(crate) async fn build(
    pool: &PgPool,
    timeout: Duration,
    sponsor_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Statement, SponsorError> {
    let mut tx = ledger::read_snapshot(pool, Some(timeout)).await?;
    let sponsor = super::require(&mut tx, sponsor_id).await?;
    let currency = sponsor.currency;
    let account = ledger::account_by_code(&mut tx, &chart::sponsor_budget_code(sponsor.id, currency)).await?;
    let mut postings: Vec<AccountLine> = Vec::new();
    if let Some(account) = &account {
        loop {
            let after = postings.last().map_or(0, |p| p.account_seq);
            let page = ledger::account_lines(&mut tx, account.id, after, PAGE).await?;
            let done = (page.len() as i64) < PAGE;
            postings.extend(page);
            if done {
                break;
            }
        }
    }
    let redeemed = redeemed_for(&mut tx, sponsor.id).await?;
    tx.commit().await?;

    postings.sort_by_key(|p| (p.effective_at, p.recorded_at, p.account_seq));
    let mut totals = Sums::default();
    let mut balance = Decimal::ZERO;
    let mut lines = Vec::with_capacity(postings.len());
    for p in postings {
        // The budget is a liability: credits grow it.
        let signed = match p.side {
            Side::Credit => p.amount.amount(),
            Side::Debit => -p.amount.amount(),
        };
        totals.add(&p.kind, signed);
        balance += signed;
        let id = |key: &str| {
            p.metadata
                .get(key)
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<Uuid>().ok())
        };
        lines.push(Line {
            at: p.effective_at,
            cheque_id: id("cheque_id"),
            deposit_id: id("deposit_id"),
            withdrawal_id: id("withdrawal_id"),
            match_pool_id: id("match_pool_id"),
            kind: p.kind,
            reference: p.reference,
            amount: format_amount(signed, currency),
            balance: format_amount(balance, currency),
        });
    }
    let held = account.map_or(Decimal::ZERO, |a| a.balance);
    if balance != held || totals.net() != balance {
        return Err(SponsorError::StatementMismatch {
            sponsor: sponsor.id,
            lines: balance,
            account: held,
        });
    }
    Ok(Statement {
        sponsor_id: sponsor.id,
        currency: currency.code().to_string(),
        as_of: now,
        totals: totals.shown(balance, currency),
        lines,
        redeemed: redeemed
            .into_iter()
            .map(|r| RedeemedLine {
                project_id: r.project_id,
                project_name: r.project_name,
                offer_id: r.offer_id,
                spent: format_amount(r.spent, currency),
                given_back_to_cheques: format_amount(r.given_back, currency),
                pledges: r.pledges,
                shares_allocated: r.shares_allocated,
            })
            .collect(),
    })
}

/// What a sponsor's cheques were spent on, per offer: see [`redeemed_for`].
#[derive(sqlx::FromRow)]
struct Redeemed {
    pub project_id: Uuid,
    pub project_name: String,
    pub offer_id: Uuid,
    /// Spent by the sponsor's cheques in the offer's pledges.
    pub spent: Decimal,
    /// Given back from those pledges (to the cheques, or to the budget once a cheque had ended).
    pub given_back: Decimal,
    pub pledges: i64,
    /// The shares allocated to those pledges once the round succeeded; 0 before, or if it failed.
    pub shares_allocated: i64,
}

/// Per project and offer, what `sponsor`'s cheques were spent on and the shares their pledges
/// were allocated; a pledge spending two of its cheques counts once. A report across the cheques',
/// pledges', offers' and projects' tables, read here on the statement's snapshot.
async fn redeemed_for(conn: &mut sqlx::PgConnection, sponsor: Uuid) -> sqlx::Result<Vec<Redeemed>> {
    sqlx::query_as(
        "with spent as (
            select r.pledge_id, sum(r.amount) as spent, sum(r.returned) as given_back
              from cheque_redemptions r join cheques c on c.id = r.cheque_id
             where c.sponsor_id = $1
             group by r.pledge_id)
         select o.project_id, pr.name as project_name, o.id as offer_id,
                sum(s.spent) as spent, sum(s.given_back) as given_back, count(*) as pledges,
                coalesce(sum(p.allocated_shares) filter (where o.status = 'succeeded'), 0)::bigint as shares_allocated
           from spent s
           join pledges p on p.id = s.pledge_id
           join offers o on o.id = p.offer_id
           join projects pr on pr.id = o.project_id
          group by o.project_id, pr.name, o.id
          order by min(p.created_at), o.id",
    )
    .bind(sponsor)
    .fetch_all(conn)
    .await
}

/// The totals as they add up, each positive in its own direction but `other`.
#[derive(Default)]
struct Sums {
    deposits: Decimal,
    cheques_issued: Decimal,
    cheques_ended: Decimal,
    given_back: Decimal,
    withdrawn: Decimal,
    match_pools_reserved: Decimal,
    match_pools_returned: Decimal,
    other: Decimal,
}

impl Sums {
    /// Counts a posting of `kind` moving `signed` into the budget (negative: out of it).
    fn add(&mut self, kind: &str, signed: Decimal) {
        let is = |k: EntryKind| k.as_str() == kind;
        if is(EntryKind::DepositConfirmed) {
            self.deposits += signed;
        } else if is(EntryKind::ChequeIssued) {
            self.cheques_issued -= signed;
        } else if is(EntryKind::ChequeEnded) {
            self.cheques_ended += signed;
        } else if is(EntryKind::ChequeReturnedToSponsor) {
            self.given_back += signed;
        } else if is(EntryKind::WithdrawalRequested) {
            self.withdrawn -= signed;
        } else if is(EntryKind::MatchPoolReserved) {
            self.match_pools_reserved -= signed;
        } else if is(EntryKind::MatchPoolReturned) {
            self.match_pools_returned += signed;
        } else {
            self.other += signed;
        }
    }

    fn net(&self) -> Decimal {
        self.deposits - self.cheques_issued + self.cheques_ended + self.given_back
            - self.withdrawn
            - self.match_pools_reserved
            + self.match_pools_returned
            + self.other
    }

    fn shown(&self, closing: Decimal, currency: Currency) -> Totals {
        let f = |d: Decimal| format_amount(d, currency);
        Totals {
            deposits: f(self.deposits),
            cheques_issued: f(self.cheques_issued),
            cheques_ended: f(self.cheques_ended),
            given_back: f(self.given_back),
            withdrawn: f(self.withdrawn),
            match_pools_reserved: f(self.match_pools_reserved),
            match_pools_returned: f(self.match_pools_returned),
            other: f(self.other),
            closing_balance: f(closing),
        }
    }
}

/// RFC 4180 CSV: one row per line, then a `closing_balance` row; text a spreadsheet would run as
/// a formula is guarded as in the cap table. Amounts are numbers, written as they are.
pub(crate) fn csv(statement: &Statement) -> String {
    use crate::fields::csv_field as field;
    let id = |id: Option<Uuid>| id.map(|u| u.to_string()).unwrap_or_default();
    let mut out =
        String::from("at,kind,reference,amount,balance,currency,cheque_id,deposit_id,withdrawal_id,match_pool_id\r\n");
    for line in &statement.lines {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\r\n",
            line.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            field(&line.kind),
            field(&line.reference),
            line.amount,
            line.balance,
            statement.currency,
            id(line.cheque_id),
            id(line.deposit_id),
            id(line.withdrawal_id),
            id(line.match_pool_id),
        ));
    }
    out.push_str(&format!(
        "{},closing_balance,,,{},{},,,,\r\n",
        statement.as_of.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        statement.totals.closing_balance,
        statement.currency
    ));
    out
}
