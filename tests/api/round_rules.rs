//! The rules of a round, one refusal at a time, through HTTP: offer terms, the ECSP cap, the
//! offer lifecycle, pledge checks, revocation, the payment window, payment failures, roles, and
//! the outbox. Every refusal is checked for its exact status and problem `code`, and for having
//! written nothing: row counts, offers' statuses and `shares_reserved`, pledges' and payments'
//! statuses are the same before and after.

use crowdledger::keys::Role;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::fixtures::{KIIS_SHA256, add_kiis, appropriate, balance, published_project};
use crate::common::{self, OPERATOR_KEY, Reply, TestApp};

const DAY: i64 = 86_400;

fn ok(r: Reply, status: u16) -> Value {
    assert_eq!(r.status.as_u16(), status, "{:#}", r.body);
    r.body
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("the resource has an id").to_string()
}

// ---------------------------------------------------------------------------------------------
// What a refused request must leave untouched.

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    counts: Vec<(&'static str, i64)>,
    /// (id, status, shares_reserved) of every offer.
    offers: Vec<(Uuid, String, i64)>,
    /// (id, status) of every pledge.
    pledges: Vec<(Uuid, String)>,
    /// (id, status) of every payment.
    payments: Vec<(Uuid, String)>,
}

const TABLES: [&str; 10] = [
    "pledges",
    "offers",
    "payments",
    "refunds",
    "payouts",
    "ledger_accounts",
    "ledger_entries",
    "ledger_postings",
    "outbox_events",
    "idempotency_keys",
];

async fn snapshot(app: &TestApp) -> Snapshot {
    let mut counts = Vec::new();
    for table in TABLES {
        let n: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&app.pool)
            .await
            .unwrap();
        counts.push((table, n));
    }
    let offers = sqlx::query_as("select id, status::text, shares_reserved from offers order by id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    let pledges = sqlx::query_as("select id, status::text from pledges order by id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    let payments = sqlx::query_as("select id, status::text from payments order by id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    Snapshot {
        counts,
        offers,
        pledges,
        payments,
    }
}

/// Asserts that `r` is the problem `status`/`code` and that nothing changed since `before`.
async fn refused(app: &TestApp, before: &Snapshot, r: Reply, status: u16, code: &str, what: &str) {
    assert_eq!(r.status.as_u16(), status, "{what}: {:#}", r.body);
    assert_eq!(r.body["code"], code, "{what}: {:#}", r.body);
    r.assert_problem(status, code);
    let after = snapshot(app).await;
    assert_eq!(&after, before, "{what}: a refused request wrote something");
}

