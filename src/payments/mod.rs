//! Money through the payment provider: card payments for pledges, refunds, payouts to projects.
//!
//! Objects are created through a provider adapter ([`provider::PaymentProvider`]). Each provider
//! confirmation is one domain call (`confirm_payment`, `fail_payment`, `confirm_refund`,
//! `confirm_payout`), made only by the signed-webhook handler, that moves state, ledger and outbox
//! in one transaction.
//! Lock order, everywhere: offer, then pledge, then payment or refund. A payment confirmed in
//! time takes no offer lock at all.

pub mod inbound;
pub mod provider;
pub mod sandbox;
pub mod stripe;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use self::provider::PaymentProvider;
use crate::books::chart;
use crate::clock::ClockMode;
use crate::config::CardProvider;
use crate::http::error::{ApiError, Code};
use crate::ledger::{self, NewEntry};
use crate::money::{Currency, Money};

/// The built-in test-mode provider.
pub const SANDBOX: &str = "sandbox";

/// What the service needs to talk to payment providers: the providers that exist here, built
/// once from the settings and the clock's mode.
pub struct Providers {
    /// The sandbox, with a manual clock only. Under the system clock it does not exist: its
    /// webhook is an unknown path and it takes no payments (PRODUCT.md section 10).
    pub sandbox: Option<sandbox::SandboxSetup>,
    /// Where new card payments, deposits and payouts go (`payments.card_provider`).
    card: Option<&'static dyn PaymentProvider>,
    /// Verifies `Stripe-Signature`; without it the stripe endpoint answers 404.
    pub stripe_secret: Option<secrecy::SecretString>,
    /// Where the sandbox posts its webhooks: this service's own address, known once it listens.
    pub self_url: std::sync::OnceLock<String>,
    /// Delivers outbound webhooks, only where they may go (`webhooks/guard.rs`; private and
    /// loopback addresses too with `webhooks.allow_private_targets`).
    pub webhooks: crate::webhooks::guard::GuardedClient,
    pub client: reqwest::Client,
}

