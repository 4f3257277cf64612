//! Property: random sequences of entries and reversals over random accounts keep every ledger
//! invariant, each outcome matches a simple in-memory model, and every stored balance equals
//! the sum of its postings.

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Utc;
use crowdledger::ledger::{self, AccountCode, AccountKind, LedgerError, NewAccount, NewEntry, Side};
use crowdledger::money::{Currency, Money};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;
use sqlx::{Connection, PgConnection, PgPool, postgres::PgPoolOptions};
use uuid::Uuid;

const ACCOUNTS: usize = 6;

#[derive(Clone, Debug)]
struct Spec {
    kind: AccountKind,
    usd: bool,
    no_overdraft: bool,
}

#[derive(Clone, Debug)]
enum Op {
    /// Debit `from`, credit `to`.
    Transfer { from: usize, to: usize, cents: i64 },
    /// Debit `from`, credit two accounts.
    Split {
        from: usize,
        to: (usize, usize),
        cents: (i64, i64),
    },
    /// Reverse the n-th entry posted so far (modulo their number).
    Reverse { nth: usize },
}

fn spec() -> impl Strategy<Value = Spec> {
    let kind = prop_oneof![
        Just(AccountKind::Asset),
        Just(AccountKind::Liability),
        Just(AccountKind::Revenue),
        Just(AccountKind::Expense),
        Just(AccountKind::Equity),
    ];
    (kind, prop::bool::weighted(0.2), any::<bool>()).prop_map(|(kind, usd, no_overdraft)| Spec {
        kind,
        usd,
        no_overdraft,
    })
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0..ACCOUNTS;
    let cents = 1i64..500_000;
    prop_oneof![
        4 => (idx.clone(), idx.clone(), cents.clone()).prop_map(|(from, to, cents)| Op::Transfer { from, to, cents }),
        2 => (idx.clone(), (idx.clone(), idx), (cents.clone(), cents))
            .prop_map(|(from, to, cents)| Op::Split { from, to, cents }),
        2 => any::<usize>().prop_map(|nth| Op::Reverse { nth }),
    ]
}

/// A posting in the model: account index, side, cents.
type ModelPosting = (usize, Side, i64);

struct Model {
    specs: Vec<Spec>,
    ids: Vec<Uuid>,
    /// Normal-side balances in cents.
    balances: Vec<i64>,
    /// Posted entries: id, postings (account index, side, cents), reversed yet.
    entries: Vec<(Uuid, Vec<ModelPosting>, bool)>,
}

impl Model {
    fn currency(&self, i: usize) -> Currency {
        if self.specs[i].usd {
            Currency::parse("USD").unwrap()
        } else {
            Currency::EUR
        }
    }

    fn delta(&self, i: usize, side: Side, cents: i64) -> i64 {
        if side == self.specs[i].kind.normal_side() {
            cents
        } else {
            -cents
        }
    }

    /// What the ledger must answer for these postings (all in the currency of the first).
    fn predict(&self, postings: &[ModelPosting]) -> Result<(), &'static str> {
        let mut after = self.balances.clone();
        for &(i, side, cents) in postings {
            after[i] += self.delta(i, side, cents);
        }
        if postings
            .iter()
            .any(|&(i, _, _)| self.specs[i].no_overdraft && after[i] < 0)
        {
            return Err("overdraft");
        }
        let currency = self.currency(postings[0].0);
        if postings.iter().any(|&(i, _, _)| self.currency(i) != currency) {
            return Err("currency");
        }
        Ok(())
    }

    fn apply(&mut self, postings: &[ModelPosting]) {
        for &(i, side, cents) in postings {
            self.balances[i] += self.delta(i, side, cents);
        }
    }
}

fn outcome(result: &Result<ledger::Posted, LedgerError>) -> Result<(), &'static str> {
    match result {
        Ok(_) => Ok(()),
        Err(LedgerError::Overdraft) => Err("overdraft"),
        Err(LedgerError::CurrencyMismatch) => Err("currency"),
        Err(LedgerError::Unbalanced(_)) => Err("currency"),
        Err(other) => panic!("unexpected ledger error: {other:?}"),
    }
}

