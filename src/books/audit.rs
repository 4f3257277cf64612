//! Proof of the books: the ledger's own invariants and the domain's (PRODUCT.md section 3),
//! checked by name on one snapshot. Serves `GET /v1/ledger/verify` and `crowdledger verify`.
//! The ledger knows no domain words, so the domain checks live here, not in `ledger`.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use super::EntryKind;
use crate::ledger::{self, CheckResult, LedgerError};

struct DomainCheck {
    name: &'static str,
    description: &'static str,
    /// One row per violation: a readable identifier of the offender.
    sql: &'static str,
}

const DOMAIN_CHECKS: &[DomainCheck] = &[
    DomainCheck {
        name: "escrow_matches_pledges",
        description: "each offer's escrow holds exactly the money of its funded pledges not yet refunded or settled, the cheque money reserved by its unpaid ones, and the sponsors' matches not yet settled or given back",
        sql: "select 'offer ' || o.id || ': escrow ' || coalesce(a.balance, 0) || ', pledges ' || coalesce(f.total, 0)
                     || ', matches ' || coalesce(m.total, 0)
                from offers o
                left join ledger_accounts a on a.code = 'offer:' || o.id || ':escrow'
                left join (select offer_id,
                                  sum(case when status = 'funded' then amount else amount - card_amount end) as total
                             from pledges where status in ('funded', 'pending_payment') group by offer_id) f
                       on f.offer_id = o.id
                left join (select offer_id, sum(amount) as total from matches where status = 'applied' group by offer_id) m
                       on m.offer_id = o.id
               where coalesce(a.balance, 0) <> coalesce(f.total, 0) + coalesce(m.total, 0)",
    },
    DomainCheck {
        name: "match_pools_balance",
        description: "each matchfunding pool's account holds what was reserved, less what it matched, plus what was given back to it, less what returned to its sponsor when it ended; and its entries say the same",
        sql: "with moves as (
                select a.code,
                       coalesce(sum(p.amount) filter (where e.kind = 'match_pool.reserved' and p.side = 'credit'), 0) as reserved,
                       coalesce(sum(p.amount) filter (where e.kind = 'match.applied' and p.side = 'debit'), 0) as matched,
                       coalesce(sum(p.amount) filter (where e.kind = 'match.returned' and p.side = 'credit'), 0) as given_back,
                       coalesce(sum(p.amount) filter (where e.kind = 'match_pool.returned' and p.side = 'debit'), 0) as returned
                  from ledger_accounts a
                  join ledger_postings p on p.account_id = a.id
                  join ledger_entries e on e.id = p.entry_id
                 where a.code like 'match:%'
                 group by a.code)
              select 'match pool ' || mp.id || ': balance ' || coalesce(a.balance, 0) || ', reserved ' || mp.amount
                     || ', matched ' || coalesce(m.matched, 0) || ', given back ' || coalesce(m.given_back, 0)
                     || ', returned ' || coalesce(mp.returned, 0)
                from match_pools mp
                left join ledger_accounts a on a.code = 'match:' || mp.id
                left join moves v on v.code = 'match:' || mp.id
                left join (select pool_id, sum(amount) as matched, sum(returned_to_pool) as given_back
                             from matches group by pool_id) m on m.pool_id = mp.id
               where coalesce(a.balance, 0)
                     <> mp.amount - coalesce(m.matched, 0) + coalesce(m.given_back, 0) - coalesce(mp.returned, 0)
                  or coalesce(v.reserved, 0) <> mp.amount
                  or coalesce(v.matched, 0) <> coalesce(m.matched, 0)
                  or coalesce(v.given_back, 0) <> coalesce(m.given_back, 0)
                  or coalesce(v.returned, 0) <> coalesce(mp.returned, 0)
                  or (mp.ended_at is not null and coalesce(a.balance, 0) <> 0)",
    },
    DomainCheck {
        name: "match_project_caps",
        description: "no matchfunding pool gave a project more than its max_per_project, nor a pledge more than its max_per_pledge",
        sql: "select 'match pool ' || mp.id || ', project ' || m.project_id || ': ' || sum(m.amount - m.returned_to_pool - m.returned_to_sponsor)
                from matches m join match_pools mp on mp.id = m.pool_id
               group by mp.id, mp.max_per_project, m.project_id
              having sum(m.amount - m.returned_to_pool - m.returned_to_sponsor) > mp.max_per_project
              union all
              select 'match ' || m.id || ': ' || m.amount || ' for one pledge'
                from matches m join match_pools mp on mp.id = m.pool_id
               where m.amount > mp.max_per_pledge",
    },
    DomainCheck {
        name: "payments_captured",
        description: "each succeeded card payment names the ledger entry that captured it, and each capture entry took from the provider exactly the money of the payments that name it",
        sql: "select 'payment ' || p.id || ': ' || p.status || ', capture entry ' || coalesce(p.captured_entry_id::text, 'none')
                from payments p left join ledger_entries e on e.id = p.captured_entry_id
               where (p.status = 'succeeded') <> (e.id is not null)
              union all
              select 'entry ' || e.reference || ': from the provider ' || coalesce(d.taken, 0)
                     || ', payments ' || coalesce(c.paid, 0)
                from ledger_entries e
                left join (select po.entry_id, sum(po.amount) as taken
                             from ledger_postings po join ledger_accounts a on a.id = po.account_id
                            where po.side = 'debit' and a.code like 'psp:%' group by po.entry_id) d on d.entry_id = e.id
                left join (select captured_entry_id, sum(amount) as paid from payments
                            where captured_entry_id is not null group by captured_entry_id) c
                       on c.captured_entry_id = e.id
               where e.kind in ('pledge.funded', 'payment.late') and coalesce(d.taken, 0) <> coalesce(c.paid, 0)",
    },
    DomainCheck {
        name: "refunds_owed",
        description: "each provider's refunds account holds exactly the refunds still owed through it (pending): paid ones left it, and ones a lost dispute cancelled went to the provider with the chargeback",
        sql: "with owed as (select 'refunds:' || provider || ':' || lower(currency) as code, sum(amount) as total
                              from refunds where status = 'pending' group by 1)
              select coalesce(a.code, o.code) || ': balance ' || coalesce(a.balance, 0) || ', refunds owed ' || coalesce(o.total, 0)
                from (select code, balance from ledger_accounts where code like 'refunds:%') a
                full join owed o on o.code = a.code
               where coalesce(a.balance, 0) <> coalesce(o.total, 0)",
    },
    DomainCheck {
        name: "withdrawals_owed",
        description: "each provider's withdrawals account holds exactly the sponsors' withdrawals still to be paid through it (pending)",
        sql: "with owed as (select 'withdrawals:' || provider || ':' || lower(currency) as code, sum(amount) as total
                              from withdrawals where status = 'pending' group by 1)
              select coalesce(a.code, o.code) || ': balance ' || coalesce(a.balance, 0) || ', withdrawals owed ' || coalesce(o.total, 0)
                from (select code, balance from ledger_accounts where code like 'withdrawals:%') a
                full join owed o on o.code = a.code
               where coalesce(a.balance, 0) <> coalesce(o.total, 0)",
    },
    DomainCheck {
        name: "disputes_booked",
        description: "each lost dispute names one dispute.lost entry, which took exactly its amount out of the provider's account, from its offer's escrow, the provider's refunds owed or the platform's losses; each such entry is named by one dispute; no other dispute names an entry",
        sql: "with moved as (
                select p.entry_id, count(*) filter (where p.side = 'credit') as credits,
                       min(a.code) filter (where p.side = 'credit') as credited,
                       sum(p.amount) filter (where p.side = 'credit') as taken,
                       min(p.currency) as currency, max(p.currency) as other_currency,
                       array_agg(a.code) filter (where p.side = 'debit') as debited
                  from ledger_postings p
                  join ledger_entries e on e.id = p.entry_id
                  join ledger_accounts a on a.id = p.account_id
                 where e.kind = 'dispute.lost'
                 group by p.entry_id)
              select 'dispute ' || d.id || ': ' || d.status || ', entry ' || coalesce(e.reference, d.lost_entry_id::text, 'none')
                from disputes d
                join payments pay on pay.id = d.payment_id
                join pledges pl on pl.id = pay.pledge_id
                left join ledger_entries e on e.id = d.lost_entry_id
                left join moved m on m.entry_id = e.id
               where (d.status = 'lost') <> (e.id is not null)
                  or (e.id is not null
                      and (e.kind <> 'dispute.lost' or m.credits is distinct from 1
                           or m.credited is distinct from 'psp:' || d.provider || ':' || lower(d.currency)
                           or m.taken is distinct from d.amount
                           or m.currency is distinct from d.currency or m.other_currency is distinct from d.currency
                           or not m.debited <@ array['offer:' || pl.offer_id || ':escrow',
                                                     'refunds:' || d.provider || ':' || lower(d.currency),
                                                     'platform:losses:' || lower(d.currency)]))
              union all
              select 'entry ' || e.reference || ': named by ' || count(d.id) || ' disputes'
                from ledger_entries e left join disputes d on d.lost_entry_id = e.id
               where e.kind = 'dispute.lost'
               group by e.id, e.reference
              having count(d.id) <> 1",
    },
    DomainCheck {
        name: "cheques_balance",
        description: "each cheque's balance = face value - spent + returned - expired/cancelled, an ended cheque holds nothing, and its redemptions match what the books say was spent",
        sql: "with moves as (
                select c.id as cheque_id, a.balance,
                       coalesce(sum(case when p.side = 'credit' then p.amount else -p.amount end)
                                filter (where e.kind = 'cheque.issued'), 0) as issued,
                       coalesce(sum(case when p.side = 'debit' then p.amount else -p.amount end)
                                filter (where e.kind = 'cheque.redeemed'), 0) as spent,
                       coalesce(sum(case when p.side = 'credit' then p.amount else -p.amount end)
                                filter (where e.kind = 'cheque.returned'), 0) as returned,
                       coalesce(sum(case when p.side = 'debit' then p.amount else -p.amount end)
                                filter (where e.kind = 'cheque.ended'), 0) as ended,
                       count(p.entry_id) filter (where e.kind not in
                             ('cheque.issued', 'cheque.redeemed', 'cheque.returned', 'cheque.ended')) as other
                  from cheques c
                  left join ledger_accounts a on a.code = 'cheque:' || c.id
                  left join ledger_postings p on p.account_id = a.id
                  left join ledger_entries e on e.id = p.entry_id
                 group by c.id, a.balance)
              select 'cheque ' || c.id || ': balance ' || coalesce(m.balance, 0) || ', face ' || c.face_value
                     || ' - spent ' || m.spent || ' + returned ' || m.returned || ' - ended ' || m.ended
                     || ', status ' || c.status || ', redeemed ' || coalesce(r.redeemed, 0)
                from cheques c
                join moves m on m.cheque_id = c.id
                left join (select cheque_id, sum(amount) as redeemed from cheque_redemptions group by cheque_id) r
                       on r.cheque_id = c.id
               where m.issued <> c.face_value
                  or coalesce(m.balance, 0) <> c.face_value - m.spent + m.returned - m.ended
                  or m.other <> 0
                  or (c.status <> 'active' and coalesce(m.balance, 0) <> 0)
                  or coalesce(r.redeemed, 0) <> m.spent",
    },
    DomainCheck {
        name: "shares_within_cap",
        description: "per offer, allocated shares are within the cap, and reserved shares are exactly those of its live and allocated pledges and sponsors' matches",
        sql: "select 'offer ' || o.id || ': reserved ' || o.shares_reserved || ', pledged ' || coalesce(p.held, 0)
                     || ', matched ' || coalesce(m.held, 0)
                     || ', allocated ' || coalesce(p.allocated, 0) + coalesce(m.allocated, 0) || ', cap ' || o.max_shares
                from offers o
                left join (select offer_id,
                                  sum(case when status in ('pending_payment', 'funded') then shares
                                           when status = 'allocated' then allocated_shares else 0 end) as held,
                                  sum(coalesce(allocated_shares, 0)) as allocated
                             from pledges group by offer_id) p on p.offer_id = o.id
                left join (select offer_id,
                                  sum(case status when 'applied' then shares when 'allocated' then allocated_shares
                                                  else 0 end) as held,
                                  sum(coalesce(allocated_shares, 0)) as allocated
                             from matches group by offer_id) m on m.offer_id = o.id
               where coalesce(p.allocated, 0) + coalesce(m.allocated, 0) > o.max_shares
                  or o.shares_reserved > o.reserve_limit
                  or o.shares_reserved <> coalesce(p.held, 0) + coalesce(m.held, 0)",
    },
];

