//! `GET /v1/events` and `GET /v1/events/{id}` (PRODUCT.md section 11): what the outbox holds,
//! newest first, by type, in pages; each event exactly the envelope its webhooks carry; and the
//! document's `webhooks` section, checked against every event a busy world of real rounds,
//! cheques and deposits stores.

use std::collections::BTreeSet;

use crowdledger::outbox::EventType;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{
    self, funded_pledge, funded_sponsor, investor, issue_cheque, ok, open_offer, published_project,
};
use crate::common::{Reply, TestApp};

/// Types no action of [`busy_world`] emits: disabling an endpoint takes eight failed deliveries
/// (tests/api/webhooks_outbound.rs shows it).
const NOT_IN_THE_WORLD: [&str; 1] = ["endpoint.disabled"];

/// The second version of the French KIIS [`busy_world`] gives an open offer (`offer.amended`).
const AMENDED_KIIS_SHA256: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn payment_of(p: &Value) -> String {
    p["payment"]["payment_id"].as_str().unwrap().to_string()
}

async fn sandbox(app: &TestApp, what: &str, id: &str, action: &str) -> Value {
    let r = ok(
        app.post(&format!("/v1/sandbox/{what}/{id}/{action}"), json!({})).await,
        200,
    )
    .await;
    assert_eq!(r["applied"], true, "{what} {id} {action}: {r:#}");
    r
}

