//! API keys over HTTP (made, used, listed without their secret, revoked with effect at once) and
//! the audit trail (which key wrote what, when by the service clock), through the real API
//! (PRODUCT.md section 11; docs/api-keys.md, docs/audit-log.md).

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{self, ok, published_project};
use crate::common::{Reply, TestApp, assert_json, id_of, race, send_as};

async fn as_key(app: &TestApp, key: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
    send_as(app, method, path, key, &[], body.as_ref()).await
}

/// A key made over HTTP by the bootstrap operator: `(id, secret)`.
async fn new_key(app: &TestApp, role: &str, name: &str) -> (String, String) {
    let r = app.post("/v1/api-keys", json!({"role": role, "name": name})).await;
    assert_json(&r, 201);
    (id_of(&r), r.body["key"].as_str().unwrap().to_string())
}

fn time(v: &Value) -> DateTime<Utc> {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[sqlx::test]
async fn keys_are_made_over_http_shown_once_listed_without_secret_and_revoked_at_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;

    // One of each role; the secret is in the answer, its first 8 characters are the prefix.
    let mut made = Vec::new();
    for role in ["operator", "platform", "auditor"] {
        let r = app
            .post("/v1/api-keys", json!({"role": role, "name": format!("{role} key")}))
            .await;
        assert_json(&r, 201);
        let fields: BTreeSet<&str> = r.body.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            BTreeSet::from(["id", "name", "role", "key", "prefix", "created_at"]),
            "{:#}",
            r.body
        );
        assert_eq!(r.body["role"], role);
        let secret = r.body["key"].as_str().unwrap().to_string();
        assert!(secret.starts_with("clk_") && secret.len() > 40, "{secret}");
        assert_eq!(r.body["prefix"], secret[..8]);
        made.push((id_of(&r), secret));
    }
    let [(operator_id, operator), (platform_id, platform), (_, auditor)] = made.try_into().unwrap();

    // Each key works, with its role's rights and no more.
    let list = ok(as_key(&app, &operator, Method::GET, "/v1/api-keys", None).await, 200).await;
    let investor = as_key(
        &app,
        &platform,
        Method::POST,
        "/v1/investors",
        Some(json!({"kind": "natural", "name": "Ana", "email": "ana@example.org", "country": "FR"})),
    )
    .await;
    assert_json(&investor, 201);
    let investor = id_of(&investor);
    let books = as_key(&app, &auditor, Method::GET, "/v1/ledger/trial-balance", None).await;
    assert_json(&books, 200);
    for key in [&platform, &auditor] {
        as_key(&app, key, Method::GET, "/v1/api-keys", None)
            .await
            .assert_problem(403, "forbidden");
        as_key(
            &app,
            key,
            Method::POST,
            "/v1/api-keys",
            Some(json!({"role": "operator", "name": "escalation"})),
        )
        .await
        .assert_problem(403, "forbidden");
        as_key(
            &app,
            key,
            Method::POST,
            &format!("/v1/api-keys/{operator_id}/revoke"),
            None,
        )
        .await
        .assert_problem(403, "forbidden");
    }

    // The list names every key, never its secret nor its hash.
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{list:#}");
    assert_eq!(items[0]["role"], "auditor", "newest first: {list:#}");
    for item in items {
        let fields: BTreeSet<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            BTreeSet::from(["id", "name", "role", "prefix", "created_at", "revoked_at"]),
            "{item:#}"
        );
    }
    let text = list.to_string();
    for secret in [&operator, &platform, &auditor] {
        assert!(!text.contains(secret.as_str()), "a secret in the list: {text}");
    }

    // Revoked: refused from the next request on. Revoking again answers the same key.
    let r = app.post(&format!("/v1/api-keys/{platform_id}/revoke"), json!({})).await;
    assert_json(&r, 200);
    assert_eq!(r.body["id"], platform_id.as_str());
    assert!(r.body.get("key").is_none(), "{:#}", r.body);
    let revoked_at = time(&r.body["revoked_at"]);
    as_key(&app, &platform, Method::GET, &format!("/v1/investors/{investor}"), None)
        .await
        .assert_problem(401, "unauthorized");
    app.clock.advance(60).unwrap();
    let again = app.post(&format!("/v1/api-keys/{platform_id}/revoke"), json!({})).await;
    assert_json(&again, 200);
    assert_eq!(
        time(&again.body["revoked_at"]),
        revoked_at,
        "the first revocation stands"
    );
    app.post(&format!("/v1/api-keys/{}/revoke", uuid::Uuid::new_v4()), json!({}))
        .await
        .assert_problem(404, "not_found");
    let list = ok(app.get("/v1/api-keys").await, 200).await;
    let shown = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == platform_id.as_str())
        .unwrap();
    assert_eq!(time(&shown["revoked_at"]), revoked_at);
    // An operator may revoke even the key it calls with; it stops working at once.
    let r = as_key(
        &app,
        &operator,
        Method::POST,
        &format!("/v1/api-keys/{operator_id}/revoke"),
        None,
    )
    .await;
    assert_json(&r, 200);
    as_key(&app, &operator, Method::GET, "/v1/api-keys", None)
        .await
        .assert_problem(401, "unauthorized");
}

