//! The ledger's own invariants (PRODUCT.md section 3, numbers 1 to 4), each checked by name.
//! The database already refuses to break them; this proves it to an auditor, and catches what
//! someone with the owner's privileges could have done behind the triggers' back.

use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;

use super::model::LedgerError;

/// How many offending items a check lists; the count covers all of them.
const EXAMPLES: i64 = 5;

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CheckResult {
    /// Stable name, e.g. `entries_balance`.
    pub name: &'static str,
    pub description: &'static str,
    pub ok: bool,
    /// How many accounts, entries or currencies break it.
    pub violations: i64,
    /// A few of them, to start looking.
    pub examples: Vec<String>,
}

struct Check {
    name: &'static str,
    description: &'static str,
    /// Returns one row per violation: a readable identifier of the offender.
    sql: &'static str,
}

const CHECKS: &[Check] = &[
    Check {
        name: "debits_equal_credits",
        description: "per currency, total debits equal total credits",
        sql: "select currency || ': debits ' || sum(amount) filter (where side = 'debit')
                     || ', credits ' || sum(amount) filter (where side = 'credit')
                from ledger_postings
               group by currency
              having coalesce(sum(amount) filter (where side = 'debit'), 0)
                  <> coalesce(sum(amount) filter (where side = 'credit'), 0)",
    },
    Check {
        name: "entries_balance",
        description: "every entry has at least two postings, each in its account's currency, and balances per currency",
        sql: "select e.reference from ledger_entries e
               where (select count(*) from ledger_postings p where p.entry_id = e.id) < 2
              union
              select e.reference from ledger_entries e
                join ledger_postings p on p.entry_id = e.id
               group by e.id, e.reference, p.currency
              having sum(case p.side when 'debit' then p.amount else -p.amount end) <> 0
              union
              select e.reference from ledger_entries e
                join ledger_postings p on p.entry_id = e.id
                join ledger_accounts a on a.id = p.account_id
               where p.currency <> a.currency",
    },
    Check {
        name: "balances_match_postings",
        description: "every account's stored balance and posting count equal the sum and count of its postings",
        sql: "select a.code || ': stored ' || a.balance || ', postings ' || coalesce(s.total, 0)
                from ledger_accounts a
                left join (
                     select p.account_id,
                            sum(case when p.side = (case when a2.kind in ('asset', 'expense')
                                                         then 'debit' else 'credit' end)::ledger_side
                                     then p.amount else -p.amount end) as total,
                            count(*) as n,
                            max(p.account_seq) as last_seq
                       from ledger_postings p join ledger_accounts a2 on a2.id = p.account_id
                      group by p.account_id) s on s.account_id = a.id
                left join ledger_postings last on last.account_id = a.id and last.account_seq = s.last_seq
               where a.balance <> coalesce(s.total, 0)
                  or a.posting_count <> coalesce(s.n, 0)
                  or coalesce(s.last_seq, 0) <> a.posting_count
                  or (last.id is not null and last.balance_after <> a.balance)",
    },
    Check {
        name: "no_overdraft_respected",
        description: "no account marked no_overdraft is, or ever was, below zero",
        sql: "select a.code from ledger_accounts a
               where a.no_overdraft
                 and (a.balance < 0
                      or exists (select 1 from ledger_postings p
                                  where p.account_id = a.id and p.balance_after < 0))",
    },
];

/// Runs every ledger check. Call it inside a repeatable-read transaction so all checks see one
/// moment of the books (see [`crate::ledger::verify`]).
pub async fn run_checks(conn: &mut PgConnection) -> Result<Vec<CheckResult>, LedgerError> {
    let mut results = Vec::with_capacity(CHECKS.len());
    for check in CHECKS {
        results.push(run_check(conn, check.name, check.description, check.sql).await?);
    }
    Ok(results)
}

/// Runs one named check: `sql` returns one row per violation, a readable name of the offender.
/// Domain modules use it for their own invariants.
pub async fn run_check(
    conn: &mut PgConnection,
    name: &'static str,
    description: &'static str,
    sql: &str,
) -> Result<CheckResult, LedgerError> {
    let (violations, examples): (i64, Vec<String>) = sqlx::query_as(&format!(
        "with v(item) as ({sql}) select count(*), coalesce((array_agg(item order by item))[1:{EXAMPLES}], '{{}}') from v"
    ))
    .fetch_one(conn)
    .await?;
    Ok(CheckResult {
        name,
        description,
        ok: violations == 0,
        violations,
        examples,
    })
}
