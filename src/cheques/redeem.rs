//! Cheques as pledge funding: checked before the pledge's transaction, spent inside it
//! (`cheque → offer escrow`, after the offer's reservation, per the lock order), and given back
//! `offer escrow → cheque`, or `→ sponsor budget` when the cheque has ended by then.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Cheque, ChequeError, code};
use crate::books::{EntryKind, chart};
use crate::fields::FieldError;
use crate::ledger::{self, LedgerError, NewEntry};
use crate::money::{Currency, Money};
use crate::outbox::{self, EventType};
use crate::projects;

/// Where a pledge's cheque money would go: an offer's project, in the offer's currency.
#[derive(Clone, Copy, Debug)]
pub struct Destination {
    pub project_id: Uuid,
    pub currency: Currency,
}

/// The pledge cheque money funds: its id, its offer (whose escrow holds the money), its currency.
#[derive(Clone, Copy, Debug)]
pub struct Funded {
    pub pledge_id: Uuid,
    pub offer_id: Uuid,
    pub currency: Currency,
}

/// One cheque source of a pledge, checked.
#[derive(Clone, Debug)]
pub struct Spend {
    pub cheque: Cheque,
    pub amount: Money,
}

/// Checks each `(code, amount)` against the offer: the cheque exists, is live, is in the offer's
/// currency and may go to its project. The balance is checked when spending, under its lock.
pub async fn check(
    conn: &mut PgConnection,
    sources: &[(&str, Money)],
    offer: Destination,
    now: DateTime<Utc>,
) -> Result<Vec<Spend>, ChequeError> {
    let mut spends: Vec<Spend> = Vec::with_capacity(sources.len());
    for (given, amount) in sources {
        let canonical = code::normalise(given).ok_or(ChequeError::UnknownCode)?;
        let cheque = super::by_code_hash(conn, &code::hash(&canonical))
            .await?
            .ok_or(ChequeError::UnknownCode)?;
        if spends.iter().any(|s| s.cheque.id == cheque.id) {
            return Err(FieldError("a cheque appears twice in the funding".into()).into());
        }
        match cheque.status {
            super::Stored::Cancelled => return Err(ChequeError::Cancelled),
            super::Stored::Expired => return Err(ChequeError::Expired),
            super::Stored::Active if !cheque.live(now) => return Err(ChequeError::Expired),
            super::Stored::Active => {}
        }
        if cheque.currency != offer.currency {
            return Err(ChequeError::WrongCurrency {
                cheque: cheque.currency,
                offer: offer.currency,
            });
        }
        if !cheque.eligible_project_ids.is_empty() && !cheque.eligible_project_ids.contains(&offer.project_id) {
            return Err(ChequeError::ProjectNotEligible);
        }
        if !cheque.eligible_themes.is_empty() {
            let project = projects::store::get(conn, offer.project_id)
                .await?
                .expect("offers belong to projects");
            let themes: Vec<String> = project
                .themes
                .iter()
                .filter_map(|t| serde_json::to_value(t).ok()?.as_str().map(str::to_owned))
                .collect();
            if !cheque.eligible_themes.iter().any(|t| themes.contains(t)) {
                return Err(ChequeError::ThemeNotEligible {
                    themes: cheque.eligible_themes,
                });
            }
        }
        spends.push(Spend {
            cheque,
            amount: *amount,
        });
    }
    Ok(spends)
}