#[sqlx::test]
async fn a_key_request_is_checked_and_a_replay_never_shows_the_secret(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for (body, param) in [
        (json!({"role": "superuser", "name": "x"}), "role"),
        (json!({"name": "x"}), "role"),
        (json!({"role": "platform", "name": ""}), "name"),
        (json!({"role": "platform", "name": "  "}), "name"),
        (json!({"role": "platform", "name": "n".repeat(101)}), "name"),
        (json!({"role": "platform"}), "name"),
    ] {
        let r = app.post("/v1/api-keys", body.clone()).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["param"], param, "{body}: {:#}", r.body);
    }
    let longest = app
        .post("/v1/api-keys", json!({"role": "platform", "name": "n".repeat(100)}))
        .await;
    assert_json(&longest, 201);

    // The same Idempotency-Key and body: the same key again, without its secret.
    let headers = [("idempotency-key", "key-for-the-front-end")];
    let body = json!({"role": "platform", "name": "front-end"});
    let first = send_as(
        &app,
        Method::POST,
        "/v1/api-keys",
        crate::common::OPERATOR_KEY,
        &headers,
        Some(&body),
    )
    .await;
    assert_json(&first, 201);
    let secret = first.body["key"].as_str().unwrap().to_string();
    let replay = send_as(
        &app,
        Method::POST,
        "/v1/api-keys",
        crate::common::OPERATOR_KEY,
        &headers,
        Some(&body),
    )
    .await;
    assert_json(&replay, 201);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body["id"], first.body["id"]);
    assert_eq!(replay.body["prefix"], first.body["prefix"]);
    assert_eq!(replay.body["key"], Value::Null, "{:#}", replay.body);
    let stored: Vec<String> = sqlx::query_scalar("select response_body from idempotency_keys")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(stored.iter().all(|b| !b.contains(&secret)), "{stored:?}");
    let keys = ok(app.get("/v1/api-keys").await, 200).await;
    assert_eq!(keys["items"].as_array().unwrap().len(), 2, "made once: {keys:#}");
    // The secret of the first answer works.
    let r = as_key(&app, &secret, Method::GET, "/v1/projects", None).await;
    assert_json(&r, 200);
}

