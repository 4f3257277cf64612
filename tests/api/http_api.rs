//! The HTTP API as a client sees it: the shell (health, request ids, problems, OpenAPI, docs,
//! metrics), authentication and roles on every ledger route, the manual books end to end, and
//! every way a request can be refused — each refusal a precise problem+json that writes nothing.

use chrono::Utc;
use crowdledger::keys::{self, Role};
use crowdledger::ledger::{self, AccountCode, AccountKind, NewAccount};
use crowdledger::money::Currency;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{self, OPERATOR_KEY, Reply, TestApp, assert_json, id_of, send};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn request_id(r: &Reply) -> String {
    let id = r
        .headers
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id on a {} reply: {:#}", r.status, r.body))
        .to_str()
        .unwrap()
        .to_string();
    assert!(!id.is_empty());
    id
}

async fn open_account(app: &TestApp, code: &str, kind: &str, no_overdraft: bool) -> String {
    let r = app
        .post(
            "/v1/ledger/accounts",
            json!({"code": code, "currency": "EUR", "kind": kind, "no_overdraft": no_overdraft}),
        )
        .await;
    assert_json(&r, 201);
    id_of(&r)
}

fn transfer(reference: &str, debit: &str, credit: &str, amount: &str) -> Value {
    json!({
        "reference": reference,
        "postings": [
            {"account_id": debit, "side": "debit", "amount": amount, "currency": "EUR"},
            {"account_id": credit, "side": "credit", "amount": amount, "currency": "EUR"},
        ]
    })
}

async fn post_transfer(app: &TestApp, reference: &str, debit: &str, credit: &str, amount: &str) -> Reply {
    app.post("/v1/ledger/entries", transfer(reference, debit, credit, amount))
        .await
}

/// The books most tests start from: `manual:bank` (asset) and `manual:owed` (liability, never
/// overdrawn), with 150.00 moved from one to the other by entry `e1`.
struct Books {
    bank: String,
    owed: String,
    entry: String,
}

async fn books(app: &TestApp) -> Books {
    let bank = open_account(app, "manual:bank", "asset", false).await;
    let owed = open_account(app, "manual:owed", "liability", true).await;
    let r = post_transfer(app, "e1", &bank, &owed, "150.00").await;
    assert_json(&r, 201);
    Books {
        bank,
        owed,
        entry: id_of(&r),
    }
}

/// The posting of `entry` on the account with this code.
fn posting<'a>(entry: &'a Value, code: &str) -> &'a Value {
    entry["postings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["account_code"] == code)
        .unwrap_or_else(|| panic!("no posting on {code} in {entry:#}"))
}

/// A page with no items and no `next_cursor` (absent: the schema says so).
fn assert_empty_last_page(r: &Reply) {
    assert_json(r, 200);
    assert_eq!(r.body["items"], json!([]), "{:#}", r.body);
    assert!(r.body.get("next_cursor").is_none(), "{:#}", r.body);
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

const LEDGER_READS: &[&str] = &[
    "/v1/ledger/accounts",
    "/v1/ledger/accounts/{account}",
    "/v1/ledger/accounts/{account}/entries",
    "/v1/ledger/entries/{entry}",
    "/v1/ledger/trial-balance",
    "/v1/ledger/verify",
];

/// Every ledger GET, with the fixture's ids filled in.
fn reads(b: &Books) -> Vec<String> {
    LEDGER_READS
        .iter()
        .map(|p| p.replace("{account}", &b.bank).replace("{entry}", &b.entry))
        .collect()
}

/// Every ledger POST with a body that an operator would get a 2xx for.
fn writes(b: &Books) -> Vec<(String, Value)> {
    vec![
        (
            "/v1/ledger/accounts".to_string(),
            json!({"code": "manual:new", "currency": "EUR", "kind": "asset"}),
        ),
        (
            "/v1/ledger/entries".to_string(),
            transfer("e-new", &b.bank, &b.owed, "1.00"),
        ),
        (format!("/v1/ledger/entries/{}/reverse", b.entry), json!({})),
    ]
}

// ---------------------------------------------------------------------------------------------
// 1. The shell
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn health_and_ready_answer_without_a_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = send(&app, Method::GET, "/health", &[], None).await;
    assert_json(&r, 200);
    assert_eq!(r.body, json!({"status": "ok"}));
    let r = send(&app, Method::GET, "/ready", &[], None).await;
    assert_json(&r, 200);
    assert_eq!(r.body, json!({"status": "ready"}));
}

/// A database out of reach (here: a port nobody listens on) is a 503 the client can act on —
/// retry later, with the same Idempotency-Key — never an opaque 500.
#[tokio::test]
async fn a_database_out_of_reach_is_a_503_problem_with_retry_after() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_lazy(&format!("postgres://nobody@127.0.0.1:{port}/gone"))
        .unwrap();
    let app = TestApp::spawn_serving(pool.clone(), pool, &[]).await;
    let r = send(&app, Method::GET, "/ready", &[], None).await;
    assert_eq!(r.status, 503);
    for r in [app.get("/v1/ledger/verify").await, app.get("/v1/projects").await] {
        r.assert_problem(503, "database_unavailable");
        assert_eq!(r.headers["retry-after"], "1", "{r:?}");
    }
}

#[sqlx::test]
async fn every_response_carries_a_request_id_and_echoes_the_clients(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let replies = [
        send(&app, Method::GET, "/health", &[], None).await,
        send(&app, Method::GET, "/v1/ledger/verify", &[], None).await,
        app.get("/v1/ledger/verify").await,
        app.get("/no/such/route").await,
        send(&app, Method::DELETE, "/v1/ledger/verify", &[], None).await,
        app.get("/v1/ledger/accounts?limit=0").await,
        app.post_raw("/v1/ledger/entries", Some("application/json"), "{").await,
    ];
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [200, 401, 200, 404, 405, 422, 400]);
    let mut ids: Vec<String> = replies.iter().map(request_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), replies.len(), "request ids are not unique: {ids:?}");

    let mine = "trace-0123456789";
    for path in ["/health", "/v1/ledger/verify", "/nowhere"] {
        let r = send(&app, Method::GET, path, &[("x-request-id", mine)], None).await;
        assert_eq!(request_id(&r), mine, "{path}");
    }
}

#[sqlx::test]
async fn an_unknown_route_is_a_404_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::GET, "/v1/ledger"),
        (Method::POST, "/v1/ledger/nope"),
        (Method::GET, "/v1/ledger/accounts/a/b/c"),
        (Method::GET, "/v2/ledger/verify"),
    ] {
        let r = send(&app, method.clone(), path, &[], None).await;
        r.assert_problem(404, "not_found");
        let r = app.call(method, path, Some(OPERATOR_KEY), None).await;
        r.assert_problem(404, "not_found");
    }
}