async fn shares_reserved(app: &TestApp, offer: &str) -> i64 {
    ok(app.get(&format!("/v1/offers/{offer}")).await, 200)["shares_reserved"]
        .as_i64()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Building blocks.

async fn new_project(app: &TestApp, name: &str, publish: bool) -> String {
    let body = json!({
        "name": name, "legal_name": format!("{name} SAS"), "legal_form": "SAS", "country": "FR",
        "territory": "Pays de Brest", "themes": ["employment", "inclusion"],
        "description": "A social enterprise.", "impact_indicators": [],
    });
    let id = id_of(&ok(app.post("/v1/projects", body).await, 201));
    if publish {
        ok(app.post(&format!("/v1/projects/{id}/publish"), json!({})).await, 200);
    }
    id
}

/// An investor with the given KYC decision (`None`: left pending) and optional net worth; a
/// non-sophisticated one with a passed appropriateness record (ECSP art. 21).
async fn investor_with(
    app: &TestApp,
    name: &str,
    classification: &str,
    kyc: Option<&str>,
    net_worth: Option<Value>,
) -> String {
    let mut body = json!({"kind": "natural", "name": name,
                          "email": format!("{}@example.org", name.to_lowercase()),
                          "country": "FR", "classification": classification});
    if let Some(w) = net_worth {
        body["net_worth"] = w;
    }
    let id = id_of(&ok(app.post("/v1/investors", body).await, 201));
    if let Some(status) = kyc {
        ok(
            app.post(&format!("/v1/investors/{id}/kyc"), json!({"status": status}))
                .await,
            200,
        );
    }
    if classification != "sophisticated" {
        appropriate(app, &id).await;
    }
    id
}

async fn investor(app: &TestApp, name: &str, classification: &str) -> String {
    investor_with(app, name, classification, Some("verified"), None).await
}

/// Offer terms: share price 10.00, min 100,000, max 150,000, first_come, opening now and closing
/// in 28 days; `terms` overrides any of them.
fn offer_body(app: &TestApp, terms: Value) -> Value {
    let now = app.clock.now();
    let mut body = json!({
        "currency": "EUR", "share_price": "10.00", "min_target": "100000.00", "max_target": "150000.00",
        "min_ticket": "10.00", "opens_at": now.to_rfc3339(),
        "closes_at": (now + chrono::TimeDelta::seconds(28 * DAY)).to_rfc3339(),
        "success_fee_rate": "0.05", "allocation": "first_come",
    });
    for (k, v) in terms.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn create_offer(app: &TestApp, project: &str, terms: Value) -> Reply {
    app.post(&format!("/v1/projects/{project}/offers"), offer_body(app, terms))
        .await
}

/// A draft with its KIIS ([`KIIS_SHA256`]), so that opening it meets every rule but the one a
/// test breaks.
async fn draft_offer(app: &TestApp, project: &str, terms: Value) -> String {
    let id = id_of(&ok(create_offer(app, project, terms).await, 201));
    add_kiis(app, &id).await;
    id
}

async fn open_offer(app: &TestApp, project: &str, terms: Value) -> String {
    let id = draft_offer(app, project, terms).await;
    let opened = ok(app.post(&format!("/v1/offers/{id}/open"), json!({})).await, 200);
    assert_eq!(opened["status"], "open");
    id
}

/// A POST with an API key and a fresh Idempotency-Key.
async fn post_keyed(app: &TestApp, key: &str, path: &str, body: &Value) -> Reply {
    let r = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(key)
        .header("idempotency-key", Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await
        .unwrap();
    common::read(r).await
}

async fn pledge_body(app: &TestApp, key: &str, offer: &str, body: Value) -> Reply {
    post_keyed(app, key, &format!("/v1/offers/{offer}/pledges"), &body).await
}

fn card(investor: &str, shares: i64, price: &str) -> Value {
    let amount = Decimal::from(shares) * price.parse::<Decimal>().unwrap();
    json!({"investor_id": investor, "shares": shares, "funding": [{"kind": "card", "amount": format!("{amount:.2}")}],
           "kiis_sha256": KIIS_SHA256})
}

/// A card pledge at 10.00 a share, by the operator.
async fn pledge(app: &TestApp, offer: &str, investor: &str, shares: i64) -> Reply {
    pledge_body(app, OPERATOR_KEY, offer, card(investor, shares, "10.00")).await
}

fn payment_of(p: &Value) -> String {
    p["payment"]["payment_id"].as_str().unwrap().to_string()
}

async fn sandbox(app: &TestApp, what: &str, id: &str, action: &str) -> Reply {
    app.post(&format!("/v1/sandbox/{what}/{id}/{action}"), json!({})).await
}

/// Pledges at 10.00 a share and pays; returns the pledge.
async fn funded_pledge(app: &TestApp, offer: &str, investor: &str, shares: i64) -> Value {
    let p = ok(pledge(app, offer, investor, shares).await, 201);
    let paid = ok(sandbox(app, "payments", &payment_of(&p), "succeed").await, 200);
    assert_eq!(paid["applied"], true);
    p
}

async fn pledge_status(app: &TestApp, pledge: &str) -> String {
    ok(app.get(&format!("/v1/pledges/{pledge}")).await, 200)["status"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn event_types(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("select event_type from outbox_events order by seq")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

async fn events_of_pledge(app: &TestApp, pledge: &str) -> Vec<String> {
    sqlx::query_scalar("select event_type from outbox_events where payload -> 'data' ->> 'pledge_id' = $1 order by seq")
        .bind(pledge)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. Offer terms.

#[sqlx::test]
async fn offer_terms_that_break_a_rule_are_refused_and_write_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let opens_at = app.clock.now().to_rfc3339();
    let earlier = (app.clock.now() - chrono::TimeDelta::seconds(60)).to_rfc3339();
    let before = snapshot(&app).await;

    let cases: Vec<(&str, Value)> = vec![
        ("max_target not whole shares", json!({"max_target": "150005.00"})),
        ("min_target not whole shares", json!({"min_target": "100005.00"})),
        ("min_target above max_target", json!({"min_target": "200000.00"})),
        ("min_target with 3 decimals", json!({"min_target": "100000.001"})),
        // More decimals than EUR has are refused, trailing zeros or not (README: Amounts).
        (
            "share_price with a third decimal zero",
            json!({"share_price": "10.000"}),
        ),
        ("min_target zero", json!({"min_target": "0.00"})),
        ("max_target as a JSON number", json!({"max_target": 150000})),
        ("share_price zero", json!({"share_price": "0"})),
        ("share_price 0.001", json!({"share_price": "0.001"})),
        ("share_price negative", json!({"share_price": "-10.00"})),
        ("share_price as a JSON number", json!({"share_price": 10})),
        ("share_price in exponent notation", json!({"share_price": "1e1"})),
        (
            "max_ticket below min_ticket",
            json!({"min_ticket": "100.00", "max_ticket": "99.99"}),
        ),
        ("min_ticket negative", json!({"min_ticket": "-10.00"})),
        (
            "closes_at equal to opens_at",
            json!({"opens_at": opens_at, "closes_at": opens_at}),
        ),
        (
            "closes_at before opens_at",
            json!({"opens_at": opens_at, "closes_at": earlier}),
        ),
        ("success_fee_rate 1", json!({"success_fee_rate": "1"})),
        ("success_fee_rate -0.1", json!({"success_fee_rate": "-0.1"})),
        ("success_fee_rate as a JSON number", json!({"success_fee_rate": 0.05})),
        ("payment_window_seconds 10", json!({"payment_window_seconds": 10})),
        (
            "payment_window_seconds 8 days",
            json!({"payment_window_seconds": 8 * DAY}),
        ),
        ("oversubscription_limit 0.5", json!({"oversubscription_limit": "0.5"})),
        ("oversubscription_limit 101", json!({"oversubscription_limit": "101"})),
        ("currency USD", json!({"currency": "USD"})),
        ("currency EURO", json!({"currency": "EURO"})),
        ("currency lower case", json!({"currency": "eur"})),
        ("unknown allocation", json!({"allocation": "lottery"})),
        ("unknown field", json!({"discount": "0.10"})),
        ("opens_at not a time", json!({"opens_at": "tomorrow"})),
        // Found by scripts/schemathesis: stored to the microsecond, these were equal (a 500).
        (
            "closes_at less than a microsecond after opens_at",
            json!({"opens_at": "2030-01-01T00:00:00.000001Z", "closes_at": "2030-01-01T00:00:00.000001709Z"}),
        ),
    ];
    for (what, terms) in cases {
        let r = create_offer(&app, &project, terms).await;
        refused(&app, &before, r, 422, "validation_failed", what).await;
    }
    // A missing required field.
    let mut body = offer_body(&app, json!({}));
    body.as_object_mut().unwrap().remove("max_target");
    let r = app.post(&format!("/v1/projects/{project}/offers"), body).await;
    refused(&app, &before, r, 422, "validation_failed", "max_target missing").await;

    // No such project.
    let r = create_offer(&app, &Uuid::new_v4().to_string(), json!({})).await;
    refused(&app, &before, r, 404, "not_found", "unknown project").await;

    // An archived project takes no new offer (published, then archived; or archived as a draft).
    let archived = new_project(&app, "Gone", true).await;
    ok(
        app.post(&format!("/v1/projects/{archived}/archive"), json!({})).await,
        200,
    );
    let never = new_project(&app, "Never", false).await;
    ok(app.post(&format!("/v1/projects/{never}/archive"), json!({})).await, 200);
    let before = snapshot(&app).await;
    for p in [&archived, &never] {
        let r = create_offer(&app, p, json!({})).await;
        refused(&app, &before, r, 409, "invalid_state_transition", "archived project").await;
    }

    // The same terms without the fault are accepted: the refusals were for the rule.
    let offer = ok(create_offer(&app, &project, json!({})).await, 201);
    assert_eq!(offer["status"], "draft");
    assert_eq!(
        (offer["min_shares"].as_i64(), offer["max_shares"].as_i64()),
        (Some(10_000), Some(15_000))
    );
    assert_eq!(offer["payment_window_seconds"], 1800);
    assert_eq!(offer["oversubscription_limit"], "5");
    app.assert_books_verify().await;
}

// ---------------------------------------------------------------------------------------------
// 2. The ECSP cap: €5,000,000 of max_target per project over 12 months.

fn ecsp_terms(max_target: &str) -> Value {
    json!({"share_price": "1000.00", "min_target": "1000.00", "max_target": max_target, "min_ticket": "1000.00"})
}

#[sqlx::test]
async fn the_ecsp_cap_counts_the_projects_opened_offers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let first = open_offer(&app, &project, ecsp_terms("4000000.00")).await;

    let before = snapshot(&app).await;
    let r = create_offer(&app, &project, ecsp_terms("1500000.00")).await;
    refused(&app, &before, r, 422, "ecsp_cap_exceeded", "4M + 1.5M").await;
    let r = create_offer(&app, &project, ecsp_terms("1001000.00")).await;
    refused(&app, &before, r, 422, "ecsp_cap_exceeded", "4M + 1,001,000").await;

    // Exactly €5M is allowed.
    let exact = draft_offer(&app, &project, ecsp_terms("1000000.00")).await;
    // Another project has its own cap.
    let other = new_project(&app, "Other", true).await;
    open_offer(&app, &other, ecsp_terms("5000000.00")).await;

    // A cancelled offer no longer counts: €4.5M fits once the €4M offer is cancelled.
    let cancelled = ok(app.post(&format!("/v1/offers/{first}/cancel"), json!({})).await, 200);
    assert_eq!(cancelled["status"], "cancelled");
    let big = draft_offer(&app, &project, ecsp_terms("4500000.00")).await;
    // Drafts do not count, but opening counts them: the €1M draft opens (€1M), then the
    // €4.5M one would make €5.5M.
    ok(app.post(&format!("/v1/offers/{exact}/open"), json!({})).await, 200);
    let before = snapshot(&app).await;
    let r = app.post(&format!("/v1/offers/{big}/open"), json!({})).await;
    refused(&app, &before, r, 422, "ecsp_cap_exceeded", "opening 1M + 4.5M").await;
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_failed_offer_no_longer_counts_towards_the_ecsp_cap(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let mut terms = ecsp_terms("4000000.00");
    terms["closes_at"] = json!((app.clock.now() + chrono::TimeDelta::seconds(DAY)).to_rfc3339());
    let first = open_offer(&app, &project, terms).await;
    let before = snapshot(&app).await;
    let r = create_offer(&app, &project, ecsp_terms("4500000.00")).await;
    refused(&app, &before, r, 422, "ecsp_cap_exceeded", "4M open + 4.5M").await;

    // No pledge: at closes_at the round fails.
    app.clock.advance(DAY + 60).unwrap();
    app.wait_for(&format!("/v1/offers/{first}"), |o| o["status"] == "failed")
        .await;
    let second = open_offer(&app, &project, ecsp_terms("4500000.00")).await;
    assert_eq!(
        ok(app.get(&format!("/v1/offers/{second}")).await, 200)["status"],
        "open"
    );
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_succeeded_offer_counts_for_twelve_months(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, ecsp_terms("4000000.00")).await;
    let who = investor(&app, "Sophie", "sophisticated").await;
    let p = ok(
        pledge_body(&app, OPERATOR_KEY, &offer, card(&who, 1, "1000.00")).await,
        201,
    );
    ok(sandbox(&app, "payments", &payment_of(&p), "succeed").await, 200);
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200);
    assert_eq!(closed["status"], "succeeded");

    // A succeeded round still counts...
    let before = snapshot(&app).await;
    let r = create_offer(&app, &project, ecsp_terms("1500000.00")).await;
    refused(&app, &before, r, 422, "ecsp_cap_exceeded", "succeeded 4M + 1.5M").await;
    // ...until 12 months after it opened.
    app.clock.advance(366 * DAY).unwrap();
    let later = open_offer(&app, &project, ecsp_terms("5000000.00")).await;
    assert_eq!(ok(app.get(&format!("/v1/offers/{later}")).await, 200)["status"], "open");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn opening_rechecks_the_ecsp_cap(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    // Both drafts are accepted: drafts do not count.
    let a = draft_offer(&app, &project, ecsp_terms("3000000.00")).await;
    let b = draft_offer(&app, &project, ecsp_terms("3000000.00")).await;
    ok(app.post(&format!("/v1/offers/{a}/open"), json!({})).await, 200);
    let before = snapshot(&app).await;
    let r = app.post(&format!("/v1/offers/{b}/open"), json!({})).await;
    refused(&app, &before, r, 422, "ecsp_cap_exceeded", "opening the second 3M").await;
    assert_eq!(ok(app.get(&format!("/v1/offers/{b}")).await, 200)["status"], "draft");
    // The opened one is the only `offer.opened` event.
    assert_eq!(event_types(&app).await, ["offer.opened"]);
    app.assert_books_verify().await;
}

// ---------------------------------------------------------------------------------------------
// 3. The offer lifecycle.

#[sqlx::test]
async fn lifecycle_moves_that_do_not_apply_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let who = investor(&app, "Sophie", "sophisticated").await;

    // Open twice.
    let offer = open_offer(&app, &project, json!({"min_target": "100.00", "max_target": "1000.00"})).await;
    let before = snapshot(&app).await;
    let r = app.post(&format!("/v1/offers/{offer}/open"), json!({})).await;
    refused(&app, &before, r, 409, "invalid_state_transition", "open twice").await;

    // Close before closes_at with the minimum not funded: an unpaid pledge of the full minimum
    // does not count.
    ok(pledge(&app, &offer, &who, 10).await, 201);
    let before = snapshot(&app).await;
    let r = app.post(&format!("/v1/offers/{offer}/close"), json!({})).await;
    refused(&app, &before, r, 409, "min_target_not_reached", "early close").await;

    // An offer of an unpublished project cannot open.
    let draft_project = new_project(&app, "Draft project", false).await;
    let offer_of_draft = draft_offer(&app, &draft_project, json!({})).await;
    let before = snapshot(&app).await;
    let r = app.post(&format!("/v1/offers/{offer_of_draft}/open"), json!({})).await;
    refused(&app, &before, r, 409, "invalid_state_transition", "unpublished project").await;

    // A draft whose closing time has passed cannot open.
    let now = app.clock.now();
    let stale = draft_offer(
        &app,
        &project,
        json!({"opens_at": (now - chrono::TimeDelta::seconds(2 * DAY)).to_rfc3339(),
               "closes_at": (now - chrono::TimeDelta::seconds(DAY)).to_rfc3339()}),
    )
    .await;
    let before = snapshot(&app).await;
    let r = app.post(&format!("/v1/offers/{stale}/open"), json!({})).await;
    refused(
        &app,
        &before,
        r,
        409,
        "invalid_state_transition",
        "open after closes_at",
    )
    .await;

    // Close a draft.
    let draft = draft_offer(&app, &project, json!({"min_target": "100.00", "max_target": "1000.00"})).await;
    let before = snapshot(&app).await;
    let r = app.post(&format!("/v1/offers/{draft}/close"), json!({})).await;
    refused(&app, &before, r, 409, "invalid_state_transition", "close a draft").await;

    // A succeeded offer can be neither cancelled, nor closed, nor opened again.
    let done = open_offer(&app, &project, json!({"min_target": "100.00", "max_target": "1000.00"})).await;
    funded_pledge(&app, &done, &who, 10).await;
    let closed = ok(app.post(&format!("/v1/offers/{done}/close"), json!({})).await, 200);
    assert_eq!(closed["status"], "succeeded");
    let before = snapshot(&app).await;
    for action in ["cancel", "close", "open"] {
        let r = app.post(&format!("/v1/offers/{done}/{action}"), json!({})).await;
        refused(&app, &before, r, 409, "invalid_state_transition", action).await;
    }

    // A cancelled offer cannot be cancelled or opened again.
    ok(app.post(&format!("/v1/offers/{draft}/cancel"), json!({})).await, 200);
    let before = snapshot(&app).await;
    for action in ["cancel", "open", "close"] {
        let r = app.post(&format!("/v1/offers/{draft}/{action}"), json!({})).await;
        refused(&app, &before, r, 409, "invalid_state_transition", action).await;
    }

    // Unknown offer: 404 everywhere.
    let nobody = Uuid::new_v4();
    let r = app.get(&format!("/v1/offers/{nobody}")).await;
    refused(&app, &before, r, 404, "not_found", "GET unknown offer").await;
    for action in ["open", "close", "cancel"] {
        let r = app.post(&format!("/v1/offers/{nobody}/{action}"), json!({})).await;
        refused(&app, &before, r, 404, "not_found", action).await;
    }
    let r = pledge(&app, &nobody.to_string(), &who, 10).await;
    refused(&app, &before, r, 404, "not_found", "pledge on unknown offer").await;
    let r = app.get(&format!("/v1/offers/{nobody}/pledges")).await;
    refused(&app, &before, r, 404, "not_found", "pledges of unknown offer").await;
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn pledges_outside_the_open_window_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let who = investor(&app, "Sophie", "sophisticated").await;

    // A draft offer.
    let draft = draft_offer(&app, &project, json!({})).await;
    let before = snapshot(&app).await;
    let r = pledge(&app, &draft, &who, 10).await;
    refused(&app, &before, r, 409, "offer_not_open", "draft offer").await;

    // A cancelled offer.
    let cancelled = open_offer(&app, &project, json!({})).await;
    ok(
        app.post(&format!("/v1/offers/{cancelled}/cancel"), json!({})).await,
        200,
    );
    let before = snapshot(&app).await;
    let r = pledge(&app, &cancelled, &who, 10).await;
    refused(&app, &before, r, 409, "offer_not_open", "cancelled offer").await;

    // Open, but before opens_at.
    let now = app.clock.now();
    let later = open_offer(
        &app,
        &project,
        json!({"opens_at": (now + chrono::TimeDelta::seconds(DAY)).to_rfc3339(),
               "closes_at": (now + chrono::TimeDelta::seconds(10 * DAY)).to_rfc3339()}),
    )
    .await;
    let before = snapshot(&app).await;
    let r = pledge(&app, &later, &who, 10).await;
    refused(&app, &before, r, 409, "offer_not_open", "before opens_at").await;

    // After closes_at: refused at once, whether or not the job has moved the offer yet.
    let closing = open_offer(
        &app,
        &project,
        json!({"closes_at": (now + chrono::TimeDelta::seconds(2 * DAY)).to_rfc3339()}),
    )
    .await;
    app.clock.advance(2 * DAY + 60).unwrap();
    let r = pledge(&app, &closing, &who, 10).await;
    r.assert_problem(409, "offer_not_open");
    app.wait_for(&format!("/v1/offers/{closing}"), |o| o["status"] == "failed")
        .await;
    let before = snapshot(&app).await;
    let r = pledge(&app, &closing, &who, 10).await;
    refused(&app, &before, r, 409, "offer_not_open", "after closes_at").await;
    let none: i64 = sqlx::query_scalar("select count(*) from pledges")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(none, 0);

    // Once opens_at has come (the clock is 2 days on), the later offer takes pledges.
    let p = ok(pledge(&app, &later, &who, 10).await, 201);
    assert_eq!(p["status"], "pending_payment");
    app.assert_books_verify().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Pledge checks.

#[sqlx::test]
async fn pledges_that_break_a_rule_are_refused_and_write_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(
        &app,
        &project,
        json!({"min_ticket": "100.00", "max_ticket": "20000.00"}),
    )
    .await;
    let sophie = investor(&app, "Sophie", "sophisticated").await;
    let pending = investor_with(&app, "Pending", "sophisticated", None, None).await;
    let rejected = investor_with(&app, "Rejected", "sophisticated", Some("rejected"), None).await;
    let net_worth = json!({"amount": "100000.00", "currency": "EUR"});
    let carol = investor_with(&app, "Carol", "non_sophisticated", Some("verified"), Some(net_worth)).await;
    let dan = investor(&app, "Dan", "non_sophisticated").await;
    let before = snapshot(&app).await;

    // No Idempotency-Key.
    let r = app
        .post(&format!("/v1/offers/{offer}/pledges"), card(&sophie, 10, "10.00"))
        .await;
    refused(&app, &before, r, 400, "idempotency_key_required", "no key").await;

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("KYC pending", card(&pending, 10, "10.00"), 422, "investor_not_verified"),
        (
            "KYC rejected",
            card(&rejected, 10, "10.00"),
            422,
            "investor_not_verified",
        ),
        (
            "unknown investor",
            card(&Uuid::new_v4().to_string(), 10, "10.00"),
            422,
            "validation_failed",
        ),
        (
            "investor id not a uuid",
            card("carol", 10, "10.00"),
            422,
            "validation_failed",
        ),
        ("0 shares", card(&sophie, 0, "10.00"), 422, "validation_failed"),
        ("-1 shares", card(&sophie, -1, "10.00"), 422, "validation_failed"),
        (
            "shares as a string",
            json!({"investor_id": sophie, "shares": "10", "funding": [{"kind": "card", "amount": "100.00"}],
                   "kiis_sha256": KIIS_SHA256}),
            422,
            "validation_failed",
        ),
        (
            "fractional shares",
            json!({"investor_id": sophie, "shares": 10.5, "funding": [{"kind": "card", "amount": "105.00"}],
                   "kiis_sha256": KIIS_SHA256}),
            422,
            "validation_failed",
        ),
        ("below min_ticket", card(&sophie, 9, "10.00"), 422, "below_min_ticket"),
        (
            "above max_ticket",
            card(&sophie, 2001, "10.00"),
            422,
            "above_max_ticket",
        ),
        (
            "funding short of the amount",
            json!({"investor_id": sophie, "shares": 10, "funding": [{"kind": "card", "amount": "99.99"}],
                   "kiis_sha256": KIIS_SHA256}),
            422,
            "validation_failed",
        ),
        (
            "funding above the amount",
            json!({"investor_id": sophie, "kiis_sha256": KIIS_SHA256, "shares": 10, "funding": [
                {"kind": "card", "amount": "60.00"}, {"kind": "card", "amount": "60.00"}]}),
            422,
            "validation_failed",
        ),
        (
            "funding with 3 decimals",
            json!({"investor_id": sophie, "kiis_sha256": KIIS_SHA256, "shares": 10, "funding": [
                {"kind": "card", "amount": "99.995"}, {"kind": "card", "amount": "0.005"}]}),
            422,
            "validation_failed",
        ),
        (
            "funding as a JSON number",
            json!({"investor_id": sophie, "shares": 10, "funding": [{"kind": "card", "amount": 100}],
                   "kiis_sha256": KIIS_SHA256}),
            422,
            "validation_failed",
        ),
        (
            "funding of zero",
            json!({"investor_id": sophie, "kiis_sha256": KIIS_SHA256, "shares": 10, "funding": [
                {"kind": "card", "amount": "100.00"}, {"kind": "card", "amount": "0.00"}]}),
            422,
            "validation_failed",
        ),
        (
            "negative funding",
            json!({"investor_id": sophie, "kiis_sha256": KIIS_SHA256, "shares": 10, "funding": [
                {"kind": "card", "amount": "110.00"}, {"kind": "card", "amount": "-10.00"}]}),
            422,
            "validation_failed",
        ),
        (
            "empty funding",
            json!({"investor_id": sophie, "kiis_sha256": KIIS_SHA256, "shares": 10, "funding": []}),
            422,
            "validation_failed",
        ),
        (
            "unknown funding kind",
            json!({"investor_id": sophie, "shares": 10, "funding": [{"kind": "bank", "amount": "100.00"}],
                   "kiis_sha256": KIIS_SHA256}),
            422,
            "validation_failed",
        ),
        (
            "a card with a cheque code",
            json!({"investor_id": sophie, "kiis_sha256": KIIS_SHA256, "shares": 10, "funding": [
                {"kind": "card", "amount": "100.00", "cheque_code": "CHQ-1"}]}),
            422,
            "validation_failed",
        ),
        (
            "unknown field",
            json!({"investor_id": sophie, "shares": 10, "funding": [{"kind": "card", "amount": "100.00"}],
                   "kiis_sha256": KIIS_SHA256, "discount": "5.00"}),
            422,
            "validation_failed",
        ),
        (
            "cheque source",
            json!({"investor_id": sophie, "kiis_sha256": KIIS_SHA256, "shares": 10, "funding": [
                {"kind": "cheque", "amount": "100.00", "cheque_code": "CHQ-ABCD-EFGH"}]}),
            422,
            "cheque_invalid",
        ),
        (
            "cheque and card",
            json!({"investor_id": sophie, "kiis_sha256": KIIS_SHA256, "shares": 30, "funding": [
                {"kind": "card", "amount": "100.00"},
                {"kind": "cheque", "amount": "200.00", "cheque_code": "CHQ-ABCD-EFGH"}]}),
            422,
            "cheque_invalid",
        ),
        // Carol: 5% of €100,000 = €5,000 > €1,000, so her threshold is €5,000.
        (
            "risk warning above 5% of net worth",
            card(&carol, 501, "10.00"),
            422,
            "risk_warning_required",
        ),
        // Dan declared no net worth: his threshold is €1,000.
        (
            "risk warning above 1,000",
            card(&dan, 101, "10.00"),
            422,
            "risk_warning_required",
        ),
    ];
    for (what, body, status, code) in cases {
        let r = pledge_body(&app, OPERATOR_KEY, &offer, body).await;
        refused(&app, &before, r, status, code, what).await;
    }
    assert_eq!(shares_reserved(&app, &offer).await, 0);

    // Messages write money one way, with the currency's decimals, and name the field at fault
    // in words, not in the parser's terms.
    let r = pledge_body(&app, OPERATOR_KEY, &offer, card(&sophie, 9, "10.00")).await;
    assert_eq!(r.body["detail"], "90.00 EUR is below the minimum ticket of 100.00 EUR");
    let r = pledge_body(&app, OPERATOR_KEY, &offer, card(&sophie, 2001, "10.00")).await;
    assert_eq!(
        r.body["detail"],
        "20010.00 EUR is above the maximum ticket of 20000.00 EUR"
    );
    let r = pledge_body(
        &app,
        OPERATOR_KEY,
        &offer,
        json!({"investor_id": sophie, "shares": "10", "funding": [{"kind": "card", "amount": "100.00"}],
               "kiis_sha256": KIIS_SHA256}),
    )
    .await;
    assert_eq!(r.body["param"], "shares", "{:#}", r.body);
    assert_eq!(
        r.body["detail"],
        "field `shares` must be a whole number, not string \"10\""
    );
    let r = pledge_body(
        &app,
        OPERATOR_KEY,
        &offer,
        json!({"investor_id": sophie, "shares": 10, "funding": [{"kind": "card", "amount": 100}],
               "kiis_sha256": KIIS_SHA256}),
    )
    .await;
    assert_eq!(r.body["param"], "funding[0].amount", "{:#}", r.body);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(!detail.contains("line") && !detail.contains("column"), "{detail}");

    // What passes: Carol up to her threshold without acknowledgement (4,900, then 100 more to
    // exactly 5,000), above it with; Dan at exactly 1,000; Sophie up to the maximum ticket without
    // any warning. The limits apply to an investor's pledges on the offer taken together.
    let mut reserved = 0;
    for (who, shares, ack) in [
        (&carol, 490, false),
        (&carol, 10, false),
        (&carol, 501, true),
        (&dan, 100, false),
        (&sophie, 1990, false),
        (&sophie, 10, false),
    ] {
        let mut body = card(who, shares, "10.00");
        body["risk_acknowledged"] = json!(ack);
        let p = ok(pledge_body(&app, OPERATOR_KEY, &offer, body).await, 201);
        assert_eq!(p["status"], "pending_payment");
        assert_eq!(p["shares"], shares);
        assert_eq!(p["amount"], format!("{}.00", shares * 10));
        assert_eq!(p["risk_acknowledged"], ack);
        assert_eq!(p["reflection_ends_at"].is_null(), *who == sophie);
        reserved += shares;
        assert_eq!(shares_reserved(&app, &offer).await, reserved);
    }
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_first_come_offer_refuses_the_share_past_its_cap(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, json!({"min_target": "100.00", "max_target": "1000.00"})).await;
    let (a, b) = (
        investor(&app, "Alice", "sophisticated").await,
        investor(&app, "Bob", "sophisticated").await,
    );
    ok(pledge(&app, &offer, &a, 60).await, 201);
    ok(pledge(&app, &offer, &a, 40).await, 201);
    assert_eq!(shares_reserved(&app, &offer).await, 100);
    let before = snapshot(&app).await;
    let r = pledge(&app, &offer, &b, 1).await;
    refused(&app, &before, r, 409, "offer_full", "101st share").await;
    assert_eq!(shares_reserved(&app, &offer).await, 100);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_pro_rata_offer_takes_pledges_up_to_its_oversubscription_limit(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let terms = json!({"min_target": "100.00", "max_target": "1000.00", "allocation": "pro_rata",
                       "oversubscription_limit": "2"});
    let offer = open_offer(&app, &project, terms).await;
    let (a, b, c) = (
        investor(&app, "Alice", "sophisticated").await,
        investor(&app, "Bob", "sophisticated").await,
        investor(&app, "Cyd", "sophisticated").await,
    );
    // 150 + 50 = 200 shares: twice the cap of 100.
    let pa = funded_pledge(&app, &offer, &a, 150).await;
    let pb = funded_pledge(&app, &offer, &b, 50).await;
    assert_eq!(shares_reserved(&app, &offer).await, 200);
    let before = snapshot(&app).await;
    let r = pledge(&app, &offer, &c, 1).await;
    refused(&app, &before, r, 409, "offer_full", "201st share").await;

    // At the close the 200 shares are scaled down to the cap: 75 and 25.
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200);
    assert_eq!(closed["status"], "succeeded");
    assert_eq!(closed["shares_allocated"], 100);
    assert_eq!(closed["shares_reserved"], 100);
    for (p, allocated, refunded) in [(&pa, 75, "750.00"), (&pb, 25, "250.00")] {
        let now = ok(app.get(&format!("/v1/pledges/{}", id_of(p))).await, 200);
        assert_eq!(now["allocated_shares"], allocated);
        assert_eq!(now["refunded_amount"], refunded);
    }
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "1000.00");
    app.assert_books_verify().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Revocation.

#[sqlx::test]
async fn revocation_follows_the_reflection_period(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, json!({})).await;
    let sophie = investor(&app, "Sophie", "sophisticated").await;
    let carol = investor(&app, "Carol", "non_sophisticated").await;
    let platform = app.key(Role::Platform).await;
    let auditor = app.key(Role::Auditor).await;

    // A sophisticated investor's pledge, paid or not, cannot be revoked.
    let soph_funded = funded_pledge(&app, &offer, &sophie, 10).await;
    let soph_pending = ok(pledge(&app, &offer, &sophie, 5).await, 201);
    assert!(soph_funded["reflection_ends_at"].is_null());
    let before = snapshot(&app).await;
    for p in [&soph_funded, &soph_pending] {
        let r = app.post(&format!("/v1/pledges/{}/revoke", id_of(p)), json!({})).await;
        refused(&app, &before, r, 409, "not_revocable", "sophisticated investor").await;
    }

    // An unpaid pledge revoked: cancelled, its shares back, its payment cancelled.
    let pending = ok(pledge(&app, &offer, &carol, 20).await, 201);
    let reserved = shares_reserved(&app, &offer).await;
    let revoked = ok(
        app.post(&format!("/v1/pledges/{}/revoke", id_of(&pending)), json!({}))
            .await,
        200,
    );
    assert_eq!(revoked["status"], "cancelled");
    assert_eq!(shares_reserved(&app, &offer).await, reserved - 20);
    assert_eq!(
        events_of_pledge(&app, &id_of(&pending)).await,
        ["pledge.created", "pledge.cancelled"]
    );
    // Revoked twice: the second time it is no longer revocable.
    let before = snapshot(&app).await;
    let r = app
        .post(&format!("/v1/pledges/{}/revoke", id_of(&pending)), json!({}))
        .await;
    refused(&app, &before, r, 409, "not_revocable", "revoked twice").await;
    // Its late payment is refunded, never put in escrow.
    let r = sandbox(&app, "payments", &payment_of(&pending), "succeed").await;
    assert_eq!(ok(r, 200)["applied"], true);
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "200.00");
    assert_eq!(balance(&app, &format!("offer:{offer}:escrow")).await, "100.00");

    // Unknown pledge.
    let before = snapshot(&app).await;
    let r = app
        .post(&format!("/v1/pledges/{}/revoke", Uuid::new_v4()), json!({}))
        .await;
    refused(&app, &before, r, 404, "not_found", "unknown pledge").await;

    // The platform may revoke for its investor; an auditor may not.
    let by_platform = ok(pledge(&app, &offer, &carol, 7).await, 201);
    let before = snapshot(&app).await;
    let r = app
        .call(
            Method::POST,
            &format!("/v1/pledges/{}/revoke", id_of(&by_platform)),
            Some(&auditor),
            Some(&json!({})),
        )
        .await;
    refused(&app, &before, r, 403, "forbidden", "auditor revokes").await;
    let r = app
        .call(
            Method::POST,
            &format!("/v1/pledges/{}/revoke", id_of(&by_platform)),
            Some(&platform),
            Some(&json!({})),
        )
        .await;
    assert_eq!(ok(r, 200)["status"], "cancelled");

    // A funded pledge, 4 days and a minute later: the reflection period is over.
    let kept = funded_pledge(&app, &offer, &carol, 30).await;
    app.clock.advance(4 * DAY + 60).unwrap();
    // Sophie's unpaid pledge meanwhile outlived its payment window; let the job finish with it.
    app.wait_for(&format!("/v1/pledges/{}", id_of(&soph_pending)), |p| {
        p["status"] == "cancelled"
    })
    .await;
    let before = snapshot(&app).await;
    let r = app
        .post(&format!("/v1/pledges/{}/revoke", id_of(&kept)), json!({}))
        .await;
    refused(&app, &before, r, 409, "not_revocable", "after 4 days").await;
    assert_eq!(pledge_status(&app, &id_of(&kept)).await, "funded");
    assert_eq!(balance(&app, &format!("offer:{offer}:escrow")).await, "400.00");
    app.assert_books_verify().await;
}

// ---------------------------------------------------------------------------------------------
// 6. The payment window.

#[sqlx::test]
async fn an_unpaid_pledge_is_cancelled_when_its_payment_window_ends(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, json!({"payment_window_seconds": 120})).await;
    let who = investor(&app, "Sophie", "sophisticated").await;
    let p = ok(pledge(&app, &offer, &who, 25).await, 201);
    let id = id_of(&p);
    let created: chrono::DateTime<chrono::Utc> = p["created_at"].as_str().unwrap().parse().unwrap();
    let due: chrono::DateTime<chrono::Utc> = p["payment_due_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(due - created, chrono::TimeDelta::seconds(120));
    assert_eq!(shares_reserved(&app, &offer).await, 25);

    app.clock.advance(121).unwrap();
    let cancelled = app
        .wait_for(&format!("/v1/pledges/{id}"), |p| p["status"] == "cancelled")
        .await;
    assert!(cancelled["ended_at"].is_string());
    assert_eq!(shares_reserved(&app, &offer).await, 0);
    assert_eq!(
        events_of_pledge(&app, &id).await,
        ["pledge.created", "pledge.cancelled"]
    );
    let payment_status: String = sqlx::query_scalar("select status::text from payments where pledge_id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(payment_status, "cancelled");

    // The provider captures the money anyway: owed straight back, never in escrow.
    let late = ok(sandbox(&app, "payments", &payment_of(&p), "succeed").await, 200);
    assert_eq!(late["applied"], true);
    assert_eq!(pledge_status(&app, &id).await, "cancelled");
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "250.00");
    assert_eq!(balance(&app, "psp:sandbox:eur").await, "250.00");
    assert_eq!(balance(&app, &format!("offer:{offer}:escrow")).await, "0.00");
    let refunds: Vec<(String, Decimal, String, String)> =
        sqlx::query_as("select id::text, amount, reason, status::text from refunds where pledge_id = $1::uuid")
            .bind(&id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].1, Decimal::new(25000, 2));
    assert_eq!(refunds[0].2, "payment_after_pledge_ended");
    assert_eq!(refunds[0].3, "pending");
    app.assert_books_verify().await;

    // The same capture again changes nothing.
    let before = snapshot(&app).await;
    let again = ok(sandbox(&app, "payments", &payment_of(&p), "succeed").await, 200);
    assert_eq!(again["applied"], false);
    assert_eq!(snapshot(&app).await, before);

    // The refund reaches the card: the money has left.
    // The cancelled pledge shows the money owed back to it, and its refund.
    let now = ok(app.get(&format!("/v1/pledges/{id}")).await, 200);
    assert_eq!(
        (&now["refunded_amount"], &now["refunds"]),
        (&json!("250.00"), &json!([refunds[0].0]))
    );
    let paid = ok(sandbox(&app, "refunds", &refunds[0].0, "succeed").await, 200);
    assert_eq!(paid["status"], "succeeded", "{paid:#}");
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "0.00");
    assert_eq!(balance(&app, "psp:sandbox:eur").await, "0.00");
    app.assert_books_verify().await;
}

