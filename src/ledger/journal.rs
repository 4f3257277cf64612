//! Writing and reading the books. Every function takes a connection so that a domain module can
//! post inside its own transaction, together with its state change and its outbox event.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{Acquire, PgConnection};
use uuid::Uuid;

use super::model::*;
use crate::money::{Currency, Money};

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: Uuid,
    code: String,
    currency: String,
    kind: AccountKind,
    no_overdraft: bool,
    balance: Decimal,
    posting_count: i64,
    created_at: DateTime<Utc>,
}

impl TryFrom<AccountRow> for Account {
    type Error = LedgerError;
    fn try_from(r: AccountRow) -> Result<Self, LedgerError> {
        Ok(Account {
            id: r.id,
            code: r.code,
            currency: Currency::parse(&r.currency)?,
            kind: r.kind,
            no_overdraft: r.no_overdraft,
            balance: r.balance,
            posting_count: r.posting_count,
            created_at: r.created_at,
        })
    }
}

const ACCOUNT_COLUMNS: &str = "id, code, currency, kind, no_overdraft, balance, posting_count, created_at";

/// Opens an account, or returns the existing one with that code if it has the same currency,
/// kind and overdraft rule (so domain code can call it on every use without a race). The flag
/// says whether this call created it.
pub async fn open_account(
    conn: &mut PgConnection,
    new: &NewAccount,
    now: DateTime<Utc>,
) -> Result<(Account, bool), LedgerError> {
    // Nearly every call finds the account already open: one read, no insert attempted.
    if let Some(existing) = account_by_code(conn, new.code.as_str()).await? {
        return same_account(existing, new).map(|a| (a, false));
    }
    let inserted: Option<AccountRow> = sqlx::query_as(&format!(
        "insert into ledger_accounts (id, code, currency, kind, no_overdraft, created_at)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (code) do nothing
         returning {ACCOUNT_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(new.code.as_str())
    .bind(new.currency.code())
    .bind(new.kind)
    .bind(new.no_overdraft)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = inserted {
        return Ok((row.try_into()?, true));
    }
    let existing = account_by_code(conn, new.code.as_str())
        .await?
        .ok_or_else(|| LedgerError::AccountConflict(new.code.to_string()))?;
    same_account(existing, new).map(|a| (a, false))
}

/// The existing account, if it is the one asked for.
fn same_account(existing: Account, new: &NewAccount) -> Result<Account, LedgerError> {
    if existing.currency == new.currency && existing.kind == new.kind && existing.no_overdraft == new.no_overdraft {
        Ok(existing)
    } else {
        Err(LedgerError::AccountConflict(new.code.to_string()))
    }
}

pub async fn account(conn: &mut PgConnection, id: Uuid) -> Result<Option<Account>, LedgerError> {
    let row: Option<AccountRow> =
        sqlx::query_as(&format!("select {ACCOUNT_COLUMNS} from ledger_accounts where id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.map(Account::try_from).transpose()
}

pub async fn account_by_code(conn: &mut PgConnection, code: &str) -> Result<Option<Account>, LedgerError> {
    let row: Option<AccountRow> = sqlx::query_as(&format!(
        "select {ACCOUNT_COLUMNS} from ledger_accounts where code = $1"
    ))
    .bind(code)
    .fetch_optional(conn)
    .await?;
    row.map(Account::try_from).transpose()
}

/// The accounts with these codes, those that exist, in no particular order: one statement for
/// a page of a list that shows each item's balance.
pub async fn accounts_by_code(conn: &mut PgConnection, codes: &[String]) -> Result<Vec<Account>, LedgerError> {
    let rows: Vec<AccountRow> = sqlx::query_as(&format!(
        "select {ACCOUNT_COLUMNS} from ledger_accounts where code = any($1)"
    ))
    .bind(codes)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Account::try_from).collect()
}

/// The account's balance on its normal side, read from its row: constant time.
pub async fn balance(conn: &mut PgConnection, id: Uuid) -> Result<Money, LedgerError> {
    let account = account(conn, id).await?.ok_or(LedgerError::UnknownAccount(id))?;
    Ok(Money::new(account.balance, account.currency)?)
}

/// The account's balance, with its row locked until the transaction ends: nothing posts to it
/// meanwhile, so a decision taken on this balance (move all of it, say) still holds at commit.
pub async fn lock_balance(conn: &mut PgConnection, id: Uuid) -> Result<Money, LedgerError> {
    let row: Option<AccountRow> = sqlx::query_as(&format!(
        "select {ACCOUNT_COLUMNS} from ledger_lock_accounts(array[$1::uuid])"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let account = row
        .map(Account::try_from)
        .transpose()?
        .ok_or(LedgerError::UnknownAccount(id))?;
    Ok(Money::new(account.balance, account.currency)?)
}

/// Accounts in code order, those whose code starts with `code_prefix`, after the code `after`.
pub async fn list_accounts(
    conn: &mut PgConnection,
    code_prefix: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Account>, LedgerError> {
    let pattern = format!(
        "{}%",
        code_prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows: Vec<AccountRow> = sqlx::query_as(&format!(
        "select {ACCOUNT_COLUMNS} from ledger_accounts
          where code like $1 and ($2::text is null or code collate \"C\" > $2)
          order by code collate \"C\" limit $3"
    ))
    .bind(pattern)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Account::try_from).collect()
}

/// Posts an entry atomically (in a savepoint when `conn` is already in a transaction).
///
/// Idempotent by reference: the same reference with the same postings returns the existing
/// entry with `replayed = true`; with other postings it is [`LedgerError::ReferenceReused`].
pub async fn post(conn: &mut PgConnection, new: NewEntry) -> Result<Posted, LedgerError> {
    new.check()?;
    let mut tx = conn.begin().await?;
    let id: Option<Uuid> = sqlx::query_scalar(
        "insert into ledger_entries (id, kind, reference, effective_at, metadata, reverses)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (reference) do nothing
         returning id",
    )
    .bind(new.id)
    .bind(&new.kind)
    .bind(&new.reference)
    .bind(new.effective_at)
    .bind(&new.metadata)
    .bind(new.reverses)
    .fetch_optional(&mut *tx)
    .await
    .map_err(
        |err| match (err.as_database_error().and_then(|e| e.constraint()), new.reverses) {
            (Some("ledger_entries_reverses_key"), Some(reversed)) => LedgerError::AlreadyReversed(reversed),
            _ => err.into(),
        },
    )?;

    let Some(id) = id else {
        let existing = entry_by_reference(&mut tx, &new.reference)
            .await?
            .ok_or_else(|| LedgerError::ReferenceReused(new.reference.clone()))?;
        return if same_entry(&existing, &new) {
            Ok(Posted {
                entry: existing,
                replayed: true,
            })
        } else {
            Err(LedgerError::ReferenceReused(new.reference))
        };
    };

    let mut postings = new.postings.clone();
    postings.sort_by_key(|p| (p.account_id, p.side));
    let postings: Vec<(Uuid, &NewPosting)> = postings.iter().map(|p| (id, p)).collect();
    insert_postings(&mut tx, &postings).await?;
    let entry = entry(&mut tx, id).await?.ok_or(LedgerError::UnknownEntry(id))?;
    tx.commit().await?;
    Ok(Posted { entry, replayed: false })
}

/// Posts many new entries at once, in two statements (the batch paths'). Unlike [`post`], it
/// is not idempotent one entry at a time: if any reference is already taken it posts nothing
/// and returns [`LedgerError::ReferenceReused`], and the caller's transaction must roll back
/// (the caller sends those entries down the one-at-a-time path). Postings are written in
/// account order across the batch, so concurrent writers lock account rows in one order.
pub async fn post_many(conn: &mut PgConnection, entries: &[NewEntry]) -> Result<Vec<Uuid>, LedgerError> {
    for entry in entries {
        entry.check()?;
        if entry.reverses.is_some() {
            return Err(LedgerError::Invalid("post_many takes no reversals".into()));
        }
    }
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
    let inserted = sqlx::query(
        "insert into ledger_entries (id, kind, reference, effective_at, metadata)
         select * from unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[])
         on conflict (reference) do nothing",
    )
    .bind(&ids)
    .bind(entries.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.reference.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.effective_at).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.metadata.clone()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted != entries.len() as u64 {
        return Err(LedgerError::ReferenceReused(format!(
            "{} of {} references in a batch",
            entries.len() as u64 - inserted,
            entries.len()
        )));
    }
    let mut postings: Vec<(Uuid, &NewPosting)> = entries
        .iter()
        .zip(&ids)
        .flat_map(|(e, id)| e.postings.iter().map(move |p| (*id, p)))
        .collect();
    postings.sort_by_key(|(entry, p)| (p.account_id, *entry, p.side));
    insert_postings(conn, &postings).await?;
    Ok(ids)
}

/// An account as a writer sees it under its row lock: what the next posting continues from.
#[derive(sqlx::FromRow)]
struct AccountHead {
    id: Uuid,
    currency: String,
    kind: AccountKind,
    no_overdraft: bool,
    balance: Decimal,
    posting_count: i64,
}

/// Writes `(entry, posting)` pairs, each with its place in its account's history and the
/// account's balance after it. They are computed here under the accounts' row locks, taken in id
/// order as every writer takes them, so concurrent writers to an account queue and never
/// deadlock; the database checks them all once per statement and moves each account's row once
/// (migration 0013). Overdrafts, unknown accounts and currency mismatches are caught here first.
async fn insert_postings(conn: &mut PgConnection, postings: &[(Uuid, &NewPosting)]) -> Result<(), LedgerError> {
    let mut account_ids: Vec<Uuid> = postings.iter().map(|(_, p)| p.account_id).collect();
    account_ids.sort_unstable();
    account_ids.dedup();
    // The service may not lock account rows itself (`for update` needs UPDATE, which it does
    // not hold): this function locks them as their owner, in id order (migration 0020).
    let heads: Vec<AccountHead> =
        sqlx::query_as("select id, currency, kind, no_overdraft, balance, posting_count from ledger_lock_accounts($1)")
            .bind(&account_ids)
            .fetch_all(&mut *conn)
            .await?;
    let mut heads: std::collections::HashMap<Uuid, AccountHead> = heads.into_iter().map(|h| (h.id, h)).collect();
    let mut seqs = Vec::with_capacity(postings.len());
    let mut balances = Vec::with_capacity(postings.len());
    let (mut overdrawn, mut mismatched) = (false, false);
    for (_, posting) in postings {
        let head = heads
            .get_mut(&posting.account_id)
            .ok_or(LedgerError::UnknownAccount(posting.account_id))?;
        mismatched |= head.currency != posting.amount.currency().code();
        let amount = posting.amount.amount();
        head.balance += if posting.side == head.kind.normal_side() {
            amount
        } else {
            -amount
        };
        head.posting_count += 1;
        overdrawn |= head.no_overdraft && head.balance < Decimal::ZERO;
        seqs.push(head.posting_count);
        balances.push(head.balance);
    }
    // The overdraft first, as the database would refuse it before the currency.
    if overdrawn {
        return Err(LedgerError::Overdraft);
    }
    if mismatched {
        return Err(LedgerError::CurrencyMismatch);
    }
    sqlx::query(
        "insert into ledger_postings (entry_id, account_id, side, amount, currency, account_seq, balance_after)
         select * from unnest($1::uuid[], $2::uuid[], $3::ledger_side[], $4::numeric[], $5::text[], $6::bigint[],
                              $7::numeric[])",
    )
    .bind(postings.iter().map(|(entry, _)| *entry).collect::<Vec<_>>())
    .bind(postings.iter().map(|(_, p)| p.account_id).collect::<Vec<_>>())
    .bind(postings.iter().map(|(_, p)| p.side).collect::<Vec<_>>())
    .bind(postings.iter().map(|(_, p)| p.amount.amount()).collect::<Vec<_>>())
    .bind(
        postings
            .iter()
            .map(|(_, p)| p.amount.currency().code())
            .collect::<Vec<_>>(),
    )
    .bind(&seqs)
    .bind(&balances)
    .execute(conn)
    .await?;
    Ok(())
}

fn same_entry(existing: &Entry, new: &NewEntry) -> bool {
    let mut a: Vec<(Uuid, Side, Money)> = existing
        .postings
        .iter()
        .map(|p| (p.account_id, p.side, p.amount))
        .collect();
    let mut b: Vec<(Uuid, Side, Money)> = new.postings.iter().map(|p| (p.account_id, p.side, p.amount)).collect();
    let key = |x: &(Uuid, Side, Money)| (x.0, x.1, x.2.amount(), x.2.currency());
    a.sort_by_key(key);
    b.sort_by_key(key);
    existing.kind == new.kind && existing.reverses == new.reverses && a == b
}

/// Posts the mirror image of entry `id`: every posting on the other side. An entry is reversed
/// at most once; reversing again with the same reference returns the first reversal.
pub async fn reverse(
    conn: &mut PgConnection,
    id: Uuid,
    reference: Option<String>,
    effective_at: DateTime<Utc>,
    metadata: serde_json::Value,
) -> Result<Posted, LedgerError> {
    let original = entry(conn, id).await?.ok_or(LedgerError::UnknownEntry(id))?;
    let reference = reference.unwrap_or_else(|| format!("reversal:{id}"));
    if let Some(by) = original.reversed_by {
        let reversal = entry(conn, by).await?.ok_or(LedgerError::UnknownEntry(by))?;
        if reversal.reference != reference {
            return Err(LedgerError::AlreadyReversed(id));
        }
    }
    let mut new = NewEntry::new(format!("{}.reversal", original.kind), reference, effective_at).metadata(metadata);
    new.reverses = Some(id);
    new.postings = original
        .postings
        .iter()
        .map(|p| NewPosting {
            account_id: p.account_id,
            side: p.side.opposite(),
            amount: p.amount,
        })
        .collect();
    post(conn, new).await
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    id: Uuid,
    kind: String,
    reference: String,
    effective_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    metadata: serde_json::Value,
    reverses: Option<Uuid>,
    reversed_by: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
struct PostingRow {
    account_id: Uuid,
    account_code: String,
    side: Side,
    amount: Decimal,
    currency: String,
    account_seq: i64,
    balance_after: Decimal,
}

const ENTRY_SELECT: &str = "select e.id, e.kind, e.reference, e.effective_at, e.recorded_at, e.metadata, e.reverses,
        (select r.id from ledger_entries r where r.reverses = e.id) as reversed_by
   from ledger_entries e";

pub async fn entry(conn: &mut PgConnection, id: Uuid) -> Result<Option<Entry>, LedgerError> {
    let row: Option<EntryRow> = sqlx::query_as(&format!("{ENTRY_SELECT} where e.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    with_postings(conn, row).await
}

pub async fn entry_by_reference(conn: &mut PgConnection, reference: &str) -> Result<Option<Entry>, LedgerError> {
    let row: Option<EntryRow> = sqlx::query_as(&format!("{ENTRY_SELECT} where e.reference = $1"))
        .bind(reference)
        .fetch_optional(&mut *conn)
        .await?;
    with_postings(conn, row).await
}

async fn with_postings(conn: &mut PgConnection, row: Option<EntryRow>) -> Result<Option<Entry>, LedgerError> {
    let Some(row) = row else { return Ok(None) };
    let postings: Vec<PostingRow> = sqlx::query_as(
        "select p.account_id, a.code as account_code, p.side, p.amount, p.currency, p.account_seq, p.balance_after
           from ledger_postings p join ledger_accounts a on a.id = p.account_id
          where p.entry_id = $1
          order by p.id",
    )
    .bind(row.id)
    .fetch_all(conn)
    .await?;
    let postings = postings
        .into_iter()
        .map(|p| {
            Ok(Posting {
                account_id: p.account_id,
                account_code: p.account_code,
                side: p.side,
                amount: Money::new(p.amount, Currency::parse(&p.currency)?)?,
                account_seq: p.account_seq,
                balance_after: p.balance_after,
            })
        })
        .collect::<Result<Vec<_>, LedgerError>>()?;
    Ok(Some(Entry {
        id: row.id,
        kind: row.kind,
        reference: row.reference,
        effective_at: row.effective_at,
        recorded_at: row.recorded_at,
        metadata: row.metadata,
        reverses: row.reverses,
        reversed_by: row.reversed_by,
        postings,
    }))
}

#[derive(sqlx::FromRow)]
struct LineRow {
    account_seq: i64,
    entry_id: Uuid,
    reference: String,
    kind: String,
    effective_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    side: Side,
    amount: Decimal,
    currency: String,
    balance_after: Decimal,
    metadata: serde_json::Value,
}

/// An account's statement in posting order, after position `after_seq`, with the balance after
/// each line (stored at posting time, so a page costs its own size, not the history's).
pub async fn account_lines(
    conn: &mut PgConnection,
    account_id: Uuid,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<AccountLine>, LedgerError> {
    let rows: Vec<LineRow> = sqlx::query_as(
        "select p.account_seq, p.entry_id, e.reference, e.kind, e.effective_at, e.recorded_at,
                p.side, p.amount, p.currency, p.balance_after, e.metadata
           from ledger_postings p join ledger_entries e on e.id = p.entry_id
          where p.account_id = $1 and p.account_seq > $2
          order by p.account_seq
          limit $3",
    )
    .bind(account_id)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(AccountLine {
                account_seq: r.account_seq,
                entry_id: r.entry_id,
                reference: r.reference,
                kind: r.kind,
                effective_at: r.effective_at,
                recorded_at: r.recorded_at,
                side: r.side,
                amount: Money::new(r.amount, Currency::parse(&r.currency)?)?,
                balance_after: r.balance_after,
                metadata: r.metadata,
            })
        })
        .collect()
}

/// Every account's balance, grouped by currency: the trial balance.
/// The columns of an account as it stood at `$1`: its balance is the running balance after its
/// last posting effective by then (0 before any), and `posting_count` that posting's number.
/// Postings are read newest first from the account's `(account_id, account_seq)` index, so an
/// `as_of` near now costs a few rows; one long ago, a scan of the postings since.
const ACCOUNT_COLUMNS_AS_OF: &str = "a.id, a.code, a.currency, a.kind, a.no_overdraft,
    coalesce(last.balance_after, 0) as balance, coalesce(last.account_seq, 0) as posting_count, a.created_at
    from ledger_accounts a
    left join lateral (
        select p.balance_after, p.account_seq from ledger_postings p join ledger_entries e on e.id = p.entry_id
        where p.account_id = a.id and e.effective_at <= $1
        order by p.account_seq desc limit 1
    ) last on true";

/// One account as it stood at `as_of` (see [`ACCOUNT_COLUMNS_AS_OF`]); none if it did not exist yet.
pub async fn account_as_of(
    conn: &mut PgConnection,
    id: Uuid,
    as_of: DateTime<Utc>,
) -> Result<Option<Account>, LedgerError> {
    let row: Option<AccountRow> = sqlx::query_as(&format!(
        "select {ACCOUNT_COLUMNS_AS_OF} where a.id = $2 and a.created_at <= $1"
    ))
    .bind(as_of)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(Account::try_from).transpose()
}

/// Every account that existed at `as_of`, as it stood then, in the order of [`all_accounts`].
pub async fn all_accounts_as_of(conn: &mut PgConnection, as_of: DateTime<Utc>) -> Result<Vec<Account>, LedgerError> {
    let rows: Vec<AccountRow> = sqlx::query_as(&format!(
        "select {ACCOUNT_COLUMNS_AS_OF} where a.created_at <= $1 order by a.currency, a.code collate \"C\""
    ))
    .bind(as_of)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Account::try_from).collect()
}

pub async fn all_accounts(conn: &mut PgConnection) -> Result<Vec<Account>, LedgerError> {
    let rows: Vec<AccountRow> = sqlx::query_as(&format!(
        "select {ACCOUNT_COLUMNS} from ledger_accounts order by currency, code collate \"C\""
    ))
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Account::try_from).collect()
}
