//! Investors through HTTP: registration by the platform, KYC decisions by operators, roles,
//! every refused input (a precise problem that writes nothing), and `Idempotency-Key`.

use chrono::{DateTime, Utc};
use crowdledger::keys::Role;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{self, OPERATOR_KEY, Reply, TestApp, assert_json, id_of, send_as as send};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}

fn investor(name: &str) -> Value {
    json!({
        "kind": "natural",
        "name": name,
        "email": "camille.martin@example.org",
        "country": "BE",
        "net_worth": {"amount": "250000.00", "currency": "EUR"},
    })
}

async fn count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from investors")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn kyc(app: &TestApp, id: &str, status: &str) -> Reply {
    app.post(&format!("/v1/investors/{id}/kyc"), json!({"status": status}))
        .await
}

// ---------------------------------------------------------------------------------------------
// Registration and KYC
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn the_platform_registers_an_investor_with_kyc_pending(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let platform = app.key(Role::Platform).await;
    let before = app.clock.now();
    let r = send(
        &app,
        Method::POST,
        "/v1/investors",
        &platform,
        &[],
        Some(&investor(" Camille Martin ")),
    )
    .await;
    assert_json(&r, 201);
    let i = &r.body;
    assert_eq!(i["kind"], "natural");
    assert_eq!(i["name"], "Camille Martin");
    assert_eq!(i["email"], "camille.martin@example.org");
    assert_eq!(i["country"], "BE");
    assert_eq!(i["classification"], "non_sophisticated", "the protective default");
    assert_eq!(i["kyc_status"], "pending");
    assert_eq!(i["net_worth"], json!({"amount": "250000.00", "currency": "EUR"}));
    assert!(i["kyc_decided_at"].is_null());
    let created = time(&i["created_at"]);
    assert!(created >= before && created <= app.clock.now());

    let id = id_of(&r);
    for key in [platform.as_str(), OPERATOR_KEY] {
        let got = send(&app, Method::GET, &format!("/v1/investors/{id}"), key, &[], None).await;
        assert_json(&got, 200);
        assert_eq!(got.body, r.body);
    }
}

#[sqlx::test]
async fn optional_fields_have_their_defaults_and_amounts_their_precision(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app
        .post(
            "/v1/investors",
            json!({"kind": "legal", "name": "Impact Partners SA", "email": "invest@impact.example.be", "country": "BE",
                   "classification": "sophisticated"}),
        )
        .await;
    assert_json(&r, 201);
    assert_eq!(r.body["kind"], "legal");
    assert_eq!(r.body["classification"], "sophisticated");
    assert!(r.body["net_worth"].is_null());

    for (given, currency, shown) in [
        ("250000", "EUR", "250000.00"),
        ("0", "EUR", "0.00"),
        ("12.5", "EUR", "12.50"),
        ("1000", "JPY", "1000"),
    ] {
        let r = app
            .post(
                "/v1/investors",
                json!({"kind": "natural", "name": "N", "email": "n@example.fr", "country": "FR", "classification": "non_sophisticated",
                       "net_worth": {"amount": given, "currency": currency}}),
            )
            .await;
        assert_json(&r, 201);
        assert_eq!(r.body["net_worth"], json!({"amount": shown, "currency": currency}));
        let got = app.get(&format!("/v1/investors/{}", id_of(&r))).await;
        assert_eq!(got.body["net_worth"], r.body["net_worth"]);
    }
}

