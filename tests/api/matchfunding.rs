//! Matchfunding pools (PRODUCT.md section 13, docs/matchfunding.md), through the HTTP API:
//! a sponsor's pool matches funded eligible pledges within its caps, in whole shares held in the
//! sponsor's name, gives back what ended pledges and failed rounds return, and returns the rest
//! to the sponsor when it expires.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{self, DAY, ok};
use crate::common::{self, TestApp};

async fn pool(app: &TestApp, sponsor: &str, terms: Value) -> Value {
    let expires = app.clock.now() + chrono::TimeDelta::days(30);
    let mut body = json!({"amount": "1000.00", "ratio": "1", "max_per_pledge": "150.00",
                          "max_per_project": "400.00", "expires_at": expires.to_rfc3339()});
    for (k, v) in terms.as_object().unwrap() {
        body[k] = v.clone();
    }
    ok(
        app.post(&format!("/v1/sponsors/{sponsor}/match-pools"), body).await,
        201,
    )
    .await
}

async fn matches(app: &TestApp, pool: &str) -> Vec<Value> {
    let r = ok(
        app.get(&format!("/v1/match-pools/{pool}/matches?limit=1000")).await,
        200,
    )
    .await;
    r["items"].as_array().unwrap().clone()
}

async fn match_of(app: &TestApp, pool: &str, pledge: &str) -> Option<Value> {
    matches(app, pool).await.into_iter().find(|m| m["pledge_id"] == pledge)
}

