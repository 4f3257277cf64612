//! The books over HTTP: read by operators and auditors. Operators may also keep manual books,
//! confined to `manual:` accounts so that no hand-made entry can touch a domain account (those
//! move only through the domain flows). See docs/ledger.md.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::trial_balance::{AsOf, TrialBalance};
use super::{Account, AccountKind, AccountLine, Entry, NewAccount, NewEntry, Side};
use crate::books::manual;
use crate::http::auth::{Auth, BookReaders, Operators};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::http::state::AppState;
use crate::money::{Amount, Currency, Money, PositiveAmount, format_amount};
use crate::paging::{Page, PageRequest};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(get_account))
        .routes(routes!(account_entries))
        .routes(routes!(post_entry))
        .routes(routes!(get_entry))
        .routes(routes!(reverse_entry))
        .routes(routes!(trial_balance))
}

#[derive(Serialize, ToSchema)]
pub struct AccountView {
    id: Uuid,
    code: String,
    currency: String,
    kind: AccountKind,
    /// The side that increases the balance: debit for assets and expenses, credit otherwise.
    normal_side: Side,
    no_overdraft: bool,
    /// On the normal side, as a decimal string.
    #[schema(example = "2000.00")]
    balance: String,
    posting_count: i64,
    created_at: DateTime<Utc>,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        AccountView {
            id: a.id,
            balance: format_amount(a.balance, a.currency),
            currency: a.currency.code().to_string(),
            normal_side: a.kind.normal_side(),
            code: a.code,
            kind: a.kind,
            no_overdraft: a.no_overdraft,
            posting_count: a.posting_count,
            created_at: a.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PostingView {
    account_id: Uuid,
    account_code: String,
    side: Side,
    amount: String,
    currency: String,
    account_seq: i64,
    /// The account's normal-side balance right after this posting.
    balance_after: String,
}

#[derive(Serialize, ToSchema)]
pub struct EntryView {
    id: Uuid,
    kind: String,
    reference: String,
    effective_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    metadata: serde_json::Value,
    reverses: Option<Uuid>,
    reversed_by: Option<Uuid>,
    postings: Vec<PostingView>,
}

impl From<Entry> for EntryView {
    fn from(e: Entry) -> Self {
        EntryView {
            id: e.id,
            kind: e.kind,
            reference: e.reference,
            effective_at: e.effective_at,
            recorded_at: e.recorded_at,
            metadata: e.metadata,
            reverses: e.reverses,
            reversed_by: e.reversed_by,
            postings: e
                .postings
                .into_iter()
                .map(|p| PostingView {
                    account_id: p.account_id,
                    account_code: p.account_code,
                    side: p.side,
                    amount: p.amount.amount_string(),
                    currency: p.amount.currency().code().to_string(),
                    account_seq: p.account_seq,
                    balance_after: format_amount(p.balance_after, p.amount.currency()),
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct LineView {
    account_seq: i64,
    entry_id: Uuid,
    reference: String,
    kind: String,
    effective_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    side: Side,
    amount: String,
    currency: String,
    /// The account's normal-side balance after this line: a running balance.
    balance_after: String,
}

impl From<AccountLine> for LineView {
    fn from(l: AccountLine) -> Self {
        LineView {
            account_seq: l.account_seq,
            entry_id: l.entry_id,
            reference: l.reference,
            kind: l.kind,
            effective_at: l.effective_at,
            recorded_at: l.recorded_at,
            side: l.side,
            amount: l.amount.amount_string(),
            currency: l.amount.currency().code().to_string(),
            balance_after: format_amount(l.balance_after, l.amount.currency()),
        }
    }
}

crate::page_of!(
    /// A page of accounts, in code order.
    AccountPage,
    AccountView
);

crate::page_of!(
    /// A page of an account's statement, in posting order.
    LinePage,
    LineView
);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccountsQuery {
    /// Only accounts whose code starts with this, e.g. `offer:` or `psp:`.
    code_prefix: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// List accounts in code order (byte order of the codes), a page at a time.
#[utoipa::path(get, path = "/v1/ledger/accounts", tag = "ledger", params(AccountsQuery),
    security(("api_key" = [])),
    responses((status = 200, body = AccountPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_accounts(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppQuery(q): AppQuery<AccountsQuery>,
) -> Result<Json<AccountPage>, ApiError> {
    // The cursor is the last code of the page: the list is in code order.
    let page = PageRequest::<String>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    let accounts = super::list_accounts(
        &mut conn,
        q.code_prefix.as_deref().unwrap_or(""),
        page.after.as_deref(),
        page.fetch(),
    )
    .await?;
    Ok(Json(Page::of(accounts, &page, |a| a.code.clone()).into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// Must start with `manual:`; domain accounts are opened by the service itself.
    #[schema(example = "manual:bank-fees", pattern = r"^manual:[a-z0-9_.:-]{0,193}$")]
    code: String,
    #[schema(value_type = crate::money::CurrencyCode)]
    currency: String,
    kind: AccountKind,
    #[serde(default)]
    no_overdraft: bool,
}

/// Open a manual account (operators' own bookkeeping).
#[utoipa::path(post, path = "/v1/ledger/accounts", tag = "ledger", request_body = CreateAccount,
    security(("api_key" = [])),
    responses((status = 201, body = AccountView), (status = 200, description = "the same account already existed", body = AccountView),
              (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_account(
    State(state): State<AppState>,
    _auth: Auth<Operators>,
    AppJson(body): AppJson<CreateAccount>,
) -> Result<Response, ApiError> {
    let new = NewAccount {
        code: manual::account_code(body.code)?,
        currency: Currency::parse(&body.currency).map_err(|e| ApiError::validation(e.to_string()))?,
        kind: body.kind,
        no_overdraft: body.no_overdraft,
    };
    let mut conn = state.pool.acquire().await?;
    let (account, created) = super::open_account(&mut conn, &new, state.clock.now()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(AccountView::from(account))).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    /// The moment to answer for (RFC 3339), not after now: balances are the running balances
    /// after each account's last posting effective by then. Default: now.
    as_of: Option<DateTime<Utc>>,
}

impl AsOfQuery {
    /// `None` for now; a moment past; a moment to come refused.
    fn moment(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ApiError> {
        match self.as_of {
            Some(at) if at > now => Err(ApiError::invalid(
                "as_of",
                "as_of is later than now: the books know only the past",
            )),
            at => Ok(at),
        }
    }
}

/// One account, with its balance (now, or `as_of` a moment past; 404 for an account opened
/// after it).
#[utoipa::path(get, path = "/v1/ledger/accounts/{id}", tag = "ledger", params(("id" = Uuid, Path), AsOfQuery),
    security(("api_key" = [])),
    responses((status = 200, body = AccountView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_account(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<AsOfQuery>,
) -> Result<Json<AccountView>, ApiError> {
    let as_of = q.moment(state.clock.now())?;
    let mut conn = state.pool.acquire().await?;
    let account = match as_of {
        None => super::account(&mut conn, id).await?,
        Some(at) => super::account_as_of(&mut conn, id, at).await?,
    };
    let account = account.ok_or_else(|| ApiError::not_found(format!("no account {id}")))?;
    Ok(Json(account.into()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LinesQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page (default: from the start).
    #[param(min_length = 1, pattern = "^[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// An account's statement: its postings in order (oldest first, as a statement reads), with
/// running balances, a page at a time.
#[utoipa::path(get, path = "/v1/ledger/accounts/{id}/entries", tag = "ledger", params(("id" = Uuid, Path), LinesQuery),
    security(("api_key" = [])),
    responses((status = 200, body = LinePage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn account_entries(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<LinesQuery>,
) -> Result<Json<LinePage>, ApiError> {
    // The cursor is the last `account_seq` of the page.
    let page = PageRequest::<i64>::parse(q.limit, q.cursor.as_deref())?;
    let mut conn = state.pool.acquire().await?;
    super::account(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no account {id}")))?;
    let lines = super::account_lines(&mut conn, id, page.after.unwrap_or(0).max(0), page.fetch()).await?;
    Ok(Json(Page::of(lines, &page, |l| l.account_seq).into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostingInput {
    account_id: Uuid,
    side: Side,
    #[schema(value_type = PositiveAmount)]
    amount: Amount,
    #[schema(value_type = crate::money::CurrencyCode)]
    currency: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostEntry {
    /// Idempotency key: the same reference and postings again return the first entry. 1 to 193
    /// bytes (the document can bound only characters).
    #[schema(min_length = 1, max_length = 193, example = "adjustment-2026-05")]
    reference: String,
    #[schema(max_length = 500)]
    memo: Option<String>,
    #[schema(min_items = 2)]
    postings: Vec<PostingInput>,
}

/// Post a manual entry between `manual:` accounts.
#[utoipa::path(post, path = "/v1/ledger/entries", tag = "ledger", request_body = PostEntry,
    security(("api_key" = [])),
    responses((status = 201, body = EntryView), (status = 200, description = "replayed: the entry already existed", body = EntryView),
              (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn post_entry(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    AppJson(body): AppJson<PostEntry>,
) -> Result<Response, ApiError> {
    let mut entry = NewEntry::new(manual::KIND, manual::reference(&body.reference)?, state.clock.now())
        .metadata(manual::metadata(caller.key_id, body.memo)?);
    for p in body.postings {
        let currency = Currency::parse(&p.currency).map_err(|e| ApiError::validation(e.to_string()))?;
        let amount =
            Money::exact_positive(p.amount.value(), currency).map_err(|e| ApiError::validation(e.to_string()))?;
        entry = match p.side {
            Side::Debit => entry.debit(p.account_id, amount),
            Side::Credit => entry.credit(p.account_id, amount),
        };
    }
    let mut tx = state.pool.begin().await?;
    let posted = manual::post(&mut tx, entry).await?;
    tx.commit().await?;
    let status = if posted.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(EntryView::from(posted.entry))).into_response())
}

/// One journal entry with its postings.
#[utoipa::path(get, path = "/v1/ledger/entries/{id}", tag = "ledger", params(("id" = Uuid, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = EntryView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_entry(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<EntryView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let entry = super::entry(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no entry {id}")))?;
    Ok(Json(entry.into()))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReverseEntry {
    /// Idempotency key for the reversal (default: derived from the entry).
    reference: Option<String>,
    memo: Option<String>,
}

/// Reverse a manual entry: post its mirror image. An entry is reversed at most once.
#[utoipa::path(post, path = "/v1/ledger/entries/{id}/reverse", tag = "ledger", params(("id" = Uuid, Path)),
    request_body = ReverseEntry, security(("api_key" = [])),
    responses((status = 201, body = EntryView), (status = 200, description = "replayed", body = EntryView),
              (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn reverse_entry(
    State(state): State<AppState>,
    Auth { caller, .. }: Auth<Operators>,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<ReverseEntry>,
) -> Result<Response, ApiError> {
    let metadata = manual::metadata(caller.key_id, body.memo)?;
    let mut tx = state.pool.begin().await?;
    let posted = manual::reverse(&mut tx, id, body.reference.as_deref(), state.clock.now(), metadata).await?;
    tx.commit().await?;
    let status = if posted.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(EntryView::from(posted.entry))).into_response())
}

/// Every account's balance in a debit or credit column, per currency, with totals: now, or
/// `as_of` a moment past (the accounts that existed then, with their running balances).
#[utoipa::path(get, path = "/v1/ledger/trial-balance", tag = "ledger", params(AsOfQuery), security(("api_key" = [])),
    responses((status = 200, body = TrialBalance), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn trial_balance(
    State(state): State<AppState>,
    _auth: Auth<BookReaders>,
    AppQuery(q): AppQuery<AsOfQuery>,
) -> Result<Json<TrialBalance>, ApiError> {
    let now = state.clock.now();
    let as_of = match q.moment(now)? {
        None => AsOf::Now(now),
        Some(at) => AsOf::Past(at),
    };
    let balance = super::trial_balance::trial_balance(&state.pool, state.read_timeout, as_of).await?;
    Ok(Json(balance))
}