#[sqlx::test]
async fn the_audit_log_says_which_key_wrote_what_and_when_by_the_service_clock(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // Far from the wall clock: the times below can only be the service's.
    app.clock.set("2031-03-01T09:00:00Z".parse().unwrap()).unwrap();
    let (operator_id, operator) = new_key(&app, "operator", "back-office").await;
    let (platform_id, platform) = new_key(&app, "platform", "front-end").await;
    let (_, auditor) = new_key(&app, "auditor", "auditor").await;

    let before_create = app.clock.now();
    let project = as_key(
        &app,
        &operator,
        Method::POST,
        "/v1/projects",
        Some(json!({
            "name": "Crois/Sens", "legal_name": "Crois/Sens SAS", "legal_form": "SAS", "country": "FR",
            "territory": "Pays de Brest", "themes": ["employment"], "description": "A social enterprise.",
            "impact_indicators": [],
        })),
    )
    .await;
    assert_json(&project, 201);
    let project = id_of(&project);
    let after_create = app.clock.now();
    app.clock.advance(86_400).unwrap();
    let before_publish = app.clock.now();
    let published = as_key(
        &app,
        &operator,
        Method::POST,
        &format!("/v1/projects/{project}/publish"),
        None,
    )
    .await;
    assert_json(&published, 200);
    let after_publish = app.clock.now();

    let trail = ok(
        as_key(
            &app,
            &auditor,
            Method::GET,
            &format!("/v1/audit-log?object_id={project}"),
            None,
        )
        .await,
        200,
    )
    .await;
    let items = trail["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{trail:#}");
    let (publish, create) = (&items[0], &items[1]);
    assert_eq!(
        (&publish["method"], &publish["route"], &publish["status"]),
        (&json!("POST"), &json!("/v1/projects/{id}/publish"), &json!(200)),
        "{publish:#}"
    );
    assert_eq!(
        (&create["method"], &create["route"], &create["status"]),
        (&json!("POST"), &json!("/v1/projects"), &json!(201)),
        "{create:#}"
    );
    for (item, from, to) in [
        (publish, before_publish, after_publish),
        (create, before_create, after_create),
    ] {
        assert_eq!(item["key_id"], operator_id.as_str(), "{item:#}");
        assert_eq!(item["role"], "operator");
        assert_eq!(item["object_id"], project.as_str());
        let at = time(&item["at"]);
        assert!(from <= at && at <= to, "{at} outside {from}..{to}");
    }
    assert!(time(&publish["at"]) - time(&create["at"]) >= TimeDelta::days(1));

    // A pledge by the platform's key, on an offer the operator opened.
    let now = app.clock.now();
    let offer = as_key(
        &app,
        &operator,
        Method::POST,
        &format!("/v1/projects/{project}/offers"),
        Some(json!({
            "currency": "EUR", "share_price": "10.00", "min_target": "100.00", "max_target": "1000.00",
            "min_ticket": "10.00", "opens_at": now.to_rfc3339(),
            "closes_at": (now + TimeDelta::days(7)).to_rfc3339(),
            "success_fee_rate": "0.05", "allocation": "first_come",
        })),
    )
    .await;
    assert_json(&offer, 201);
    let offer = id_of(&offer);
    let kiis = json!({"kind": "kiis", "language": "fr", "url": "https://platform.example/kiis-fr.pdf",
                      "sha256": fixtures::KIIS_SHA256});
    assert_json(
        &as_key(
            &app,
            &operator,
            Method::POST,
            &format!("/v1/offers/{offer}/documents"),
            Some(kiis),
        )
        .await,
        201,
    );
    assert_json(
        &as_key(&app, &operator, Method::POST, &format!("/v1/offers/{offer}/open"), None).await,
        200,
    );
    let investor = as_key(
        &app,
        &platform,
        Method::POST,
        "/v1/investors",
        Some(
            json!({"kind": "natural", "name": "Ana", "email": "ana@example.org", "country": "FR",
                    "classification": "sophisticated"}),
        ),
    )
    .await;
    assert_json(&investor, 201);
    let investor = id_of(&investor);
    assert_json(
        &app.post(&format!("/v1/investors/{investor}/kyc"), json!({"status": "verified"}))
            .await,
        200,
    );
    let pledge_body = json!({"investor_id": investor, "shares": 10, "funding": [{"kind": "card", "amount": "100.00"}],
                             "kiis_sha256": fixtures::KIIS_SHA256});
    let pledge_path = format!("/v1/offers/{offer}/pledges");
    let idempotency = [("idempotency-key", "pledge-1")];
    let before_pledge = app.clock.now();
    let pledge = send_as(
        &app,
        Method::POST,
        &pledge_path,
        &platform,
        &idempotency,
        Some(&pledge_body),
    )
    .await;
    assert_json(&pledge, 201);
    let after_pledge = app.clock.now();
    let pledge = id_of(&pledge);
    // A replay changes nothing and is not a second write; a refused write is none either.
    let replay = send_as(
        &app,
        Method::POST,
        &pledge_path,
        &platform,
        &idempotency,
        Some(&pledge_body),
    )
    .await;
    assert_json(&replay, 201);
    as_key(&app, &platform, Method::POST, "/v1/investors", Some(json!({})))
        .await
        .assert_problem(422, "validation_failed");

    let trail = ok(app.get(&format!("/v1/audit-log?object_id={pledge}")).await, 200).await;
    let items = trail["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{trail:#}");
    let item = &items[0];
    assert_eq!(item["key_id"], platform_id.as_str(), "{item:#}");
    assert_eq!(item["role"], "platform");
    assert_eq!(item["method"], "POST");
    assert_eq!(item["route"], "/v1/offers/{id}/pledges");
    assert_eq!(item["status"], 201);
    let at = time(&item["at"]);
    assert!(before_pledge <= at && at <= after_pledge, "{at}");

    // By key: everything the platform's key wrote, newest first.
    let by_key = ok(app.get(&format!("/v1/audit-log?key_id={platform_id}")).await, 200).await;
    let routes: Vec<(&str, &str)> = by_key["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["route"].as_str().unwrap(), i["object_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        routes,
        [
            ("/v1/offers/{id}/pledges", pledge.as_str()),
            ("/v1/investors", investor.as_str())
        ],
        "{by_key:#}"
    );
    // The bootstrap key's writes name no key; the operator's KYC decision is one.
    let kyc = ok(app.get(&format!("/v1/audit-log?object_id={investor}")).await, 200).await;
    let first = &kyc["items"][0];
    assert_eq!(first["route"], "/v1/investors/{id}/kyc", "{kyc:#}");
    assert_eq!(first["key_id"], Value::Null);
    assert_eq!(first["role"], "operator");

    // Readers are operators and auditors.
    as_key(&app, &platform, Method::GET, "/v1/audit-log", None)
        .await
        .assert_problem(403, "forbidden");
}