#[sqlx::test]
async fn a_known_route_with_the_wrong_method_is_a_405_problem(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = Uuid::now_v7();
    for (method, path) in [
        (Method::DELETE, "/v1/ledger/verify".to_string()),
        (Method::POST, "/v1/ledger/verify".to_string()),
        (Method::PUT, "/v1/ledger/accounts".to_string()),
        (Method::GET, "/v1/ledger/entries".to_string()),
        (Method::DELETE, format!("/v1/ledger/entries/{id}")),
        (Method::GET, format!("/v1/ledger/entries/{id}/reverse")),
        (Method::POST, "/health".to_string()),
    ] {
        let r = app.call(method.clone(), &path, Some(OPERATOR_KEY), None).await;
        r.assert_problem(405, "method_not_allowed");
        let r = send(&app, method, &path, &[], None).await;
        r.assert_problem(405, "method_not_allowed");
    }
}

#[sqlx::test]
async fn the_openapi_document_describes_every_ledger_path(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = send(&app, Method::GET, "/openapi.json", &[], None).await;
    assert_json(&r, 200);
    let doc = &r.body;
    let version = doc["openapi"].as_str().expect("an openapi version string");
    assert!(version.starts_with("3."), "openapi {version}");
    let expected: &[(&str, &[&str])] = &[
        ("/health", &["get"]),
        ("/ready", &["get"]),
        ("/v1/ledger/accounts", &["get", "post"]),
        ("/v1/ledger/accounts/{id}", &["get"]),
        ("/v1/ledger/accounts/{id}/entries", &["get"]),
        ("/v1/ledger/entries", &["post"]),
        ("/v1/ledger/entries/{id}", &["get"]),
        ("/v1/ledger/entries/{id}/reverse", &["post"]),
        ("/v1/ledger/trial-balance", &["get"]),
        ("/v1/ledger/verify", &["get"]),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in expected {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} missing from {:?}", paths.keys()));
        for method in *methods {
            assert!(item.get(*method).is_some(), "{method} {path} missing: {item:#}");
        }
        if path.starts_with("/v1/") {
            for method in *methods {
                assert!(
                    item[*method]["security"].as_array().is_some_and(|s| !s.is_empty()),
                    "{method} {path} does not name its security: {item:#}"
                );
            }
        }
    }
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert!(
        schemes
            .values()
            .any(|s| s["type"] == "http" && s["scheme"].as_str().is_some_and(|v| v.eq_ignore_ascii_case("bearer"))),
        "no bearer scheme in {schemes:#?}"
    );
}

/// `/docs` works with no network: the page and every script and style it loads are served by
/// the service itself (no CDN), and it shows the service's own `/openapi.json`.
#[sqlx::test]
async fn the_docs_page_is_served_whole_by_the_service(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = send(&app, Method::GET, "/docs", &[], None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/html"),
        "content type {}",
        r.content_type
    );
    let html = r.body.as_str().expect("an HTML page, not JSON");
    assert!(html.to_ascii_lowercase().contains("<html"), "{html}");
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
        .collect();
    assert!(
        assets.len() >= 2,
        "the page loads its viewer's scripts and styles: {html}"
    );
    let mut initializer = String::new();
    for asset in assets {
        assert!(
            !asset.contains("://"),
            "{asset} is loaded from elsewhere than the service"
        );
        let path = format!("/docs/{}", asset.trim_start_matches("./"));
        let served = app.client.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(served.status(), 200, "{path}");
        let text = served.text().await.unwrap();
        assert!(text.len() > 100, "{path} is served whole");
        if path.contains("initializer") {
            initializer = text;
        }
    }
    assert!(
        initializer.contains("/openapi.json"),
        "the viewer shows the service's document: {initializer}"
    );
}

#[sqlx::test]
async fn metrics_are_served_on_their_own_port_by_route_template(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    assert_json(&app.get("/v1/ledger/verify").await, 200);
    let unknown = Uuid::now_v7();
    app.get(&format!("/v1/ledger/accounts/{unknown}"))
        .await
        .assert_problem(404, "not_found");

    let resp = app
        .client
        .get(format!("{}/metrics", app.metrics_base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("http_requests_total{")).collect();
    let has = |route: &str, status: &str| {
        lines.iter().any(|l| {
            l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("status=\"{status}\""))
                && l.contains("method=\"GET\"")
        })
    };
    assert!(has("/v1/ledger/verify", "200"), "{text}");
    assert!(has("/v1/ledger/accounts/{id}", "404"), "{text}");
    assert!(!text.contains(&unknown.to_string()), "a raw id became a label: {text}");

    // The API's own port does not serve them.
    let r = send(&app, Method::GET, "/metrics", &[], None).await;
    r.assert_problem(404, "not_found");
    let r = app.get("/metrics").await;
    r.assert_problem(404, "not_found");
}

// ---------------------------------------------------------------------------------------------
// 2. Authentication and roles
// ---------------------------------------------------------------------------------------------

fn assert_unauthorized(r: &Reply, what: &str) {
    assert_eq!(r.status, 401, "{what}: {:#}", r.body);
    r.assert_problem(401, "unauthorized");
    let challenge = r
        .headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(challenge.as_deref(), Some("Bearer"), "{what}");
}

#[sqlx::test]
async fn ledger_routes_refuse_a_missing_wrong_or_malformed_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let wrong_key = format!("Bearer {}", keys::generate().expose_secret());
    let long_key = format!("Bearer {}", "k".repeat(201));
    let basic = "Basic b3BlcmF0b3I6c2VjcmV0".to_string();
    let basic_with_key = format!("Basic {OPERATOR_KEY}");
    let bare_key = OPERATOR_KEY.to_string();
    let bad: Vec<Option<&str>> = vec![
        None,
        Some(&wrong_key),
        Some(&long_key),
        Some(&basic),
        Some(&basic_with_key),
        Some(&bare_key),
        Some("Bearer"),
        Some("Bearer "),
        Some("Bearer    "),
        Some(""),
    ];
    let before = app.row_counts().await;
    for auth in &bad {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        for path in reads(&b) {
            let r = send(&app, Method::GET, &path, &headers, None).await;
            assert_unauthorized(&r, &format!("GET {path} with {auth:?}"));
        }
        for (path, body) in writes(&b) {
            let r = send(&app, Method::POST, &path, &headers, Some(&body)).await;
            assert_unauthorized(&r, &format!("POST {path} with {auth:?}"));
        }
    }
    assert_eq!(app.row_counts().await, before, "a refused request wrote to the books");
}

#[sqlx::test]
async fn a_revoked_key_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let mut conn = app.pool.acquire().await.unwrap();
    let auditor = keys::create(&mut conn, "auditor", Role::Auditor, app.clock.now())
        .await
        .unwrap();
    let operator = keys::create(&mut conn, "operator", Role::Operator, app.clock.now())
        .await
        .unwrap();
    let (auditor_key, operator_key) = (
        auditor.key.expose_secret().to_string(),
        operator.key.expose_secret().to_string(),
    );

    let r = app
        .call(Method::GET, "/v1/ledger/verify", Some(&auditor_key), None)
        .await;
    assert_json(&r, 200);
    assert!(keys::revoke(&mut conn, auditor.id, app.clock.now()).await.unwrap());
    assert!(keys::revoke(&mut conn, operator.id, app.clock.now()).await.unwrap());
    assert!(!keys::revoke(&mut conn, operator.id, app.clock.now()).await.unwrap());

    let before = app.row_counts().await;
    for key in [&auditor_key, &operator_key] {
        for path in reads(&b) {
            let r = app.call(Method::GET, &path, Some(key), None).await;
            assert_unauthorized(&r, &format!("revoked key on GET {path}"));
        }
        for (path, body) in writes(&b) {
            let r = app.call(Method::POST, &path, Some(key), Some(&body)).await;
            assert_unauthorized(&r, &format!("revoked key on POST {path}"));
        }
    }
    assert_eq!(app.row_counts().await, before);
}

