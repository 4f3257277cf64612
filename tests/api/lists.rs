//! The lists of PRODUCT.md section 11 through HTTP: offers (all, and a project's), investors, an
//! offer's pledges (arrival order), an investor's pledges and holdings. Each is paged by `limit`
//! and `cursor` (a page boundary continues without repeat or skip, the last page has no
//! `next_cursor`, a cursor the list did not give out is 422 naming `cursor`), refuses unknown
//! parameters, filters as documented, and shows each item exactly as the item's own read does.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::fixtures::{self, funded_pledge, investor, ok, open_offer, published_project};
use crate::common::{TestApp, send_as};

/// Every item of a list, page by page with `limit`; asserts the pages are full but the last,
/// that only the last has no `next_cursor`, and that no item comes twice.
async fn walk(app: &TestApp, path: &str, limit: usize) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let page = ok(app.get(&url).await, 200).await;
        let got = page["items"].as_array().unwrap_or_else(|| panic!("{url}: {page:#}"));
        match page.get("next_cursor") {
            Some(next) => {
                assert_eq!(got.len(), limit, "{url}: a page before the last is full: {page:#}");
                cursor = Some(next.as_str().expect("next_cursor is a string").to_string());
                items.extend(got.iter().cloned());
            }
            None => {
                assert!(got.len() <= limit, "{url}: {page:#}");
                items.extend(got.iter().cloned());
                break;
            }
        }
    }
    let ids: HashSet<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), items.len(), "{path}: an item came twice");
    items
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

/// The ids of one page, all on it (no `next_cursor`).
async fn only_page(app: &TestApp, path: &str) -> Vec<String> {
    let page = ok(app.get(path).await, 200).await;
    assert!(page.get("next_cursor").is_none(), "{path}: {page:#}");
    ids(page["items"].as_array().unwrap())
}

/// What every list refuses: a foreign cursor (named), a limit out of range (named), an unknown
/// parameter.
async fn assert_refuses_bad_pages(app: &TestApp, path: &str) {
    let sep = if path.contains('?') { '&' } else { '?' };
    for (query, param) in [
        ("cursor=not-a-cursor", Some("cursor")),
        // Base64url of JSON, but of no list's key: `"x"`.
        ("cursor=Ingi", Some("cursor")),
        ("limit=0", Some("limit")),
        ("limit=1001", Some("limit")),
        ("after=42", None),
        ("colour=green", None),
    ] {
        let r = app.get(&format!("{path}{sep}{query}")).await;
        r.assert_problem(422, "validation_failed");
        if let Some(param) = param {
            assert_eq!(r.body["param"], param, "{path}{sep}{query}: {:#}", r.body);
        }
    }
}

/// A draft offer on `project` (not opened).
async fn draft_offer(app: &TestApp, project: &str) -> String {
    let now = app.clock.now();
    let body = json!({
        "currency": "EUR", "share_price": "10.00", "min_target": "100.00", "max_target": "1000.00",
        "min_ticket": "10.00", "opens_at": now.to_rfc3339(),
        "closes_at": (now + chrono::TimeDelta::days(9)).to_rfc3339(),
        "success_fee_rate": "0.05", "allocation": "first_come",
    });
    let offer = ok(app.post(&format!("/v1/projects/{project}/offers"), body).await, 201).await;
    offer["id"].as_str().unwrap().to_string()
}

fn small_terms() -> Value {
    json!({"min_target": "100.00", "max_target": "1000.00"})
}

/// Each item is exactly what the item's own read (`{read}/{id}`) answers.
async fn assert_items_as_read(app: &TestApp, items: &[Value], read: &str) {
    for item in items {
        let id = item["id"].as_str().unwrap();
        let single = ok(app.get(&format!("{read}/{id}")).await, 200).await;
        assert_eq!(item, &single, "{read}/{id}: the list shows it otherwise");
    }
}