#[sqlx::test]
async fn an_operator_decides_kyc_at_the_clocks_time(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app.post("/v1/investors", investor("Camille")).await;
    assert_json(&r, 201);
    let id = id_of(&r);
    let created = time(&r.body["created_at"]);

    // Business time, not wall time: ten days on.
    app.clock.advance(10 * 86_400).unwrap();
    let before = app.clock.now();
    let r = kyc(&app, &id, "verified").await;
    assert_json(&r, 200);
    assert_eq!(r.body["kyc_status"], "verified");
    let decided = time(&r.body["kyc_decided_at"]);
    assert!(
        decided >= before && decided <= app.clock.now(),
        "{decided} not in [{before}, now]"
    );
    assert!(decided - created >= chrono::TimeDelta::days(10));
    assert_eq!(r.body["updated_at"], r.body["kyc_decided_at"]);
    assert_eq!(app.get(&format!("/v1/investors/{id}")).await.body, r.body);

    // Any decision may follow any other, each with its time.
    app.clock.advance(60).unwrap();
    let r = kyc(&app, &id, "rejected").await;
    assert_json(&r, 200);
    assert_eq!(r.body["kyc_status"], "rejected");
    assert!(time(&r.body["kyc_decided_at"]) > decided);
    let r = kyc(&app, &id, "pending").await;
    assert_json(&r, 200);
    assert_eq!(r.body["kyc_status"], "pending");

    for bad in [
        json!({"status": "approved"}),
        json!({"status": "Verified"}),
        json!({}),
        json!({"status": "verified", "by": "me"}),
    ] {
        app.post(&format!("/v1/investors/{id}/kyc"), bad)
            .await
            .assert_problem(422, "validation_failed");
    }
    assert_eq!(
        app.get(&format!("/v1/investors/{id}")).await.body["kyc_status"],
        "pending"
    );

    let missing = uuid::Uuid::now_v7();
    kyc(&app, &missing.to_string(), "verified")
        .await
        .assert_problem(404, "not_found");
    kyc(&app, "not-an-id", "verified")
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/v1/investors/{missing}"))
        .await
        .assert_problem(404, "not_found");
}