#[sqlx::test]
async fn a_platform_key_may_not_touch_the_books(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let platform = app.key(Role::Platform).await;
    let before = app.row_counts().await;
    for path in reads(&b) {
        let r = app.call(Method::GET, &path, Some(&platform), None).await;
        r.assert_problem(403, "forbidden");
    }
    for (path, body) in writes(&b) {
        let r = app.call(Method::POST, &path, Some(&platform), Some(&body)).await;
        r.assert_problem(403, "forbidden");
    }
    assert_eq!(app.row_counts().await, before);
}

#[sqlx::test]
async fn an_auditor_reads_the_books_but_cannot_write(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let auditor = app.key(Role::Auditor).await;
    for path in reads(&b) {
        let r = app.call(Method::GET, &path, Some(&auditor), None).await;
        assert_json(&r, 200);
    }
    let before = app.row_counts().await;
    for (path, body) in writes(&b) {
        let r = app.call(Method::POST, &path, Some(&auditor), Some(&body)).await;
        r.assert_problem(403, "forbidden");
    }
    assert_eq!(app.row_counts().await, before);
    let r = app.get(&format!("/v1/ledger/entries/{}", b.entry)).await;
    assert_eq!(
        r.body["reversed_by"],
        Value::Null,
        "the auditor's reversal went through"
    );
}

#[sqlx::test]
async fn operator_keys_read_and_write(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    // The bootstrap key did the set-up; it reads everything too.
    for path in reads(&b) {
        assert_json(&app.get(&path).await, 200);
    }
    let posted = app.get(&format!("/v1/ledger/entries/{}", b.entry)).await;
    assert_eq!(posted.body["metadata"]["posted_by"], "bootstrap");

    let mut conn = app.pool.acquire().await.unwrap();
    let created = keys::create(&mut conn, "ops", Role::Operator, app.clock.now())
        .await
        .unwrap();
    let key = created.key.expose_secret().to_string();
    for path in reads(&b) {
        assert_json(&app.call(Method::GET, &path, Some(&key), None).await, 200);
    }
    let before = app.row_counts().await;
    let statuses = {
        let mut out = Vec::new();
        for (path, body) in writes(&b) {
            let r = app.call(Method::POST, &path, Some(&key), Some(&body)).await;
            assert_json(&r, 201);
            out.push(r);
        }
        out
    };
    let (accounts, entries, postings) = before;
    assert_eq!(app.row_counts().await, (accounts + 1, entries + 2, postings + 4));
    for r in &statuses[1..] {
        assert_eq!(r.body["metadata"]["posted_by"], created.id.to_string(), "{:#}", r.body);
    }
    app.assert_books_verify().await;
}

// ---------------------------------------------------------------------------------------------
// 3. The manual books, end to end
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn manual_accounts_are_opened_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let body = json!({"code": "manual:bank", "currency": "EUR", "kind": "asset"});
    let r = app.post("/v1/ledger/accounts", body.clone()).await;
    assert_json(&r, 201);
    let id = id_of(&r);
    assert_eq!(r.body["code"], "manual:bank");
    assert_eq!(r.body["currency"], "EUR");
    assert_eq!(r.body["kind"], "asset");
    assert_eq!(r.body["normal_side"], "debit");
    assert_eq!(r.body["no_overdraft"], false);
    assert_eq!(r.body["balance"], "0.00");
    assert_eq!(r.body["posting_count"], 0);
    assert!(r.body["created_at"].is_string());

    let r = app.post("/v1/ledger/accounts", body).await;
    assert_json(&r, 200);
    assert_eq!(id_of(&r), id);

    let r = app
        .post(
            "/v1/ledger/accounts",
            json!({"code": "manual:owed", "currency": "EUR", "kind": "liability", "no_overdraft": true}),
        )
        .await;
    assert_json(&r, 201);
    assert_eq!(r.body["normal_side"], "credit");
    assert_eq!(r.body["no_overdraft"], true);

    let before = app.row_counts().await;
    for (conflict, what) in [
        (
            json!({"code": "manual:bank", "currency": "USD", "kind": "asset"}),
            "another currency",
        ),
        (
            json!({"code": "manual:bank", "currency": "EUR", "kind": "expense"}),
            "another kind",
        ),
        (
            json!({"code": "manual:bank", "currency": "EUR", "kind": "asset", "no_overdraft": true}),
            "another overdraft rule",
        ),
    ] {
        let r = app.post("/v1/ledger/accounts", conflict).await;
        assert_eq!(r.status, 409, "{what}");
        r.assert_problem(409, "account_exists");
    }
    for (invalid, what) in [
        (
            json!({"code": "bank", "currency": "EUR", "kind": "asset"}),
            "no manual: prefix",
        ),
        (
            json!({"code": "psp:sandbox", "currency": "EUR", "kind": "asset"}),
            "a domain code",
        ),
        (
            json!({"code": "Manual:bank", "currency": "EUR", "kind": "asset"}),
            "prefix in capitals",
        ),
        (
            json!({"code": "manual:Bank", "currency": "EUR", "kind": "asset"}),
            "capitals",
        ),
        (
            json!({"code": "manual:b a", "currency": "EUR", "kind": "asset"}),
            "a space",
        ),
        (
            json!({"code": format!("manual:{}", "x".repeat(200)), "currency": "EUR", "kind": "asset"}),
            "too long",
        ),
        (
            json!({"code": "manual:x", "currency": "EURO", "kind": "asset"}),
            "currency EURO",
        ),
        (
            json!({"code": "manual:x", "currency": "eur", "kind": "asset"}),
            "currency eur",
        ),
        (
            json!({"code": "manual:x", "currency": "XAU", "kind": "asset"}),
            "gold has no minor unit",
        ),
        (
            json!({"code": "manual:x", "currency": "EUR", "kind": "cash"}),
            "unknown kind",
        ),
        (json!({"code": "manual:x", "currency": "EUR"}), "no kind"),
        (
            json!({"code": "manual:x", "currency": "EUR", "kind": "asset", "balance": "9.00"}),
            "extra field",
        ),
        (
            json!({"code": "manual:x", "currency": "EUR", "kind": "asset", "no_overdraft": "yes"}),
            "string flag",
        ),
    ] {
        let r = app.post("/v1/ledger/accounts", invalid).await;
        assert_eq!(r.status, 422, "{what}: {:#}", r.body);
        r.assert_problem(422, "validation_failed");
    }
    assert_eq!(app.row_counts().await, before);
}