#[sqlx::test]
async fn offers_are_listed_newest_first_by_project_and_status(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let a = published_project(&app).await;
    let b = published_project(&app).await;
    // Oldest first: a's open offer (with pledges), a's draft, b's open offer, a's cancelled one.
    let a_open = open_offer(&app, &a, small_terms(), 9).await;
    for name in ["X", "Y"] {
        let who = investor(&app, name, "sophisticated").await;
        funded_pledge(&app, &a_open, &who, 3).await;
    }
    app.clock.advance(1).unwrap();
    let a_draft = draft_offer(&app, &a).await;
    app.clock.advance(1).unwrap();
    let b_open = open_offer(&app, &b, small_terms(), 9).await;
    app.clock.advance(1).unwrap();
    let a_cancelled = open_offer(&app, &a, small_terms(), 9).await;
    ok(
        app.post(&format!("/v1/offers/{a_cancelled}/cancel"), json!({})).await,
        200,
    )
    .await;

    let all = walk(&app, "/v1/offers", 3).await;
    assert_eq!(ids(&all), [&a_cancelled, &b_open, &a_draft, &a_open].map(String::clone));
    assert_items_as_read(&app, &all, "/v1/offers").await;
    let with_pledges = &all[3];
    assert_eq!(
        (
            with_pledges["pledge_count"].as_i64(),
            with_pledges["investor_count"].as_i64(),
            with_pledges["amount_funded"].as_str()
        ),
        (Some(2), Some(2), Some("60.00"))
    );
    // A page ending exactly at the last offer is the last page.
    assert_eq!(only_page(&app, "/v1/offers?limit=4").await.len(), 4);

    // Filters, alone and together.
    assert_eq!(
        only_page(&app, &format!("/v1/offers?project_id={a}")).await,
        [&a_cancelled, &a_draft, &a_open].map(String::clone)
    );
    assert_eq!(
        only_page(&app, "/v1/offers?status=open").await,
        [&b_open, &a_open].map(String::clone)
    );
    assert_eq!(
        only_page(&app, &format!("/v1/offers?project_id={a}&status=draft")).await,
        std::slice::from_ref(&a_draft)
    );
    assert_eq!(
        only_page(&app, &format!("/v1/offers?project_id={}", Uuid::new_v4())).await,
        Vec::<String>::new()
    );
    for bad in ["status=closed", "project_id=42"] {
        app.get(&format!("/v1/offers?{bad}"))
            .await
            .assert_problem(422, "validation_failed");
    }
    assert_refuses_bad_pages(&app, "/v1/offers").await;

    // A project's offers: the same items, paged and filtered the same way.
    let of_a = walk(&app, &format!("/v1/projects/{a}/offers"), 2).await;
    assert_eq!(ids(&of_a), [&a_cancelled, &a_draft, &a_open].map(String::clone));
    assert_eq!(of_a, [all[0].clone(), all[2].clone(), all[3].clone()]);
    assert_eq!(
        only_page(&app, &format!("/v1/projects/{a}/offers?status=cancelled")).await,
        std::slice::from_ref(&a_cancelled)
    );
    assert_eq!(
        only_page(&app, &format!("/v1/projects/{b}/offers")).await,
        std::slice::from_ref(&b_open)
    );
    assert_refuses_bad_pages(&app, &format!("/v1/projects/{a}/offers")).await;
    app.get(&format!("/v1/projects/{a}/offers?project_id={b}"))
        .await
        .assert_problem(422, "validation_failed");
    app.get(&format!("/v1/projects/{}/offers", Uuid::new_v4()))
        .await
        .assert_problem(404, "not_found");
}

#[sqlx::test]
async fn a_draft_projects_offers_are_seen_by_operators_only(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let body = json!({
        "name": "Draft", "legal_name": "Draft SAS", "legal_form": "SAS", "country": "FR",
        "territory": "Pays de Brest", "themes": ["waste"], "description": "Not yet.", "impact_indicators": [],
    });
    let draft = ok(app.post("/v1/projects", body).await, 201).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let offer = draft_offer(&app, &draft).await;
    let path = format!("/v1/projects/{draft}/offers");
    assert_eq!(only_page(&app, &path).await, [offer]);
    for role in [crowdledger::keys::Role::Platform, crowdledger::keys::Role::Auditor] {
        let key = app.key(role).await;
        send_as(&app, Method::GET, &path, &key, &[], None)
            .await
            .assert_problem(404, "not_found");
    }
}

