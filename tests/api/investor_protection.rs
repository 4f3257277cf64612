//! The ECSP gate before a pledge (PRODUCT.md section 12, docs/investor-protection.md), black-box:
//! appropriateness records (required, listed, superseded, expiring after two years, a failed test
//! asking for the risk warning on every pledge), reclassification by an operator, the offer's Key
//! Investment Information Sheet (required to open, named by every pledge), its amendment while
//! open (reconfirm or be revoked and refunded, and a close that waits), the consent trail that
//! Postgres refuses to change, and the per-offer totals and the amendment under concurrency.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Months, TimeDelta, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{
    self, DAY, KIIS_SHA256, balance, funded_sponsor, investor, issue_cheque, ok, open_offer, pledge_at,
    published_project,
};
use crate::common::{self, Reply, TestApp};

/// A second and a third version of the French KIIS, and a first English one.
const KIIS_V2: &str = "a41c0e7b9d2f5a8c1e3b6d9f0a2c4e6b8d0f1a3c5e7b9d2f4a6c8e0b1d3f5a7c";
const KIIS_SHA256_V3: &str = "c3e5a7b9d1f3e5a7c9b1d3f5e7a9c1b3d5f7e9a1c3b5d7f9e1a3c5b7d9f1e3a5";
const KIIS_EN: &str = "0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a3c5e7b9d2f4a6c8e0b1d";

/// A made-up SHA-256, distinct per `tag`.
fn hash(tag: u8) -> String {
    format!("{tag:02x}").repeat(32)
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v:#}")).to_string()
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}

/// Two renderings of one instant (a reply's, an event's, a stored row's).
fn assert_same_time(a: &Value, b: &Value) {
    assert_eq!(at(a), at(b), "{a} vs {b}");
}

/// An instant within a few seconds of the service's clock.
fn assert_about_now(app: &TestApp, v: &Value) {
    let d = at(v) - app.clock.now();
    assert!(
        d.abs() < TimeDelta::seconds(10),
        "{v} is not the service's now ({})",
        app.clock.now()
    );
}

/// A card pledge of `shares` at 10.00 naming `kiis`.
fn card(investor: &str, shares: i64, kiis: &str) -> Value {
    json!({"investor_id": investor, "shares": shares, "kiis_sha256": kiis,
           "funding": [{"kind": "card", "amount": format!("{shares}0.00")}]})
}

/// `body` with these fields over it.
fn with(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    body
}

async fn pledge(app: &TestApp, offer: &str, body: &Value) -> Reply {
    pledge_at(&app.client, &app.base, offer, body).await
}

async fn created(app: &TestApp, offer: &str, body: &Value) -> Value {
    ok(pledge(app, offer, body).await, 201).await
}