/// Pledges, on the hot path, keep their author on their own row rather than in a row of
/// `audit_log` (docs/audit-log.md): the trail reads their creations from there, merged in
/// order with the other writes and paged across both, whichever path made them (the offer's
/// batch for card pledges, a transaction of its own for a cheque's).
#[sqlx::test]
async fn pledges_are_in_the_trail_from_their_own_rows_in_order_with_other_writes(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (platform_id, platform) = new_key(&app, "platform", "front-end").await;
    let world = fixtures::world(&app, 8).await;
    let path = format!("/v1/offers/{}/pledges", world.offer);
    // Revocable: her pledge is written to again below.
    let carol = fixtures::investor(&app, "Carol", "non_sophisticated").await;
    let pledge_as = |i: usize, investor: &str, key: &str| {
        let body = json!({"investor_id": investor, "shares": 2,
                          "funding": [{"kind": "card", "amount": "20.00"}], "kiis_sha256": fixtures::KIIS_SHA256});
        let (app, path, key) = (&app, &path, key.to_string());
        async move {
            let idempotency = format!("trail-{i}");
            let r = send_as(
                app,
                Method::POST,
                path,
                &key,
                &[("idempotency-key", &idempotency)],
                Some(&body),
            )
            .await;
            assert_json(&r, 201);
            id_of(&r)
        }
    };
    // Concurrent pledges share batches; then a write of another kind, then more pledges.
    let mut first: Vec<String> = race(6, |i| pledge_as(i, &world.investors[i], &platform)).await;
    first.sort();
    let between = as_key(
        &app,
        &platform,
        Method::POST,
        "/v1/investors",
        Some(
            json!({"kind": "natural", "name": "Zoe", "email": "zoe@example.org", "country": "FR",
                    "classification": "sophisticated"}),
        ),
    )
    .await;
    assert_json(&between, 201);
    let between = id_of(&between);
    let last = pledge_as(6, &carol, &platform).await;
    // By the bootstrap operator key: no key id, the operator's role.
    let by_operator = pledge_as(7, &world.investors[7], crate::common::OPERATOR_KEY).await;
    // A cheque pledge is written in a transaction of its own.
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour", "100.00").await;
    let cheque = app
        .post(
            "/v1/cheques",
            json!({"sponsor_id": sponsor, "beneficiary_name": "Winner",
        "beneficiary_email": "winner@example.org", "face_value": "20.00", "currency": "EUR",
        "expires_at": (app.clock.now() + TimeDelta::days(30)).to_rfc3339()}),
        )
        .await;
    assert_json(&cheque, 201);
    let winner = fixtures::investor(&app, "Winner", "sophisticated").await;
    let by_cheque = send_as(
        &app,
        Method::POST,
        &path,
        &platform,
        &[("idempotency-key", "cheque")],
        Some(&json!({"investor_id": winner, "shares": 2,
                     "funding": [{"kind": "cheque", "cheque_code": cheque.body["code"], "amount": "20.00"}],
                     "kiis_sha256": fixtures::KIIS_SHA256})),
    )
    .await;
    assert_json(&by_cheque, 201);
    let by_cheque = id_of(&by_cheque);

    let pledges: Vec<&String> = first.iter().chain([&last, &by_operator, &by_cheque]).collect();
    let stored: i64 = sqlx::query_scalar("select count(*) from audit_log where object_id = any($1)")
        .bind(pledges.iter().map(|p| p.as_str()).collect::<Vec<_>>())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "no row of audit_log for a pledge");

    // The platform key's writes, newest first: the pledges' creations merged with the other
    // write, and in pages of 3 across both sources the same, none twice, none missed.
    let all = ok(app.get(&format!("/v1/audit-log?key_id={platform_id}")).await, 200).await;
    let all = all["items"].as_array().unwrap();
    let objects: Vec<&str> = all.iter().map(|i| i["object_id"].as_str().unwrap()).collect();
    let mut expected = vec![by_cheque.as_str(), last.as_str(), between.as_str()];
    expected.extend(first.iter().rev().map(String::as_str));
    assert_eq!(objects, expected);
    for item in all.iter().filter(|i| i["route"] == "/v1/offers/{id}/pledges") {
        assert_eq!(
            item["id"], item["object_id"],
            "a pledge's creation has its id: {item:#}"
        );
        assert_eq!(
            (&item["role"], &item["method"], &item["status"]),
            (&json!("platform"), &json!("POST"), &json!(201))
        );
    }
    let paged = pages(&app, &format!("/v1/audit-log?key_id={platform_id}&limit=3")).await;
    assert_eq!(paged.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3]);
    let ids: Vec<&str> = all.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(paged.concat(), ids);

    let operator = ok(app.get(&format!("/v1/audit-log?object_id={by_operator}")).await, 200).await;
    let items = operator["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{operator:#}");
    assert_eq!(
        (&items[0]["key_id"], &items[0]["role"]),
        (&Value::Null, &json!("operator"))
    );
    // A later write to a pledge is recorded as any other and read beside its creation.
    let revoked = as_key(
        &app,
        &platform,
        Method::POST,
        &format!("/v1/pledges/{last}/revoke"),
        None,
    )
    .await;
    assert_json(&revoked, 200);
    let both = ok(app.get(&format!("/v1/audit-log?object_id={last}")).await, 200).await;
    let routes: Vec<&str> = both["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["route"].as_str().unwrap())
        .collect();
    assert_eq!(
        routes,
        ["/v1/pledges/{id}/revoke", "/v1/offers/{id}/pledges"],
        "{both:#}"
    );
}

