//! Paying a succeeded round's project: a payout of what the settlement made it owed, asked of
//! the provider, and `project payable → psp` once the provider confirms it.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, QueryBuilder};
use uuid::Uuid;

use super::RoundError;
use crate::books::{EntryKind, chart};
use crate::ledger::{self, NewEntry};
use crate::money::{Currency, Money};
use crate::offers;
use crate::outbox::{self, EventType};
use crate::paging::PageRequest;
use crate::payments::calls::{self, Call, Destination};
use crate::payments::provider::{Object, PaymentProvider};
use crate::payments::{Applied, expect_money, unknown};
use crate::projects;
use crate::projects::payout::MissingDetail;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Payout {
    pub id: Uuid,
    pub provider: String,
    /// None while a networked provider has not answered the call that creates it.
    pub provider_payout_id: Option<String>,
    pub offer_id: Uuid,
    pub amount: Decimal,
    #[sqlx(try_from = "String")]
    pub currency: Currency,
    pub status: String,
    pub created_at: DateTime<Utc>,
    /// When the provider confirmed it paid.
    pub settled_at: Option<DateTime<Utc>>,
}

/// What asking for a payout did.
pub(crate) enum Requested {
    /// A payout of what the project was still owed.
    Created(Payout),
    /// Nothing was owed any more: the payout already made for the offer (the latest).
    Existing(Payout),
}

const PAYOUT_COLUMNS: &str =
    "id, provider, provider_payout_id, offer_id, amount, currency, status::text as status, created_at, settled_at";

/// The position of a payout in the lists, newest first.
pub(crate) type PayoutKey = (DateTime<Utc>, Uuid);