async fn events(app: &TestApp, event_type: &str) -> Vec<Value> {
    sqlx::query_scalar("select payload -> 'data' from outbox_events where event_type = $1 order by created_at, id")
        .bind(event_type)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// A project with `themes`, published, and its open first_come offer of 100 to 500 shares at
/// 10.00 closing in 9 days.
async fn project_offer(app: &TestApp, themes: Value, terms: Value) -> (String, String) {
    let body = json!({
        "name": "Les Amis du Zéro", "legal_name": "Les Amis du Zéro SCIC", "legal_form": "SCIC", "country": "FR",
        "territory": "Hauts-de-France", "themes": themes, "description": "Zero waste shops.", "impact_indicators": [],
    });
    let project = id(&ok(app.post("/v1/projects", body).await, 201).await);
    ok(
        app.post(&format!("/v1/projects/{project}/publish"), json!({})).await,
        200,
    )
    .await;
    let mut offer_terms = json!({"min_target": "1000.00", "max_target": "5000.00"});
    for (k, v) in terms.as_object().unwrap() {
        offer_terms[k] = v.clone();
    }
    let offer = fixtures::open_offer(app, &project, offer_terms, 9).await;
    (project, offer)
}

#[sqlx::test]
async fn a_pool_matches_funded_pledges_within_its_caps_and_gives_back_what_ended_pledges_return(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let sponsor = fixtures::funded_sponsor(&app, "Fondation Hauts-de-France", "10000.00").await;
    let (project, offer) = project_offer(&app, json!(["waste", "inclusion"]), json!({"min_target": "500.00"})).await;
    let (_, elsewhere) = project_offer(&app, json!(["culture"]), json!({})).await;
    let p = pool(&app, &sponsor, json!({"eligible_themes": ["waste"]})).await;
    let pool_id = id(&p);
    assert_eq!(p["status"], "active");
    assert_eq!(p["balance"], "1000.00");
    assert_eq!(p["ratio"], "1");
    assert_eq!(fixtures::budget(&app, &sponsor).await, "9000.00");
    assert_eq!(fixtures::balance(&app, &format!("match:{pool_id}")).await, "1000.00");

    let investors = fixtures::investors(&app, 5).await;
    let retail = fixtures::investor(&app, "Chloé Retail", "non_sophisticated").await;

    // 100.00 pledged, 100.00 matched: 10 shares in the sponsor's name.
    let a = fixtures::funded_pledge(&app, &offer, &investors[0], 10).await;
    let m = match_of(&app, &pool_id, a["id"].as_str().unwrap())
        .await
        .expect("matched");
    assert_eq!((m["shares"].as_i64(), m["amount"].as_str()), (Some(10), Some("100.00")));
    assert_eq!(m["status"], "applied");
    assert_eq!(m["project_id"], project.as_str());
    let o = ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await;
    assert_eq!(
        (o["shares_reserved"].as_i64(), o["shares_matched"].as_i64()),
        (Some(20), Some(10))
    );
    assert_eq!(o["amount_matched"], "100.00");

    // 200.00 pledged: capped per pledge at 150.00.
    let b = fixtures::funded_pledge(&app, &offer, &investors[1], 20).await;
    let m = match_of(&app, &pool_id, b["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(m["amount"], "150.00");
    // 300.00 pledged: 150.00 per pledge, and the project's 400.00 is reached.
    let c = fixtures::funded_pledge(&app, &offer, &retail, 30).await;
    assert_eq!(
        match_of(&app, &pool_id, c["id"].as_str().unwrap()).await.unwrap()["amount"],
        "150.00"
    );
    // Nothing left for the project.
    let d = fixtures::funded_pledge(&app, &offer, &investors[2], 5).await;
    assert!(match_of(&app, &pool_id, d["id"].as_str().unwrap()).await.is_none());
    // Another project, not eligible by theme: never matched.
    let e = fixtures::funded_pledge(&app, &elsewhere, &investors[3], 10).await;
    assert!(match_of(&app, &pool_id, e["id"].as_str().unwrap()).await.is_none());
    let p = ok(app.get(&format!("/v1/match-pools/{pool_id}")).await, 200).await;
    assert_eq!(
        (p["balance"].as_str(), p["matched"].as_str()),
        (Some("600.00"), Some("400.00"))
    );

    // The retail investor revokes: their match goes back to the pool and frees the project's room.
    ok(
        app.post(&format!("/v1/pledges/{}/revoke", c["id"].as_str().unwrap()), json!({}))
            .await,
        200,
    )
    .await;
    let back = match_of(&app, &pool_id, c["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(
        (back["status"].as_str(), back["returned"].as_str()),
        (Some("returned"), Some("150.00"))
    );
    let returned = events(&app, "match.returned").await;
    assert_eq!(returned.len(), 1);
    assert_eq!(
        (returned[0]["to"].as_str(), returned[0]["reason"].as_str()),
        (Some("pool"), Some("revoked"))
    );
    assert_eq!(fixtures::balance(&app, &format!("match:{pool_id}")).await, "750.00");
    let f = fixtures::funded_pledge(&app, &offer, &investors[4], 12).await;
    assert_eq!(
        match_of(&app, &pool_id, f["id"].as_str().unwrap()).await.unwrap()["amount"],
        "120.00"
    );
    app.assert_books_verify().await;

    // Shares: 10 + 20 + 5 + 12 pledged, 10 + 15 + 12 matched, all allocated at the close.
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    let table = ok(app.get(&format!("/v1/offers/{offer}/cap-table")).await, 200).await;
    let lines = table["investors"].as_array().unwrap();
    let sponsor_lines: Vec<&Value> = lines.iter().filter(|l| l["holder"] == "sponsor").collect();
    assert_eq!(sponsor_lines.len(), 1, "{table:#}");
    assert_eq!(sponsor_lines[0]["investor_id"], sponsor.as_str());
    assert_eq!(sponsor_lines[0]["investor_name"], "Fondation Hauts-de-France");
    assert_eq!(
        (sponsor_lines[0]["shares"].as_i64(), sponsor_lines[0]["amount"].as_str()),
        (Some(37), Some("370.00"))
    );
    assert_eq!(table["total_shares"], 47 + 37);
    let o = ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await;
    assert_eq!(o["amount_raised"], "840.00");
    assert_eq!(fixtures::balance(&app, &format!("offer:{offer}:escrow")).await, "0.00");
    let csv = app
        .client
        .get(format!("{}/v1/offers/{offer}/cap-table", app.base))
        .bearer_auth(common::OPERATOR_KEY)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains(&format!("{sponsor},Fondation Hauts-de-France,37,370.00,EUR,sponsor")),
        "{csv}"
    );
    for m in matches(&app, &pool_id).await {
        if m["pledge_id"] != c["id"] {
            assert_eq!(m["status"], "allocated", "{m:#}");
            assert_eq!(m["allocated_shares"], m["shares"]);
        }
    }
    assert_eq!(events(&app, "match.applied").await.len(), 4);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn sixty_concurrent_funded_pledges_share_a_pool_with_room_for_25_and_a_failed_round_gives_every_match_back(
    db: PgPool,
) {
    let app = TestApp::spawn(db).await;
    let sponsor = fixtures::funded_sponsor(&app, "Brest métropole", "1000.00").await;
    let (_, offer) = project_offer(&app, json!(["employment"]), json!({"min_target": "4000.00"})).await;
    // 250.00 at 10.00 a match: 25 matches, whatever order the pledges are funded in.
    let p = pool(
        &app,
        &sponsor,
        json!({"amount": "250.00", "max_per_pledge": "10.00", "max_per_project": "5000.00"}),
    )
    .await;
    let pool_id = id(&p);
    let investors = fixtures::investors(&app, 60).await;
    let mut payments = Vec::new();
    for investor in &investors {
        let pledged = ok(fixtures::pledge(&app, &offer, investor, 1, "10.00").await, 201).await;
        payments.push(pledged["payment"]["payment_id"].as_str().unwrap().to_string());
    }
    let replies = common::race(60, |i| {
        let app = &app;
        let payment = payments[i].clone();
        async move {
            app.post(&format!("/v1/sandbox/payments/{payment}/succeed"), json!({}))
                .await
        }
    })
    .await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let made = matches(&app, &pool_id).await;
    assert_eq!(made.len(), 25);
    assert!(made.iter().all(|m| m["amount"] == "10.00" && m["shares"] == 1));
    let distinct: std::collections::BTreeSet<&str> = made.iter().map(|m| m["pledge_id"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 25);
    assert_eq!(fixtures::balance(&app, &format!("match:{pool_id}")).await, "0.00");
    let o = ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await;
    assert_eq!(
        (o["shares_funded"].as_i64(), o["shares_matched"].as_i64()),
        (Some(60), Some(25))
    );
    assert_eq!(o["shares_reserved"], 85);
    app.assert_books_verify().await;

    // 850.00 of 4,000.00: the round fails at its closing time and every match goes back.
    app.clock.advance(10 * DAY).unwrap();
    app.wait_for(&format!("/v1/offers/{offer}"), |o| o["status"] == "failed")
        .await;
    let made = matches(&app, &pool_id).await;
    assert!(
        made.iter()
            .all(|m| m["status"] == "returned" && m["returned"] == "10.00"),
        "{made:#?}"
    );
    assert_eq!(fixtures::balance(&app, &format!("match:{pool_id}")).await, "250.00");
    assert_eq!(fixtures::balance(&app, &format!("offer:{offer}:escrow")).await, "0.00");
    let returned = events(&app, "match.returned").await;
    assert_eq!(returned.len(), 25);
    assert!(returned.iter().all(|e| e["reason"] == "refunded" && e["to"] == "pool"));
    app.assert_books_verify().await;

    // At its expiry the pool returns what it holds to the sponsor, once.
    app.clock.advance(25 * DAY).unwrap();
    let ended = app
        .wait_for(&format!("/v1/match-pools/{pool_id}"), |p| p["ended_at"].is_string())
        .await;
    assert_eq!(
        (ended["status"].as_str(), ended["returned"].as_str()),
        (Some("expired"), Some("250.00"))
    );
    assert_eq!(fixtures::budget(&app, &sponsor).await, "1000.00");
    assert_eq!(fixtures::balance(&app, &format!("match:{pool_id}")).await, "0.00");
    app.clock.advance(DAY).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(events(&app, "match_pool.ended").await.len(), 1);
    // The sponsor's statement shows the pool's two moves and ends on the budget.
    let statement = ok(app.get(&format!("/v1/sponsors/{sponsor}/statement")).await, 200).await;
    let totals = &statement["totals"];
    assert_eq!(
        (
            totals["match_pools_reserved"].as_str(),
            totals["match_pools_returned"].as_str()
        ),
        (Some("250.00"), Some("250.00")),
        "{statement:#}"
    );
    assert_eq!(totals["closing_balance"], "1000.00");
    let pool_lines: Vec<&str> = statement["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["match_pool_id"] == pool_id.as_str())
        .map(|l| l["amount"].as_str().unwrap())
        .collect();
    assert_eq!(pool_lines, ["-250.00", "250.00"], "{statement:#}");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_match_given_back_after_its_pool_ended_goes_to_the_sponsor(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let sponsor = fixtures::funded_sponsor(&app, "Région Hauts-de-France", "1000.00").await;
    let (_, offer) = project_offer(&app, json!(["energy"]), json!({})).await;
    let expires = app.clock.now() + chrono::TimeDelta::days(2);
    let p = pool(
        &app,
        &sponsor,
        json!({"amount": "500.00", "expires_at": expires.to_rfc3339()}),
    )
    .await;
    let pool_id = id(&p);
    let retail = fixtures::investor(&app, "Léa Retail", "non_sophisticated").await;
    let pledge = fixtures::funded_pledge(&app, &offer, &retail, 12).await;
    assert_eq!(
        match_of(&app, &pool_id, pledge["id"].as_str().unwrap()).await.unwrap()["amount"],
        "120.00"
    );
    // The pool ends with 380.00 left; the match stays in the open round.
    app.clock.advance(3 * DAY).unwrap();
    let ended = app
        .wait_for(&format!("/v1/match-pools/{pool_id}"), |p| p["ended_at"].is_string())
        .await;
    assert_eq!(ended["returned"], "380.00");
    assert_eq!(fixtures::budget(&app, &sponsor).await, "880.00");
    // Revoked within its reflection period: the match goes to the sponsor, the pool stays empty.
    ok(
        app.post(
            &format!("/v1/pledges/{}/revoke", pledge["id"].as_str().unwrap()),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(fixtures::budget(&app, &sponsor).await, "1000.00");
    assert_eq!(fixtures::balance(&app, &format!("match:{pool_id}")).await, "0.00");
    let returned = events(&app, "match.returned").await;
    assert_eq!(
        (returned[0]["to"].as_str(), returned[0]["amount"].as_str()),
        (Some("sponsor"), Some("120.00"))
    );
    let o = ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await;
    assert_eq!(
        (o["shares_reserved"].as_i64(), o["shares_matched"].as_i64()),
        (Some(0), Some(0))
    );
    let statement = ok(app.get(&format!("/v1/sponsors/{sponsor}/statement")).await, 200).await;
    assert_eq!(statement["totals"]["match_pools_returned"], "500.00", "{statement:#}");
    assert_eq!(statement["totals"]["closing_balance"], "1000.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn an_oversubscribed_pro_rata_round_allocates_matches_as_claims_and_gives_back_the_rest(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let sponsor = fixtures::funded_sponsor(&app, "Fondation de France", "5000.00").await;
    let terms = json!({"allocation": "pro_rata", "min_target": "100.00", "max_target": "300.00"});
    let (_, offer) = project_offer(&app, json!(["waste"]), terms).await;
    let p = pool(
        &app,
        &sponsor,
        json!({"max_per_pledge": "200.00", "max_per_project": "1000.00"}),
    )
    .await;
    let pool_id = id(&p);
    let investors = fixtures::investors(&app, 3).await;
    for investor in &investors {
        fixtures::funded_pledge(&app, &offer, investor, 20).await;
    }
    // 60 pledged + 60 matched for a cap of 30: scaled down to 15 + 15 in whole shares.
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded");
    let table = ok(app.get(&format!("/v1/offers/{offer}/cap-table")).await, 200).await;
    assert_eq!(table["total_shares"], 30);
    let sponsor_shares: i64 = table["investors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["holder"] == "sponsor")
        .map(|l| l["shares"].as_i64().unwrap())
        .sum();
    assert_eq!(sponsor_shares, 15, "{table:#}");
    // What was not allocated of the matches went back to the pool: 600.00 − 150.00.
    assert_eq!(fixtures::balance(&app, &format!("match:{pool_id}")).await, "850.00");
    let made = matches(&app, &pool_id).await;
    let allocated: i64 = made.iter().map(|m| m["allocated_shares"].as_i64().unwrap()).sum();
    assert_eq!(allocated, 15);
    assert!(
        events(&app, "match.returned")
            .await
            .iter()
            .all(|e| e["reason"] == "not_allocated")
    );
    assert_eq!(fixtures::balance(&app, &format!("offer:{offer}:escrow")).await, "0.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_pledge_paid_by_cheque_is_matched_at_once_and_pools_refuse_what_they_cannot_honour(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "2000.00").await;
    let (project, offer) = project_offer(&app, json!(["inclusion"]), json!({})).await;
    let p = pool(
        &app,
        &sponsor,
        json!({"amount": "500.00", "ratio": "0.5", "eligible_project_ids": [project]}),
    )
    .await;
    let pool_id = id(&p);
    let cheque = fixtures::issue_cheque(&app, &sponsor, "300.00", 30).await;
    let winner = fixtures::investor(&app, "Awa Diallo", "sophisticated").await;
    let body = json!({"investor_id": winner, "shares": 25, "kiis_sha256": fixtures::KIIS_SHA256,
                      "funding": [{"kind": "cheque", "amount": "250.00", "cheque_code": cheque["code"]}]});
    let pledged = common::send_as(
        &app,
        reqwest::Method::POST,
        &format!("/v1/offers/{offer}/pledges"),
        common::OPERATOR_KEY,
        &[("idempotency-key", "cheque-matched")],
        Some(&body),
    )
    .await;
    assert_eq!(pledged.status, 201, "{:#}", pledged.body);
    assert_eq!(pledged.body["status"], "funded");
    // 250.00 at 0.5: 125.00, in whole shares of 10.00: 12 shares, 120.00.
    let m = match_of(&app, &pool_id, pledged.body["id"].as_str().unwrap())
        .await
        .expect("matched at once");
    assert_eq!((m["shares"].as_i64(), m["amount"].as_str()), (Some(12), Some("120.00")));
    app.assert_books_verify().await;

    // Refusals: more than the budget, bad terms, an unknown project or sponsor, another currency.
    let path = format!("/v1/sponsors/{sponsor}/match-pools");
    let expires = (app.clock.now() + chrono::TimeDelta::days(30)).to_rfc3339();
    let base = json!({"amount": "1000.00", "ratio": "1", "max_per_pledge": "100.00", "max_per_project": "500.00",
                      "expires_at": expires});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let r = app.post(&path, with("amount", json!("1500.01"))).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (422, Some("insufficient_sponsor_budget")),
        "{:#}",
        r.body
    );
    for (field, value) in [
        ("ratio", json!("0")),
        ("ratio", json!("10.5")),
        ("amount", json!("10.001")),
        ("max_per_pledge", json!("-1")),
        ("expires_at", json!(app.clock.now().to_rfc3339())),
        ("eligible_project_ids", json!([uuid::Uuid::new_v4()])),
        ("eligible_themes", json!(["astrology"])),
    ] {
        let r = app.post(&path, with(field, value.clone())).await;
        assert_eq!(r.status, 422, "{field} = {value}: {:#}", r.body);
        assert_eq!(r.content_type, "application/problem+json");
    }
    let r = app.post(&path, with("currency", json!("CHF"))).await;
    assert_eq!(
        (r.status.as_u16(), r.body["code"].as_str()),
        (422, Some("currency_mismatch")),
        "{:#}",
        r.body
    );
    let r = app
        .post(
            &format!("/v1/sponsors/{}/match-pools", uuid::Uuid::new_v4()),
            base.clone(),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(fixtures::budget(&app, &sponsor).await, "1200.00");
    let listed = ok(app.get(&path).await, 200).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["matched"], "120.00");
    assert_eq!(listed["items"][0]["match_count"], 1);
    app.assert_books_verify().await;
}

/// A ballot draws each match as a claim of its own, keyed by its id: anyone holding the revealed
/// seed, the pledges and the pool's matches recomputes who got what (docs/ballot.md).
#[sqlx::test]
async fn a_ballot_draws_matches_by_their_own_ids_and_can_be_recomputed(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let sponsor = fixtures::funded_sponsor(&app, "Fondation de France", "5000.00").await;
    let terms = json!({"allocation": "ballot", "min_target": "100.00", "max_target": "500.00"});
    let (_, offer) = project_offer(&app, json!(["waste"]), terms).await;
    let p = pool(
        &app,
        &sponsor,
        json!({"ratio": "0.5", "max_per_pledge": "100.00", "max_per_project": "2000.00"}),
    )
    .await;
    let pool_id = id(&p);
    let investors = fixtures::investors(&app, 8).await;
    for (i, investor) in (0..).zip(&investors) {
        fixtures::funded_pledge(&app, &offer, investor, 10 + 3 * i).await;
    }
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    let seed = hex::decode(closed["seed"].as_str().unwrap()).unwrap();
    let pledges = fixtures::pledges_of(&app, &offer).await;
    let made = matches(&app, &pool_id).await;
    assert_eq!(made.len(), 8);
    // Every claim, pledges' and matches', in one draw for the cap of 50 shares.
    let claims: Vec<Value> = pledges.iter().chain(&made).cloned().collect();
    let expected = fixtures::recompute_ballot(&seed, &claims, 50);
    let got: Vec<i64> = pledges
        .iter()
        .map(|p| p["allocated_shares"].as_i64().unwrap())
        .chain(made.iter().map(|m| m["allocated_shares"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(got.iter().sum::<i64>(), 50);
    let table = ok(app.get(&format!("/v1/offers/{offer}/cap-table")).await, 200).await;
    let sponsor_shares: i64 = table["investors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["holder"] == "sponsor")
        .map(|l| l["shares"].as_i64().unwrap())
        .sum();
    assert_eq!(sponsor_shares, got[pledges.len()..].iter().sum::<i64>());
    assert_eq!(fixtures::balance(&app, &format!("offer:{offer}:escrow")).await, "0.00");
    app.assert_books_verify().await;
}