#[sqlx::test]
async fn investors_are_listed_newest_first_by_email_and_kyc_status(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut verified = Vec::new();
    for name in ["Anna", "Bram", "Chloe"] {
        verified.push(investor(&app, name, "sophisticated").await);
        app.clock.advance(1).unwrap();
    }
    let pending = ok(
        app.post(
            "/v1/investors",
            json!({"kind": "legal", "name": "Dune SA", "email": "Treasury@Dune.example", "country": "BE"}),
        )
        .await,
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let all = walk(&app, "/v1/investors", 2).await;
    assert_eq!(
        ids(&all),
        [&pending, &verified[2], &verified[1], &verified[0]].map(String::clone)
    );
    assert_items_as_read(&app, &all, "/v1/investors").await;
    assert_eq!(only_page(&app, "/v1/investors?limit=4").await.len(), 4);

    assert_eq!(
        only_page(&app, "/v1/investors?kyc_status=pending").await,
        std::slice::from_ref(&pending)
    );
    assert_eq!(
        only_page(&app, "/v1/investors?kyc_status=verified&limit=3").await,
        [&verified[2], &verified[1], &verified[0]].map(String::clone)
    );
    assert!(only_page(&app, "/v1/investors?kyc_status=rejected").await.is_empty());
    // The address, ignoring case; only the whole address.
    for email in [
        "treasury@dune.example",
        "TREASURY%40DUNE.EXAMPLE",
        "Treasury@Dune.example",
    ] {
        assert_eq!(
            only_page(&app, &format!("/v1/investors?email={email}")).await,
            std::slice::from_ref(&pending),
            "{email}"
        );
    }
    assert!(only_page(&app, "/v1/investors?email=dune.example").await.is_empty());
    assert!(
        only_page(&app, "/v1/investors?email=treasury@dune.example&kyc_status=verified")
            .await
            .is_empty()
    );
    app.get("/v1/investors?kyc_status=approved")
        .await
        .assert_problem(422, "validation_failed");
    assert_refuses_bad_pages(&app, "/v1/investors").await;
}

#[sqlx::test]
async fn an_offers_pledges_are_paged_in_arrival_order(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, small_terms(), 9).await;
    let mut made = Vec::new();
    for name in ["A", "B", "C", "D", "E"] {
        let who = investor(&app, name, "sophisticated").await;
        made.push(
            funded_pledge(&app, &offer, &who, 2).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        app.clock.advance(1).unwrap();
    }
    let path = format!("/v1/offers/{offer}/pledges");
    let all = walk(&app, &path, 2).await;
    // Oldest first, unlike the other lists: the order a ballot is recomputed from.
    assert_eq!(ids(&all), made);
    let seqs: Vec<i64> = all.iter().map(|p| p["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(only_page(&app, &format!("{path}?limit=5")).await, made);
    assert_refuses_bad_pages(&app, &path).await;
    app.get(&format!("/v1/offers/{}/pledges", Uuid::new_v4()))
        .await
        .assert_problem(404, "not_found");
}

#[sqlx::test]
async fn an_investors_pledges_are_theirs_newest_first(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let first = open_offer(&app, &project, small_terms(), 9).await;
    let second = open_offer(&app, &project, small_terms(), 9).await;
    let me = investor(&app, "Me", "sophisticated").await;
    let other = investor(&app, "Other", "sophisticated").await;
    let mut mine = Vec::new();
    for (offer, shares) in [(&first, 2), (&second, 3), (&first, 4)] {
        mine.push(
            funded_pledge(&app, offer, &me, shares).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        funded_pledge(&app, offer, &other, 1).await;
        app.clock.advance(1).unwrap();
    }
    // One left unpaid.
    let unpaid = ok(fixtures::pledge(&app, &second, &me, 5, "10.00").await, 201).await;
    mine.push(unpaid["id"].as_str().unwrap().to_string());
    mine.reverse();

    let path = format!("/v1/investors/{me}/pledges");
    let all = walk(&app, &path, 3).await;
    assert_eq!(ids(&all), mine);
    // As `GET /v1/pledges/{id}` shows them, card payment included.
    assert_items_as_read(&app, &all, "/v1/pledges").await;
    assert!(all.iter().all(|p| p["payment"]["payment_id"].is_string()), "{all:#?}");
    assert_eq!(only_page(&app, &format!("{path}?limit=4")).await.len(), 4);

    assert_eq!(
        only_page(&app, &format!("{path}?offer_id={first}")).await,
        [&mine[1], &mine[3]].map(String::clone)
    );
    assert_eq!(
        only_page(&app, &format!("{path}?status=pending_payment")).await,
        [mine[0].clone()]
    );
    assert_eq!(
        only_page(&app, &format!("{path}?offer_id={second}&status=funded")).await,
        [mine[2].clone()]
    );
    assert!(only_page(&app, &format!("{path}?status=allocated")).await.is_empty());
    app.get(&format!("{path}?status=paid"))
        .await
        .assert_problem(422, "validation_failed");
    assert_refuses_bad_pages(&app, &path).await;
    // Another list's cursor is not this one's.
    let offer_page = ok(app.get(&format!("/v1/offers/{first}/pledges?limit=1")).await, 200).await;
    let foreign = offer_page["next_cursor"].as_str().unwrap();
    let r = app.get(&format!("{path}?cursor={foreign}")).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "cursor");
    app.get(&format!("/v1/investors/{}/pledges", Uuid::new_v4()))
        .await
        .assert_problem(404, "not_found");
}

/// A EUR cheque of `face` from a funded sponsor; returns its code.
async fn cheque_code(app: &TestApp, face: &str) -> String {
    let sponsor = fixtures::funded_sponsor(app, "SenseTour Belgium", "1000.00").await;
    let cheque = ok(
        app.post(
            "/v1/cheques",
            json!({"sponsor_id": sponsor, "beneficiary_name": "Me", "beneficiary_email": "me@example.org",
                   "face_value": face, "currency": "EUR",
                   "expires_at": (app.clock.now() + chrono::TimeDelta::days(30)).to_rfc3339()}),
        )
        .await,
        201,
    )
    .await;
    cheque["code"].as_str().unwrap().to_string()
}

#[sqlx::test]
async fn holdings_show_the_shares_allocated_and_the_part_paid_by_cheques(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let me = investor(&app, "Me", "sophisticated").await;
    let other = investor(&app, "Other", "sophisticated").await;
    // Nothing held before a round succeeds.
    let path = format!("/v1/investors/{me}/holdings");
    assert!(only_page(&app, &path).await.is_empty());

    // An oversubscribed pro-rata round (10 shares at 10.00): 20 shares each, 5 allocated each.
    let pro_rata = open_offer(
        &app,
        &project,
        json!({"min_target": "50.00", "max_target": "100.00", "allocation": "pro_rata"}),
        9,
    )
    .await;
    // Mine paid 150.00 by cheque and 50.00 by card. The close gives back 150.00, the card's
    // 50.00 first: the 50.00 the round kept is all the cheque's.
    let code = cheque_code(&app, "150.00").await;
    let body = json!({"investor_id": me, "shares": 20, "funding": [
        {"kind": "cheque", "cheque_code": code, "amount": "150.00"},
        {"kind": "card", "amount": "50.00"}], "kiis_sha256": fixtures::KIIS_SHA256});
    let mixed = ok(fixtures::pledge_at(&app.client, &app.base, &pro_rata, &body).await, 201).await;
    let payment = mixed["payment"]["payment_id"].as_str().unwrap();
    ok(
        app.post(&format!("/v1/sandbox/payments/{payment}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    let mixed_id = mixed["id"].as_str().unwrap();
    app.wait_for(&format!("/v1/pledges/{mixed_id}"), |p| p["status"] == "funded")
        .await;
    funded_pledge(&app, &pro_rata, &other, 20).await;
    let closed = ok(app.post(&format!("/v1/offers/{pro_rata}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");

    // A first-come round where two pledges of mine (12 + 3 shares, by card) are allocated whole.
    app.clock.advance(60).unwrap();
    let first_come = open_offer(&app, &project, small_terms(), 9).await;
    funded_pledge(&app, &first_come, &me, 12).await;
    funded_pledge(&app, &first_come, &me, 3).await;
    let closed = ok(
        app.post(&format!("/v1/offers/{first_come}/close"), json!({})).await,
        200,
    )
    .await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");

    // Rounds that hold nothing: one cancelled (refunded in full), one still open.
    let cancelled = open_offer(&app, &project, small_terms(), 9).await;
    funded_pledge(&app, &cancelled, &me, 10).await;
    ok(
        app.post(&format!("/v1/offers/{cancelled}/cancel"), json!({})).await,
        200,
    )
    .await;
    let still_open = open_offer(&app, &project, small_terms(), 9).await;
    funded_pledge(&app, &still_open, &me, 10).await;

    let holdings = ok(app.get(&path).await, 200).await;
    assert!(holdings.get("next_cursor").is_none(), "{holdings:#}");
    // The latest closed round first.
    assert_eq!(
        holdings["items"],
        json!([
            {"offer_id": first_come, "project_id": project, "project_name": "Crois/Sens", "currency": "EUR",
             "shares": 15, "amount_invested": "150.00", "amount_by_cheque": "0.00"},
            {"offer_id": pro_rata, "project_id": project, "project_name": "Crois/Sens", "currency": "EUR",
             "shares": 5, "amount_invested": "50.00", "amount_by_cheque": "50.00"},
        ])
    );
    // The cap tables agree on the shares.
    let cap = ok(app.get(&format!("/v1/offers/{pro_rata}/cap-table")).await, 200).await;
    let line = cap["investors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["investor_id"] == me.as_str())
        .unwrap();
    assert_eq!(
        (line["shares"].as_i64(), line["amount"].as_str()),
        (Some(5), Some("50.00"))
    );
    // The other investor holds their own, all by card.
    let theirs = ok(app.get(&format!("/v1/investors/{other}/holdings")).await, 200).await;
    assert_eq!(theirs["items"][0]["shares"], 5, "{theirs:#}");
    assert_eq!(theirs["items"][0]["amount_by_cheque"], "0.00", "{theirs:#}");
    assert_eq!(theirs["items"].as_array().unwrap().len(), 1);

    // Paged one at a time.
    let first_page = ok(app.get(&format!("{path}?limit=1")).await, 200).await;
    assert_eq!(first_page["items"][0]["offer_id"], first_come.as_str());
    let next = first_page["next_cursor"].as_str().expect("a second page follows");
    let last_page = ok(app.get(&format!("{path}?limit=1&cursor={next}")).await, 200).await;
    assert_eq!(last_page["items"][0]["offer_id"], pro_rata.as_str());
    assert!(last_page.get("next_cursor").is_none(), "{last_page:#}");
    assert_refuses_bad_pages(&app, &path).await;

    // Their pledges, after the close: the allocated ones by status.
    let allocated = only_page(&app, &format!("/v1/investors/{me}/pledges?status=allocated")).await;
    assert_eq!(allocated.len(), 3);
    assert!(allocated.contains(&mixed_id.to_string()));
    let refunded = only_page(&app, &format!("/v1/investors/{me}/pledges?status=refunded")).await;
    assert_eq!(refunded.len(), 1);
    app.get(&format!("/v1/investors/{}/holdings", Uuid::new_v4()))
        .await
        .assert_problem(404, "not_found");
    app.assert_books_verify().await;
}