/// Rows the provider settles, each naming the ledger entry that settled them (`payments` have
/// their own check above: a batch of captures shares one entry). One entry per row, of one kind,
/// moving exactly the row's amount from one account to another.
struct Settlement {
    name: &'static str,
    description: &'static str,
    /// The table, as `r`.
    table: &'static str,
    /// What the account codes below need besides `r`, e.g. `join offers o on …`.
    joins: &'static str,
    /// When a row is settled, in SQL over `r`.
    settled: &'static str,
    /// The column naming the entry (migration 0021).
    entry_column: &'static str,
    kind: EntryKind,
    /// The codes of the accounts debited and credited, in SQL over `r` and `joins`.
    debit: &'static str,
    credit: &'static str,
}

const SETTLEMENTS: &[Settlement] = &[
    Settlement {
        name: "refunds_paid",
        description: "each succeeded refund names the ledger entry that paid it back, which moved exactly its amount from the provider's refunds account to the provider's, and each such entry is named by one refund",
        table: "refunds",
        joins: "",
        settled: "r.status = 'succeeded'",
        entry_column: "paid_entry_id",
        kind: EntryKind::RefundPaid,
        debit: "'refunds:' || r.provider || ':' || lower(r.currency)",
        credit: "'psp:' || r.provider || ':' || lower(r.currency)",
    },
    Settlement {
        name: "payouts_paid",
        description: "each paid payout names the ledger entry that paid it, which moved exactly its amount from the project's payable account to the provider's, and each such entry is named by one payout",
        table: "payouts",
        joins: "join offers o on o.id = r.offer_id",
        settled: "r.status = 'paid'",
        entry_column: "paid_entry_id",
        kind: EntryKind::PayoutPaid,
        debit: "'project:' || o.project_id || ':payable:' || lower(r.currency)",
        credit: "'psp:' || r.provider || ':' || lower(r.currency)",
    },
    Settlement {
        name: "deposits_captured",
        description: "each succeeded deposit names the ledger entry that captured it, which moved exactly its amount from the provider's account to the sponsor's budget, and each such entry is named by one deposit",
        table: "deposits",
        joins: "",
        settled: "r.status = 'succeeded'",
        entry_column: "captured_entry_id",
        kind: EntryKind::DepositConfirmed,
        debit: "'psp:' || r.provider || ':' || lower(r.currency)",
        credit: "'sponsor:' || r.sponsor_id || ':budget:' || lower(r.currency)",
    },
    Settlement {
        name: "withdrawals_requested",
        description: "each withdrawal names the ledger entry that took it out of its sponsor's budget, which moved exactly its amount to the provider's withdrawals account, and each such entry is named by one withdrawal",
        table: "withdrawals",
        joins: "",
        settled: "true",
        entry_column: "requested_entry_id",
        kind: EntryKind::WithdrawalRequested,
        debit: "'sponsor:' || r.sponsor_id || ':budget:' || lower(r.currency)",
        credit: "'withdrawals:' || r.provider || ':' || lower(r.currency)",
    },
    Settlement {
        name: "withdrawals_paid",
        description: "each paid withdrawal names the ledger entry that paid it, which moved exactly its amount from the provider's withdrawals account to the provider's, and each such entry is named by one withdrawal",
        table: "withdrawals",
        joins: "",
        settled: "r.status = 'paid'",
        entry_column: "paid_entry_id",
        kind: EntryKind::WithdrawalPaid,
        debit: "'withdrawals:' || r.provider || ':' || lower(r.currency)",
        credit: "'psp:' || r.provider || ':' || lower(r.currency)",
    },
];

