//! Rounds end to end through HTTP: projects, investors, offers, pledges, sandbox payments,
//! closing, allocation, cap table, payouts; the books verified after each scenario.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::common::fixtures::*;
use crate::common::{self, TestApp};

#[sqlx::test]
async fn a_1001pact_round_succeeds_and_every_cent_adds_up(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // 40 investors; tickets of 10 to ~5,000 shares, 133,330 EUR in all (min 100k, cap 150k).
    let World {
        project,
        offer,
        investors,
    } = world_with(&app, json!({}), 28, 40).await;
    let mut expected: HashMap<String, i64> = HashMap::new();
    for (i, who) in (0..).zip(investors) {
        let shares = 1 + (i * 7919) % 650;
        funded_pledge(&app, &offer, &who, shares).await;
        expected.insert(who, shares);
    }
    let total_shares: i64 = expected.values().sum();
    let o = ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await;
    assert_eq!(o["shares_funded"], total_shares);
    assert_eq!(o["pledge_count"], 40);
    assert_eq!(o["investor_count"], 40);

    // Early close needs the minimum: not there yet if below 10,000 shares.
    if total_shares < 10_000 {
        let r = app.post(&format!("/v1/offers/{offer}/close"), json!({})).await;
        r.assert_problem(409, "min_target_not_reached");
        let top_up = investor(&app, "Whale", "sophisticated").await;
        funded_pledge(&app, &offer, &top_up, 10_000 - total_shares).await;
        expected.insert(top_up, 10_000 - total_shares);
    }
    let total_shares: i64 = expected.values().sum();
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    assert_eq!(closed["shares_allocated"], total_shares);

    let total = Decimal::from(total_shares) * Decimal::from(10);
    let fee = (total * Decimal::new(5, 2)).round_dp(2);
    let table = ok(app.get(&format!("/v1/offers/{offer}/cap-table")).await, 200).await;
    assert_eq!(table["total_shares"], total_shares);
    assert_eq!(table["total_amount"], format!("{total:.2}"));
    let lines = table["investors"].as_array().unwrap();
    assert_eq!(lines.len(), expected.len());
    for line in lines {
        assert_eq!(line["shares"], expected[line["investor_id"].as_str().unwrap()]);
    }
    assert_eq!(balance(&app, "platform:fees:eur").await, format!("{fee:.2}"));
    assert_eq!(
        balance(&app, &format!("project:{project}:payable:eur")).await,
        format!("{:.2}", total - fee)
    );
    assert_eq!(balance(&app, &format!("offer:{offer}:escrow")).await, "0.00");

    // CSV: same lines, same totals.
    let csv = app
        .client
        .get(format!("{}/v1/offers/{offer}/cap-table", app.base))
        .bearer_auth(common::OPERATOR_KEY)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), expected.len());
    let csv_shares: i64 = rows
        .iter()
        .map(|r| r.split(',').nth(2).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(csv_shares, total_shares);

    // Payout: the project gets its net once the provider confirms.
    let payout = ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 201).await;
    assert_eq!(payout["amount"], format!("{:.2}", total - fee));
    // Asked again, the payout already made: nothing more is owed, nothing more is created.
    let again = ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 200).await;
    assert_eq!(again, payout);
    confirm_payout(&app, &payout).await;
    let after = ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 200).await;
    assert_eq!((&after["id"], &after["status"]), (&payout["id"], &json!("paid")));
    assert_eq!(balance(&app, &format!("project:{project}:payable:eur")).await, "0.00");
    assert_eq!(balance(&app, "psp:sandbox:eur").await, format!("{fee:.2}"));
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_round_that_misses_its_minimum_refunds_everyone(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, json!({}), 28).await;
    let a = investor(&app, "Alice", "sophisticated").await;
    let b = investor(&app, "Bob", "sophisticated").await;
    funded_pledge(&app, &offer, &a, 300).await;
    funded_pledge(&app, &offer, &b, 200).await;
    let unpaid = ok(pledge(&app, &offer, &b, 50, "10.00").await, 201).await;
    assert_eq!(balance(&app, &format!("offer:{offer}:escrow")).await, "5000.00");

    // The closing time passes; the background job closes the round by itself.
    app.clock.advance(29 * DAY).unwrap();
    let o = app
        .wait_for(&format!("/v1/offers/{offer}"), |o| o["status"] == "failed")
        .await;
    // Everything went back: nothing is funded any more, nothing is reserved.
    assert_eq!(
        (o["shares_funded"].as_i64(), o["shares_reserved"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(balance(&app, &format!("offer:{offer}:escrow")).await, "0.00");
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "5000.00");
    let statuses: Vec<Value> = pledges_of(&app, &offer)
        .await
        .iter()
        .map(|p| p["status"].clone())
        .collect();
    assert_eq!(statuses, ["refunded", "refunded", "cancelled"]);
    let unpaid = ok(
        app.get(&format!("/v1/pledges/{}", unpaid["id"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(unpaid["status"], "cancelled");
    assert_eq!(
        (&unpaid["refunded_amount"], &unpaid["refunds"]),
        (&Value::Null, &json!([]))
    );
    // Each refunded pledge shows its whole amount given back, and its refund.
    for p in pledges_of(&app, &offer)
        .await
        .iter()
        .filter(|p| p["status"] == "refunded")
    {
        assert_eq!(p["refunded_amount"], p["amount"], "{p:#}");
        let ids = p["refunds"].as_array().unwrap();
        assert_eq!(ids.len(), 1, "{p:#}");
        let refund = ok(app.get(&format!("/v1/refunds/{}", ids[0].as_str().unwrap())).await, 200).await;
        assert_eq!(
            (&refund["amount"], &refund["reason"]),
            (&p["amount"], &json!("offer_failed"))
        );
    }

    // The provider confirms both refunds: the money has left the psp account.
    let refunds: Vec<String> = sqlx::query_scalar("select id::text from refunds order by created_at")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(refunds.len(), 2);
    for id in &refunds {
        let r = ok(
            app.post(&format!("/v1/sandbox/refunds/{id}/succeed"), json!({})).await,
            200,
        )
        .await;
        assert_eq!(r["status"], "succeeded", "{r:#}");
        let again = ok(
            app.post(&format!("/v1/sandbox/refunds/{id}/succeed"), json!({})).await,
            200,
        )
        .await;
        assert_eq!(again["succeeded_at"], r["succeeded_at"], "{again:#}");
    }
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "0.00");
    assert_eq!(balance(&app, "psp:sandbox:eur").await, "0.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn an_oversubscribed_pro_rata_round_scales_down_by_largest_remainder(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let terms = json!({"min_target": "50.00", "max_target": "100.00", "allocation": "pro_rata"});
    let offer = open_offer(&app, &project, terms, 28).await;
    // 10 shares cap; 30 + 12 + 8 = 50 pledged: quotas 6, 2.4, 1.6 → 6, 2, 2.
    let mut ids = Vec::new();
    for (name, shares) in [("A", 30), ("B", 12), ("C", 8)] {
        let who = investor(&app, name, "sophisticated").await;
        ids.push(
            funded_pledge(&app, &offer, &who, shares).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded");
    let pledges = pledges_of(&app, &offer).await;
    let allocated: Vec<i64> = pledges
        .iter()
        .map(|p| p["allocated_shares"].as_i64().unwrap())
        .collect();
    let refunded: Vec<&str> = pledges.iter().map(|p| p["refunded_amount"].as_str().unwrap()).collect();
    assert_eq!(allocated, [6, 2, 2]);
    let o = ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await;
    assert_eq!(
        (o["shares_reserved"].as_i64(), o["shares_allocated"].as_i64()),
        (Some(10), Some(10))
    );
    // 500.00 was funded; the round raised what it allocated, the rest was refunded.
    assert_eq!(
        (o["amount_funded"].as_str(), o["amount_raised"].as_str()),
        (Some("500.00"), Some("100.00"))
    );
    assert_eq!(refunded, ["240.00", "100.00", "60.00"]);
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "400.00");
    assert_eq!(balance(&app, &format!("project:{project}:payable:eur")).await, "95.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_ballot_round_can_be_recomputed_from_the_revealed_seed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let terms = json!({"min_target": "500.00", "max_target": "1000.00", "allocation": "ballot"});
    let World { offer, investors, .. } = world_with(&app, terms, 28, 12).await;
    let opened = ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await;
    let commitment = opened["commitment"].as_str().unwrap().to_string();
    assert!(
        opened["amount_raised"].is_null(),
        "nothing is raised before the round ends"
    );
    assert!(
        opened.get("seed").is_none(),
        "the seed stays secret while the offer is open"
    );
    for (i, who) in (0..).zip(&investors) {
        funded_pledge(&app, &offer, who, 10 + i * 3).await;
    }
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded");
    let seed = closed["seed"].as_str().unwrap();
    assert_eq!(hex::encode(Sha256::digest(hex::decode(seed).unwrap())), commitment);
    let pledges = pledges_of(&app, &offer).await;
    let allocated: Vec<i64> = pledges
        .iter()
        .map(|p| p["allocated_shares"].as_i64().unwrap())
        .collect();
    assert_eq!(allocated, recompute_ballot(&hex::decode(seed).unwrap(), &pledges, 100));
    assert_eq!(allocated.iter().sum::<i64>(), 100);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn non_sophisticated_investors_get_a_warning_and_four_days_to_revoke(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, json!({"min_target": "1000.00"}), 2).await;
    let carol = investor(&app, "Carol", "non_sophisticated").await;

    // Above €1,000 (no net worth given) the risk warning must be acknowledged.
    pledge(&app, &offer, &carol, 101, "10.00")
        .await
        .assert_problem(422, "risk_warning_required");
    let body = json!({"investor_id": carol, "shares": 150, "risk_acknowledged": true,
                      "funding": [{"kind": "card", "amount": "1500.00"}], "kiis_sha256": KIIS_SHA256});
    let big = app
        .client
        .post(format!("{}/v1/offers/{offer}/pledges", app.base))
        .bearer_auth(common::OPERATOR_KEY)
        .header("idempotency-key", "carol-big")
        .json(&body)
        .send()
        .await
        .unwrap();
    let big = ok(common::read(big).await, 201).await;
    let reflection_ends: chrono::DateTime<chrono::Utc> = big["reflection_ends_at"].as_str().unwrap().parse().unwrap();
    let created: chrono::DateTime<chrono::Utc> = big["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(reflection_ends - created, chrono::TimeDelta::days(4));
    let payment = big["payment"]["payment_id"].as_str().unwrap();
    ok(
        app.post(&format!("/v1/sandbox/payments/{payment}/succeed"), json!({}))
            .await,
        200,
    )
    .await;

    // Her pledges on the offer count together: past €1,000 already, a small one needs the warning too.
    pledge(&app, &offer, &carol, 60, "10.00")
        .await
        .assert_problem(422, "risk_warning_required");

    // Revoked inside the period: the money goes back.
    let dan = investor(&app, "Dan", "non_sophisticated").await;
    let small = funded_pledge(&app, &offer, &dan, 60).await;
    let id = small["id"].as_str().unwrap();
    let revoked = ok(app.post(&format!("/v1/pledges/{id}/revoke"), json!({})).await, 200).await;
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "600.00");
    assert_eq!(balance(&app, &format!("offer:{offer}:escrow")).await, "1500.00");

    // The offer closes after 2 days but waits for the big pledge's reflection period (4 days).
    app.clock.advance(2 * DAY + 60).unwrap();
    app.wait_for(&format!("/v1/offers/{offer}"), |o| o["status"] == "closing")
        .await;
    app.clock.advance(DAY).unwrap();
    let status = ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await["status"].clone();
    assert_eq!(status, "closing");
    // Day 3: still revocable... but this investor keeps it. Day 4 passes: not revocable.
    app.clock.advance(DAY + 60).unwrap();
    let big_id = big["id"].as_str().unwrap();
    app.post(&format!("/v1/pledges/{big_id}/revoke"), json!({}))
        .await
        .assert_problem(409, "not_revocable");
    let o = app
        .wait_for(&format!("/v1/offers/{offer}"), |o| o["status"] == "succeeded")
        .await;
    assert_eq!(o["shares_allocated"], 150);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn the_cli_closes_due_offers_and_exports_the_cap_table(pool: PgPool) {
    let db = common::database_url(&pool);
    let app = TestApp::spawn(pool.clone()).await;
    let project = published_project(&app).await;
    let now = app.clock.now();
    let closes_at = now + chrono::TimeDelta::seconds(2);
    let terms = json!({"min_target": "100.00", "max_target": "1000.00",
                       "opens_at": now.to_rfc3339(), "closes_at": closes_at.to_rfc3339()});
    let offer = open_offer(&app, &project, terms, 1).await;
    let names = ["Ana", "Ben, \"the\" =SUM(A1)"];
    for (name, shares) in names.iter().zip([30, 12]) {
        let who = investor(&app, name, "sophisticated").await;
        funded_pledge(&app, &offer, &who, shares).await;
    }
    // Stop the app, and its background job with it: only the CLI may close the offer now.
    drop(app);
    while chrono::Utc::now() <= closes_at {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_crowdledger"))
            .args(args)
            .env("DATABASE_URL", &db)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = cli(&["close-due"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1 offer(s) closed");
    let status: String = sqlx::query_scalar("select status::text from offers where id = $1::uuid")
        .bind(&offer)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "succeeded");
    // Nothing more is due.
    assert_eq!(
        String::from_utf8_lossy(&cli(&["close-due"]).stdout).trim(),
        "0 offer(s) closed"
    );

    let out = cli(&["export", "cap-table", "--offer", &offer]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "investor_id,investor_name,shares,amount,currency,holder");
    assert!(lines[1].ends_with(",Ana,30,300.00,EUR,investor"), "{csv}");
    // Quoted, and defused as a spreadsheet formula.
    assert!(
        lines[2].ends_with(",\"Ben, \"\"the\"\" =SUM(A1)\",12,120.00,EUR,investor"),
        "{csv}"
    );
    let out = cli(&["export", "cap-table", "--offer", &offer, "--format", "json"]);
    let table: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(table["total_shares"], 42);
    let out = cli(&["export", "cap-table", "--offer", &uuid::Uuid::new_v4().to_string()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));
}

/// A close rewrites every funded pledge of a round; those updates must stay on their pages (HOT),
/// so no index of `pledges` may name what a close changes (migration 0019). The overdue job's
/// index follows a column Postgres sets from `status` only while the payment is awaited.
#[sqlx::test]
async fn a_close_updates_pledges_without_touching_their_indexes(pool: PgPool) {
    use crowdledger::pledges::{PledgeStatus, store};
    let app = TestApp::spawn(pool).await;
    let (_, offer) = small_open_offer(&app).await;
    let mut funded = Vec::new();
    for name in ["A", "B", "C"] {
        let who = investor(&app, name, "sophisticated").await;
        let p = funded_pledge(&app, &offer, &who, 2).await;
        funded.push(p["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
    }
    let who = investor(&app, "D", "sophisticated").await;
    let pending = ok(pledge(&app, &offer, &who, 2, "10.00").await, 201).await;
    let pending: uuid::Uuid = pending["id"].as_str().unwrap().parse().unwrap();

    let awaiting: Vec<(uuid::Uuid, bool)> = sqlx::query_as(
        "select id, awaiting_payment_until is not distinct from
                    (case when status = 'pending_payment' then payment_due_at end)
           from pledges order by id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(awaiting.len(), 4);
    assert!(awaiting.iter().all(|(_, ok)| *ok), "{awaiting:?}");
    let (due,): (Option<chrono::DateTime<chrono::Utc>>,) =
        sqlx::query_as("select awaiting_payment_until from pledges where id = $1")
            .bind(pending)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(due.is_some(), "a pending pledge awaits its payment");

    // The close's own update, counted in its transaction (rolled back).
    let mut tx = app.pool.begin().await.unwrap();
    let n = funded.len();
    store::set_allocations(
        &mut tx,
        &funded,
        &vec![1; n],
        &vec![Decimal::new(1000, 2); n],
        &vec![PledgeStatus::Allocated; n],
        app.clock.now(),
    )
    .await
    .unwrap();
    let (updated, hot): (i64, i64) = sqlx::query_as(
        "select pg_stat_get_xact_tuples_updated('pledges'::regclass),
                pg_stat_get_xact_tuples_hot_updated('pledges'::regclass)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!((updated, hot), (n as i64, n as i64), "every allocation update is HOT");
    tx.rollback().await.unwrap();
}