async fn run_case(pool: &PgPool, case: usize, specs: Vec<Spec>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut conn = pool.acquire().await.unwrap();
    let mut ids = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let new = NewAccount {
            code: AccountCode::parse(format!("case{case}:acct{i}")).unwrap(),
            currency: if s.usd {
                Currency::parse("USD").unwrap()
            } else {
                Currency::EUR
            },
            kind: s.kind,
            no_overdraft: s.no_overdraft,
        };
        ids.push(ledger::open_account(&mut conn, &new, Utc::now()).await.unwrap().0.id);
    }
    let mut model = Model {
        specs,
        ids,
        balances: vec![0; ACCOUNTS],
        entries: Vec::new(),
    };

    for (n, op) in ops.into_iter().enumerate() {
        let reference = format!("case{case}:op{n}");
        let (postings, reversing) = match op {
            Op::Transfer { from, to, cents } if from != to => {
                (vec![(from, Side::Debit, cents), (to, Side::Credit, cents)], None)
            }
            Op::Split {
                from,
                to: (a, b),
                cents: (x, y),
            } if from != a && from != b && a != b => (
                vec![(from, Side::Debit, x + y), (a, Side::Credit, x), (b, Side::Credit, y)],
                None,
            ),
            Op::Reverse { nth } if !model.entries.is_empty() => {
                let k = nth % model.entries.len();
                let (id, postings, reversed) = &model.entries[k];
                if *reversed {
                    let err = ledger::reverse(&mut conn, *id, Some(reference), Utc::now(), serde_json::json!({})).await;
                    prop_assert!(matches!(err, Err(LedgerError::AlreadyReversed(_))), "{err:?}");
                    continue;
                }
                (
                    postings.iter().map(|&(i, s, c)| (i, s.opposite(), c)).collect(),
                    Some((k, *id)),
                )
            }
            _ => continue,
        };
        let expected = model.predict(&postings);
        let result = match reversing {
            Some((_, id)) => ledger::reverse(&mut conn, id, Some(reference), Utc::now(), serde_json::json!({})).await,
            None => {
                let currency = model.currency(postings[0].0);
                let mut entry = NewEntry::new("prop", reference, Utc::now());
                for &(i, side, cents) in &postings {
                    let amount = Money::new(Decimal::new(cents, 2), currency).unwrap();
                    entry = match side {
                        Side::Debit => entry.debit(model.ids[i], amount),
                        Side::Credit => entry.credit(model.ids[i], amount),
                    };
                }
                ledger::post(&mut conn, entry).await
            }
        };
        prop_assert_eq!(outcome(&result), expected, "op {} {:?}", n, postings);
        if let Ok(posted) = result {
            model.apply(&postings);
            match reversing {
                Some((k, _)) => model.entries[k].2 = true,
                None => model.entries.push((posted.entry.id, postings, false)),
            }
        }
    }

    for (i, id) in model.ids.iter().enumerate() {
        let account = ledger::account(&mut conn, *id).await.unwrap().unwrap();
        prop_assert_eq!(account.balance, Decimal::new(model.balances[i], 2), "account {}", i);
        let from_postings: Decimal = sqlx::query_scalar(
            "select coalesce(sum(case when side = $2 then amount else -amount end), 0)
               from ledger_postings where account_id = $1",
        )
        .bind(id)
        .bind(model.specs[i].kind.normal_side())
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        prop_assert_eq!(account.balance, from_postings);
    }
    let checks = ledger::verify(pool).await.unwrap();
    prop_assert!(checks.iter().all(|c| c.ok), "{:?}", checks);
    Ok(())
}

/// A fresh database for this test (the property runner is synchronous, so no #[sqlx::test]).
async fn fresh_database() -> (PgPool, String, String) {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by scripts/test");
    let name = format!("ledger_props_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (prefix, _) = url.rsplit_once('/').unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&format!("{prefix}/{name}"))
        .await
        .unwrap();
    crowdledger::db::migrate(&pool).await.unwrap();
    (pool, url, name)
}

#[test]
fn random_entries_and_reversals_keep_every_invariant() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (pool, admin_url, name) = rt.block_on(fresh_database());
    let case = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(spec(), ACCOUNTS),
        prop::collection::vec(op(), 1..40),
    );
    let result = runner.run(&strategy, |(specs, ops)| {
        rt.block_on(run_case(&pool, case.fetch_add(1, Ordering::SeqCst), specs, ops))
    });
    rt.block_on(async {
        pool.close().await;
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("drop database {name} with (force)"))
            .execute(&mut admin)
            .await
            .unwrap();
    });
    result.unwrap();
}