pub(crate) async fn get(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Payout>> {
    sqlx::query_as(&format!("select {PAYOUT_COLUMNS} from payouts where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Payouts newest first, those of `offer` when given, a page at a time.
pub(crate) async fn list(
    conn: &mut PgConnection,
    offer: Option<Uuid>,
    page: &PageRequest<PayoutKey>,
) -> sqlx::Result<Vec<Payout>> {
    let mut q = QueryBuilder::new(format!("select {PAYOUT_COLUMNS} from payouts where true"));
    if let Some(offer) = offer {
        q.push(" and offer_id = ").push_bind(offer);
    }
    crate::paging::push_newest_first(&mut q, page.after, page.fetch());
    q.build_query_as().fetch_all(conn).await
}

/// Asks `provider` to pay a succeeded offer's project what it is still owed for that offer; when
/// it is owed nothing any more, answers the payout already made, so asking again is harmless.
/// 409 `nothing_to_pay` only when the offer never owed anything.
pub(crate) async fn request_payout(
    conn: &mut PgConnection,
    provider: &dyn PaymentProvider,
    offer_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Requested, RoundError> {
    let offer = offers::store::lock(conn, offer_id)
        .await?
        .ok_or_else(|| unknown("offer", &offer_id.to_string()))?;
    if offer.status != offers::OfferStatus::Succeeded {
        return Err(RoundError::InvalidTransition(
            "only a succeeded offer is paid out".into(),
        ));
    }
    let payable = chart::project_payable(conn, offer.project_id, offer.currency, now).await?;
    let settled = settled_to(conn, offer_id, payable).await?;
    let requested: Decimal = sqlx::query_scalar("select coalesce(sum(amount), 0) from payouts where offer_id = $1")
        .bind(offer_id)
        .fetch_one(&mut *conn)
        .await?;
    let owed = settled - requested;
    if owed <= Decimal::ZERO {
        let made: Option<Payout> = sqlx::query_as(&format!(
            "select {PAYOUT_COLUMNS} from payouts where offer_id = $1 order by created_at desc, id desc limit 1"
        ))
        .bind(offer_id)
        .fetch_optional(&mut *conn)
        .await?;
        return made.map(Requested::Existing).ok_or(RoundError::NothingToPay);
    }
    let id = Uuid::now_v7();
    let amount = Money::new(owed, offer.currency)?;
    let provider_payout_id = if provider.networked() {
        // The round's fee leaves the escrow with its first payout (`Call::CreatePayout`'s `fee`).
        let fee = if requested.is_zero() {
            let fees = chart::platform_fees(conn, offer.currency, now).await?;
            settled_to(conn, offer_id, fees).await?
        } else {
            Decimal::ZERO
        };
        let call = Call::CreatePayout {
            payout_id: id,
            offer_id,
            project_id: offer.project_id,
            destination: destination(conn, provider.name(), offer.project_id).await?,
            amount: owed,
            currency: offer.currency.code().to_owned(),
            fee,
        };
        calls::enqueue(conn, provider.name(), &call, now).await?;
        None
    } else {
        Some(
            provider
                .create_payout(id, amount)
                .map_err(crate::payments::PaymentError::from)?,
        )
    };
    let payout = sqlx::query_as(&format!(
        "insert into payouts (id, provider, provider_payout_id, offer_id, amount, currency, created_at)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning {PAYOUT_COLUMNS}"
    ))
    .bind(id)
    .bind(provider.name())
    .bind(provider_payout_id)
    .bind(offer_id)
    .bind(owed)
    .bind(offer.currency.code())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    outbox::emit(
        conn,
        EventType::PayoutCreated,
        serde_json::json!({ "payout_id": id, "offer_id": offer.id, "project_id": offer.project_id,
                            "amount": amount.amount_string(), "currency": offer.currency }),
        now,
    )
    .await?;
    Ok(Requested::Created(payout))
}

/// What the settlement of `offer_id`'s round put in `account`: the net owed to the project, or
/// the platform's fee; zero before the settlement.
async fn settled_to(conn: &mut PgConnection, offer_id: Uuid, account: Uuid) -> sqlx::Result<Decimal> {
    let settled: Option<Decimal> = sqlx::query_scalar(
        "select sum(p.amount) from ledger_postings p join ledger_entries e on e.id = p.entry_id
          where e.reference = $1 and p.account_id = $2",
    )
    .bind(super::closing::settlement_reference(offer_id))
    .bind(account)
    .fetch_one(conn)
    .await?;
    Ok(settled.unwrap_or_default())
}

/// Where `provider` pays a project (PRODUCT.md section 10): Stripe, its connected account;
/// Mangopay, its bank account by wire, with the legal identity Mangopay keeps it under. 409
/// `payout_details_missing` when the operator has not set what the provider needs (`PUT
/// /v1/projects/{id}/payout-details`).
async fn destination(conn: &mut PgConnection, provider: &str, project_id: Uuid) -> Result<Destination, RoundError> {
    let project = projects::store::get(conn, project_id)
        .await?
        .expect("offers belong to projects");
    match provider {
        crate::payments::stripe::STRIPE => project
            .payout
            .stripe_account
            .map(|a| Destination::StripeAccount(a.as_str().to_owned()))
            .ok_or(MissingDetail("payout_details.stripe_account").into()),
        crate::payments::mangopay::MANGOPAY => {
            let payee = project.payout.payee(&project.legal_name)?;
            let bank_account = project.payout.bank_account.expect("a payee has a bank account");
            Ok(Destination::BankAccount {
                bank_account: Box::new(bank_account),
                payee: Box::new(payee),
            })
        }
        other => Err(RoundError::Unaccounted(format!(
            "no payout destination for provider {other}"
        ))),
    }
}

/// The provider paid the project: `project payable → psp`, for the payout's exact amount.
pub async fn confirm_payout(
    conn: &mut PgConnection,
    provider: &str,
    provider_payout_id: &str,
    paid: Money,
    now: DateTime<Utc>,
) -> Result<Applied, RoundError> {
    let payout: Payout = sqlx::query_as(&format!(
        "select {PAYOUT_COLUMNS} from payouts where provider = $1 and provider_payout_id = $2 for update"
    ))
    .bind(provider)
    .bind(provider_payout_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| unknown("payout", provider_payout_id))?;
    expect_money(
        Object::Payout,
        provider_payout_id,
        payout.amount,
        payout.currency.code(),
        paid,
    )?;
    if payout.status != "pending" {
        return Ok(Applied::Nothing);
    }
    let offer = offers::store::get(conn, payout.offer_id)
        .await?
        .expect("payouts belong to offers");
    let amount = Money::new(payout.amount, offer.currency)?;
    let payable = chart::project_payable(conn, offer.project_id, offer.currency, now).await?;
    let psp = chart::psp(conn, provider, offer.currency, now).await?;
    let entry = NewEntry::new(EntryKind::PayoutPaid, format!("payout:{}:paid", payout.id), now)
        .metadata(serde_json::json!({ "payout_id": payout.id, "offer_id": offer.id, "project_id": offer.project_id }))
        .debit(payable, amount)
        .credit(psp, amount);
    let paid = ledger::post(conn, entry).await?.entry.id;
    // Settled and named in one statement (`payouts_paid_once`; verify: `payouts_paid`).
    sqlx::query("update payouts set status = 'paid', settled_at = $2, paid_entry_id = $3 where id = $1")
        .bind(payout.id)
        .bind(now)
        .bind(paid)
        .execute(&mut *conn)
        .await?;
    outbox::emit(
        conn,
        EventType::PayoutPaid,
        serde_json::json!({ "payout_id": payout.id, "offer_id": offer.id, "project_id": offer.project_id,
                            "amount": amount.amount_string(), "currency": offer.currency }),
        now,
    )
    .await?;
    Ok(Applied::Done)
}