/// The window is a rule of time, not of when the background job happens to run: a capture that
/// arrives after `payment_due_at` must not fund the pledge, even if the job has not cancelled it
/// yet. To make "the job has not run yet" deterministic, the test holds the offer's row lock
/// (the job takes it before cancelling) while the capture arrives.
#[sqlx::test]
async fn a_capture_after_the_payment_window_does_not_fund_the_pledge(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, json!({"payment_window_seconds": 120})).await;
    let who = investor(&app, "Sophie", "sophisticated").await;
    let p = ok(pledge(&app, &offer, &who, 25).await, 201);
    let id = id_of(&p);

    let mut hold = app.pool.begin().await.unwrap();
    sqlx::query("select id from offers where id = $1::uuid for update")
        .bind(&offer)
        .execute(&mut *hold)
        .await
        .unwrap();
    app.clock.advance(121).unwrap();
    let capture = {
        let (client, url) = (
            app.client.clone(),
            format!("{}/v1/sandbox/payments/{}/succeed", app.base, payment_of(&p)),
        );
        tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(OPERATOR_KEY)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            common::read(r).await
        })
    };
    // Let go of the offer once the capture is done, or once it too waits for a lock (a service
    // that takes the offer's lock to apply the window would wait here).
    loop {
        if capture.is_finished() {
            break;
        }
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if waiting >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    hold.rollback().await.unwrap();
    let r = capture.await.unwrap();
    assert_eq!(r.status, 200, "{:#}", r.body);

    let ended = app
        .wait_for(&format!("/v1/pledges/{id}"), |p| p["status"] != "pending_payment")
        .await;
    assert_eq!(
        ended["status"], "cancelled",
        "a capture 1 s after payment_due_at funded the pledge: {ended:#}"
    );
    assert_eq!(shares_reserved(&app, &offer).await, 0);
    assert_eq!(balance(&app, &format!("offer:{offer}:escrow")).await, "0.00");
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "250.00");
    app.assert_books_verify().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Payment failures and repeats.