// ---------------------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn roles_decide_who_registers_reads_and_verifies(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let platform = app.key(Role::Platform).await;
    let auditor = app.key(Role::Auditor).await;
    let r = send(
        &app,
        Method::POST,
        "/v1/investors",
        &platform,
        &[],
        Some(&investor("Camille")),
    )
    .await;
    assert_json(&r, 201);
    let id = id_of(&r);

    send(
        &app,
        Method::POST,
        "/v1/investors",
        &auditor,
        &[],
        Some(&investor("Auditor's")),
    )
    .await
    .assert_problem(403, "forbidden");
    // Investors are the platform's (PRODUCT.md's roles table); an auditor reads the books.
    let read = send(&app, Method::GET, &format!("/v1/investors/{id}"), &platform, &[], None).await;
    assert_eq!(read.status, 200, "{:#}", read.body);
    assert_eq!(read.body["id"], id.as_str());
    send(&app, Method::GET, &format!("/v1/investors/{id}"), &auditor, &[], None)
        .await
        .assert_problem(403, "forbidden");
    for key in [&platform, &auditor] {
        send(
            &app,
            Method::POST,
            &format!("/v1/investors/{id}/kyc"),
            key,
            &[],
            Some(&json!({"status": "verified"})),
        )
        .await
        .assert_problem(403, "forbidden");
    }
    for (method, path) in [
        (Method::POST, "/v1/investors".to_string()),
        (Method::GET, format!("/v1/investors/{id}")),
        (Method::POST, format!("/v1/investors/{id}/kyc")),
    ] {
        let r = common::read(
            app.client
                .request(method, format!("{}{path}", app.base))
                .json(&json!({"status": "verified"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        r.assert_problem(401, "unauthorized");
    }
    assert_eq!(count(&app).await, 1);
    let got = app.get(&format!("/v1/investors/{id}")).await;
    assert_eq!(got.body["kyc_status"], "pending");
    assert!(got.body["kyc_decided_at"].is_null());
}

// ---------------------------------------------------------------------------------------------
// Refused inputs
// ---------------------------------------------------------------------------------------------

fn edited(edit: impl FnOnce(&mut Value)) -> Value {
    let mut body = investor("Edited");
    edit(&mut body);
    body
}

#[sqlx::test]
async fn bad_investors_are_refused_and_write_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let platform = app.key(Role::Platform).await;
    let worth = |amount: Value, currency: Value| json!({"amount": amount, "currency": currency});
    let mut cases: Vec<(String, Value)> = Vec::new();
    for email in [
        "",
        "plain",
        "no-at.example.org",
        "@example.org",
        "camille@",
        "camille@example",
        "camille@.org",
        "camille@example.",
        "camille@@example.org",
        "a@b@example.org",
        "camille martin@example.org",
        "camille@exam ple.org",
    ] {
        cases.push((format!("email {email:?}"), edited(|b| b["email"] = json!(email))));
    }
    cases.push((
        "email over 254 bytes".into(),
        edited(|b| b["email"] = json!(format!("{}@example.org", "a".repeat(243)))),
    ));
    for (what, nw) in [
        ("net worth with 3 decimals", worth(json!("250000.001"), json!("EUR"))),
        ("negative net worth", worth(json!("-1.00"), json!("EUR"))),
        ("net worth as a JSON number", worth(json!(250000), json!("EUR"))),
        ("net worth in exponent notation", worth(json!("2.5e5"), json!("EUR"))),
        ("net worth with decimals in JPY", worth(json!("100.5"), json!("JPY"))),
        ("net worth in a lowercase currency", worth(json!("1.00"), json!("eur"))),
        ("net worth in an unknown currency", worth(json!("1.00"), json!("EURO"))),
        ("net worth without a currency", json!({"amount": "1.00"})),
        ("net worth as a bare string", json!("250000.00")),
        (
            "net worth with an extra field",
            json!({"amount": "1.00", "currency": "EUR", "as_of": "2024"}),
        ),
    ] {
        cases.push((what.into(), edited(|b| b["net_worth"] = nw)));
    }
    for (what, field, value) in [
        ("alpha-3 country", "country", json!("FRA")),
        ("lowercase country", "country", json!("fr")),
        ("unassigned country", "country", json!("ZZ")),
        ("unknown kind", "kind", json!("company")),
        ("unknown classification", "classification", json!("professional")),
        ("empty name", "name", json!(" ")),
        ("name over 200 characters", "name", json!("x".repeat(201))),
        ("unknown field", "kyc_status", json!("verified")),
        ("numeric name", "name", json!(42)),
    ] {
        cases.push((what.into(), edited(|b| b[field] = value)));
    }
    cases.push((
        "missing email".into(),
        edited(|b| {
            b.as_object_mut().unwrap().remove("email");
        }),
    ));
    for (what, body) in cases {
        let r = send(&app, Method::POST, "/v1/investors", &platform, &[], Some(&body)).await;
        assert_eq!(r.status, 422, "{what}: {:#}", r.body);
        r.assert_problem(422, "validation_failed");
    }
    app.post_raw("/v1/investors", Some("application/json"), "{\"kind\": ")
        .await
        .assert_problem(400, "malformed_json");
    app.post_raw("/v1/investors", Some("application/json"), "")
        .await
        .assert_problem(400, "malformed_json");
    assert_eq!(count(&app).await, 0);

    // The edges of what is accepted.
    let edge = edited(|b| {
        b["email"] = json!(format!("{}@example.org", "a".repeat(242)));
        b["name"] = json!("é".repeat(200));
        b["net_worth"] = worth(json!("0.00"), json!("EUR"));
    });
    assert_json(
        &send(&app, Method::POST, "/v1/investors", &platform, &[], Some(&edge)).await,
        201,
    );
    assert_eq!(count(&app).await, 1);
}

// ---------------------------------------------------------------------------------------------
// Idempotency-Key
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn the_same_key_and_body_register_one_investor(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let platform = app.key(Role::Platform).await;
    let body = investor("Camille");
    let key = [("idempotency-key", "signup-7f3a")];
    let first = send(&app, Method::POST, "/v1/investors", &platform, &key, Some(&body)).await;
    assert_json(&first, 201);
    let again = send(&app, Method::POST, "/v1/investors", &platform, &key, Some(&body)).await;
    assert_json(&again, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(count(&app).await, 1);

    // An equal body written differently is the same request.
    let reordered = json!({
        "net_worth": {"currency": "EUR", "amount": "250000.00"},
        "country": "BE", "email": "camille.martin@example.org", "name": "Camille", "kind": "natural",
    });
    let r = send(&app, Method::POST, "/v1/investors", &platform, &key, Some(&reordered)).await;
    assert_eq!(id_of(&r), id_of(&first));

    let other = edited(|b| b["net_worth"]["amount"] = json!("250000.01"));
    send(&app, Method::POST, "/v1/investors", &platform, &key, Some(&other))
        .await
        .assert_problem(422, "idempotency_key_reused");
    assert_eq!(count(&app).await, 1);

    // Keys belong to the API key that sent them: another client's same key is its own.
    let other_platform = app.key(Role::Platform).await;
    let r = send(&app, Method::POST, "/v1/investors", &other_platform, &key, Some(&body)).await;
    assert_json(&r, 201);
    assert_ne!(id_of(&r), id_of(&first));
    assert_eq!(count(&app).await, 2);
}

#[sqlx::test]
async fn the_same_key_sent_twice_at_once_registers_one_investor(pool: PgPool) {
    let wide = common::wide_pool(&pool, 16).await;
    let app = TestApp::spawn(wide).await;
    let platform = app.key(Role::Platform).await;
    let body = investor("Concurrent");
    for round in 0..5 {
        let key = format!("concurrent-{round}");
        let headers = [("idempotency-key", key.as_str())];
        let (a, b) = tokio::join!(
            send(&app, Method::POST, "/v1/investors", &platform, &headers, Some(&body)),
            send(&app, Method::POST, "/v1/investors", &platform, &headers, Some(&body)),
        );
        assert_json(&a, 201);
        assert_json(&b, 201);
        assert_eq!(id_of(&a), id_of(&b), "round {round}");
        let replayed = [&a, &b]
            .iter()
            .filter(|r| r.headers.get("idempotent-replayed").is_some())
            .count();
        assert_eq!(replayed, 1, "one created, the other replayed");
        assert_eq!(count(&app).await, round + 1);
    }
}

#[sqlx::test]
async fn the_openapi_document_describes_investors(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app.get("/openapi.json").await;
    assert_json(&r, 200);
    for (path, method) in [
        ("/v1/investors", "post"),
        ("/v1/investors/{id}", "get"),
        ("/v1/investors/{id}/kyc", "post"),
    ] {
        let op = &r.body["paths"][path][method];
        assert_eq!(op["tags"], json!(["investors"]), "{method} {path}: {op:#}");
    }
    let schemas = &r.body["components"]["schemas"];
    for name in [
        "InvestorView",
        "InvestorInput",
        "KycDecision",
        "KycStatus",
        "Classification",
        "InvestorKind",
    ] {
        assert!(schemas.get(name).is_some(), "{name} missing from the schemas");
    }
    for path in ["/v1/investors", "/v1/investors/{id}", "/v1/investors/{id}/kyc"] {
        common::assert_refs_resolve(&r.body, &r.body["paths"][path]);
    }
}

/// The migration repeats the rules, so a writer other than the API cannot store what it refuses.
#[sqlx::test]
async fn the_database_refuses_investors_the_api_would(pool: PgPool) {
    // A valid row with some columns replaced or added.
    let insert = |changes: &'static [(&'static str, &'static str)]| {
        let pool = pool.clone();
        async move {
            let mut row = vec![
                ("kind", "'natural'"),
                ("name", "'n'"),
                ("email", "'a@b.co'"),
                ("country", "'FR'"),
            ];
            for (column, value) in changes {
                match row.iter_mut().find(|(c, _)| c == column) {
                    Some(slot) => slot.1 = value,
                    None => row.push((column, value)),
                }
            }
            let columns: Vec<&str> = row.iter().map(|(c, _)| *c).collect();
            let values: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
            let sql = format!(
                "insert into investors (id, {}, created_at, updated_at) values (gen_random_uuid(), {}, now(), now())",
                columns.join(", "),
                values.join(", ")
            );
            sqlx::query(&sql).execute(&pool).await
        }
    };
    insert(&[]).await.expect("the baseline row is valid");
    insert(&[("net_worth", "0"), ("net_worth_currency", "'EUR'")])
        .await
        .expect("zero is a net worth");
    insert(&[("kyc_status", "'verified'"), ("kyc_decided_at", "now()")])
        .await
        .expect("a decided investor");
    let refused: &[(&[(&str, &str)], &str)] = &[
        (&[("email", "'a@b'")], "investors_email_format"),
        (&[("email", "'a b@c.de'")], "investors_email_format"),
        (&[("country", "'BEL'")], "investors_country_format"),
        (&[("name", "''")], "investors_name_length"),
        (
            &[("net_worth", "-1"), ("net_worth_currency", "'EUR'")],
            "investors_net_worth_nonnegative",
        ),
        (&[("net_worth", "100")], "investors_net_worth_pair"),
        (&[("net_worth_currency", "'EUR'")], "investors_net_worth_pair"),
        (
            &[("net_worth", "1"), ("net_worth_currency", "'eur'")],
            "investors_net_worth_currency_format",
        ),
        (&[("kyc_status", "'verified'")], "investors_kyc_decided"),
    ];
    for (changes, constraint) in refused {
        let err = insert(changes).await.expect_err(constraint);
        let db = err.as_database_error().unwrap_or_else(|| panic!("{changes:?}: {err}"));
        assert_eq!(db.constraint(), Some(*constraint), "{changes:?}: {db}");
    }
}