impl Providers {
    pub fn new(settings: &crate::config::PaymentsSettings, clock: ClockMode, allow_private_targets: bool) -> Self {
        use secrecy::ExposeSecret;
        let sandbox = (clock == ClockMode::Manual).then(|| sandbox::SandboxSetup {
            secret: settings
                .sandbox
                .webhook_secret
                .as_ref()
                .map_or(sandbox::DEVELOPMENT_SECRET, |s| s.expose_secret())
                .parse()
                .expect("validated when the settings were loaded"),
            auto_confirm: settings.sandbox.auto_confirm,
        });
        let card: Option<&'static dyn PaymentProvider> = match (clock, settings.card_provider) {
            // No adapter here creates real payments yet; the settings refuse the sandbox.
            (ClockMode::System, _) => None,
            (ClockMode::Manual, None | Some(CardProvider::Sandbox)) => Some(&sandbox::Sandbox),
        };
        Providers {
            sandbox,
            card,
            stripe_secret: settings.stripe.webhook_secret.clone(),
            self_url: std::sync::OnceLock::new(),
            webhooks: crate::webhooks::guard::GuardedClient::new(
                allow_private_targets,
                crate::webhooks::outbound::REQUEST_TIMEOUT,
            ),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(15))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    /// The adapter of `POST /v1/webhooks/{name}`: the sandbox only where it exists; stripe
    /// always (its endpoint answers 404 until its secret is set).
    pub fn adapter(&self, name: &str) -> Option<&'static dyn PaymentProvider> {
        match name {
            SANDBOX if self.sandbox.is_some() => Some(&sandbox::Sandbox),
            stripe::STRIPE => Some(&stripe::Stripe),
            _ => None,
        }
    }

    /// The provider new card payments go to, and sponsors' deposits and projects' payouts
    /// until each has a setting of its own: `payments.card_provider`, the sandbox by default
    /// under a manual clock. None under the system clock: 422 `payment_provider_unavailable`.
    pub fn card_provider(&self) -> Result<&'static dyn PaymentProvider, ApiError> {
        self.card.ok_or_else(provider::unavailable)
    }

    /// Whether the sandbox confirms refunds, payouts and deposits by itself.
    pub fn auto_confirm(&self) -> bool {
        self.sandbox.as_ref().is_some_and(|s| s.auto_confirm)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "payment_status", rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Payment {
    pub id: Uuid,
    pub provider: String,
    pub provider_payment_id: String,
    pub pledge_id: Uuid,
    pub amount: Decimal,
    pub currency: String,
    pub status: PaymentStatus,
}

/// Asks `provider` for a card payment of a pledge's card part.
pub async fn create_payment(
    conn: &mut PgConnection,
    provider: &dyn PaymentProvider,
    pledge_id: Uuid,
    amount: Money,
    now: DateTime<Utc>,
) -> Result<Payment, ApiError> {
    let id = Uuid::now_v7();
    let provider_payment_id = provider.create_payment(id, amount)?;
    Ok(sqlx::query_as(
        "insert into payments (id, provider, provider_payment_id, pledge_id, amount, currency, created_at)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning id, provider, provider_payment_id, pledge_id, amount, currency, status",
    )
    .bind(id)
    .bind(provider.name())
    .bind(provider_payment_id)
    .bind(pledge_id)
    .bind(amount.amount())
    .bind(amount.currency().code())
    .bind(now)
    .fetch_one(conn)
    .await?)
}

/// [`create_payment`] for many pledges in one statement (the batcher's), in the order given.
pub async fn create_payments(
    conn: &mut PgConnection,
    provider: &dyn PaymentProvider,
    requests: &[(Uuid, Money, DateTime<Utc>)],
) -> Result<Vec<Payment>, ApiError> {
    let ids: Vec<Uuid> = requests.iter().map(|_| Uuid::now_v7()).collect();
    let references = ids
        .iter()
        .zip(requests)
        .map(|(id, (_, amount, _))| provider.create_payment(*id, *amount))
        .collect::<Result<Vec<String>, _>>()?;
    let rows: Vec<Payment> = sqlx::query_as(
        "insert into payments (id, provider, provider_payment_id, pledge_id, amount, currency, created_at)
         select u.id, $2, u.reference, u.pledge_id, u.amount, u.currency, u.created_at
           from unnest($1::uuid[], $3::text[], $4::uuid[], $5::numeric[], $6::text[], $7::timestamptz[])
                as u(id, reference, pledge_id, amount, currency, created_at)
         returning id, provider, provider_payment_id, pledge_id, amount, currency, status",
    )
    .bind(&ids)
    .bind(provider.name())
    .bind(&references)
    .bind(requests.iter().map(|r| r.0).collect::<Vec<Uuid>>())
    .bind(requests.iter().map(|r| r.1.amount()).collect::<Vec<Decimal>>())
    .bind(requests.iter().map(|r| r.1.currency().code()).collect::<Vec<&str>>())
    .bind(requests.iter().map(|r| r.2).collect::<Vec<DateTime<Utc>>>())
    .fetch_all(conn)
    .await?;
    let mut by_id: std::collections::HashMap<Uuid, Payment> = rows.into_iter().map(|p| (p.id, p)).collect();
    Ok(ids
        .iter()
        .map(|id| by_id.remove(id).expect("every payment was inserted"))
        .collect())
}

pub(crate) const PAYMENT_COLUMNS: &str = "id, provider, provider_payment_id, pledge_id, amount, currency, status";

pub async fn payment_of_pledge(conn: &mut PgConnection, pledge_id: Uuid) -> sqlx::Result<Option<Payment>> {
    sqlx::query_as(&format!("select {PAYMENT_COLUMNS} from payments where pledge_id = $1"))
        .bind(pledge_id)
        .fetch_optional(conn)
        .await
}

pub(crate) async fn find_payment(
    conn: &mut PgConnection,
    provider: &str,
    provider_id: &str,
    lock: bool,
) -> sqlx::Result<Option<Payment>> {
    sqlx::query_as(&format!(
        "select {PAYMENT_COLUMNS} from payments where provider = $1 and provider_payment_id = $2 {}",
        if lock { "for update" } else { "" }
    ))
    .bind(provider)
    .bind(provider_id)
    .fetch_optional(conn)
    .await
}

pub(crate) async fn set_payment_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: PaymentStatus,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("update payments set status = $2, settled_at = $3 where id = $1")
        .bind(id)
        .bind(status)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// A payment has succeeded, its money captured by ledger entry `entry`.
pub(crate) async fn capture(conn: &mut PgConnection, id: Uuid, entry: Uuid, now: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query("update payments set status = 'succeeded', settled_at = $3, captured_entry_id = $2 where id = $1")
        .bind(id)
        .bind(entry)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// What a provider's confirmation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The state changed.
    Done,
    /// It had already been applied, or no longer applies; nothing changed.
    Nothing,
}

pub(crate) fn unknown(what: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("no {what} {id}"))
}