/// The sandbox confirms a pledge's card payment.
async fn pay(app: &TestApp, pledge: &Value) {
    let payment = pledge["payment"]["payment_id"].as_str().unwrap();
    let r = ok(
        app.post(&format!("/v1/sandbox/payments/{payment}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(r["applied"], true, "{r:#}");
}

/// A card pledge naming the offer's first KIIS, paid.
async fn funded(app: &TestApp, offer: &str, investor: &str, shares: i64) -> Value {
    let p = created(app, offer, &card(investor, shares, KIIS_SHA256)).await;
    pay(app, &p).await;
    get_pledge(app, &id(&p)).await
}

async fn get_pledge(app: &TestApp, id: &str) -> Value {
    ok(app.get(&format!("/v1/pledges/{id}")).await, 200).await
}

async fn get_offer(app: &TestApp, offer: &str) -> Value {
    ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await
}

/// A verified investor with no appropriateness record (`fixtures::investor` records one for
/// the non-sophisticated).
async fn bare_investor(app: &TestApp, name: &str, classification: &str) -> String {
    let body = json!({"kind": "natural", "name": name, "country": "FR", "classification": classification,
                      "email": format!("{}@example.org", uuid::Uuid::new_v4().simple())});
    let investor = id(&ok(app.post("/v1/investors", body).await, 201).await);
    ok(
        app.post(&format!("/v1/investors/{investor}/kyc"), json!({"status": "verified"}))
            .await,
        200,
    )
    .await;
    investor
}

/// A POST as the operator with an `Idempotency-Key`.
async fn post_with_key(app: &TestApp, path: &str, key: &str, body: &Value) -> Reply {
    let r = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(common::OPERATOR_KEY)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    common::read(r).await
}

async fn record(app: &TestApp, investor: &str, body: Value) -> Reply {
    app.post(&format!("/v1/investors/{investor}/appropriateness"), body)
        .await
}

async fn recorded(app: &TestApp, investor: &str, knowledge_test: &str) -> Value {
    let body = json!({"knowledge_test": knowledge_test, "loss_capacity": "5000.00", "answers_ref": "quiz/2026/1"});
    ok(record(app, investor, body).await, 201).await
}

async fn add_document(app: &TestApp, offer: &str, kind: &str, language: &str, sha256: &str) -> Reply {
    app.post(
        &format!("/v1/offers/{offer}/documents"),
        json!({"kind": kind, "language": language, "sha256": sha256,
               "url": format!("https://platform.example/{offer}/{kind}-{language}-{}.pdf", &sha256[..8])}),
    )
    .await
}

async fn documents(app: &TestApp, offer: &str) -> Vec<Value> {
    let list = ok(app.get(&format!("/v1/offers/{offer}/documents")).await, 200).await;
    list["items"].as_array().unwrap().clone()
}

/// The events of a type, newest first.
async fn events(app: &TestApp, event_type: &str) -> Vec<Value> {
    let page = ok(app.get(&format!("/v1/events?type={event_type}&limit=1000")).await, 200).await;
    assert!(page.get("next_cursor").is_none(), "{page:#}");
    page["items"].as_array().unwrap().clone()
}

/// The pledges named by the events of a type.
async fn pledges_in(app: &TestApp, event_type: &str) -> BTreeSet<String> {
    events(app, event_type)
        .await
        .iter()
        .map(|e| e["data"]["pledge_id"].as_str().unwrap().to_string())
        .collect()
}

async fn reconfirm(app: &TestApp, pledge: &str, kiis: &str) -> Reply {
    app.post(&format!("/v1/pledges/{pledge}/reconfirm"), json!({"kiis_sha256": kiis}))
        .await
}

/// An open offer at 10.00 a share, room for 10,000, closing in `days`, whose card payments
/// wait a week (so an unpaid pledge outlives a reconfirmation period).
async fn roomy_offer(app: &TestApp, days: i64, min_target: &str) -> String {
    let project = published_project(app).await;
    let terms = json!({"min_target": min_target, "max_target": "100000.00", "payment_window_seconds": 604_800});
    open_offer(app, &project, terms, days).await
}

// 1. Appropriateness.

#[sqlx::test]
async fn a_non_sophisticated_investor_pledges_only_under_a_valid_appropriateness_record(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = roomy_offer(&app, 9, "100.00").await;
    let carol = bare_investor(&app, "Carol", "non_sophisticated").await;
    let shown = ok(app.get(&format!("/v1/investors/{carol}")).await, 200).await;
    assert_eq!(shown["appropriateness"], Value::Null, "{shown:#}");
    assert_eq!(shown["classification_decided_at"], Value::Null, "{shown:#}");

    // No record: refused, on the card path (the offer's batch) and with a cheque (one by one).
    pledge(&app, &offer, &card(&carol, 1, KIIS_SHA256))
        .await
        .assert_problem(422, "appropriateness_required");
    let sponsor = funded_sponsor(&app, "SenseTour", "100.00").await;
    let cheque = issue_cheque(&app, &sponsor, "100.00", 30).await;
    let by_cheque = json!({"investor_id": carol, "shares": 1, "kiis_sha256": KIIS_SHA256,
                           "funding": [{"kind": "cheque", "cheque_code": cheque["code"], "amount": "10.00"}]});
    pledge(&app, &offer, &by_cheque)
        .await
        .assert_problem(422, "appropriateness_required");
    let none = ok(app.get(&format!("/v1/investors/{carol}/appropriateness")).await, 200).await;
    assert_eq!(none["items"], json!([]), "{none:#}");

    // Recorded: valid two years (24 months) by the service's clock.
    let first = recorded(&app, &carol, "passed").await;
    assert_eq!(first["investor_id"], carol.as_str());
    assert_eq!(first["knowledge_test"], "passed");
    assert_eq!(first["loss_capacity"], json!({"amount": "5000.00", "currency": "EUR"}));
    assert_eq!(first["answers_ref"], "quiz/2026/1");
    assert_about_now(&app, &first["recorded_at"]);
    let valid_until = at(&first["recorded_at"]).checked_add_months(Months::new(24)).unwrap();
    assert_eq!(at(&first["valid_until"]), valid_until, "{first:#}");

    let p = created(&app, &offer, &card(&carol, 10, KIIS_SHA256)).await;
    let p = get_pledge(&app, &id(&p)).await;
    assert_eq!(
        p["consent"],
        json!({"kiis_sha256": KIIS_SHA256, "risk_warning_version": null, "appropriateness_id": first["id"],
               "acknowledged_at": p["created_at"], "reconfirmations": []}),
        "{p:#}"
    );
    assert_eq!(p["reconfirm_by"], Value::Null);
    let p_cheque = created(&app, &offer, &by_cheque).await;
    assert_eq!(p_cheque["consent"]["appropriateness_id"], first["id"], "{p_cheque:#}");

    // A new record supersedes it: the investor shows it, the list has both, newest first.
    app.clock.advance(60).unwrap();
    let second = ok(
        record(
            &app,
            &carol,
            json!({"knowledge_test": "failed", "loss_capacity": "250.5", "currency": "EUR", "answers_ref": "quiz/2026/2"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(second["loss_capacity"], json!({"amount": "250.50", "currency": "EUR"}));
    let shown = ok(app.get(&format!("/v1/investors/{carol}")).await, 200).await;
    assert_eq!(
        shown["appropriateness"],
        json!({"id": second["id"], "knowledge_test": "failed", "valid_until": second["valid_until"]}),
        "{shown:#}"
    );
    let list = ok(app.get(&format!("/v1/investors/{carol}/appropriateness")).await, 200).await;
    assert_eq!(list["items"], json!([second, first]), "{list:#}");
    assert!(list.get("next_cursor").is_none(), "{list:#}");
    let page = ok(
        app.get(&format!("/v1/investors/{carol}/appropriateness?limit=1")).await,
        200,
    )
    .await;
    assert_eq!(page["items"], json!([second]), "{page:#}");
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = ok(
        app.get(&format!(
            "/v1/investors/{carol}/appropriateness?limit=1&cursor={cursor}"
        ))
        .await,
        200,
    )
    .await;
    assert_eq!(rest["items"], json!([first]), "{rest:#}");
    assert!(rest.get("next_cursor").is_none(), "{rest:#}");

    // Failed: even a €10 pledge (far below the €1,000 threshold) needs the warning acknowledged.
    pledge(&app, &offer, &card(&carol, 1, KIIS_SHA256))
        .await
        .assert_problem(422, "risk_warning_required");
    pledge(&app, &offer, &by_cheque)
        .await
        .assert_problem(422, "risk_warning_required");
    let acknowledged = created(
        &app,
        &offer,
        &with(card(&carol, 1, KIIS_SHA256), json!({"risk_acknowledged": true})),
    )
    .await;
    let acknowledged = get_pledge(&app, &id(&acknowledged)).await;
    assert_eq!(acknowledged["consent"]["appropriateness_id"], second["id"]);
    assert_eq!(
        acknowledged["consent"]["risk_warning_version"], "1",
        "the configured default"
    );
    let versioned = created(
        &app,
        &offer,
        &with(
            card(&carol, 1, KIIS_SHA256),
            json!({"risk_acknowledged": true, "risk_warning_version": "2026-03"}),
        ),
    )
    .await;
    let versioned = get_pledge(&app, &id(&versioned)).await;
    assert_eq!(versioned["consent"]["risk_warning_version"], "2026-03", "{versioned:#}");
    // A version without the acknowledgement is not one.
    let mut unacknowledged = with(by_cheque.clone(), json!({"risk_warning_version": "2026-03"}));
    pledge(&app, &offer, &unacknowledged)
        .await
        .assert_problem(422, "risk_warning_required");
    unacknowledged["risk_acknowledged"] = json!(true);
    let by_cheque_ack = created(&app, &offer, &unacknowledged).await;
    assert_eq!(
        by_cheque_ack["consent"]["risk_warning_version"], "2026-03",
        "{by_cheque_ack:#}"
    );
    assert_eq!(by_cheque_ack["consent"]["appropriateness_id"], second["id"]);
    // The earlier pledge keeps the record it was judged under.
    assert_eq!(
        get_pledge(&app, &id(&p)).await["consent"]["appropriateness_id"],
        first["id"]
    );

    // A sophisticated investor needs no record.
    let sophie = investor(&app, "Sophie", "sophisticated").await;
    let s = created(&app, &offer, &card(&sophie, 1, KIIS_SHA256)).await;
    assert_eq!(s["consent"]["appropriateness_id"], Value::Null, "{s:#}");
    assert_eq!(s["consent"]["risk_warning_version"], Value::Null, "{s:#}");

    // Two years on: valid until the last instant before valid_until, expired from it.
    let record_until = at(&second["valid_until"]);
    app.clock.set(record_until - TimeDelta::seconds(120)).unwrap();
    let later = roomy_offer(&app, 9, "100.00").await;
    let ack = json!({"risk_acknowledged": true});
    created(&app, &later, &with(card(&carol, 1, KIIS_SHA256), ack.clone())).await;
    app.clock.set(record_until + TimeDelta::seconds(1)).unwrap();
    let r = pledge(&app, &later, &with(card(&carol, 1, KIIS_SHA256), ack.clone())).await;
    r.assert_problem(422, "appropriateness_expired");
    pledge(&app, &later, &unacknowledged)
        .await
        .assert_problem(422, "appropriateness_expired");
    // The sophisticated investor is not concerned.
    created(&app, &later, &card(&sophie, 1, KIIS_SHA256)).await;
    // A new record fixes it.
    let third = recorded(&app, &carol, "passed").await;
    let renewed = created(&app, &later, &card(&carol, 1, KIIS_SHA256)).await;
    assert_eq!(renewed["consent"]["appropriateness_id"], third["id"], "{renewed:#}");
    let list = ok(app.get(&format!("/v1/investors/{carol}/appropriateness")).await, 200).await;
    let ids: Vec<&Value> = list["items"].as_array().unwrap().iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, [&third["id"], &second["id"], &first["id"]]);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn bad_appropriateness_records_are_refused_with_stable_codes(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let carol = bare_investor(&app, "Carol", "non_sophisticated").await;
    let good = json!({"knowledge_test": "passed", "loss_capacity": "5000.00", "answers_ref": "quiz/1"});
    let cases = [
        (json!({"loss_capacity": "-1.00"}), "loss_capacity"),
        (json!({"loss_capacity": "12.345"}), "loss_capacity"),
        (json!({"loss_capacity": "lots"}), "loss_capacity"),
        (json!({"answers_ref": ""}), "answers_ref"),
        (json!({"answers_ref": "   "}), "answers_ref"),
        (json!({"answers_ref": "a\nb"}), "answers_ref"),
        (json!({"answers_ref": "x".repeat(501)}), "answers_ref"),
        (json!({"knowledge_test": "maybe"}), "knowledge_test"),
        (json!({"currency": "euro"}), "currency"),
    ];
    for (change, param) in cases {
        let r = record(&app, &carol, with(good.clone(), change.clone())).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["param"], param, "{change}: {:#}", r.body);
    }
    for missing in ["knowledge_test", "loss_capacity", "answers_ref"] {
        let r = record(&app, &carol, with(good.clone(), json!({missing: null}))).await;
        r.assert_problem(422, "validation_failed");
    }
    record(&app, &carol, with(good.clone(), json!({"unknown": 1})))
        .await
        .assert_problem(422, "validation_failed");
    let nobody = uuid::Uuid::new_v4();
    record(&app, &nobody.to_string(), good.clone())
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/v1/investors/{nobody}/appropriateness"))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/v1/investors/{carol}/appropriateness?limit=0"))
        .await
        .assert_problem(422, "validation_failed");
    // Nothing was written; zero is a capacity like any other, and the longest reference fits.
    let count: i64 = sqlx::query_scalar("select count(*) from appropriateness_records")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    ok(
        record(
            &app,
            &carol,
            with(
                good.clone(),
                json!({"loss_capacity": "0", "answers_ref": "x".repeat(500)}),
            ),
        )
        .await,
        201,
    )
    .await;
    // A key replays the first answer: one record.
    let path = format!("/v1/investors/{carol}/appropriateness");
    let first = post_with_key(&app, &path, "quiz-once", &good).await;
    assert_eq!(first.status, 201, "{:#}", first.body);
    let again = post_with_key(&app, &path, "quiz-once", &good).await;
    assert_eq!((again.status.as_u16(), &again.body), (201, &first.body));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    post_with_key(
        &app,
        &path,
        "quiz-once",
        &with(good.clone(), json!({"knowledge_test": "failed"})),
    )
    .await
    .assert_problem(422, "idempotency_key_reused");
    let listed = ok(app.get(&path).await, 200).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed:#}");
    // An auditor may not record one; the platform may.
    let auditor = app.key(crowdledger::keys::Role::Auditor).await;
    let platform = app.key(crowdledger::keys::Role::Platform).await;
    let path = format!("/v1/investors/{carol}/appropriateness");
    app.call(reqwest::Method::POST, &path, Some(&auditor), Some(&good))
        .await
        .assert_problem(403, "forbidden");
    let r = app
        .call(reqwest::Method::POST, &path, Some(&platform), Some(&good))
        .await;
    assert_eq!(r.status, 201, "{:#}", r.body);
}

// 2. Reclassification.

#[sqlx::test]
async fn only_an_operator_reclassifies_and_a_non_sophisticated_investor_then_needs_a_record(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = roomy_offer(&app, 9, "100.00").await;
    let sophie = investor(&app, "Sophie", "sophisticated").await;
    let before = created(&app, &offer, &card(&sophie, 95, KIIS_SHA256)).await;
    assert_eq!(before["reflection_ends_at"], Value::Null);

    let path = format!("/v1/investors/{sophie}/classification");
    let platform = app.key(crowdledger::keys::Role::Platform).await;
    let body = json!({"classification": "non_sophisticated"});
    app.call(reqwest::Method::POST, &path, Some(&platform), Some(&body))
        .await
        .assert_problem(403, "forbidden");
    let unchanged = ok(app.get(&format!("/v1/investors/{sophie}")).await, 200).await;
    assert_eq!(unchanged["classification"], "sophisticated");
    assert_eq!(unchanged["classification_decided_at"], Value::Null);

    let decided = ok(app.post(&path, body.clone()).await, 200).await;
    assert_eq!(decided["classification"], "non_sophisticated", "{decided:#}");
    assert_about_now(&app, &decided["classification_decided_at"]);
    assert_eq!(decided["appropriateness"], Value::Null);
    assert_eq!(
        ok(app.get(&format!("/v1/investors/{sophie}")).await, 200).await,
        decided
    );
    // The decision is in the audit trail.
    let trail = ok(app.get(&format!("/v1/audit-log?object_id={sophie}")).await, 200).await;
    assert_eq!(
        trail["items"][0]["route"], "/v1/investors/{id}/classification",
        "{trail:#}"
    );

    // Non-sophisticated now: no pledge without a record; with one, a reflection period.
    pledge(&app, &offer, &card(&sophie, 1, KIIS_SHA256))
        .await
        .assert_problem(422, "appropriateness_required");
    let record = recorded(&app, &sophie, "passed").await;
    let after = created(&app, &offer, &card(&sophie, 1, KIIS_SHA256)).await;
    assert_eq!(after["consent"]["appropriateness_id"], record["id"]);
    assert!(after["reflection_ends_at"].is_string(), "{after:#}");
    // What she pledged while sophisticated counts toward her risk threshold now: 950 + 10 so
    // far, 50 more would pass €1,000.
    let r = pledge(&app, &offer, &card(&sophie, 5, KIIS_SHA256)).await;
    r.assert_problem(422, "risk_warning_required");
    assert!(r.body["detail"].as_str().unwrap().contains("960.00"), "{:#}", r.body);
    // The pledge made before keeps its terms.
    let kept = get_pledge(&app, &id(&before)).await;
    assert_eq!(
        (&kept["reflection_ends_at"], &kept["consent"]["appropriateness_id"]),
        (&Value::Null, &Value::Null)
    );

    // Back to sophisticated: the record is not asked for; a later decision moves the timestamp.
    app.clock.advance(60).unwrap();
    let again = ok(app.post(&path, json!({"classification": "sophisticated"})).await, 200).await;
    assert!(at(&again["classification_decided_at"]) > at(&decided["classification_decided_at"]));
    let last = created(&app, &offer, &card(&sophie, 1, KIIS_SHA256)).await;
    assert_eq!(last["consent"]["appropriateness_id"], Value::Null);

    app.post(&path, json!({"classification": "expert"}))
        .await
        .assert_problem(422, "validation_failed");
    app.post(&format!("/v1/investors/{}/classification", uuid::Uuid::new_v4()), body)
        .await
        .assert_problem(404, "not_found");
}

// 3. The KIIS.

#[sqlx::test]
async fn an_offer_opens_only_with_a_kiis_and_pledges_name_a_current_one(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let now = app.clock.now();
    let terms = json!({
        "currency": "EUR", "share_price": "10.00", "min_target": "100.00", "max_target": "1000.00",
        "min_ticket": "10.00", "opens_at": now.to_rfc3339(),
        "closes_at": (now + TimeDelta::days(9)).to_rfc3339(),
        "success_fee_rate": "0.05", "allocation": "first_come",
    });
    let offer = id(&ok(app.post(&format!("/v1/projects/{project}/offers"), terms).await, 201).await);
    assert_eq!(documents(&app, &offer).await, Vec::<Value>::new());
    app.post(&format!("/v1/offers/{offer}/open"), json!({}))
        .await
        .assert_problem(409, "kiis_missing");

    // Another kind of document is no KIIS.
    let other = ok(add_document(&app, &offer, "other", "fr", &hash(1)).await, 201).await;
    assert_eq!(
        (&other["reconfirm_by"], &other["pledges_to_reconfirm"]),
        (&Value::Null, &json!(0))
    );
    app.post(&format!("/v1/offers/{offer}/open"), json!({}))
        .await
        .assert_problem(409, "kiis_missing");

    // The KIIS; its hash is kept in lower case.
    let fr = ok(
        add_document(&app, &offer, "kiis", "fr", &KIIS_SHA256.to_uppercase()).await,
        201,
    )
    .await;
    let doc = &fr["document"];
    assert_eq!(
        (&doc["offer_id"], &doc["kind"], &doc["language"], &doc["sha256"]),
        (&json!(offer), &json!("kiis"), &json!("fr"), &json!(KIIS_SHA256)),
        "{fr:#}"
    );
    assert_eq!(
        (
            &doc["supersedes"],
            &doc["current"],
            &fr["reconfirm_by"],
            &fr["pledges_to_reconfirm"]
        ),
        (&Value::Null, &json!(true), &Value::Null, &json!(0))
    );
    assert_about_now(&app, &doc["added_at"]);
    // The same bytes twice, whatever the kind or the case: 409.
    for (kind, sha) in [
        ("kiis", KIIS_SHA256.to_string()),
        ("other", KIIS_SHA256.to_uppercase()),
        ("kiis", hash(1)),
    ] {
        add_document(&app, &offer, kind, "de", &sha)
            .await
            .assert_problem(409, "document_exists");
    }
    // A new version in a draft amends nothing; another language is a KIIS of its own.
    let draft_v2 = ok(add_document(&app, &offer, "kiis", "fr", &hash(2)).await, 201).await;
    assert_eq!(draft_v2["document"]["supersedes"], doc["id"]);
    assert_eq!(draft_v2["reconfirm_by"], Value::Null);
    let en = ok(add_document(&app, &offer, "kiis", "en", KIIS_EN).await, 201).await;
    assert_eq!(en["document"]["supersedes"], Value::Null);
    let fr_v3 = ok(add_document(&app, &offer, "kiis", "fr", KIIS_SHA256_V3).await, 201).await;
    assert_eq!(fr_v3["document"]["supersedes"], draft_v2["document"]["id"]);
    assert!(events(&app, "offer.amended").await.is_empty());

    // A key replays the first answer rather than finding the document there already.
    let path = format!("/v1/offers/{offer}/documents");
    let body =
        json!({"kind": "other", "language": "en", "url": "https://platform.example/plan.pdf", "sha256": hash(10)});
    let first = post_with_key(&app, &path, "plan-once", &body).await;
    assert_eq!(first.status, 201, "{:#}", first.body);
    let again = post_with_key(&app, &path, "plan-once", &body).await;
    assert_eq!((again.status.as_u16(), &again.body), (201, &first.body));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    add_document(&app, &offer, "other", "en", &hash(10))
        .await
        .assert_problem(409, "document_exists");
    let opened = ok(app.post(&format!("/v1/offers/{offer}/open"), json!({})).await, 200).await;
    assert_eq!(opened["status"], "open");
    // Oldest first, the last of each kind and language current.
    let listed = documents(&app, &offer).await;
    let summary: Vec<(Value, Value)> = listed
        .iter()
        .map(|d| (d["sha256"].clone(), d["current"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!(hash(1)), json!(true)),
            (json!(KIIS_SHA256), json!(false)),
            (json!(hash(2)), json!(false)),
            (json!(KIIS_EN), json!(true)),
            (json!(KIIS_SHA256_V3), json!(true)),
            (json!(hash(10)), json!(true)),
        ]
    );
    assert_eq!(listed[1], with(doc.clone(), json!({"current": false})));

    let sophie = investor(&app, "Sophie", "sophisticated").await;
    let carol = investor(&app, "Carol", "non_sophisticated").await;
    for who in [&sophie, &carol] {
        let r = pledge(
            &app,
            &offer,
            &with(card(who, 1, KIIS_SHA256), json!({"kiis_sha256": null})),
        )
        .await;
        r.assert_problem(422, "kiis_not_acknowledged");
        assert_eq!(r.body["param"], "kiis_sha256");
        // A random hash, a superseded version, another kind of document, something not a hash.
        for wrong in [hash(9).as_str(), KIIS_SHA256, &hash(2), &hash(1), "not-a-hash"] {
            let r = pledge(&app, &offer, &card(who, 1, wrong)).await;
            r.assert_problem(422, "kiis_not_acknowledged");
        }
        // Either current version, in any case.
        let p = created(&app, &offer, &card(who, 1, KIIS_EN)).await;
        assert_eq!(p["consent"]["kiis_sha256"], KIIS_EN);
        let p = created(&app, &offer, &card(who, 1, &KIIS_SHA256_V3.to_uppercase())).await;
        assert_eq!(p["consent"]["kiis_sha256"], KIIS_SHA256_V3);
    }
    // A cheque pledge (the one-by-one path) is held to it too.
    let sponsor = funded_sponsor(&app, "SenseTour", "100.00").await;
    let cheque = issue_cheque(&app, &sponsor, "100.00", 30).await;
    let by_cheque = |kiis: &str| {
        json!({"investor_id": carol, "shares": 1, "kiis_sha256": kiis,
               "funding": [{"kind": "cheque", "cheque_code": cheque["code"], "amount": "10.00"}]})
    };
    pledge(&app, &offer, &by_cheque(KIIS_SHA256))
        .await
        .assert_problem(422, "kiis_not_acknowledged");
    let p = created(&app, &offer, &by_cheque(KIIS_EN)).await;
    assert_eq!(p["consent"]["kiis_sha256"], KIIS_EN);

    // Bad documents, and offers that take none.
    for bad in [
        json!({"kind": "kiis", "language": "FR", "url": "https://x.example/a.pdf", "sha256": hash(3)}),
        json!({"kind": "kiis", "language": "fra", "url": "https://x.example/a.pdf", "sha256": hash(3)}),
        json!({"kind": "kiis", "language": "fr", "url": "ftp://x.example/a.pdf", "sha256": hash(3)}),
        json!({"kind": "kiis", "language": "fr", "url": "https://x.example/a b.pdf", "sha256": hash(3)}),
        json!({"kind": "kiis", "language": "fr", "url": "https://x.example/a.pdf", "sha256": "abc"}),
        json!({"kind": "kiis", "language": "fr", "url": "https://x.example/a.pdf", "sha256": "g".repeat(64)}),
        json!({"kind": "prospectus", "language": "fr", "url": "https://x.example/a.pdf", "sha256": hash(3)}),
        json!({"language": "fr", "url": "https://x.example/a.pdf", "sha256": hash(3)}),
    ] {
        app.post(&format!("/v1/offers/{offer}/documents"), bad.clone())
            .await
            .assert_problem(422, "validation_failed");
    }
    let nowhere = uuid::Uuid::new_v4();
    add_document(&app, &nowhere.to_string(), "kiis", "fr", &hash(3))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/v1/offers/{nowhere}/documents"))
        .await
        .assert_problem(404, "not_found");
    ok(app.post(&format!("/v1/offers/{offer}/cancel"), json!({})).await, 200).await;
    add_document(&app, &offer, "kiis", "fr", &hash(3))
        .await
        .assert_problem(409, "invalid_state_transition");
    assert_eq!(documents(&app, &offer).await.len(), 6);
    // The same bytes on another offer are that offer's own.
    let (_, another) = fixtures::small_open_offer(&app).await;
    ok(add_document(&app, &another, "other", "fr", &hash(1)).await, 201).await;
    app.assert_books_verify().await;
}

// 4. Amendment.

#[sqlx::test]
async fn an_amendment_asks_for_reconfirmation_and_revokes_what_is_not_reconfirmed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = roomy_offer(&app, 30, "100.00").await;
    let carol = investor(&app, "Carol", "non_sophisticated").await;
    let dan = investor(&app, "Dan", "non_sophisticated").await;
    let eve = investor(&app, "Eve", "non_sophisticated").await;
    let sophie = investor(&app, "Sophie", "sophisticated").await;
    let sponsor = funded_sponsor(&app, "SenseTour", "100.00").await;
    let cheque = issue_cheque(&app, &sponsor, "100.00", 30).await;
    let kept = funded(&app, &offer, &carol, 10).await;
    let lapsed = funded(&app, &offer, &dan, 20).await;
    let unpaid = created(&app, &offer, &card(&carol, 5, KIIS_SHA256)).await;
    // Paid by a cheque in part: funded at once, its card part paid.
    let mixed = created(
        &app,
        &offer,
        &json!({"investor_id": eve, "shares": 8, "kiis_sha256": KIIS_SHA256,
                "funding": [{"kind": "cheque", "cheque_code": cheque["code"], "amount": "50.00"},
                            {"kind": "card", "amount": "30.00"}]}),
    )
    .await;
    pay(&app, &mixed).await;
    let sophies = funded(&app, &offer, &sophie, 30).await;
    let (kept, lapsed, unpaid, mixed, sophies) = (id(&kept), id(&lapsed), id(&unpaid), id(&mixed), id(&sophies));
    assert_eq!(get_pledge(&app, &mixed).await["status"], "funded");
    assert_eq!(get_offer(&app, &offer).await["shares_reserved"], 73);
    let cheque_balance =
        || async { ok(app.get(&format!("/v1/cheques/{}", id(&cheque))).await, 200).await["balance"].clone() };
    assert_eq!(cheque_balance().await, "50.00");
    // Nothing to reconfirm before an amendment.
    reconfirm(&app, &kept, KIIS_SHA256)
        .await
        .assert_problem(409, "not_reconfirmable");

    // A new French version while open: an amendment.
    let v1 = documents(&app, &offer).await[0].clone();
    let amended = ok(add_document(&app, &offer, "kiis", "fr", KIIS_V2).await, 201).await;
    let by = amended["reconfirm_by"].clone();
    assert_eq!(amended["pledges_to_reconfirm"], 4, "{amended:#}");
    assert_eq!(
        (&amended["document"]["supersedes"], &amended["document"]["current"]),
        (&v1["id"], &json!(true))
    );
    let added_at = at(&amended["document"]["added_at"]);
    assert_eq!(at(&by), added_at + TimeDelta::days(4), "{amended:#}");
    assert_about_now(&app, &amended["document"]["added_at"]);

    let offer_amended = events(&app, "offer.amended").await;
    assert_eq!(offer_amended.len(), 1, "{offer_amended:#?}");
    let data = &offer_amended[0]["data"];
    assert_eq!(
        (&data["offer_id"], &data["status"], &data["sha256"], &data["supersedes"]),
        (&json!(offer), &json!("open"), &json!(KIIS_V2), &v1["id"]),
        "{data:#}"
    );
    assert_eq!(
        (&data["document_id"], &data["pledges_to_reconfirm"], &data["language"]),
        (&amended["document"]["id"], &json!(4), &json!("fr"))
    );
    assert_same_time(&data["reconfirm_by"], &by);
    let asked = events(&app, "pledge.reconfirmation_required").await;
    assert_eq!(
        pledges_in(&app, "pledge.reconfirmation_required").await,
        BTreeSet::from([kept.clone(), lapsed.clone(), unpaid.clone(), mixed.clone()])
    );
    for e in &asked {
        assert_same_time(&e["data"]["reconfirm_by"], &by);
    }
    for p in [&kept, &lapsed, &unpaid, &mixed] {
        assert_same_time(&get_pledge(&app, p).await["reconfirm_by"], &by);
    }
    assert_eq!(get_pledge(&app, &sophies).await["reconfirm_by"], Value::Null);

    // The old version is no longer one a pledge may name; the new one is.
    for who in [&carol, &sophie] {
        pledge(&app, &offer, &card(who, 1, KIIS_SHA256))
            .await
            .assert_problem(422, "kiis_not_acknowledged");
    }
    let fresh = created(&app, &offer, &card(&carol, 1, KIIS_V2)).await;
    assert_eq!(fresh["reconfirm_by"], Value::Null);

    // Reconfirming names a current version.
    let r = reconfirm(&app, &kept, KIIS_SHA256).await;
    r.assert_problem(422, "kiis_not_acknowledged");
    assert_eq!(r.body["param"], "kiis_sha256");
    reconfirm(&app, &kept, &hash(7))
        .await
        .assert_problem(422, "kiis_not_acknowledged");
    reconfirm(&app, &kept, "nope")
        .await
        .assert_problem(422, "validation_failed");
    app.post(&format!("/v1/pledges/{kept}/reconfirm"), json!({}))
        .await
        .assert_problem(422, "validation_failed");
    reconfirm(&app, &uuid::Uuid::new_v4().to_string(), KIIS_V2)
        .await
        .assert_problem(404, "not_found");
    let done = ok(reconfirm(&app, &kept, &KIIS_V2.to_uppercase()).await, 200).await;
    assert_eq!((&done["id"], &done["status"]), (&json!(kept), &json!("funded")));
    assert_eq!(done["reconfirm_by"], Value::Null, "{done:#}");
    let reconfirmations = done["consent"]["reconfirmations"].as_array().unwrap();
    assert_eq!(reconfirmations.len(), 1, "{done:#}");
    assert_eq!(reconfirmations[0]["kiis_sha256"], KIIS_V2);
    assert_about_now(&app, &reconfirmations[0]["reconfirmed_at"]);
    // The consent it was made under stays what it was.
    assert_eq!(done["consent"]["kiis_sha256"], KIIS_SHA256);
    assert_eq!(get_pledge(&app, &kept).await, done);
    let listed: Vec<Value> = fixtures::pledges_of(&app, &offer).await;
    let in_list = listed.iter().find(|p| p["id"] == kept.as_str()).unwrap();
    assert_eq!(
        in_list["consent"], done["consent"],
        "the list shows the reconfirmations too"
    );
    reconfirm(&app, &kept, KIIS_V2)
        .await
        .assert_problem(409, "not_reconfirmable");
    reconfirm(&app, &sophies, KIIS_V2)
        .await
        .assert_problem(409, "not_reconfirmable");
    let reconfirmed = events(&app, "pledge.reconfirmed").await;
    assert_eq!(reconfirmed.len(), 1);
    assert_eq!(
        (
            &reconfirmed[0]["data"]["pledge_id"],
            &reconfirmed[0]["data"]["kiis_sha256"]
        ),
        (&json!(kept), &json!(KIIS_V2))
    );

    // The period passes: the clock's job ends what was not reconfirmed.
    app.clock.advance(4 * DAY + 60).unwrap();
    let revoked = app
        .wait_for(&format!("/v1/pledges/{lapsed}"), |p| p["status"] == "revoked")
        .await;
    assert_eq!(
        (&revoked["reconfirm_by"], &revoked["refunded_amount"]),
        (&Value::Null, &json!("200.00")),
        "{revoked:#}"
    );
    let refunds = revoked["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{revoked:#}");
    let refund = ok(
        app.get(&format!("/v1/refunds/{}", refunds[0].as_str().unwrap())).await,
        200,
    )
    .await;
    assert_eq!(
        (&refund["reason"], &refund["amount"], &refund["pledge_id"]),
        (&json!("not_reconfirmed"), &json!("200.00"), &json!(lapsed)),
        "{refund:#}"
    );
    let cancelled = app
        .wait_for(&format!("/v1/pledges/{unpaid}"), |p| p["status"] == "cancelled")
        .await;
    // Given back in full: its card part refunded, its cheque part back on the cheque.
    let mixed_revoked = app
        .wait_for(&format!("/v1/pledges/{mixed}"), |p| p["status"] == "revoked")
        .await;
    assert_eq!(
        (&mixed_revoked["status"], &mixed_revoked["refunded_amount"]),
        (&json!("revoked"), &json!("80.00")),
        "{mixed_revoked:#}"
    );
    let refund = ok(
        app.get(&format!(
            "/v1/refunds/{}",
            mixed_revoked["refunds"][0].as_str().unwrap()
        ))
        .await,
        200,
    )
    .await;
    assert_eq!(
        (&refund["reason"], &refund["amount"]),
        (&json!("not_reconfirmed"), &json!("30.00"))
    );
    assert_eq!(cheque_balance().await, "100.00");
    assert_eq!(cancelled["reconfirm_by"], Value::Null);
    assert_eq!(get_pledge(&app, &kept).await["status"], "funded");
    let untouched = get_pledge(&app, &sophies).await;
    assert_eq!(
        (&untouched["status"], &untouched["reconfirm_by"]),
        (&json!("funded"), &Value::Null)
    );
    assert_eq!(get_pledge(&app, &id(&fresh)).await["status"], "pending_payment");
    let revoked_events = events(&app, "pledge.revoked").await;
    assert_eq!(
        pledges_in(&app, "pledge.revoked").await,
        BTreeSet::from([lapsed.clone(), mixed.clone()])
    );
    for e in &revoked_events {
        assert_eq!(e["data"]["reason"], "not_reconfirmed", "{e:#}");
    }
    let cancelled_events = events(&app, "pledge.cancelled").await;
    assert_eq!(cancelled_events.len(), 1, "{cancelled_events:#?}");
    assert_eq!(
        (
            &cancelled_events[0]["data"]["pledge_id"],
            &cancelled_events[0]["data"]["reason"]
        ),
        (&json!(unpaid), &json!("not_reconfirmed"))
    );

    // The shares came back; the money went back and the books hold.
    let o = get_offer(&app, &offer).await;
    assert_eq!(o["status"], "open");
    assert_eq!((&o["shares_reserved"], &o["shares_funded"]), (&json!(41), &json!(40)));
    assert_eq!(balance(&app, &format!("offer:{offer}:escrow")).await, "400.00");
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "230.00");
    app.assert_books_verify().await;

    // Too late now, for either.
    for p in [&lapsed, &unpaid, &mixed] {
        reconfirm(&app, p, KIIS_V2)
            .await
            .assert_problem(409, "not_reconfirmable");
    }
    assert_eq!(get_pledge(&app, &lapsed).await, revoked);
}

#[sqlx::test]
async fn another_language_or_kind_amends_nothing_and_each_amendment_asks_again(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = roomy_offer(&app, 30, "100.00").await;
    let carol = investor(&app, "Carol", "non_sophisticated").await;
    let dan = investor(&app, "Dan", "non_sophisticated").await;
    let p = id(&funded(&app, &offer, &carol, 10).await);
    let q = id(&funded(&app, &offer, &dan, 10).await);
    // A first English KIIS and another document while open: no amendment.
    for (kind, language, sha) in [
        ("kiis", "en", KIIS_EN),
        ("other", "fr", &hash(4)),
        ("other", "fr", &hash(5)),
    ] {
        let r = ok(add_document(&app, &offer, kind, language, sha).await, 201).await;
        assert_eq!(
            (&r["reconfirm_by"], &r["pledges_to_reconfirm"]),
            (&Value::Null, &json!(0)),
            "{r:#}"
        );
    }
    assert!(events(&app, "offer.amended").await.is_empty());
    assert_eq!(get_pledge(&app, &p).await["reconfirm_by"], Value::Null);

    // An amendment, reconfirmed; a second one asks again.
    let first = ok(add_document(&app, &offer, "kiis", "fr", KIIS_V2).await, 201).await;
    assert_eq!(first["pledges_to_reconfirm"], 2);
    // The English version is current, but from before the amendment: not what Carol is asked
    // to read.
    reconfirm(&app, &p, KIIS_EN)
        .await
        .assert_problem(422, "kiis_not_acknowledged");
    ok(reconfirm(&app, &p, KIIS_V2).await, 200).await;
    ok(reconfirm(&app, &q, KIIS_V2).await, 200).await;
    app.clock.advance(DAY).unwrap();
    let second = ok(add_document(&app, &offer, "kiis", "en", &hash(6)).await, 201).await;
    assert_eq!(second["pledges_to_reconfirm"], 2);
    // The English version is superseded now: not one to reconfirm with.
    reconfirm(&app, &q, KIIS_EN)
        .await
        .assert_problem(422, "kiis_not_acknowledged");
    assert!(at(&second["reconfirm_by"]) > at(&first["reconfirm_by"]));
    let shown = get_pledge(&app, &p).await;
    assert_same_time(&shown["reconfirm_by"], &second["reconfirm_by"]);
    let done = ok(reconfirm(&app, &p, &hash(6)).await, 200).await;
    let kiis: Vec<&Value> = done["consent"]["reconfirmations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["kiis_sha256"])
        .collect();
    assert_eq!(kiis, [&json!(KIIS_V2), &json!(hash(6))]);
    assert_eq!(events(&app, "offer.amended").await.len(), 2);
    // Past both periods: Dan reconfirmed the first amendment only, his pledge is revoked;
    // Carol's, reconfirmed under the latest, stands.
    app.clock.advance(5 * DAY).unwrap();
    app.wait_for(&format!("/v1/pledges/{q}"), |p| p["status"] == "revoked")
        .await;
    let stands = get_pledge(&app, &p).await;
    assert_eq!(
        (&stands["status"], &stands["reconfirm_by"]),
        (&json!("funded"), &Value::Null)
    );
    assert_eq!(pledges_in(&app, "pledge.revoked").await, BTreeSet::from([q.clone()]));
    app.assert_books_verify().await;
}

// 5. A close waits for pending reconfirmations.

#[sqlx::test]
async fn a_close_waits_for_pending_reconfirmations_then_settles_without_the_unconfirmed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let terms = json!({"min_target": "100.00", "max_target": "1000.00"});
    let offer = open_offer(&app, &project, terms, 20).await;
    let sophie = investor(&app, "Sophie", "sophisticated").await;
    let carol = investor(&app, "Carol", "non_sophisticated").await;
    let dan = investor(&app, "Dan", "non_sophisticated").await;
    let eve = investor(&app, "Eve", "non_sophisticated").await;
    let s = id(&funded(&app, &offer, &sophie, 20).await);
    let c = id(&funded(&app, &offer, &carol, 10).await);
    let d = id(&funded(&app, &offer, &dan, 5).await);
    let e = id(&funded(&app, &offer, &eve, 3).await);
    // Their reflection periods end; the offer stays open.
    app.clock.advance(4 * DAY + 60).unwrap();
    let amended = ok(add_document(&app, &offer, "kiis", "fr", KIIS_V2).await, 201).await;
    assert_eq!(amended["pledges_to_reconfirm"], 3);
    ok(reconfirm(&app, &d, KIIS_V2).await, 200).await;

    // Closed early (its minimum is funded): it waits for Carol's reconfirmation.
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "closing", "{closed:#}");
    // A day on: the jobs have ticked (an empty offer due then has failed), it still waits.
    let sentinel = open_offer(&app, &project, json!({}), 1).await;
    app.clock.advance(DAY).unwrap();
    app.wait_for(&format!("/v1/offers/{sentinel}"), |o| o["status"] == "failed")
        .await;
    assert_eq!(get_offer(&app, &offer).await["status"], "closing");
    assert_eq!(get_pledge(&app, &c).await["status"], "funded");
    // A closing offer's pledge may still be reconfirmed.
    ok(reconfirm(&app, &e, KIIS_V2).await, 200).await;
    assert_eq!(get_offer(&app, &offer).await["status"], "closing");
    // Adding a document to a closing offer is refused.
    add_document(&app, &offer, "kiis", "fr", &hash(8))
        .await
        .assert_problem(409, "invalid_state_transition");

    // The period ends: Carol's pledge is revoked and refunded, the round settles without it.
    app.clock.advance(3 * DAY).unwrap();
    let o = app
        .wait_for(&format!("/v1/offers/{offer}"), |o| o["status"] == "succeeded")
        .await;
    assert_eq!(
        (&o["shares_allocated"], &o["shares_reserved"], &o["amount_raised"]),
        (&json!(28), &json!(28), &json!("280.00")),
        "{o:#}"
    );
    let carols = get_pledge(&app, &c).await;
    assert_eq!(
        (&carols["status"], &carols["refunded_amount"]),
        (&json!("revoked"), &json!("100.00")),
        "{carols:#}"
    );
    let refund = ok(
        app.get(&format!("/v1/refunds/{}", carols["refunds"][0].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(refund["reason"], "not_reconfirmed");
    for (p, shares) in [(&s, 20), (&d, 5), (&e, 3)] {
        let p = get_pledge(&app, p).await;
        assert_eq!(
            (&p["status"], &p["allocated_shares"]),
            (&json!("allocated"), &json!(shares)),
            "{p:#}"
        );
    }
    let table = ok(app.get(&format!("/v1/offers/{offer}/cap-table")).await, 200).await;
    let holders: BTreeSet<&str> = table["investors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["investor_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        holders,
        BTreeSet::from([sophie.as_str(), dan.as_str(), eve.as_str()]),
        "{table:#}"
    );
    assert_eq!(balance(&app, &format!("offer:{offer}:escrow")).await, "0.00");
    app.assert_books_verify().await;
}

// 6. The consent trail.

/// The constraint a refused statement names.
fn refused_by(result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> String {
    let err = result.expect_err("Postgres let the evidence change");
    let db = err.as_database_error().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(db.code().as_deref(), Some("23514"), "{db}");
    db.constraint().unwrap_or_default().to_string()
}

#[sqlx::test]
async fn postgres_refuses_to_change_the_consent_trail(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = roomy_offer(&app, 30, "100.00").await;
    let carol = investor(&app, "Carol", "non_sophisticated").await;
    let p = funded(&app, &offer, &carol, 10).await;
    let acknowledged = created(
        &app,
        &offer,
        &with(card(&carol, 1, KIIS_SHA256), json!({"risk_acknowledged": true})),
    )
    .await;
    ok(add_document(&app, &offer, "kiis", "fr", KIIS_V2).await, 201).await;
    ok(reconfirm(&app, &id(&p), KIIS_V2).await, 200).await;
    let before = get_pledge(&app, &id(&p)).await;
    let pledge_id: uuid::Uuid = id(&p).parse().unwrap();

    // Each consent column, even as the database's owner.
    for set in [
        format!("kiis_sha256 = '{}'", KIIS_V2),
        "kiis_sha256 = null".to_string(),
        "risk_warning_version = '2'".to_string(),
        "appropriateness_id = gen_random_uuid()".to_string(),
        "risk_acknowledged = not risk_acknowledged".to_string(),
        "created_at = created_at - interval '1 day'".to_string(),
        "investor_id = (select id from investors where id <> pledges.investor_id limit 1)".to_string(),
    ] {
        let r = sqlx::query(&format!("update pledges set {set} where id = $1"))
            .bind(pledge_id)
            .execute(&app.pool)
            .await;
        assert_eq!(refused_by(r), "pledges_consent_immutable", "{set}");
    }
    let r = sqlx::query("update pledges set risk_warning_version = null where id = $1::uuid")
        .bind(id(&acknowledged))
        .execute(&app.pool)
        .await;
    assert_eq!(refused_by(r), "pledges_consent_immutable");
    // Every pledge at once, too.
    let r = sqlx::query("update pledges set kiis_sha256 = $1")
        .bind(hash(9))
        .execute(&app.pool)
        .await;
    assert_eq!(refused_by(r), "pledges_consent_immutable");
    // Naming a column without changing it is no change; the other columns move as they must.
    sqlx::query("update pledges set kiis_sha256 = kiis_sha256, reconfirm_by = null where id = $1")
        .bind(pledge_id)
        .execute(&app.pool)
        .await
        .unwrap();

    // The records, the documents and the reconfirmations are only ever added to.
    for (table, constraint) in [
        ("appropriateness_records", "appropriateness_records_append_only"),
        ("offer_documents", "offer_documents_append_only"),
        ("pledge_reconfirmations", "pledge_reconfirmations_append_only"),
    ] {
        let count: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert!(count > 0, "{table} is empty: the test proves nothing");
        let column = match table {
            "appropriateness_records" => "answers_ref = 'edited'",
            "offer_documents" => "url = 'https://elsewhere.example/x.pdf'",
            _ => "kiis_sha256 = kiis_sha256",
        };
        let r = sqlx::query(&format!("update {table} set {column}"))
            .execute(&app.pool)
            .await;
        assert_eq!(refused_by(r), constraint, "update of {table}");
        let r = sqlx::query(&format!("delete from {table}")).execute(&app.pool).await;
        assert_eq!(refused_by(r), constraint, "delete from {table}");
    }
    // The service's own login may not even try.
    let service = common::service_pool(&app.pool).await;
    for statement in [
        "update appropriateness_records set answers_ref = 'edited'",
        "delete from offer_documents",
        "delete from pledge_reconfirmations",
    ] {
        let err = sqlx::query(statement).execute(&service).await.unwrap_err();
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{statement}: {err}");
    }
    service.close().await;

    let after = get_pledge(&app, &id(&p)).await;
    assert_eq!(after["consent"], before["consent"]);
    assert_eq!(documents(&app, &offer).await.len(), 2);
}

// 7. Concurrency.

/// The replies of these pledges fired at once at `offer`.
async fn fire(app: &TestApp, offer: &str, bodies: &[Value]) -> Vec<Reply> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(128).build().unwrap();
    let (client, base) = (&client, &app.base);
    common::race(bodies.len(), |i| pledge_at(client, base, offer, &bodies[i])).await
}

/// `n` verified non-sophisticated investors with a passed appropriateness record, registered at
/// once; no net worth declared, so their risk threshold is €1,000.
async fn retail(app: &TestApp, n: usize) -> Vec<String> {
    futures::future::join_all(
        (0..n).map(|i| async move { investor(app, &format!("Retail {i}"), "non_sophisticated").await }),
    )
    .await
}

/// An investor's live pledges on an offer, as stored.
async fn live(app: &TestApp, offer: &str, investor: &str) -> (i64, String) {
    let (count, total): (i64, rust_decimal::Decimal) = sqlx::query_as(
        "select count(*), coalesce(sum(amount), 0) from pledges
          where offer_id = $1::uuid and investor_id = $2::uuid and status in ('pending_payment', 'funded', 'allocated')",
    )
    .bind(offer)
    .bind(investor)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    (count, total.to_string())
}

#[sqlx::test]
async fn two_racing_600_pledges_of_one_investor_make_one_and_one_needs_the_warning(pool: PgPool) {
    let app = TestApp::spawn(common::wide_pool(&pool, 40).await).await;
    for allocation in ["first_come", "pro_rata"] {
        let project = published_project(&app).await;
        let terms = json!({"min_target": "100.00", "max_target": "100000.00", "allocation": allocation});
        let offer = open_offer(&app, &project, terms, 9).await;
        // No net worth declared: the threshold is €1,000.
        let carol = investor(&app, "Carol", "non_sophisticated").await;
        for _ in 0..3 {
            let (count, _) = live(&app, &offer, &carol).await;
            let replies = fire(
                &app,
                &offer,
                &[card(&carol, 60, KIIS_SHA256), card(&carol, 60, KIIS_SHA256)],
            )
            .await;
            let accepted = replies.iter().filter(|r| r.status == 201).count();
            for r in replies.iter().filter(|r| r.status != 201) {
                r.assert_problem(422, "risk_warning_required");
            }
            if count == 0 {
                assert_eq!(accepted, 1, "{replies:#?}");
                assert_eq!(live(&app, &offer, &carol).await, (1, "600.00".into()));
            } else {
                // Past the threshold already: both refused.
                assert_eq!(accepted, 0, "{replies:#?}");
            }
        }
        assert_eq!(live(&app, &offer, &carol).await, (1, "600.00".into()));
    }
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_burst_of_racing_600_pledges_leaves_each_investor_one(pool: PgPool) {
    const INVESTORS: usize = 40;
    let app = TestApp::spawn(common::wide_pool(&pool, 60).await).await;
    let offer = roomy_offer(&app, 9, "100.00").await;
    let investors: Vec<String> = retail(&app, INVESTORS).await;
    // Each investor twice, interleaved, all at once: batches judge several of an investor's
    // pledges together and others across batches.
    let bodies: Vec<Value> = (0..2 * INVESTORS)
        .map(|i| card(&investors[i % INVESTORS], 60, KIIS_SHA256))
        .collect();
    let replies = fire(&app, &offer, &bodies).await;
    let mut accepted: HashMap<&str, usize> = HashMap::new();
    for (body, r) in bodies.iter().zip(&replies) {
        let who = body["investor_id"].as_str().unwrap();
        if r.status == 201 {
            *accepted.entry(who).or_default() += 1;
        } else {
            r.assert_problem(422, "risk_warning_required");
        }
    }
    for who in &investors {
        assert_eq!(accepted.get(who.as_str()), Some(&1), "{who}");
        assert_eq!(live(&app, &offer, who).await, (1, "600.00".into()), "{who}");
    }
    // They were written in batches: fewer transactions than pledges.
    let transactions: i64 =
        sqlx::query_scalar("select count(distinct xmin::text) from pledges where offer_id = $1::uuid")
            .bind(&offer)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(
        transactions < INVESTORS as i64,
        "{transactions} transactions for {INVESTORS} pledges"
    );
    assert_eq!(get_offer(&app, &offer).await["shares_reserved"], 60 * INVESTORS as i64);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn pledges_racing_an_amendment_are_either_refused_or_asked_to_reconfirm(pool: PgPool) {
    const PLEDGES: usize = 60;
    // The amendment leaves with the pledges, or a little after them: in each round it lands
    // at another point of their way through the batches (the delay only spreads the race).
    const DELAYS_MS: [u64; 6] = [0, 2, 5, 10, 20, 40];
    let app = TestApp::spawn(common::wide_pool(&pool, 60).await).await;
    let offer = roomy_offer(&app, 30, "100.00").await;
    let investors: Vec<String> = retail(&app, PLEDGES).await;
    // A few pledges paid by cheque take the one-by-one path.
    let sponsor = funded_sponsor(&app, "SenseTour", "1000.00").await;
    let cheque = issue_cheque(&app, &sponsor, "1000.00", 60).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(128).build().unwrap();
    let mut current = KIIS_SHA256.to_string();
    let (mut made, mut refused) = (0, 0);
    let mut before_each = Vec::new();
    for (round, delay) in (0u8..).zip(DELAYS_MS) {
        let next = hash(0x10 + round);
        let bodies: Vec<Value> = (0..PLEDGES)
            .map(|i| match i % 10 {
                3 => json!({"investor_id": investors[i], "shares": 1, "kiis_sha256": current,
                            "funding": [{"kind": "cheque", "cheque_code": cheque["code"], "amount": "10.00"}]}),
                _ => card(&investors[i], 1, &current),
            })
            .collect();
        let amend_at = PLEDGES / 2;
        let (app, client, offer, next_hash, bodies) = (&app, &client, &offer, &next, &bodies);
        let replies = common::race(PLEDGES + 1, |i| async move {
            if i == amend_at {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                add_document(app, offer, "kiis", "fr", next_hash).await
            } else {
                let body = &bodies[if i < amend_at { i } else { i - 1 }];
                pledge_at(client, &app.base, offer, body).await
            }
        })
        .await;
        assert_eq!(replies[amend_at].status, 201, "{:#}", replies[amend_at].body);
        let amendment = &replies[amend_at].body;
        let by = amendment["reconfirm_by"].clone();
        let asked = pledges_in(app, "pledge.reconfirmation_required").await;
        let mut accepted = Vec::new();
        for (_, r) in replies.iter().enumerate().filter(|(i, _)| *i != amend_at) {
            if r.status == 201 {
                assert_eq!(r.body["consent"]["kiis_sha256"], current.as_str());
                accepted.push(id(&r.body));
            } else {
                r.assert_problem(422, "kiis_not_acknowledged");
                refused += 1;
            }
        }
        made += accepted.len();
        before_each.push(accepted.len());
        // Every pledge accepted under the old version existed at the amendment: it was asked.
        for p in &accepted {
            let shown = get_pledge(app, p).await;
            assert!(
                shown["reconfirm_by"].is_string(),
                "round {round}: pledge {p} was made under {current} but not asked to reconfirm: {shown:#}"
            );
            assert_same_time(&shown["reconfirm_by"], &by);
            assert!(
                asked.contains(p),
                "round {round}: no pledge.reconfirmation_required for {p}"
            );
        }
        // The amendment counted every live pledge: all the ones made so far.
        assert_eq!(amendment["pledges_to_reconfirm"], made, "round {round}");
        let unasked: i64 = sqlx::query_scalar(
            "select count(*) from pledges where offer_id = $1::uuid and kiis_sha256 <> $2
                and status in ('pending_payment', 'funded') and reconfirm_by is null",
        )
        .bind(offer)
        .bind(&next)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(unasked, 0, "round {round}");
        current = next;
    }
    eprintln!(
        "racing an amendment: {made} pledges made before it (per round: {before_each:?}), {refused} refused after it"
    );
    assert_eq!(
        get_offer(&app, &offer).await["shares_reserved"],
        made as i64,
        "nothing refused reserved anything"
    );
    app.assert_books_verify().await;
}