/// Every event type but [`NOT_IN_THE_WORLD`], each by the action that emits it, through the API:
/// a sponsor's deposit, cheques issued, spent, cancelled, reminded of and expired, a withdrawal
/// of its budget paid; a round that succeeds and
/// is paid out (with a revocation refunded, a late payment, a disputed payment lost after the
/// payout and a cheque-funded pledge), one that fails at its closing time (with a dispute won),
/// one cancelled (after its KIIS was amended and a pledge reconfirmed).
async fn busy_world(app: &TestApp) {
    let project = published_project(app).await;
    let sophie = investor(app, "Sophie", "sophisticated").await;
    let carol = investor(app, "Carol", "non_sophisticated").await;
    let sponsor = funded_sponsor(app, "SenseTour", "1000.00").await;
    let spent = issue_cheque(app, &sponsor, "100.00", 30).await;

    let terms = json!({"min_target": "100.00", "max_target": "1000.00"});
    let offer = open_offer(app, &project, terms.clone(), 9).await;
    let disputed = funded_pledge(app, &offer, &sophie, 20).await;
    sandbox(app, "payments", &payment_of(&disputed), "dispute").await;
    let revocable = funded_pledge(app, &offer, &carol, 5).await;
    let revoked = ok(
        app.post(
            &format!("/v1/pledges/{}/revoke", revocable["id"].as_str().unwrap()),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    // The provider confirms the revoked pledge's refund (refund.succeeded).
    let refund = revoked["refunds"][0].as_str().unwrap();
    let paid_back = ok(
        app.post(&format!("/v1/sandbox/refunds/{refund}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(paid_back["status"], "succeeded", "{paid_back:#}");
    let late = ok(fixtures::pledge(app, &offer, &sophie, 3, "10.00").await, 201).await;
    sandbox(app, "payments", &payment_of(&late), "fail").await;
    sandbox(app, "payments", &payment_of(&late), "succeed").await;
    let by_cheque = json!({"investor_id": sophie, "shares": 5,
                           "funding": [{"kind": "cheque", "cheque_code": spent["code"], "amount": "50.00"}],
                           "kiis_sha256": fixtures::KIIS_SHA256});
    ok(
        fixtures::pledge_at(&app.client, &app.base, &offer, &by_cheque).await,
        201,
    )
    .await;
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    let payout = ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 201).await;
    fixtures::confirm_payout(app, &payout).await;
    // The disputed pledge's bank decides for the investor after the round settled.
    let disputed = payment_of(&disputed).replacen("pay_", "dp_", 1);
    let lost = json!({"outcome": "lost"});
    ok(
        app.post(&format!("/v1/sandbox/disputes/{disputed}/close"), lost).await,
        200,
    )
    .await;

    // A pool matches the pledges below (match.applied); the failed and the cancelled rounds give
    // the matches back (match.returned); it ends with the clock, below (match_pool.ended).
    ok(
        app.post(
            &format!("/v1/sponsors/{sponsor}/match-pools"),
            json!({"amount": "100.00", "ratio": "1", "max_per_pledge": "20.00", "max_per_project": "100.00",
                   "eligible_project_ids": [project],
                   "expires_at": (app.clock.now() + chrono::TimeDelta::hours(36)).to_rfc3339()}),
        )
        .await,
        201,
    )
    .await;

    // Closes below its minimum when its time comes, below; its pledge's dispute is won first.
    let failing = open_offer(app, &project, terms.clone(), 1).await;
    let won = funded_pledge(app, &failing, &sophie, 2).await;
    let won = sandbox(app, "payments", &payment_of(&won), "dispute").await;
    let decided = json!({"outcome": "won"});
    let path = format!("/v1/sandbox/disputes/{}/close", won["dispute_id"].as_str().unwrap());
    ok(app.post(&path, decided).await, 200).await;

    // Its KIIS amended while Carol's pledge is live: she is asked to reconfirm it, and does.
    let cancelled = open_offer(app, &project, terms, 9).await;
    funded_pledge(app, &cancelled, &sophie, 4).await;
    let asked = funded_pledge(app, &cancelled, &carol, 3).await;
    let amended = ok(
        app.post(
            &format!("/v1/offers/{cancelled}/documents"),
            json!({"kind": "kiis", "language": "fr", "url": "https://platform.example/kiis-fr-v2.pdf",
                   "sha256": AMENDED_KIIS_SHA256}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(amended["pledges_to_reconfirm"], 1, "{amended:#}");
    let reconfirmed = ok(
        app.post(
            &format!("/v1/pledges/{}/reconfirm", asked["id"].as_str().unwrap()),
            json!({"kiis_sha256": AMENDED_KIIS_SHA256}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(reconfirmed["status"], "funded", "{reconfirmed:#}");
    ok(
        app.post(&format!("/v1/offers/{cancelled}/cancel"), json!({})).await,
        200,
    )
    .await;

    // Unused budget paid back to the sponsor (withdrawal.requested, then withdrawal.paid).
    let withdrawal = ok(
        app.post(
            &format!("/v1/sponsors/{sponsor}/withdrawals"),
            json!({"amount": "25.00"}),
        )
        .await,
        201,
    )
    .await;
    sandbox(
        app,
        "withdrawals",
        withdrawal["payment"]["payment_id"].as_str().unwrap(),
        "succeed",
    )
    .await;

    let withdrawn = issue_cheque(app, &sponsor, "30.00", 30).await;
    ok(
        app.post(
            &format!("/v1/cheques/{}/cancel", withdrawn["id"].as_str().unwrap()),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    let expiring = issue_cheque(app, &sponsor, "20.00", 1).await;
    // Within the notice of `cheque.expiring`: its winner is reminded before it expires.
    app.wait_for("/v1/events?type=cheque.expiring", |page| {
        page["items"].as_array().is_some_and(|items| !items.is_empty())
    })
    .await;
    app.clock.advance(2 * fixtures::DAY).unwrap();
    app.wait_for(&format!("/v1/cheques/{}", expiring["id"].as_str().unwrap()), |c| {
        c["status"] == "expired"
    })
    .await;
    app.wait_for(&format!("/v1/offers/{failing}"), |o| o["status"] == "failed")
        .await;
    app.wait_for("/v1/events?type=match_pool.ended", |page| {
        page["items"].as_array().is_some_and(|items| !items.is_empty())
    })
    .await;
}

/// Every event of `/v1/events{query}`, page after page of `limit`; checks that each page but the
/// last names the next, and the last does not.
async fn all_pages(app: &TestApp, query: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let sep = if query.is_empty() { "?" } else { "&" };
    loop {
        let mut path = format!("/v1/events{query}{sep}limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = ok(app.get(&path).await, 200).await;
        let got = page["items"].as_array().unwrap();
        assert!(got.len() <= limit, "{page:#}");
        items.extend(got.iter().cloned());
        match page.get("next_cursor") {
            Some(next) => {
                assert_eq!(got.len(), limit, "a page before the last is full");
                cursor = Some(next.as_str().unwrap().to_string());
            }
            None => return items,
        }
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

/// The outbox's ids, newest first, as Postgres orders them: the order the list must follow.
async fn stored_ids(app: &TestApp, event_type: Option<&str>) -> Vec<String> {
    sqlx::query_scalar(
        "select id::text from outbox_events where $1::text is null or event_type = $1
          order by created_at desc, id desc",
    )
    .bind(event_type)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn events_are_listed_newest_first_each_as_its_webhooks_carry_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    busy_world(&app).await;
    let page = ok(app.get("/v1/events").await, 200).await;
    let items = page["items"].as_array().unwrap();
    assert!(
        page.get("next_cursor").is_none(),
        "one page of the default size holds them all"
    );
    assert_eq!(ids(items), stored_ids(&app, None).await);
    assert!(items.len() > 30, "{}", items.len());
    let times: Vec<chrono::DateTime<chrono::Utc>> = items
        .iter()
        .map(|e| e["created_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    // Each is exactly the body its webhook deliveries carry: the stored envelope.
    for item in items {
        let payload: Value = sqlx::query_scalar("select payload from outbox_events where id = $1::uuid")
            .bind(item["id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(item, &payload);
        let one = ok(
            app.get(&format!("/v1/events/{}", item["id"].as_str().unwrap())).await,
            200,
        )
        .await;
        assert_eq!(&one, item);
    }
    let types: BTreeSet<&str> = items.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = EventType::ALL
        .map(EventType::as_str)
        .into_iter()
        .filter(|t| !NOT_IN_THE_WORLD.contains(t))
        .collect();
    assert_eq!(
        types, expected,
        "every type but {NOT_IN_THE_WORLD:?} was emitted by its action"
    );

    // An auditor reads them too; an unknown id is 404.
    let auditor = app.key(crowdledger::keys::Role::Auditor).await;
    let r = app
        .call(reqwest::Method::GET, "/v1/events?limit=1", Some(&auditor), None)
        .await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    app.get(&format!("/v1/events/{}", uuid::Uuid::new_v4()))
        .await
        .assert_problem(404, "not_found");
}

#[sqlx::test]
async fn events_are_filtered_by_type_and_paged_without_repeat_or_gap(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    busy_world(&app).await;
    let everything = stored_ids(&app, None).await;
    // Page boundaries: a limit that does not divide the count, and one that does.
    assert_eq!(ids(&all_pages(&app, "", 7).await), everything);
    assert_eq!(ids(&all_pages(&app, "", everything.len()).await), everything);
    assert_eq!(ids(&all_pages(&app, "", 1000).await), everything);

    for event_type in ["pledge.funded", "pledge.created", "payout.paid", "payment.late"] {
        let query = format!("?type={event_type}");
        let got = all_pages(&app, &query, 2).await;
        assert!(got.iter().all(|e| e["type"] == event_type), "{got:#?}");
        assert_eq!(ids(&got), stored_ids(&app, Some(event_type)).await, "{event_type}");
        assert!(!got.is_empty(), "{event_type}");
    }
    // A type nothing emitted yet is an empty list, not an error.
    let none = ok(app.get("/v1/events?type=endpoint.disabled").await, 200).await;
    assert_eq!(none, json!({"items": []}));
}

fn assert_param(r: &Reply, param: &str) {
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], param, "{:#}", r.body);
}

#[sqlx::test]
async fn bad_event_queries_are_refused_naming_the_parameter(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    fixtures::small_open_offer(&app).await;
    assert_param(&app.get("/v1/events?type=offer.exploded").await, "type");
    assert_param(&app.get("/v1/events?cursor=not-a-cursor").await, "cursor");
    // A cursor of another list's key.
    let foreign = base64_url(br#""a string""#);
    assert_param(&app.get(&format!("/v1/events?cursor={foreign}")).await, "cursor");
    assert_param(&app.get("/v1/events?limit=0").await, "limit");
    assert_param(&app.get("/v1/events?limit=1001").await, "limit");
    assert_param(&app.get("/v1/events?limit=ten").await, "limit");
    app.get("/v1/events?kind=offer.opened")
        .await
        .assert_problem(422, "validation_failed");
    app.get("/v1/events/not-a-uuid").await.assert_problem(404, "not_found");
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The events of `event_type`, newest first.
async fn of_type(app: &TestApp, event_type: &str) -> Vec<Value> {
    let page = ok(app.get(&format!("/v1/events?type={event_type}")).await, 200).await;
    page["items"].as_array().unwrap().clone()
}

#[sqlx::test]
async fn each_new_event_type_is_emitted_by_its_action(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let sophie = investor(&app, "Sophie", "sophisticated").await;

    // deposit.succeeded, when the provider confirms a sponsor's deposit.
    let sponsor = funded_sponsor(&app, "SenseTour", "500.00").await;
    let deposits = of_type(&app, "deposit.succeeded").await;
    assert_eq!(deposits.len(), 1);
    assert_eq!(deposits[0]["data"]["sponsor_id"], sponsor.as_str());
    assert_eq!(deposits[0]["data"]["amount"], "500.00");
    assert_eq!(deposits[0]["data"]["currency"], "EUR");

    // cheque.cancelled, with what went back to the budget.
    let cheque = issue_cheque(&app, &sponsor, "120.00", 30).await;
    assert!(of_type(&app, "cheque.cancelled").await.is_empty());
    ok(
        app.post(
            &format!("/v1/cheques/{}/cancel", cheque["id"].as_str().unwrap()),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    let cancelled = of_type(&app, "cheque.cancelled").await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(
        cancelled[0]["data"],
        json!({"cheque_id": cheque["id"], "sponsor_id": sponsor, "returned_to_budget": "120.00", "currency": "EUR"})
    );

    // payment.late: money captured for a pledge whose payment had failed is owed back.
    let terms = json!({"min_target": "100.00", "max_target": "1000.00"});
    let offer = open_offer(&app, &project, terms.clone(), 9).await;
    let late = ok(fixtures::pledge(&app, &offer, &sophie, 3, "10.00").await, 201).await;
    sandbox(&app, "payments", &payment_of(&late), "fail").await;
    assert!(of_type(&app, "payment.late").await.is_empty());
    sandbox(&app, "payments", &payment_of(&late), "succeed").await;
    let lates = of_type(&app, "payment.late").await;
    assert_eq!(lates.len(), 1);
    let data = &lates[0]["data"];
    assert_eq!(data["pledge_id"], late["id"]);
    assert_eq!(data["offer_id"], offer.as_str());
    assert_eq!(data["payment"], late["payment"]);
    assert_eq!(
        (data["amount"].as_str(), data["currency"].as_str()),
        (Some("30.00"), Some("EUR"))
    );
    assert_eq!(data["reason"], "payment_after_failure");
    let refund: String = sqlx::query_scalar("select id::text from refunds where pledge_id = $1::uuid")
        .bind(late["id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(data["refund_id"], refund.as_str());

    // payout.created when the payout is asked for, before the provider pays it; asking again
    // once nothing more is owed creates nothing.
    funded_pledge(&app, &offer, &sophie, 20).await;
    ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    let payout = ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 201).await;
    let created = of_type(&app, "payout.created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["data"]["payout_id"], payout["id"]);
    assert_eq!(created[0]["data"]["offer_id"], offer.as_str());
    assert_eq!(created[0]["data"]["project_id"], project.as_str());
    assert_eq!(created[0]["data"]["amount"], "190.00");
    assert!(of_type(&app, "payout.paid").await.is_empty());
    fixtures::confirm_payout(&app, &payout).await;
    ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 200).await;
    assert_eq!(of_type(&app, "payout.created").await.len(), 1);
    assert_eq!(of_type(&app, "payout.paid").await.len(), 1);

    // offer.cancelled, after the refunds of its funded pledges.
    let doomed = open_offer(&app, &project, terms, 9).await;
    funded_pledge(&app, &doomed, &sophie, 4).await;
    ok(app.post(&format!("/v1/offers/{doomed}/cancel"), json!({})).await, 200).await;
    let offers = of_type(&app, "offer.cancelled").await;
    assert_eq!(
        offers.iter().map(|e| &e["data"]).collect::<Vec<_>>(),
        [&json!({"offer_id": doomed, "project_id": project, "status": "cancelled"})]
    );
    let refunded = of_type(&app, "pledge.refunded").await;
    assert_eq!(refunded[0]["data"]["offer_id"], doomed.as_str());
    app.assert_books_verify().await;
}

/// The document's schema of a webhook's body, as a schema that stands alone: the document's
/// components beside it (so `#/components/...` resolves), every object closed to properties it
/// does not name, so a field the schema forgets fails too.
fn webhook_schema(doc: &Value, event_type: &str) -> Value {
    let mut schema =
        doc["webhooks"][event_type]["post"]["requestBody"]["content"]["application/json"]["schema"].clone();
    assert!(schema.is_object(), "no webhook {event_type} in the document");
    let mut components = doc["components"].clone();
    close_objects(&mut components);
    close_objects(&mut schema);
    schema["components"] = components;
    schema
}

fn close_objects(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

#[sqlx::test]
async fn every_event_matches_its_webhook_schema_in_the_document(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    busy_world(&app).await;
    let doc = ok(app.get("/openapi.json").await, 200).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "webhooks need OpenAPI 3.1"
    );
    let webhooks: BTreeSet<&str> = doc["webhooks"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(webhooks, EventType::ALL.map(EventType::as_str).into_iter().collect());
    crate::common::assert_refs_resolve(&doc, &doc["webhooks"]);

    let events = all_pages(&app, "", 1000).await;
    let mut checked = BTreeSet::new();
    for event in &events {
        let event_type = event["type"].as_str().unwrap();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&webhook_schema(&doc, event_type))
            .unwrap_or_else(|e| panic!("the schema of {event_type} compiles: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(event)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{event_type} does not match its schema: {errors:#?}\n{event:#}"
        );
        checked.insert(event_type);
    }
    assert_eq!(checked.len(), EventType::ALL.len() - NOT_IN_THE_WORLD.len());

    // And a schema is no blank cheque: data missing a field, or with one it does not name, or
    // of the wrong type, fails.
    let funded = events.iter().find(|e| e["type"] == "pledge.funded").unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&webhook_schema(&doc, "pledge.funded"))
        .unwrap();
    for broken in [
        {
            let mut e = funded.clone();
            e["data"].as_object_mut().unwrap().remove("pledge_id");
            e
        },
        {
            let mut e = funded.clone();
            e["data"]["surprise"] = json!(1);
            e
        },
        {
            let mut e = funded.clone();
            e["data"]["shares"] = json!("20");
            e
        },
        {
            let mut e = funded.clone();
            e["type"] = json!("pledge.created");
            e
        },
    ] {
        assert!(!validator.is_valid(&broken), "{broken:#}");
    }
}

/// `data` of an event checked against the document's schema of its webhook; the errors found.
fn schema_errors(doc: &Value, event: &Value) -> Vec<String> {
    let event_type = event["type"].as_str().unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&webhook_schema(doc, event_type))
        .unwrap();
    validator
        .iter_errors(event)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[sqlx::test]
async fn a_disputed_payment_announces_its_pledge_once_and_moves_nothing(pool: PgPool) {
    use crate::common::sandbox::{event, signed};
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let sophie = investor(&app, "Sophie", "sophisticated").await;
    let offer = open_offer(
        &app,
        &project,
        json!({"min_target": "100.00", "max_target": "1000.00"}),
        9,
    )
    .await;
    let pledge = funded_pledge(&app, &offer, &sophie, 20).await;
    let pledge_id = pledge["id"].as_str().unwrap();
    let payment = payment_of(&pledge);
    let before = ok(app.get(&format!("/v1/pledges/{pledge_id}")).await, 200).await;
    assert!(before.get("disputed_at").is_none(), "{before:#}");
    let trial = ok(app.get("/v1/ledger/trial-balance").await, 200).await;

    let sent = sandbox(&app, "payments", &payment, "dispute").await;
    assert_eq!(sent["outcome"], "applied");
    let disputes = of_type(&app, "pledge.disputed").await;
    assert_eq!(disputes.len(), 1, "{disputes:#?}");
    assert_eq!(
        disputes[0]["data"],
        json!({"pledge_id": pledge_id, "offer_id": offer, "investor_id": sophie,
               "payment": {"provider": "sandbox", "payment_id": payment},
               "amount": "200.00", "currency": "EUR"})
    );
    let doc = ok(app.get("/openapi.json").await, 200).await;
    let errors = schema_errors(&doc, &disputes[0]);
    assert!(errors.is_empty(), "{errors:#?}\n{:#}", disputes[0]);

    // The pledge shows when; its status and the books stay as they were (no chargeback yet).
    let after = ok(app.get(&format!("/v1/pledges/{pledge_id}")).await, 200).await;
    assert_eq!(after["status"], "funded");
    let at: chrono::DateTime<chrono::Utc> = after["disputed_at"].as_str().unwrap().parse().unwrap();
    let emitted: chrono::DateTime<chrono::Utc> = disputes[0]["created_at"].as_str().unwrap().parse().unwrap();
    // Postgres keeps microseconds; the event's envelope has the clock's nanoseconds.
    assert_eq!(at, chrono::SubsecRound::trunc_subsecs(emitted, 6));
    let mine = ok(app.get(&format!("/v1/investors/{sophie}/pledges")).await, 200).await;
    assert_eq!(mine["items"][0]["disputed_at"], after["disputed_at"]);
    let trial_after = ok(app.get("/v1/ledger/trial-balance").await, 200).await;
    assert_eq!(trial_after["currencies"], trial["currencies"]);

    // The same event delivered again is a repeat; a second dispute of the payment, under a new
    // event id, is stored and ignored: nothing more is announced or recorded.
    let event_id = sent["event_id"].as_str().unwrap();
    let now = chrono::Utc::now().timestamp();
    let again = signed(
        &app,
        event_id,
        event(event_id, "payment.disputed", &payment, "200.00", "EUR", now),
        0,
    )
    .await;
    assert_eq!(again.status, 200, "{:#}", again.body);
    assert_eq!(again.body["duplicate"], true);
    let second = ok(
        app.post(&format!("/v1/sandbox/payments/{payment}/dispute"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(
        (&second["applied"], &second["outcome"]),
        (&json!(false), &json!("ignored"))
    );
    assert_eq!(of_type(&app, "pledge.disputed").await.len(), 1);
    let unchanged = ok(app.get(&format!("/v1/pledges/{pledge_id}")).await, 200).await;
    assert_eq!(unchanged["disputed_at"], after["disputed_at"]);

    // What does not fit is quarantined: an unknown payment, a payment never captured, more
    // than was paid, another currency.
    let pending = ok(fixtures::pledge(&app, &offer, &sophie, 3, "10.00").await, 201).await;
    for (n, (id, amount, currency, code)) in [
        ("pay_unknown".to_string(), "10.00", "EUR", "not_found"),
        (payment_of(&pending), "30.00", "EUR", "invalid_state_transition"),
        (payment.clone(), "200.01", "EUR", "payment_mismatch"),
        (payment.clone(), "200.00", "USD", "payment_mismatch"),
    ]
    .into_iter()
    .enumerate()
    {
        let event_id = format!("evt_dispute_{n}");
        let r = signed(
            &app,
            &event_id,
            event(&event_id, "payment.disputed", &id, amount, currency, now),
            0,
        )
        .await;
        assert_eq!(r.status, 200, "{:#}", r.body);
        assert_eq!(
            r.body["outcome"], "quarantined",
            "{id} {amount} {currency}: {:#}",
            r.body
        );
        assert!(
            r.body["detail"].as_str().unwrap().starts_with(code),
            "{id}: {:#}",
            r.body
        );
    }
    assert_eq!(of_type(&app, "pledge.disputed").await.len(), 1);
    let pending = ok(
        app.get(&format!("/v1/pledges/{}", pending["id"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert!(pending.get("disputed_at").is_none(), "{pending:#}");
    app.assert_books_verify().await;
}