/// Refuses a confirmation whose money is not what the provider was asked for: 422 `code`
/// (`payment_mismatch`, `refund_mismatch`, `payout_mismatch`), so the event is quarantined and
/// moves nothing. Checked before the object's state, so a wrong amount is never taken for a
/// mere repeat.
pub(crate) fn expect_money(
    code: Code,
    what: &str,
    provider_id: &str,
    expected: Decimal,
    currency: &str,
    paid: Money,
) -> Result<(), ApiError> {
    if paid.amount() == expected && paid.currency().code() == currency {
        return Ok(());
    }
    Err(ApiError::new(
        code,
        format!("{what} {provider_id} is for {expected} {currency}, not {paid}"),
    ))
}

/// A refund to write: its id, its pledge and the amount back to the card.
pub(crate) struct NewRefund {
    pub(crate) id: Uuid,
    pub(crate) pledge_id: Uuid,
    pub(crate) amount: Decimal,
}

/// Writes refunds to one provider in one statement, each naming the entry that owes it.
pub(crate) async fn insert_refunds(
    conn: &mut PgConnection,
    provider: &str,
    currency: Currency,
    refunds: &[NewRefund],
    reason: &str,
    owed_entry: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let adapter = provider::of_row(provider);
    let provider_ids = refunds
        .iter()
        .map(|r| Ok(adapter.create_refund(r.id, Money::new(r.amount, currency)?)?))
        .collect::<Result<Vec<String>, ApiError>>()?;
    sqlx::query(
        "insert into refunds (id, provider, provider_refund_id, pledge_id, amount, currency, reason, owed_entry_id,
                              created_at)
         select r.id, $2, r.provider_refund_id, r.pledge_id, r.amount, $5, $6, $7, $8
           from unnest($1::uuid[], $3::text[], $4::uuid[], $9::numeric[]) as r(id, provider_refund_id, pledge_id, amount)",
    )
    .bind(refunds.iter().map(|r| r.id).collect::<Vec<Uuid>>())
    .bind(provider)
    .bind(&provider_ids)
    .bind(refunds.iter().map(|r| r.pledge_id).collect::<Vec<Uuid>>())
    .bind(currency.code())
    .bind(reason)
    .bind(owed_entry)
    .bind(now)
    .bind(refunds.iter().map(|r| r.amount).collect::<Vec<Decimal>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives a pledge's money back from escrow: `escrow → refunds`, and a refund awaiting the
/// provider's confirmation.
pub async fn refund_from_escrow(
    conn: &mut PgConnection,
    pledge_id: Uuid,
    offer_id: Uuid,
    amount: Money,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Uuid, ApiError> {
    let payment = payment_of_pledge(conn, pledge_id)
        .await?
        .expect("a funded pledge has a payment");
    let refund = Uuid::now_v7();
    let escrow = chart::offer_escrow(conn, offer_id, amount.currency(), now).await?;
    let refunds = chart::refunds(conn, &payment.provider, amount.currency(), now).await?;
    let entry = NewEntry::new("pledge.refund", format!("refund:{refund}:owed"), now)
        .metadata(serde_json::json!({ "pledge_id": pledge_id, "offer_id": offer_id, "reason": reason }))
        .debit(escrow, amount)
        .credit(refunds, amount);
    let owed = ledger::post(conn, entry).await?.entry.id;
    let new = NewRefund {
        id: refund,
        pledge_id,
        amount: amount.amount(),
    };
    insert_refunds(conn, &payment.provider, amount.currency(), &[new], reason, owed, now).await?;
    Ok(refund)
}

/// [`refund_from_escrow`] for the card money of many pledges of one offer (a round's close
/// gives back the unallocated money of each): one refund per pledge, each confirmed on its own
/// later (`refunds → psp`), but for each provider a single entry `escrow → refunds` for their
/// total, which every refund names. A constant number of statements, whatever the number of
/// pledges. `parts` are `(pledge, card amount > 0)`.
pub async fn refund_many_from_escrow(
    conn: &mut PgConnection,
    offer_id: Uuid,
    currency: Currency,
    parts: &[(Uuid, Decimal)],
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    if parts.is_empty() {
        return Ok(());
    }
    // Each pledge's provider, as one row per provider (not one per pledge).
    let providers: Vec<(String, Vec<Uuid>)> = sqlx::query_as(
        "select provider, array_agg(pledge_id) from payments where pledge_id = any($1) group by provider",
    )
    .bind(parts.iter().map(|p| p.0).collect::<Vec<Uuid>>())
    .fetch_all(&mut *conn)
    .await?;
    let provider_of: std::collections::HashMap<Uuid, &str> = providers
        .iter()
        .flat_map(|(provider, pledges)| pledges.iter().map(move |p| (*p, provider.as_str())))
        .collect();
    let mut by_provider: std::collections::BTreeMap<&str, Vec<NewRefund>> = Default::default();
    for &(pledge_id, amount) in parts {
        let provider = provider_of.get(&pledge_id).expect("a funded pledge has a payment");
        by_provider.entry(provider).or_default().push(NewRefund {
            id: Uuid::now_v7(),
            pledge_id,
            amount,
        });
    }
    let escrow = chart::offer_escrow(conn, offer_id, currency, now).await?;
    for (provider, refunds) in by_provider {
        let total = Money::new(refunds.iter().map(|r| r.amount).sum(), currency)?;
        let to = chart::refunds(conn, provider, currency, now).await?;
        let entry = NewEntry::new(
            "pledge.refund",
            format!("offer:{offer_id}:refunds:{}:owed", refunds[0].id),
            now,
        )
        .metadata(serde_json::json!({ "offer_id": offer_id, "reason": reason, "refunds": refunds.len() }))
        .debit(escrow, total)
        .credit(to, total);
        let owed = ledger::post(conn, entry).await?.entry.id;
        insert_refunds(conn, provider, currency, &refunds, reason, owed, now).await?;
    }
    Ok(())
}

/// The provider gave a refund back to the card: `refunds → psp`, for the refund's exact amount.
pub async fn confirm_refund(
    conn: &mut PgConnection,
    provider: &str,
    provider_refund_id: &str,
    paid: Money,
    now: DateTime<Utc>,
) -> Result<Applied, ApiError> {
    let row: Option<(Uuid, Decimal, String, String)> = sqlx::query_as(
        "select id, amount, currency, status::text from refunds where provider = $1 and provider_refund_id = $2 for update",
    )
    .bind(provider)
    .bind(provider_refund_id)
    .fetch_optional(&mut *conn)
    .await?;
    let (id, amount, currency, status) = row.ok_or_else(|| unknown("refund", provider_refund_id))?;
    expect_money(
        Code::RefundMismatch,
        "refund",
        provider_refund_id,
        amount,
        &currency,
        paid,
    )?;
    if status != "pending" {
        return Ok(Applied::Nothing);
    }
    let amount = Money::new(amount, Currency::parse(&currency)?)?;
    let refunds = chart::refunds(conn, provider, amount.currency(), now).await?;
    let psp = chart::psp(conn, provider, amount.currency(), now).await?;
    let entry = NewEntry::new("refund.paid", format!("refund:{id}:paid"), now)
        .metadata(serde_json::json!({ "refund_id": id, "provider_refund_id": provider_refund_id }))
        .debit(refunds, amount)
        .credit(psp, amount);
    let paid = ledger::post(conn, entry).await?.entry.id;
    // Settled and named in one statement: Postgres refuses either without the other
    // (`refunds_paid_once`), and verify checks the entry (`refunds_paid`).
    sqlx::query("update refunds set status = 'succeeded', settled_at = $2, paid_entry_id = $3 where id = $1")
        .bind(id)
        .bind(now)
        .bind(paid)
        .execute(&mut *conn)
        .await?;
    Ok(Applied::Done)
}