#[sqlx::test]
async fn a_manual_entry_is_posted_once_by_reference(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let bank = open_account(&app, "manual:bank", "asset", false).await;
    let owed = open_account(&app, "manual:owed", "liability", true).await;

    let mut body = transfer("e1", &bank, &owed, "150.00");
    body["memo"] = json!("opening balance");
    let r = app.post("/v1/ledger/entries", body.clone()).await;
    assert_json(&r, 201);
    let entry = r.body.clone();
    let id = id_of(&r);
    assert_eq!(entry["kind"], "manual");
    assert_eq!(entry["reference"], "manual:e1");
    assert_eq!(entry["reverses"], Value::Null);
    assert_eq!(entry["reversed_by"], Value::Null);
    assert_eq!(entry["metadata"]["memo"], "opening balance");
    assert!(entry["effective_at"].is_string() && entry["recorded_at"].is_string());
    assert_eq!(entry["postings"].as_array().unwrap().len(), 2);
    let debit = posting(&entry, "manual:bank");
    assert_eq!(debit["account_id"], bank.as_str());
    assert_eq!(debit["side"], "debit");
    assert_eq!(debit["amount"], "150.00");
    assert_eq!(debit["currency"], "EUR");
    assert_eq!(debit["account_seq"], 1);
    assert_eq!(debit["balance_after"], "150.00");
    let credit = posting(&entry, "manual:owed");
    assert_eq!(credit["account_id"], owed.as_str());
    assert_eq!(credit["side"], "credit");
    assert_eq!(credit["amount"], "150.00");
    assert_eq!(credit["balance_after"], "150.00");

    // The same body again is a replay; so is the same amount written differently.
    let counts = app.row_counts().await;
    let r = app.post("/v1/ledger/entries", body).await;
    assert_json(&r, 200);
    assert_eq!(r.body, entry);
    let r = post_transfer(&app, "e1", &bank, &owed, "150").await;
    assert_json(&r, 200);
    assert_eq!(id_of(&r), id);
    assert_eq!(app.row_counts().await, counts);

    // The same reference for other postings is refused.
    for (debit, credit, amount) in [(&bank, &owed, "150.01"), (&owed, &bank, "150.00")] {
        let r = post_transfer(&app, "e1", debit, credit, amount).await;
        r.assert_problem(422, "idempotency_key_reused");
    }
    assert_eq!(app.row_counts().await, counts);

    let r = app.get(&format!("/v1/ledger/entries/{id}")).await;
    assert_json(&r, 200);
    assert_eq!(r.body, entry);

    let r = app.get(&format!("/v1/ledger/accounts/{bank}")).await;
    assert_json(&r, 200);
    assert_eq!(r.body["balance"], "150.00");
    assert_eq!(r.body["posting_count"], 1);
    let r = app.get(&format!("/v1/ledger/accounts/{owed}")).await;
    assert_eq!(r.body["balance"], "150.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn accounts_are_listed_by_prefix_and_paginated(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let bank = open_account(&app, "manual:bank", "asset", false).await;
    let owed = open_account(&app, "manual:owed", "liability", true).await;
    let odd = open_account(&app, "manual:b_x", "asset", false).await;

    let codes = |r: &Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["code"].as_str().unwrap().to_string())
            .collect()
    };
    let r = app.get("/v1/ledger/accounts?code_prefix=manual:").await;
    assert_json(&r, 200);
    assert_eq!(codes(&r), ["manual:b_x", "manual:bank", "manual:owed"]);
    assert!(r.body.get("next_cursor").is_none(), "{:#}", r.body);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items[1]["id"], bank.as_str());
    assert_eq!(items[2]["id"], owed.as_str());
    assert_eq!(items[0]["id"], odd.as_str());

    // The prefix is literal: '_' is not a wildcard.
    let r = app.get("/v1/ledger/accounts?code_prefix=manual:b_").await;
    assert_eq!(codes(&r), ["manual:b_x"]);
    let r = app.get("/v1/ledger/accounts?code_prefix=manual:%25").await;
    assert_eq!(codes(&r), Vec::<String>::new(), "'%' is not a wildcard either");
    let r = app.get("/v1/ledger/accounts?code_prefix=manual:o").await;
    assert_eq!(codes(&r), ["manual:owed"]);
    let r = app.get("/v1/ledger/accounts?code_prefix=psp:").await;
    assert_json(&r, 200);
    assert_empty_last_page(&r);

    // One at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/v1/ledger/accounts?code_prefix=manual:&limit=1&cursor={c}"),
            None => "/v1/ledger/accounts?code_prefix=manual:&limit=1".to_string(),
        };
        let r = app.get(&path).await;
        assert_json(&r, 200);
        let page = codes(&r);
        assert_eq!(page.len(), 1, "{:#}", r.body);
        seen.extend(page.clone());
        match r.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["manual:b_x", "manual:bank", "manual:owed"]);

    let r = app.get("/v1/ledger/accounts?limit=2").await;
    assert_eq!(codes(&r), ["manual:b_x", "manual:bank"]);
    let next = r.body["next_cursor"].as_str().expect("a next page").to_string();
    let r = app.get(&format!("/v1/ledger/accounts?limit=2&cursor={next}")).await;
    assert_eq!(codes(&r), ["manual:owed"]);
    assert!(r.body.get("next_cursor").is_none(), "{:#}", r.body);
    // A page that ends exactly with the list is the last: no cursor to an empty page.
    let r = app.get("/v1/ledger/accounts?limit=3").await;
    assert_eq!(codes(&r).len(), 3);
    assert!(r.body.get("next_cursor").is_none(), "{:#}", r.body);
    app.get("/v1/ledger/accounts?cursor=manual:bank")
        .await
        .assert_problem(422, "validation_failed");
    let r = app.get("/v1/ledger/accounts?after=manual:bank").await;
    r.assert_problem(422, "validation_failed");
}

/// The database's collation decides `code > after`; the listing orders by bytes ("C"). On a
/// database whose collation is not "C" (the usual en_US.UTF-8, or ICU), the two disagree on
/// punctuation, and paging by `next_cursor` skips accounts.
#[sqlx::test]
async fn account_pages_do_not_depend_on_the_database_collation(pool: PgPool) {
    sqlx::query(r#"alter table ledger_accounts alter column code type text collate "en-US-x-icu""#)
        .execute(&pool)
        .await
        .unwrap();
    let app = TestApp::spawn(pool).await;
    for code in ["manual:a-1", "manual:a_1", "manual:a.1", "manual:a1"] {
        open_account(&app, code, "asset", false).await;
    }
    let r = app.get("/v1/ledger/accounts").await;
    let all: Vec<String> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 4);

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/v1/ledger/accounts?limit=1&cursor={c}"),
            None => "/v1/ledger/accounts?limit=1".to_string(),
        };
        let r = app.get(&path).await;
        assert_json(&r, 200);
        for a in r.body["items"].as_array().unwrap() {
            seen.push(a["code"].as_str().unwrap().to_string());
        }
        match r.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, all, "paging by next_cursor did not visit every account once");
}

