//! The trial balance: every account's balance in a debit or a credit column, per currency, with
//! totals, read on one snapshot. Balanced books have equal totals in every currency.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{AccountKind, LedgerError, Side};
use crate::money::{Currency, format_amount};

#[derive(Serialize, ToSchema)]
pub struct TrialBalanceLine {
    id: Uuid,
    code: String,
    kind: AccountKind,
    /// The balance when it sits on the debit side, else "0.00".
    debit: String,
    /// The balance when it sits on the credit side, else "0.00".
    credit: String,
}

#[derive(Serialize, ToSchema)]
pub struct TrialBalanceCurrency {
    currency: String,
    total_debit: String,
    total_credit: String,
    balanced: bool,
    accounts: Vec<TrialBalanceLine>,
}

#[derive(Serialize, ToSchema)]
pub struct TrialBalance {
    as_of: DateTime<Utc>,
    /// True when every currency's debit and credit totals agree.
    balanced: bool,
    currencies: Vec<TrialBalanceCurrency>,
}

/// Which moment a trial balance is of.
#[derive(Clone, Copy, Debug)]
pub enum AsOf {
    /// Now: the accounts' own balances.
    Now(DateTime<Utc>),
    /// A moment past: each account's running balance after its last posting effective by then.
    Past(DateTime<Utc>),
}

/// The trial balance as of `as_of`, every statement within `timeout`.
pub async fn trial_balance(pool: &PgPool, timeout: Duration, as_of: AsOf) -> Result<TrialBalance, LedgerError> {
    // Every account: a full read, on one snapshot and within the time limit for reads.
    let mut tx = super::read_snapshot(pool, Some(timeout)).await?;
    let (accounts, as_of) = match as_of {
        AsOf::Now(now) => (super::all_accounts(&mut tx).await?, now),
        AsOf::Past(at) => (super::all_accounts_as_of(&mut tx, at).await?, at),
    };
    tx.commit().await?;
    let mut currencies: Vec<TrialBalanceCurrency> = Vec::new();
    let mut totals: Vec<(Currency, Decimal, Decimal)> = Vec::new();
    for account in accounts {
        let currency = account.currency;
        if totals.last().is_none_or(|(c, _, _)| *c != currency) {
            totals.push((currency, Default::default(), Default::default()));
            currencies.push(TrialBalanceCurrency {
                currency: currency.code().to_string(),
                total_debit: String::new(),
                total_credit: String::new(),
                balanced: false,
                accounts: Vec::new(),
            });
        }
        // A balance below zero on its normal side sits in the other column.
        let on_debit = (account.kind.normal_side() == Side::Debit) == (account.balance >= Decimal::ZERO);
        let (debit, credit) = if on_debit {
            (account.balance.abs(), Default::default())
        } else {
            (Default::default(), account.balance.abs())
        };
        let (_, total_debit, total_credit) = totals.last_mut().expect("pushed above");
        *total_debit += debit;
        *total_credit += credit;
        currencies
            .last_mut()
            .expect("pushed above")
            .accounts
            .push(TrialBalanceLine {
                id: account.id,
                code: account.code,
                kind: account.kind,
                debit: format_amount(debit, currency),
                credit: format_amount(credit, currency),
            });
    }
    for (view, (currency, debit, credit)) in currencies.iter_mut().zip(totals) {
        view.total_debit = format_amount(debit, currency);
        view.total_credit = format_amount(credit, currency);
        view.balanced = debit == credit;
    }
    Ok(TrialBalance {
        as_of,
        balanced: currencies.iter().all(|c| c.balanced),
        currencies,
    })
}