/// Follows `next_cursor` from `path` (which has a `?`) to the end: the ids of every page.
async fn pages(app: &TestApp, path: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_string(),
        };
        let page = ok(app.get(&url).await, 200).await;
        pages.push(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect(),
        );
        match page.get("next_cursor") {
            Some(c) => cursor = Some(c.as_str().unwrap().to_string()),
            None => return pages,
        }
        assert!(pages.len() < 20, "{pages:?}");
    }
}

#[sqlx::test]
async fn the_audit_log_and_the_keys_come_in_pages(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (key_id, key) = new_key(&app, "operator", "pager").await;
    for _ in 0..5 {
        published_project(&app).await;
        let r = as_key(
            &app,
            &key,
            Method::POST,
            "/v1/sandbox/clock",
            Some(json!({"advance_seconds": 60})),
        )
        .await;
        assert_json(&r, 200);
    }
    // The clock writes name no object.
    let all = ok(app.get(&format!("/v1/audit-log?key_id={key_id}")).await, 200).await;
    let all: Vec<&Value> = all["items"].as_array().unwrap().iter().collect();
    assert_eq!(all.len(), 5);
    assert!(
        all.iter()
            .all(|i| i["object_id"].is_null() && i["route"] == "/v1/sandbox/clock")
    );
    let times: Vec<DateTime<Utc>> = all.iter().map(|i| time(&i["at"])).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "newest first: {times:?}");

    let paged = pages(&app, &format!("/v1/audit-log?key_id={key_id}&limit=2")).await;
    assert_eq!(paged.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let ids: Vec<&str> = all.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(paged.concat(), ids, "no repeat, no gap");
    // A page exactly as large as what is left is the last one.
    let exact = ok(app.get(&format!("/v1/audit-log?key_id={key_id}&limit=5")).await, 200).await;
    assert!(exact.get("next_cursor").is_none(), "{exact:#}");
    // The whole trail: the bootstrap key's 10 writes (5 creates, 5 publishes), the key's
    // creation, and the 5 clock moves.
    let everything = pages(&app, "/v1/audit-log?limit=7").await;
    assert_eq!(everything.iter().map(Vec::len).collect::<Vec<_>>(), [7, 7, 2]);

    for (path, param) in [
        ("/v1/audit-log?cursor=not-a-cursor", "cursor"),
        ("/v1/audit-log?limit=0", "limit"),
        ("/v1/audit-log?limit=1001", "limit"),
        ("/v1/audit-log?key_id=nope", "key_id"),
        ("/v1/api-keys?cursor=bm9wZQ", "cursor"),
        ("/v1/api-keys?limit=0", "limit"),
    ] {
        let r = app.get(path).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["param"], param, "{path}: {:#}", r.body);
    }
    for path in ["/v1/audit-log?object=x", "/v1/api-keys?role=platform"] {
        app.get(path).await.assert_problem(422, "validation_failed");
    }

    // Keys: 1 made above and 4 more, in pages of 2.
    for n in 0..4 {
        new_key(&app, "auditor", &format!("reader {n}")).await;
    }
    let paged = pages(&app, "/v1/api-keys?limit=2").await;
    assert_eq!(paged.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let flat = paged.concat();
    assert_eq!(flat.last().unwrap(), &key_id, "oldest last: {flat:?}");
    assert_eq!(flat.iter().collect::<BTreeSet<_>>().len(), 5, "no repeat: {flat:?}");
}

#[sqlx::test]
async fn the_audit_log_is_purged_only_when_a_retention_is_set(pool: PgPool) {
    let app = TestApp::spawn_with(pool, &[("CROWDLEDGER__RETENTION__AUDIT_LOG_DAYS", "5")]).await;
    let start = app.clock.now();
    published_project(&app).await;
    let old = format!(
        "select count(*) from audit_log where at < '{}'::timestamptz",
        start + TimeDelta::hours(1)
    );
    let count = || async { sqlx::query_scalar::<_, i64>(&old).fetch_one(&app.pool).await.unwrap() };
    ok(app.get("/v1/audit-log?limit=1").await, 200).await;
    assert_eq!(count().await, 2);
    app.clock.advance(4 * 86_400).unwrap();
    published_project(&app).await;
    ok(app.get("/v1/audit-log?limit=1").await, 200).await;
    app.clock.advance(2 * 86_400).unwrap();
    app.wait_for_value(count, |n| *n == 0).await;
    let left = ok(app.get("/v1/audit-log").await, 200).await;
    assert_eq!(
        left["items"].as_array().unwrap().len(),
        2,
        "the 4-day-old writes are kept: {left:#}"
    );
}