#[sqlx::test]
async fn an_account_statement_shows_running_balances_and_pages(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let r = post_transfer(&app, "e2", &b.bank, &b.owed, "50").await;
    assert_json(&r, 201);
    let second = id_of(&r);
    let r = app
        .post(&format!("/v1/ledger/entries/{second}/reverse"), json!({}))
        .await;
    assert_json(&r, 201);
    let reversal = id_of(&r);

    let r = app.get(&format!("/v1/ledger/accounts/{}/entries", b.bank)).await;
    assert_json(&r, 200);
    let lines = r.body["items"].as_array().unwrap();
    let summary: Vec<(i64, &str, &str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["account_seq"].as_i64().unwrap(),
                l["entry_id"].as_str().unwrap(),
                l["side"].as_str().unwrap(),
                l["amount"].as_str().unwrap(),
                l["balance_after"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, b.entry.as_str(), "debit", "150.00", "150.00"),
            (2, second.as_str(), "debit", "50.00", "200.00"),
            (3, reversal.as_str(), "credit", "50.00", "150.00"),
        ]
    );
    assert_eq!(lines[0]["reference"], "manual:e1");
    assert_eq!(lines[0]["kind"], "manual");
    assert_eq!(lines[0]["currency"], "EUR");
    assert_eq!(lines[2]["kind"], "manual.reversal");
    assert!(r.body.get("next_cursor").is_none(), "{:#}", r.body);

    let r = app.get(&format!("/v1/ledger/accounts/{}/entries", b.owed)).await;
    let balances: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["balance_after"].as_str().unwrap())
        .collect();
    assert_eq!(balances, ["150.00", "200.00", "150.00"]);

    // Pages of two: cursor/next_cursor walk the statement without gaps or repeats.
    let path = format!("/v1/ledger/accounts/{}/entries", b.bank);
    let r = app.get(&format!("{path}?limit=2")).await;
    let seqs = |r: &Reply| -> Vec<i64> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["account_seq"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&r), [1, 2]);
    let next = r.body["next_cursor"].as_str().expect("a next page").to_string();
    let r = app.get(&format!("{path}?limit=2&cursor={next}")).await;
    assert_eq!(seqs(&r), [3]);
    assert!(r.body.get("next_cursor").is_none(), "{:#}", r.body);
    let r = app.get(&format!("{path}?limit=3")).await;
    assert_eq!(seqs(&r), [1, 2, 3]);
    assert!(r.body.get("next_cursor").is_none(), "{:#}", r.body);
    let r = app.get(&format!("{path}?limit=1")).await;
    let next = r.body["next_cursor"].as_str().expect("a next page").to_string();
    let r = app.get(&format!("{path}?cursor={next}")).await;
    assert_eq!(seqs(&r), [2, 3]);
    let r = app.get(&format!("{path}?cursor=2")).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "cursor");

    let r = app.get(&format!("/v1/ledger/accounts/{}", b.bank)).await;
    assert_eq!(r.body["balance"], "150.00");
    assert_eq!(r.body["posting_count"], 3);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_manual_entry_is_reversed_at_most_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let r = app
        .post(
            &format!("/v1/ledger/entries/{}/reverse", b.entry),
            json!({"reference": "undo-e1", "memo": "typo"}),
        )
        .await;
    assert_json(&r, 201);
    let reversal = r.body.clone();
    let reversal_id = id_of(&r);
    assert_eq!(reversal["reverses"], b.entry.as_str());
    assert_eq!(reversal["reversed_by"], Value::Null);
    assert_eq!(reversal["kind"], "manual.reversal");
    assert_eq!(reversal["reference"], "manual:undo-e1");
    assert_eq!(reversal["metadata"]["memo"], "typo");
    let bank = posting(&reversal, "manual:bank");
    assert_eq!(
        (&bank["side"], &bank["amount"], &bank["balance_after"]),
        (&json!("credit"), &json!("150.00"), &json!("0.00"))
    );
    let owed = posting(&reversal, "manual:owed");
    assert_eq!(
        (&owed["side"], &owed["amount"], &owed["balance_after"]),
        (&json!("debit"), &json!("150.00"), &json!("0.00"))
    );

    let r = app.get(&format!("/v1/ledger/entries/{}", b.entry)).await;
    assert_json(&r, 200);
    assert_eq!(r.body["reversed_by"], reversal_id.as_str());
    assert_eq!(r.body["reverses"], Value::Null);

    let counts = app.row_counts().await;
    // The same reversal again is a replay.
    let r = app
        .post(
            &format!("/v1/ledger/entries/{}/reverse", b.entry),
            json!({"reference": "undo-e1", "memo": "typo"}),
        )
        .await;
    assert_json(&r, 200);
    assert_eq!(id_of(&r), reversal_id);
    // Another reversal of it is refused, with or without a reference.
    for body in [json!({"reference": "undo-again"}), json!({})] {
        let r = app.post(&format!("/v1/ledger/entries/{}/reverse", b.entry), body).await;
        r.assert_problem(409, "already_reversed");
    }
    // A reversal is not itself reversed by hand.
    let r = app
        .post(&format!("/v1/ledger/entries/{reversal_id}/reverse"), json!({}))
        .await;
    r.assert_problem(409, "invalid_state_transition");
    // Nothing to reverse.
    let r = app
        .post(&format!("/v1/ledger/entries/{}/reverse", Uuid::now_v7()), json!({}))
        .await;
    r.assert_problem(404, "not_found");
    let r = app.post("/v1/ledger/entries/not-a-uuid/reverse", json!({})).await;
    r.assert_problem(404, "not_found");
    assert_eq!(app.row_counts().await, counts);

    for id in [&b.bank, &b.owed] {
        let r = app.get(&format!("/v1/ledger/accounts/{id}")).await;
        assert_eq!(r.body["balance"], "0.00");
    }
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_reversal_with_the_default_reference_replays(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let path = format!("/v1/ledger/entries/{}/reverse", b.entry);
    let r = app.post(&path, json!({})).await;
    assert_json(&r, 201);
    let id = id_of(&r);
    assert_eq!(r.body["reverses"], b.entry.as_str());
    let counts = app.row_counts().await;
    let r = app.post(&path, json!({})).await;
    assert_json(&r, 200);
    assert_eq!(id_of(&r), id);
    assert_eq!(app.row_counts().await, counts);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn the_trial_balance_and_verify_report_on_the_books(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    assert_json(&post_transfer(&app, "e2", &b.bank, &b.owed, "50.00").await, 201);
    let fees = open_account(&app, "manual:fees", "expense", false).await;
    assert_json(&post_transfer(&app, "e3", &fees, &b.bank, "12.34").await, 201);

    let r = app.get("/v1/ledger/trial-balance").await;
    assert_json(&r, 200);
    assert_eq!(r.body["balanced"], true);
    assert!(r.body["as_of"].is_string());
    let currencies = r.body["currencies"].as_array().unwrap();
    assert_eq!(currencies.len(), 1);
    let eur = &currencies[0];
    assert_eq!(eur["currency"], "EUR");
    assert_eq!(eur["balanced"], true);
    assert_eq!(eur["total_debit"], "200.00");
    assert_eq!(eur["total_credit"], "200.00");
    let lines: Vec<(&str, &str, &str, &str)> = eur["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["code"].as_str().unwrap(),
                a["kind"].as_str().unwrap(),
                a["debit"].as_str().unwrap(),
                a["credit"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("manual:bank", "asset", "187.66", "0.00"),
            ("manual:fees", "expense", "12.34", "0.00"),
            ("manual:owed", "liability", "0.00", "200.00"),
        ]
    );

    let r = app.get("/v1/ledger/verify").await;
    assert_json(&r, 200);
    assert_eq!(r.body["ok"], true, "{:#}", r.body);
    assert!(r.body["checked_at"].is_string());
    for name in [
        "debits_equal_credits",
        "entries_balance",
        "balances_match_postings",
        "no_overdraft_respected",
    ] {
        let c = check(&r.body, name);
        assert_eq!(c["ok"], true, "{c:#}");
        assert_eq!(c["violations"], 0);
        assert_eq!(c["examples"], json!([]));
        assert!(c["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    app.assert_books_verify().await;
}

/// `as_of` answers for a moment past from the postings' running balances: an account's balance
/// and the trial balance then, without the entries posted since and the accounts opened since.
#[sqlx::test]
async fn balances_answer_as_of_a_moment_past(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await; // bank 150.00 owed 150.00, at t0
    let t0 = app.clock.now();
    app.clock.advance(3600).unwrap();
    assert_json(&post_transfer(&app, "later", &b.bank, &b.owed, "50.00").await, 201);
    app.clock.advance(3600).unwrap();
    let fees = open_account(&app, "manual:fees", "expense", false).await;
    assert_json(&post_transfer(&app, "latest", &fees, &b.bank, "12.34").await, 201);

    let at = |t: chrono::DateTime<chrono::Utc>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .replace('+', "%2B")
    };
    let then = app
        .get(&format!("/v1/ledger/accounts/{}?as_of={}", b.bank, at(t0)))
        .await;
    assert_json(&then, 200);
    assert_eq!(then.body["balance"], "150.00");
    assert_eq!(then.body["posting_count"], 1);
    let now = app.get(&format!("/v1/ledger/accounts/{}", b.bank)).await;
    assert_eq!(now.body["balance"], "187.66");
    // Opened after the moment asked for: it did not exist then.
    app.get(&format!("/v1/ledger/accounts/{fees}?as_of={}", at(t0)))
        .await
        .assert_problem(404, "not_found");

    let middle = t0 + chrono::Duration::seconds(5400); // after "later", before the fees account
    let r = app.get(&format!("/v1/ledger/trial-balance?as_of={}", at(middle))).await;
    assert_json(&r, 200);
    let asked = at(middle)
        .replace("%2B", "+")
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap();
    assert_eq!(
        r.body["as_of"]
            .as_str()
            .map(|s| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap()),
        Some(asked)
    );
    let eur = &r.body["currencies"][0];
    assert_eq!(
        (&eur["total_debit"], &eur["total_credit"]),
        (&json!("200.00"), &json!("200.00"))
    );
    let codes: Vec<&str> = eur["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["manual:bank", "manual:owed"]);
    // Before anything was posted: the accounts existed, with nothing in them.
    let before = t0 - chrono::Duration::seconds(1);
    let r = app.get(&format!("/v1/ledger/trial-balance?as_of={}", at(before))).await;
    assert_json(&r, 200);
    assert_eq!(r.body["currencies"], json!([]), "{:#}", r.body);

    let r = app
        .get(&format!(
            "/v1/ledger/trial-balance?as_of={}",
            at(app.clock.now() + chrono::Duration::days(1))
        ))
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "as_of");
    let r = app.get("/v1/ledger/trial-balance?as_of=yesterday").await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "as_of");
    let r = app.get("/v1/ledger/trial-balance?at=2026-01-01T00:00:00Z").await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "at");
}

#[sqlx::test]
async fn empty_books_are_balanced(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app.get("/v1/ledger/trial-balance").await;
    assert_json(&r, 200);
    assert_eq!(r.body["balanced"], true);
    assert_eq!(r.body["currencies"], json!([]));
    let r = app.get("/v1/ledger/accounts").await;
    assert_empty_last_page(&r);
    app.assert_books_verify().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Overdraft
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn a_no_overdraft_account_is_not_overdrawn_through_http(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let counts = app.row_counts().await;
    // owed holds 150.00 on its credit side; debiting 150.01 would take it below zero.
    let r = post_transfer(&app, "too-much", &b.owed, &b.bank, "150.01").await;
    r.assert_problem(409, "insufficient_funds");
    assert_eq!(app.row_counts().await, counts);
    let r = app.get(&format!("/v1/ledger/accounts/{}", b.owed)).await;
    assert_eq!(r.body["balance"], "150.00");
    assert_eq!(r.body["posting_count"], 1);
    // The refused reference is free for a valid entry; exactly the balance is allowed.
    let r = post_transfer(&app, "too-much", &b.owed, &b.bank, "150.00").await;
    assert_json(&r, 201);
    assert_eq!(posting(&r.body, "manual:owed")["balance_after"], "0.00");
    let r = post_transfer(&app, "one-cent", &b.owed, &b.bank, "0.01").await;
    r.assert_problem(409, "insufficient_funds");
    app.assert_books_verify().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Bad input: a precise problem, and nothing written
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn postings_to_unknown_or_domain_accounts_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let mut conn = app.pool.acquire().await.unwrap();
    let psp = NewAccount {
        code: AccountCode::parse("psp:sandbox").unwrap(),
        currency: Currency::EUR,
        kind: AccountKind::Asset,
        no_overdraft: false,
    };
    let domain = ledger::open_account(&mut conn, &psp, Utc::now())
        .await
        .unwrap()
        .0
        .id
        .to_string();
    let counts = app.row_counts().await;
    let unknown = Uuid::now_v7().to_string();
    for (debit, credit) in [
        (&unknown, &b.owed),
        (&b.bank, &unknown),
        (&domain, &b.owed),
        (&b.bank, &domain),
    ] {
        let r = post_transfer(&app, "stray", debit, credit, "1.00").await;
        r.assert_problem(422, "unknown_account");
    }
    assert_eq!(app.row_counts().await, counts);
}

#[sqlx::test]
async fn amounts_must_be_positive_decimal_strings_in_the_currencys_precision(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let counts = app.row_counts().await;
    let amounts: Vec<Value> = vec![
        json!(10),
        json!(10.5),
        json!("10.001"),
        json!("0"),
        json!("0.00"),
        json!("-5"),
        json!("-5.00"),
        json!("1e3"),
        json!("+1"),
        json!(" 1"),
        json!("1,00"),
        json!("1."),
        json!(".5"),
        json!(""),
        json!("NaN"),
        json!("1234567890123456"),
        json!(null),
        json!(true),
    ];
    for amount in amounts {
        let mut body = transfer("bad-amount", &b.bank, &b.owed, "1.00");
        body["postings"][0]["amount"] = amount.clone();
        body["postings"][1]["amount"] = amount.clone();
        let r = app.post("/v1/ledger/entries", body).await;
        assert_eq!(r.status, 422, "amount {amount}: {:#}", r.body);
        r.assert_problem(422, "validation_failed");
    }
    for currency in ["EURO", "eur", "XAU", "ZZZ", ""] {
        let mut body = transfer("bad-currency", &b.bank, &b.owed, "1.00");
        body["postings"][0]["currency"] = json!(currency);
        body["postings"][1]["currency"] = json!(currency);
        let r = app.post("/v1/ledger/entries", body).await;
        assert_eq!(r.status, 422, "currency {currency:?}: {:#}", r.body);
        r.assert_problem(422, "validation_failed");
    }
    assert_eq!(app.row_counts().await, counts);
}

#[sqlx::test]
async fn entries_of_the_wrong_shape_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let usd_bank = {
        let r = app
            .post(
                "/v1/ledger/accounts",
                json!({"code": "manual:usd-bank", "currency": "USD", "kind": "asset"}),
            )
            .await;
        assert_json(&r, 201);
        id_of(&r)
    };
    let counts = app.row_counts().await;
    let posting = |account: &str, side: &str, amount: &str, currency: &str| json!({"account_id": account, "side": side, "amount": amount, "currency": currency});

    let unbalanced = json!({"reference": "x", "postings": [
        posting(&b.bank, "debit", "10.00", "EUR"), posting(&b.owed, "credit", "9.99", "EUR")]});
    app.post("/v1/ledger/entries", unbalanced)
        .await
        .assert_problem(422, "entry_unbalanced");
    let both_debit = json!({"reference": "x", "postings": [
        posting(&b.bank, "debit", "10.00", "EUR"), posting(&b.owed, "debit", "10.00", "EUR")]});
    app.post("/v1/ledger/entries", both_debit)
        .await
        .assert_problem(422, "entry_unbalanced");
    // Balanced overall but not per currency.
    let across = json!({"reference": "x", "postings": [
        posting(&b.bank, "debit", "10.00", "EUR"), posting(&usd_bank, "credit", "10.00", "USD")]});
    app.post("/v1/ledger/entries", across)
        .await
        .assert_problem(422, "entry_unbalanced");
    // Balanced in USD, but on EUR accounts.
    let mismatch = json!({"reference": "x", "postings": [
        posting(&b.bank, "debit", "10.00", "USD"), posting(&b.owed, "credit", "10.00", "USD")]});
    app.post("/v1/ledger/entries", mismatch)
        .await
        .assert_problem(422, "currency_mismatch");

    let single = json!({"reference": "x", "postings": [posting(&b.bank, "debit", "10.00", "EUR")]});
    app.post("/v1/ledger/entries", single)
        .await
        .assert_problem(422, "validation_failed");
    let none = json!({"reference": "x", "postings": []});
    app.post("/v1/ledger/entries", none)
        .await
        .assert_problem(422, "validation_failed");

    let mut invalid = Vec::new();
    let mut extra = transfer("x", &b.bank, &b.owed, "1.00");
    extra["kind"] = json!("payout");
    invalid.push((extra, "an unknown top-level field"));
    let mut extra = transfer("x", &b.bank, &b.owed, "1.00");
    extra["postings"][0]["balance_after"] = json!("1.00");
    invalid.push((extra, "an unknown posting field"));
    let mut side = transfer("x", &b.bank, &b.owed, "1.00");
    side["postings"][0]["side"] = json!("left");
    invalid.push((side, "an unknown side"));
    let mut account = transfer("x", &b.bank, &b.owed, "1.00");
    account["postings"][0]["account_id"] = json!("manual:bank");
    invalid.push((account, "an account code for an id"));
    let mut missing = transfer("x", &b.bank, &b.owed, "1.00");
    missing.as_object_mut().unwrap().remove("reference");
    invalid.push((missing, "no reference"));
    let mut memo = transfer("x", &b.bank, &b.owed, "1.00");
    memo["memo"] = json!("m".repeat(501));
    invalid.push((memo, "a memo over 500 characters"));
    let mut long = transfer("x", &b.bank, &b.owed, "1.00");
    long["reference"] = json!("r".repeat(300));
    invalid.push((long, "a reference over 200 characters"));
    // Found by scripts/schemathesis: Postgres refuses NUL in text and jsonb (it was a 500).
    let mut nul = transfer("x", &b.bank, &b.owed, "1.00");
    nul["memo"] = json!("a\u{0}b");
    invalid.push((nul, "a memo with a NUL"));
    let nul = transfer("x\u{0}y", &b.bank, &b.owed, "1.00");
    invalid.push((nul, "a reference with a NUL"));
    invalid.push((json!([]), "an array"));
    invalid.push((json!("entry"), "a string"));
    invalid.push((json!(null), "null"));
    for (body, what) in invalid {
        let r = app.post("/v1/ledger/entries", body).await;
        assert_eq!(r.status, 422, "{what}: {:#}", r.body);
        r.assert_problem(422, "validation_failed");
    }
    for body in [
        json!({"reference": "r", "amount": "1.00"}),
        json!({"memo": "a\u{0}b"}),
        json!({"reference": "r\u{0}"}),
    ] {
        let r = app
            .post(&format!("/v1/ledger/entries/{}/reverse", b.entry), body.clone())
            .await;
        assert_eq!(r.status, 422, "{body}: {:#}", r.body);
        r.assert_problem(422, "validation_failed");
    }
    assert_eq!(app.row_counts().await, counts);
}

/// An empty reference is an empty idempotency key: the ledger's own rule is "1 to 200
/// characters", and the `manual:` prefix must not make an empty one pass.
#[sqlx::test]
async fn an_empty_reference_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let counts = app.row_counts().await;
    let r = post_transfer(&app, "", &b.bank, &b.owed, "1.00").await;
    r.assert_problem(422, "validation_failed");
    let r = app
        .post(
            &format!("/v1/ledger/entries/{}/reverse", b.entry),
            json!({"reference": ""}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(app.row_counts().await, counts);
}

#[sqlx::test]
async fn bodies_that_are_not_json_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let counts = app.row_counts().await;
    let valid = transfer("raw", &b.bank, &b.owed, "1.00").to_string();
    let entries = "/v1/ledger/entries";
    let reverse = format!("/v1/ledger/entries/{}/reverse", b.entry);

    app.post_raw(entries, Some("application/json"), r#"{"reference": "#)
        .await
        .assert_problem(400, "malformed_json");
    let account = json!({"code": "manual:raw", "currency": "EUR", "kind": "asset"}).to_string();
    for (path, good) in [
        (entries, valid.as_str()),
        ("/v1/ledger/accounts", account.as_str()),
        (reverse.as_str(), "{}"),
    ] {
        let truncated = good[..good.len() - 1].to_string();
        for bad in [
            truncated,
            String::new(),
            format!("{good} trailing"),
            format!("{good}{good}"),
        ] {
            let r = app.post_raw(path, Some("application/json"), bad.clone()).await;
            assert_eq!(r.status, 400, "{path} with {bad:?}: {:#}", r.body);
            r.assert_problem(400, "malformed_json");
        }
    }
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data"),
    ] {
        let r = app.post_raw(entries, ct, valid.clone()).await;
        assert_eq!(r.status, 415, "content type {ct:?}: {:#}", r.body);
        r.assert_problem(415, "unsupported_media_type");
    }
    app.post_raw(&reverse, None, "{}")
        .await
        .assert_problem(415, "unsupported_media_type");
    // A JSON content type with parameters is still JSON.
    let r = app
        .post_raw(entries, Some("application/json; charset=utf-8"), valid.clone())
        .await;
    assert_json(&r, 201);
    let counts_after_valid = app.row_counts().await;
    assert_eq!(counts_after_valid.1, counts.1 + 1);

    // Over the body limit (262144 bytes by default).
    let big = json!({"reference": "big", "memo": "m".repeat(300 * 1024), "postings": []}).to_string();
    let r = app.post_raw(entries, Some("application/json"), big).await;
    r.assert_problem(413, "payload_too_large");

    // Deep nesting is refused as bad input, never a crash.
    for body in [
        "[".repeat(10_000),
        format!(r#"{{"reference": "deep", "postings": {}"#, "[".repeat(10_000)),
    ] {
        let r = app.post_raw(entries, Some("application/json"), body).await;
        assert!(r.status.is_client_error(), "{}: {:#}", r.status, r.body);
        assert_eq!(r.content_type, "application/problem+json");
        assert_eq!(r.body["status"], r.status.as_u16());
    }
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = app.post_raw(entries, Some("application/json"), nested).await;
    assert!(r.status.is_client_error(), "{}: {:#}", r.status, r.body);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(app.row_counts().await, counts_after_valid);
}

#[sqlx::test]
async fn ids_that_name_nothing_are_404s(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let unknown = Uuid::now_v7();
    for path in [
        "/v1/ledger/accounts/not-a-uuid".to_string(),
        "/v1/ledger/accounts/not-a-uuid/entries".to_string(),
        "/v1/ledger/entries/not-a-uuid".to_string(),
        "/v1/ledger/entries/..%2F..%2Fetc".to_string(),
        "/v1/ledger/accounts/..%2F..%2Fetc%2Fpasswd".to_string(),
        "/v1/ledger/entries/%00".to_string(),
        format!("/v1/ledger/entries/{}x", b.entry),
        format!("/v1/ledger/accounts/{unknown}"),
        format!("/v1/ledger/accounts/{unknown}/entries"),
        format!("/v1/ledger/entries/{unknown}"),
        // An entry id is not an account id, nor the reverse.
        format!("/v1/ledger/accounts/{}", b.entry),
        format!("/v1/ledger/entries/{}", b.bank),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status, 404, "{path}: {:#}", r.body);
        r.assert_problem(404, "not_found");
    }
}

#[sqlx::test]
async fn bad_query_parameters_are_422s(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let b = books(&app).await;
    let statement = format!("/v1/ledger/accounts/{}/entries", b.bank);
    for path in [
        "/v1/ledger/accounts?limit=0".to_string(),
        "/v1/ledger/accounts?limit=5000".to_string(),
        "/v1/ledger/accounts?limit=1001".to_string(),
        "/v1/ledger/accounts?limit=-1".to_string(),
        "/v1/ledger/accounts?limit=ten".to_string(),
        "/v1/ledger/accounts?prefix=manual:".to_string(),
        format!("{statement}?limit=0"),
        format!("{statement}?limit=5000"),
        format!("{statement}?after=first"),
        format!("{statement}?cursor=first"),
        "/v1/ledger/accounts?cursor=manual:bank".to_string(),
        format!("{statement}?code_prefix=manual:"),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status, 422, "{path}: {:#}", r.body);
        r.assert_problem(422, "validation_failed");
    }
    for path in [
        "/v1/ledger/accounts?limit=1000".to_string(),
        format!("{statement}?limit=1"),
    ] {
        assert_json(&app.get(&path).await, 200);
    }
}