#[sqlx::test]
async fn payment_outcomes_apply_once_and_in_order(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, json!({})).await;
    let who = investor(&app, "Sophie", "sophisticated").await;
    let escrow = format!("offer:{offer}:escrow");

    // A failed payment cancels its pledge and releases the shares.
    let failing = ok(pledge(&app, &offer, &who, 12).await, 201);
    assert_eq!(shares_reserved(&app, &offer).await, 12);
    let r = ok(sandbox(&app, "payments", &payment_of(&failing), "fail").await, 200);
    assert_eq!(r["applied"], true);
    assert_eq!(pledge_status(&app, &id_of(&failing)).await, "cancelled");
    assert_eq!(shares_reserved(&app, &offer).await, 0);
    assert_eq!(
        events_of_pledge(&app, &id_of(&failing)).await,
        ["pledge.created", "pledge.cancelled"]
    );
    // A second failure changes nothing.
    let before = snapshot(&app).await;
    let r = ok(sandbox(&app, "payments", &payment_of(&failing), "fail").await, 200);
    assert_eq!(r["applied"], false, "fail after fail");
    assert_eq!(snapshot(&app).await, before, "fail after fail");
    // A success after the failure is money captured all the same (issue 20, finding 4): the
    // pledge stays cancelled, and the money is owed back in full; once booked, nothing more.
    let r = ok(sandbox(&app, "payments", &payment_of(&failing), "succeed").await, 200);
    assert_eq!(r["applied"], true, "succeed after fail");
    assert_eq!(pledge_status(&app, &id_of(&failing)).await, "cancelled");
    assert_eq!(shares_reserved(&app, &offer).await, 0);
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "120.00");
    let before = snapshot(&app).await;
    for action in ["fail", "succeed"] {
        let r = ok(sandbox(&app, "payments", &payment_of(&failing), action).await, 200);
        assert_eq!(r["applied"], false, "{action} after a success after a failure");
        assert_eq!(snapshot(&app).await, before, "{action} after a success after a failure");
    }
    assert_eq!(balance(&app, &escrow).await, "0.00");

    // A success credits escrow once; a second success and a later failure change nothing.
    let paid = funded_pledge(&app, &offer, &who, 30).await;
    assert_eq!(pledge_status(&app, &id_of(&paid)).await, "funded");
    assert_eq!(balance(&app, &escrow).await, "300.00");
    let before = snapshot(&app).await;
    for action in ["succeed", "fail"] {
        let r = ok(sandbox(&app, "payments", &payment_of(&paid), action).await, 200);
        assert_eq!(r["applied"], false, "{action} after succeed");
        assert_eq!(snapshot(&app).await, before, "{action} after succeed");
    }
    assert_eq!(pledge_status(&app, &id_of(&paid)).await, "funded");
    assert_eq!(balance(&app, &escrow).await, "300.00");
    // The 300.00 funded, and the 120.00 captured after its failure, still owed back.
    assert_eq!(balance(&app, "psp:sandbox:eur").await, "420.00");
    assert_eq!(shares_reserved(&app, &offer).await, 30);

    // Unknown ids.
    let before = snapshot(&app).await;
    for (what, action) in [
        ("payments", "succeed"),
        ("payments", "fail"),
        ("refunds", "succeed"),
        ("payouts", "succeed"),
    ] {
        let r = sandbox(&app, what, "pay_doesnotexist", action).await;
        refused(&app, &before, r, 404, "not_found", &format!("{what}/{action}")).await;
    }
    app.assert_books_verify().await;
}