impl Settlement {
    /// One row per violation: a settled row without its entry (or a row naming one it should
    /// not), an entry that is not the one expected, an entry of the kind named by no row or many.
    fn sql(&self) -> String {
        let Settlement {
            table,
            joins,
            settled,
            entry_column: column,
            kind,
            debit,
            credit,
            ..
        } = self;
        let kind = kind.as_str();
        format!(
            "with moved as (
                select p.entry_id, count(*) as postings,
                       min(a.code) filter (where p.side = 'debit') as debited,
                       min(a.code) filter (where p.side = 'credit') as credited,
                       sum(p.amount) filter (where p.side = 'debit') as debit_amount,
                       sum(p.amount) filter (where p.side = 'credit') as credit_amount,
                       min(p.currency) as currency
                  from ledger_postings p
                  join ledger_entries e on e.id = p.entry_id
                  join ledger_accounts a on a.id = p.account_id
                 where e.kind = '{kind}'
                 group by p.entry_id)
             select '{table} ' || r.id || ': ' || r.status || ', entry ' || coalesce(e.reference, r.{column}::text, 'none')
               from {table} r {joins}
               left join ledger_entries e on e.id = r.{column}
               left join moved m on m.entry_id = e.id
              where ({settled}) <> (e.id is not null)
                 or (e.id is not null
                     and (e.kind <> '{kind}' or m.postings is distinct from 2
                          or m.debited is distinct from {debit} or m.credited is distinct from {credit}
                          or m.debit_amount is distinct from r.amount or m.credit_amount is distinct from r.amount
                          or m.currency is distinct from r.currency))
             union all
             select 'entry ' || e.reference || ': named by ' || count(r.id) || ' of {table}'
               from ledger_entries e left join {table} r on r.{column} = e.id
              where e.kind = '{kind}'
              group by e.id, e.reference
             having count(r.id) <> 1"
        )
    }
}

async fn run_domain_checks(conn: &mut PgConnection) -> Result<Vec<CheckResult>, LedgerError> {
    let mut results = Vec::with_capacity(DOMAIN_CHECKS.len() + SETTLEMENTS.len());
    for check in DOMAIN_CHECKS {
        results.push(ledger::run_check(conn, check.name, check.description, check.sql).await?);
    }
    for settlement in SETTLEMENTS {
        results.push(ledger::run_check(conn, settlement.name, settlement.description, &settlement.sql()).await?);
    }
    Ok(results)
}

/// Every check, ledger first, on one consistent snapshot, each statement cancelled after
/// `timeout` (`database.read_statement_timeout_ms`).
pub async fn verify(pool: &PgPool, timeout: Duration) -> Result<Vec<CheckResult>, LedgerError> {
    let mut tx = ledger::read_snapshot(pool, Some(timeout)).await?;
    let mut results = ledger::run_checks(&mut tx).await?;
    results.extend(run_domain_checks(&mut tx).await?);
    tx.commit().await?;
    Ok(results)
}