#[sqlx::test]
async fn the_bearer_scheme_is_case_insensitive(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = app
            .client
            .get(format!("{}/v1/ledger/verify", app.base))
            .header("authorization", format!("{scheme} {OPERATOR_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "scheme {scheme}");
    }
}

#[sqlx::test]
async fn the_role_is_checked_before_the_body_is_read(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let auditor = app.key(Role::Auditor).await;
    let counts = app.row_counts().await;
    for path in ["/v1/ledger/accounts", "/v1/ledger/entries"] {
        let r = app
            .call(Method::POST, path, Some(&auditor), Some(&json!({"not": "valid"})))
            .await;
        r.assert_problem(403, "forbidden");
        let r = app.call(Method::POST, path, None, Some(&json!({"not": "valid"}))).await;
        r.assert_problem(401, "unauthorized");
    }
    assert_eq!(app.row_counts().await, counts);
}

#[sqlx::test]
async fn the_whole_openapi_document_is_consistent(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let doc = app.call(Method::GET, "/openapi.json", None, None).await.body;
    common::assert_refs_resolve(&doc, &doc);
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/v1/projects",
        "/v1/investors",
        "/v1/projects/{id}/offers",
        "/v1/offers/{id}/pledges",
        "/v1/offers/{id}/cap-table",
        "/v1/pledges/{id}/revoke",
        "/v1/sandbox/clock",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    // Every operation behind a key says so, and documents its problem responses.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            // The provider webhook is authenticated by its signature, not by a key.
            if path.starts_with("/v1/") && path != "/v1/webhooks/{provider}" {
                assert!(op["security"].is_array(), "{method} {path} has no security");
                assert!(
                    op["responses"].as_object().unwrap().keys().any(|k| k.starts_with('4')),
                    "{method} {path} documents no 4xx"
                );
            }
            // A parameter is in the path exactly when the path names it; the rest are queries
            // and headers, which a client would otherwise put nowhere.
            for param in op["parameters"].as_array().into_iter().flatten() {
                let (name, place) = (param["name"].as_str().unwrap(), param["in"].as_str().unwrap());
                let named = path.contains(&format!("{{{name}}}"));
                assert_eq!(
                    place == "path",
                    named,
                    "{method} {path}: {name} is documented in {place}"
                );
            }
        }
    }
}

/// Beyond `http.max_in_flight` requests at once, a request is refused at once with 503
/// `overloaded` and `Retry-After`, and served again once the others are done.
#[sqlx::test]
async fn requests_beyond_the_in_flight_limit_are_refused_at_once(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(pool, &[("CROWDLEDGER__HTTP__MAX_IN_FLIGHT", "2")]).await;
    // Two requests whose bodies never finish arriving hold both places.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
            .await
            .unwrap();
        let head = format!(
            "POST /v1/projects HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{",
            common::OPERATOR_KEY
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    let refused = app
        .wait_for_value(|| async { app.get("/health").await }, |r: &Reply| r.status == 503)
        .await;
    refused.assert_problem(503, "overloaded");
    assert_eq!(refused.headers["retry-after"], "1");
    let projects: i64 = sqlx::query_scalar("select count(*) from projects")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(projects, 0);

    // Once one held request ends, the service serves again.
    let mut first = held.remove(0);
    first.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = first.read_to_end(&mut rest).await;
    drop(first);
    let served = app
        .wait_for_value(|| async { app.get("/health").await }, |r: &Reply| r.status == 200)
        .await;
    assert_eq!(served.body["status"], "ok");
}