// ---------------------------------------------------------------------------------------------
// 8. Roles.

#[sqlx::test]
async fn each_role_does_what_it_may_and_nothing_else(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, json!({"min_target": "100.00", "max_target": "1000.00"})).await;
    let draft = draft_offer(&app, &project, json!({})).await;
    let who = investor(&app, "Sophie", "sophisticated").await;
    let platform = app.key(Role::Platform).await;
    let auditor = app.key(Role::Auditor).await;
    let offers_path = format!("/v1/projects/{project}/offers");
    let call = |key: Option<String>, method: Method, path: String, body: Option<Value>| {
        let app = &app;
        async move { app.call(method, &path, key.as_deref(), body.as_ref()).await }
    };

    // The platform pledges and reads its pledges and the offer.
    let p = ok(pledge_body(&app, &platform, &offer, card(&who, 10, "10.00")).await, 201);
    let pid = id_of(&p);
    let read = ok(
        call(Some(platform.clone()), Method::GET, format!("/v1/pledges/{pid}"), None).await,
        200,
    );
    assert_eq!(read["id"], pid.as_str());
    ok(
        call(Some(platform.clone()), Method::GET, format!("/v1/offers/{offer}"), None).await,
        200,
    );
    ok(sandbox(&app, "payments", &payment_of(&p), "succeed").await, 200);

    // ...but runs no offer, and reads neither the pledge list nor the books.
    let before = snapshot(&app).await;
    let forbidden_to_platform = [
        (Method::POST, offers_path.clone(), Some(offer_body(&app, json!({})))),
        (Method::POST, format!("/v1/offers/{draft}/open"), Some(json!({}))),
        (Method::POST, format!("/v1/offers/{offer}/close"), Some(json!({}))),
        (Method::POST, format!("/v1/offers/{offer}/cancel"), Some(json!({}))),
        (Method::GET, format!("/v1/offers/{offer}/pledges"), None),
        (
            Method::POST,
            format!("/v1/sandbox/payments/{}/fail", payment_of(&p)),
            Some(json!({})),
        ),
        (Method::GET, "/v1/ledger/verify".to_string(), None),
    ];
    for (method, path, body) in forbidden_to_platform {
        let what = format!("platform {method} {path}");
        let r = call(Some(platform.clone()), method, path, body).await;
        refused(&app, &before, r, 403, "forbidden", &what).await;
    }

    // Close the round, so that there is a cap table.
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200);
    assert_eq!(closed["status"], "succeeded");

    // The auditor reads offers, pledge lists, the cap table and the books...
    let o = ok(
        call(Some(auditor.clone()), Method::GET, format!("/v1/offers/{offer}"), None).await,
        200,
    );
    assert_eq!(o["status"], "succeeded");
    let list = ok(
        call(
            Some(auditor.clone()),
            Method::GET,
            format!("/v1/offers/{offer}/pledges"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(list["items"][0]["id"], pid.as_str());
    let table = ok(
        call(
            Some(auditor.clone()),
            Method::GET,
            format!("/v1/offers/{offer}/cap-table"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(table["total_shares"], 10);
    let verify = ok(
        call(Some(auditor.clone()), Method::GET, "/v1/ledger/verify".into(), None).await,
        200,
    );
    assert_eq!(verify["ok"], true);

    // ...and changes nothing.
    let before = snapshot(&app).await;
    let r = pledge_body(&app, &auditor, &draft, card(&who, 10, "10.00")).await;
    refused(&app, &before, r, 403, "forbidden", "auditor pledges").await;
    let forbidden_to_auditor = [
        (Method::POST, offers_path.clone(), Some(offer_body(&app, json!({})))),
        (Method::POST, format!("/v1/offers/{draft}/open"), Some(json!({}))),
        (Method::POST, format!("/v1/offers/{draft}/cancel"), Some(json!({}))),
        (Method::POST, format!("/v1/pledges/{pid}/revoke"), Some(json!({}))),
        (Method::POST, format!("/v1/offers/{offer}/payouts"), Some(json!({}))),
    ];
    for (method, path, body) in forbidden_to_auditor {
        let what = format!("auditor {method} {path}");
        let r = call(Some(auditor.clone()), method, path, body).await;
        refused(&app, &before, r, 403, "forbidden", &what).await;
    }

    // Without a key, or with a wrong one: 401.
    let anonymous = [
        (Method::GET, format!("/v1/offers/{offer}"), None),
        (Method::GET, format!("/v1/pledges/{pid}"), None),
        (Method::POST, offers_path.clone(), Some(offer_body(&app, json!({})))),
        (Method::POST, format!("/v1/offers/{draft}/open"), Some(json!({}))),
        (
            Method::POST,
            format!("/v1/offers/{draft}/pledges"),
            Some(card(&who, 10, "10.00")),
        ),
        (Method::POST, format!("/v1/pledges/{pid}/revoke"), Some(json!({}))),
    ];
    for (method, path, body) in anonymous {
        let what = format!("anonymous {method} {path}");
        let r = call(None, method.clone(), path.clone(), body.clone()).await;
        refused(&app, &before, r, 401, "unauthorized", &what).await;
        let r = call(Some("not-a-key".into()), method, path, body).await;
        refused(&app, &before, r, 401, "unauthorized", &format!("wrong key: {what}")).await;
    }
    app.assert_books_verify().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Events.

#[sqlx::test]
async fn a_successful_round_writes_its_events_in_order(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, json!({"min_target": "100.00", "max_target": "1000.00"})).await;
    let who = investor(&app, "Sophie", "sophisticated").await;
    let p = funded_pledge(&app, &offer, &who, 40).await;
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200);
    assert_eq!(closed["status"], "succeeded");

    let expected = [
        "offer.opened",
        "pledge.created",
        "pledge.funded",
        "offer.closing",
        "offer.succeeded",
    ];
    assert_eq!(event_types(&app).await, expected);
    let rows: Vec<(String, Value)> = sqlx::query_as("select event_type, payload from outbox_events order by seq")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    for (event_type, payload) in &rows {
        assert_eq!(&payload["type"], event_type.as_str());
        assert_eq!(payload["data"]["offer_id"], offer.as_str(), "{payload:#}");
    }
    assert_eq!(rows[1].1["data"]["pledge_id"], id_of(&p).as_str());
    assert_eq!(rows[2].1["data"]["status"], "funded");
    assert_eq!(rows[2].1["data"]["amount"], "400.00");
    assert_eq!(rows[4].1["data"]["status"], "succeeded");
    assert_eq!(balance(&app, &format!("project:{project}:payable:eur")).await, "380.00");
    assert_eq!(balance(&app, "platform:fees:eur").await, "20.00");
    app.assert_books_verify().await;
}