/// Spends the checked cheques on `pledge`: `cheque → offer escrow` each. The cheque account's
/// `no_overdraft` refuses what is not there, even when many pledges spend one cheque at once.
pub async fn spend(
    conn: &mut PgConnection,
    pledge: Funded,
    spends: &[Spend],
    now: DateTime<Utc>,
) -> Result<(), ChequeError> {
    let escrow = chart::offer_escrow(conn, pledge.offer_id, pledge.currency, now).await?;
    for Spend { cheque, amount } in spends {
        let account = chart::cheque(conn, cheque.id, cheque.currency, now).await?;
        let entry = NewEntry::new(
            EntryKind::ChequeRedeemed,
            format!("pledge:{}:cheque:{}", pledge.pledge_id, cheque.id),
            now,
        )
        .metadata(
            serde_json::json!({ "cheque_id": cheque.id, "pledge_id": pledge.pledge_id, "offer_id": pledge.offer_id }),
        )
        .debit(account, *amount)
        .credit(escrow, *amount);
        let posted = ledger::post(conn, entry).await.map_err(|err| match err {
            LedgerError::Overdraft => ChequeError::InsufficientBalance { amount: *amount },
            other => other.into(),
        })?;
        sqlx::query(
            "insert into cheque_redemptions (id, cheque_id, pledge_id, amount, created_at) values ($1, $2, $3, $4, $5)",
        )
        .bind(Uuid::now_v7())
        .bind(cheque.id)
        .bind(pledge.pledge_id)
        .bind(amount.amount())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let left = posted
            .entry
            .postings
            .iter()
            .find(|p| p.account_id == account)
            .map(|p| p.balance_after)
            .unwrap_or_default();
        outbox::emit(
            conn,
            EventType::ChequeRedeemed,
            serde_json::json!({ "cheque_id": cheque.id, "pledge_id": pledge.pledge_id, "offer_id": pledge.offer_id,
                                "amount": amount.amount_string(), "currency": amount.currency(),
                                "balance": Money::new(left, cheque.currency)?.amount_string() }),
            now,
        )
        .await?;
    }
    Ok(())
}

/// Gives `amount` of a pledge's cheque money back from escrow, latest cheque first: to the
/// cheque while it is live, else to its sponsor's budget. The caller holds the offer's and the
/// pledge's locks.
pub(crate) async fn give_back(
    conn: &mut PgConnection,
    pledge: Funded,
    amount: Decimal,
    now: DateTime<Utc>,
) -> Result<(), ChequeError> {
    let redemptions: Vec<(Uuid, Uuid, Decimal)> = sqlx::query_as(
        "select id, cheque_id, amount - returned from cheque_redemptions
          where pledge_id = $1 and returned < amount order by created_at desc, id desc for update",
    )
    .bind(pledge.pledge_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut owed = amount;
    let currency = pledge.currency;
    let escrow = chart::offer_escrow(conn, pledge.offer_id, currency, now).await?;
    for (redemption, cheque_id, open) in redemptions {
        if owed <= Decimal::ZERO {
            break;
        }
        let part = Money::new(open.min(owed), currency)?;
        let cheque = super::lock(conn, cheque_id).await?.expect("cheques are never deleted");
        let (kind, to) = if cheque.live(now) {
            (
                EntryKind::ChequeReturned,
                chart::cheque(conn, cheque.id, currency, now).await?,
            )
        } else {
            (
                EntryKind::ChequeReturnedToSponsor,
                chart::sponsor_budget(conn, cheque.sponsor_id, currency, now).await?,
            )
        };
        let entry = NewEntry::new(
            kind,
            format!("pledge:{}:cheque:{}:returned:{}", pledge.pledge_id, cheque.id, open),
            now,
        )
        .metadata(
            serde_json::json!({ "cheque_id": cheque.id, "pledge_id": pledge.pledge_id, "offer_id": pledge.offer_id }),
        )
        .debit(escrow, part)
        .credit(to, part);
        ledger::post(conn, entry).await?;
        sqlx::query("update cheque_redemptions set returned = returned + $2 where id = $1")
            .bind(redemption)
            .bind(part.amount())
            .execute(&mut *conn)
            .await?;
        owed -= part.amount();
    }
    if owed > Decimal::ZERO {
        return Err(ChequeError::Unaccounted {
            pledge: pledge.pledge_id,
            owed,
        });
    }
    Ok(())
}
