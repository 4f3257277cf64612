//! Who may call what: every route of the API, as the service's own `/openapi.json` lists it,
//! called by six callers (no key, a wrong key, a revoked key, and a key of each role), each
//! answered as PRODUCT.md's roles table says. The table below names every route; the test fails
//! when the document has a route the table does not name, or the other way round, so a new
//! route cannot escape the matrix. And the sandbox's controls exist only with a manual clock.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crowdledger::keys::{self, Role};
use futures::StreamExt;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::fixtures::{
    funded_pledge, funded_sponsor, investor, ok, open_offer, published_project, small_open_offer,
};
use crate::common::{self, Reply, TestApp, send};

/// Who may call a route.
#[derive(Clone, Copy, Debug)]
enum Access {
    /// No key needed; a key, good or bad, changes nothing.
    Public,
    /// A provider's signature, never an API key: without one, everybody gets 401 `invalid_signature`.
    Signature,
    /// A provider's unsigned notification, read back from its API, never an API key: everybody
    /// gets the same answer, here 400 `malformed_request` for a query that is not one.
    Unsigned,
    /// A key with one of these roles; other roles get 403, no usable key 401.
    Roles(&'static [Role]),
}

use Access::{Public, Roles, Signature, Unsigned};

const OPERATOR: &[Role] = &[Role::Operator];
/// `platform` in PRODUCT.md's table; the operator may do everything.
const PLATFORM: &[Role] = &[Role::Operator, Role::Platform];
/// `operator, auditor`: the books and the lists.
const BOOKS: &[Role] = &[Role::Operator, Role::Auditor];
/// `any`: reads of the catalogue and of offers.
const ANY: &[Role] = &[Role::Operator, Role::Platform, Role::Auditor];

/// PRODUCT.md section 8, one row per (method, path template) of `/openapi.json`. Routes the
/// table there does not name (archive, deposits' reads, the manual books, the quarantine) are
/// the operator's, who "may do everything".
const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/health", Public),
    ("GET", "/ready", Public),
    ("POST", "/v1/projects", Roles(OPERATOR)),
    ("GET", "/v1/projects", Roles(ANY)),
    ("GET", "/v1/projects/{id}", Roles(ANY)),
    ("POST", "/v1/projects/{id}/publish", Roles(OPERATOR)),
    ("POST", "/v1/projects/{id}/archive", Roles(OPERATOR)),
    ("PUT", "/v1/projects/{id}/payout-details", Roles(OPERATOR)),
    ("POST", "/v1/investors", Roles(PLATFORM)),
    ("GET", "/v1/investors", Roles(PLATFORM)),
    ("GET", "/v1/investors/{id}", Roles(PLATFORM)),
    ("GET", "/v1/investors/{id}/pledges", Roles(PLATFORM)),
    ("GET", "/v1/investors/{id}/holdings", Roles(PLATFORM)),
    ("POST", "/v1/investors/{id}/kyc", Roles(OPERATOR)),
    // PRODUCT.md section 12: reclassification is the operator's decision; the platform records
    // its appropriateness tests.
    ("POST", "/v1/investors/{id}/classification", Roles(OPERATOR)),
    ("POST", "/v1/investors/{id}/appropriateness", Roles(PLATFORM)),
    ("GET", "/v1/investors/{id}/appropriateness", Roles(PLATFORM)),
    ("POST", "/v1/projects/{id}/offers", Roles(OPERATOR)),
    ("GET", "/v1/projects/{id}/offers", Roles(ANY)),
    ("GET", "/v1/offers", Roles(ANY)),
    ("GET", "/v1/offers/{id}", Roles(ANY)),
    ("POST", "/v1/offers/{id}/open", Roles(OPERATOR)),
    ("POST", "/v1/offers/{id}/close", Roles(OPERATOR)),
    ("POST", "/v1/offers/{id}/cancel", Roles(OPERATOR)),
    ("POST", "/v1/offers/{id}/documents", Roles(OPERATOR)),
    ("GET", "/v1/offers/{id}/documents", Roles(ANY)),
    ("GET", "/v1/offers/{id}/pledges", Roles(BOOKS)),
    ("GET", "/v1/offers/{id}/cap-table", Roles(BOOKS)),
    ("POST", "/v1/offers/{id}/payouts", Roles(OPERATOR)),
    ("GET", "/v1/payouts", Roles(BOOKS)),
    ("GET", "/v1/payouts/{id}", Roles(BOOKS)),
    ("POST", "/v1/offers/{id}/pledges", Roles(PLATFORM)),
    ("GET", "/v1/pledges/{id}", Roles(PLATFORM)),
    ("POST", "/v1/pledges/{id}/revoke", Roles(PLATFORM)),
    ("POST", "/v1/pledges/{id}/reconfirm", Roles(PLATFORM)),
    ("GET", "/v1/pledges/{id}/payment-session", Roles(PLATFORM)),
    ("GET", "/v1/refunds", Roles(ANY)),
    ("GET", "/v1/refunds/{id}", Roles(ANY)),
    ("POST", "/v1/sponsors", Roles(OPERATOR)),
    ("GET", "/v1/sponsors", Roles(OPERATOR)),
    ("GET", "/v1/sponsors/{id}", Roles(OPERATOR)),
    ("GET", "/v1/sponsors/{id}/cheques", Roles(OPERATOR)),
    ("GET", "/v1/sponsors/{id}/deposits", Roles(OPERATOR)),
    ("POST", "/v1/sponsors/{id}/deposits", Roles(OPERATOR)),
    ("GET", "/v1/sponsors/{id}/match-pools", Roles(BOOKS)),
    ("POST", "/v1/sponsors/{id}/match-pools", Roles(OPERATOR)),
    ("GET", "/v1/match-pools/{id}", Roles(BOOKS)),
    ("GET", "/v1/match-pools/{id}/matches", Roles(BOOKS)),
    ("GET", "/v1/deposits/{id}", Roles(OPERATOR)),
    ("GET", "/v1/sponsors/{id}/withdrawals", Roles(OPERATOR)),
    ("POST", "/v1/sponsors/{id}/withdrawals", Roles(OPERATOR)),
    ("GET", "/v1/withdrawals/{id}", Roles(OPERATOR)),
    // PRODUCT.md section 13: a sponsor's report, read with the books.
    ("GET", "/v1/sponsors/{id}/statement", Roles(BOOKS)),
    ("POST", "/v1/cheques", Roles(OPERATOR)),
    ("GET", "/v1/cheques/{id}", Roles(OPERATOR)),
    ("POST", "/v1/cheques/{id}/cancel", Roles(OPERATOR)),
    // PRODUCT.md section 13: the platform looks a cheque up for its winner, as it pledges.
    ("POST", "/v1/cheques/lookup", Roles(PLATFORM)),
    ("GET", "/v1/ledger/accounts", Roles(BOOKS)),
    ("POST", "/v1/ledger/accounts", Roles(OPERATOR)),
    ("GET", "/v1/ledger/accounts/{id}", Roles(BOOKS)),
    ("GET", "/v1/ledger/accounts/{id}/entries", Roles(BOOKS)),
    ("POST", "/v1/ledger/entries", Roles(OPERATOR)),
    ("GET", "/v1/ledger/entries/{id}", Roles(BOOKS)),
    ("POST", "/v1/ledger/entries/{id}/reverse", Roles(OPERATOR)),
    ("GET", "/v1/ledger/trial-balance", Roles(BOOKS)),
    ("GET", "/v1/ledger/verify", Roles(BOOKS)),
    ("POST", "/v1/webhooks/{provider}", Signature),
    ("GET", "/v1/webhooks/{provider}", Unsigned),
    ("GET", "/v1/webhooks/quarantine", Roles(OPERATOR)),
    ("POST", "/v1/webhook-endpoints", Roles(OPERATOR)),
    ("GET", "/v1/webhook-endpoints", Roles(OPERATOR)),
    ("GET", "/v1/webhook-endpoints/{id}", Roles(OPERATOR)),
    ("PATCH", "/v1/webhook-endpoints/{id}", Roles(OPERATOR)),
    ("DELETE", "/v1/webhook-endpoints/{id}", Roles(OPERATOR)),
    ("GET", "/v1/webhook-endpoints/{id}/deliveries", Roles(OPERATOR)),
    ("POST", "/v1/webhook-endpoints/{id}/rotate-secret", Roles(OPERATOR)),
    ("POST", "/v1/webhook-deliveries/{id}/redeliver", Roles(OPERATOR)),
    ("GET", "/v1/events", Roles(BOOKS)),
    ("GET", "/v1/events/{id}", Roles(BOOKS)),
    ("POST", "/v1/sandbox/payments/{id}/succeed", Roles(OPERATOR)),
    ("POST", "/v1/sandbox/payments/{id}/fail", Roles(OPERATOR)),
    ("POST", "/v1/sandbox/payments/{id}/dispute", Roles(OPERATOR)),
    ("POST", "/v1/sandbox/disputes/{id}/close", Roles(OPERATOR)),
    ("POST", "/v1/sandbox/refunds/{id}/succeed", Roles(OPERATOR)),
    ("POST", "/v1/sandbox/payouts/{id}/succeed", Roles(OPERATOR)),
    ("POST", "/v1/sandbox/deposits/{id}/succeed", Roles(OPERATOR)),
    ("POST", "/v1/sandbox/withdrawals/{id}/succeed", Roles(OPERATOR)),
    ("GET", "/v1/sandbox/clock", Roles(OPERATOR)),
    ("POST", "/v1/sandbox/clock", Roles(OPERATOR)),
    // PRODUCT.md section 11. The matrix's create has an empty body (422), so it makes no key.
    ("POST", "/v1/api-keys", Roles(OPERATOR)),
    ("GET", "/v1/api-keys", Roles(OPERATOR)),
    ("POST", "/v1/api-keys/{id}/revoke", Roles(OPERATOR)),
    ("GET", "/v1/audit-log", Roles(BOOKS)),
];

/// Served beside the document, not in it.
const UNDOCUMENTED: &[(&str, &str, Access)] = &[("GET", "/openapi.json", Public), ("GET", "/docs", Public)];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Caller {
    NoKey,
    WrongKey,
    RevokedKey,
    Role(Role),
}

const CALLERS: [Caller; 6] = [
    Caller::NoKey,
    Caller::WrongKey,
    Caller::RevokedKey,
    Caller::Role(Role::Operator),
    Caller::Role(Role::Platform),
    Caller::Role(Role::Auditor),
];

/// The (method, path template) pairs `/openapi.json` documents.
async fn documented(app: &TestApp) -> BTreeSet<(String, String)> {
    let doc = send(app, Method::GET, "/openapi.json", &[], None).await;
    assert_eq!(doc.status, 200, "{:#}", doc.body);
    let paths = doc.body["paths"].as_object().expect("the document has paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item is an object");
            methods
                .keys()
                .filter(|m| ["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&m.as_str()))
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn table_routes(table: &[(&str, &str, Access)]) -> BTreeSet<(String, String)> {
    table.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect()
}

/// Real resources for the reads to find, so an allowed read must answer 200, keyed by the read's
/// path template.
async fn real_ids(app: &TestApp) -> HashMap<&'static str, String> {
    let project = published_project(app).await;
    let offer = open_offer(
        app,
        &project,
        json!({"min_target": "100.00", "max_target": "1000.00"}),
        7,
    )
    .await;
    let who = investor(app, "Sophie", "sophisticated").await;
    // A non-sophisticated investor has an appropriateness record to list.
    let retail = investor(app, "Carol", "non_sophisticated").await;
    let pledge = id_of_value(&funded_pledge(app, &offer, &who, 10).await);
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    // A round cancelled with a funded pledge: its refund.
    let (_, cancelled) = small_open_offer(app).await;
    funded_pledge(app, &cancelled, &who, 5).await;
    ok(
        app.post(&format!("/v1/offers/{cancelled}/cancel"), json!({})).await,
        200,
    )
    .await;
    // A pledge still waiting for its payment: its payment session.
    let (_, open) = small_open_offer(app).await;
    let waiting = id_of_value(&ok(crate::common::fixtures::pledge(app, &open, &who, 1, "10.00").await, 201).await);
    let refund: Uuid = sqlx::query_scalar("select id from refunds")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let payout = ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 201).await;
    let sponsor = funded_sponsor(app, "SenseTour Belgium", "1000.00").await;
    let cheque = ok(
        app.post(
            "/v1/cheques",
            json!({"sponsor_id": sponsor, "beneficiary_name": "Winner", "beneficiary_email": "winner@example.org",
                   "face_value": "200.00", "currency": "EUR",
                   "expires_at": (app.clock.now() + chrono::TimeDelta::days(30)).to_rfc3339()}),
        )
        .await,
        201,
    )
    .await;
    let match_pool = ok(
        app.post(
            &format!("/v1/sponsors/{sponsor}/match-pools"),
            json!({"amount": "100.00", "ratio": "1", "max_per_pledge": "10.00", "max_per_project": "50.00",
                   "expires_at": (app.clock.now() + chrono::TimeDelta::days(30)).to_rfc3339()}),
        )
        .await,
        201,
    )
    .await;
    let endpoint = ok(
        app.post(
            "/v1/webhook-endpoints",
            json!({"url": "http://127.0.0.1:9/hooks", "events": ["pledge.funded"]}),
        )
        .await,
        201,
    )
    .await;
    let withdrawal = ok(
        app.post(
            &format!("/v1/sponsors/{sponsor}/withdrawals"),
            json!({"amount": "100.00"}),
        )
        .await,
        201,
    )
    .await;
    let deposit: Uuid = sqlx::query_scalar("select id from deposits where sponsor_id = $1")
        .bind(sponsor.parse::<Uuid>().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let (account, entry): (Uuid, Uuid) = sqlx::query_as("select account_id, entry_id from ledger_postings limit 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let event: Uuid = sqlx::query_scalar("select id from outbox_events limit 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    HashMap::from([
        ("/v1/projects/{id}", project.clone()),
        ("/v1/projects/{id}/offers", project),
        ("/v1/investors/{id}", who.clone()),
        ("/v1/investors/{id}/pledges", who.clone()),
        ("/v1/investors/{id}/holdings", who),
        ("/v1/investors/{id}/appropriateness", retail),
        ("/v1/offers/{id}", offer.clone()),
        ("/v1/offers/{id}/pledges", offer.clone()),
        ("/v1/offers/{id}/cap-table", offer.clone()),
        ("/v1/offers/{id}/documents", offer),
        ("/v1/pledges/{id}", pledge),
        ("/v1/pledges/{id}/payment-session", waiting),
        ("/v1/refunds/{id}", refund.to_string()),
        ("/v1/sponsors/{id}", sponsor.clone()),
        ("/v1/sponsors/{id}/cheques", sponsor.clone()),
        ("/v1/sponsors/{id}/match-pools", sponsor.clone()),
        ("/v1/match-pools/{id}", id_of_value(&match_pool)),
        ("/v1/match-pools/{id}/matches", id_of_value(&match_pool)),
        ("/v1/sponsors/{id}/deposits", sponsor.clone()),
        ("/v1/sponsors/{id}/withdrawals", sponsor.clone()),
        ("/v1/sponsors/{id}/statement", sponsor),
        ("/v1/withdrawals/{id}", id_of_value(&withdrawal)),
        ("/v1/payouts/{id}", id_of_value(&payout)),
        ("/v1/deposits/{id}", deposit.to_string()),
        ("/v1/cheques/{id}", id_of_value(&cheque)),
        ("/v1/ledger/accounts/{id}", account.to_string()),
        ("/v1/ledger/accounts/{id}/entries", account.to_string()),
        ("/v1/ledger/entries/{id}", entry.to_string()),
        ("/v1/webhook-endpoints/{id}", id_of_value(&endpoint)),
        ("/v1/webhook-endpoints/{id}/deliveries", id_of_value(&endpoint)),
        ("/v1/events/{id}", event.to_string()),
    ])
}

fn id_of_value(v: &serde_json::Value) -> String {
    v["id"].as_str().expect("the resource has an id").to_string()
}

/// The path to call for a template: reads get the real resource (a template without one is a
/// mistake in this test), writes a made-up id, so that an allowed write answers 404 or 422
/// and changes nothing the other calls read.
fn concrete(method: &str, template: &str, ids: &HashMap<&str, String>) -> String {
    // Signed events are posted to the sandbox; unsigned notifications come from Mangopay.
    let provider = if method == "GET" { "mangopay" } else { "sandbox" };
    let template = &template.replace("{provider}", provider);
    if !template.contains('{') {
        return template.to_string();
    }
    if method == "GET" {
        let id = ids
            .get(template.as_str())
            .unwrap_or_else(|| panic!("no real id for GET {template}: add one to real_ids"));
        return template.replace("{id}", id);
    }
    template.replace("{id}", &Uuid::new_v4().to_string())
}

/// Checks one answer against the table; returns what is wrong with it.
fn judge(method: &str, access: Access, caller: Caller, r: &Reply) -> Result<(), String> {
    let problem = |status: u16, code: &str| -> Result<(), String> {
        let right = r.status.as_u16() == status
            && r.content_type == "application/problem+json"
            && r.body["code"] == code
            && r.body["status"] == status;
        if right {
            Ok(())
        } else {
            Err(format!("expected {status} {code}"))
        }
    };
    let through = || -> Result<(), String> {
        let s = r.status.as_u16();
        if s == 401 || s == 403 || r.status.is_server_error() {
            Err("expected to get through".into())
        } else if method == "GET" && s != 200 {
            Err("expected 200 for a read of a real resource".into())
        } else {
            Ok(())
        }
    };
    match (access, caller) {
        (Public, _) => through(),
        (Signature, _) => problem(401, "invalid_signature"),
        (Unsigned, _) => problem(400, "malformed_request"),
        (Roles(_), Caller::NoKey | Caller::WrongKey | Caller::RevokedKey) => {
            problem(401, "unauthorized")?;
            match r.headers.get("www-authenticate").map(|v| v.to_str().unwrap_or("")) {
                Some("Bearer") => Ok(()),
                other => Err(format!("expected WWW-Authenticate: Bearer, got {other:?}")),
            }
        }
        (Roles(roles), Caller::Role(role)) if roles.contains(&role) => through(),
        (Roles(_), Caller::Role(_)) => problem(403, "forbidden"),
    }
}

#[sqlx::test]
async fn every_route_answers_every_caller_as_the_roles_table_says(pool: PgPool) {
    // Mangopay's notifications are served once its client is configured (not as the card
    // provider: every other route answers as on the sandbox).
    let mangopay = crowdledger_provider_fakes::mangopay::MangopayFake::start().await;
    let base = mangopay.base_url();
    let extra = [("CROWDLEDGER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")];
    let app = TestApp::spawn_with(pool, &common::providers::mangopay_settings(&mangopay, &base, &extra)).await;

    let documented = documented(&app).await;
    let named = table_routes(ROUTES);
    let unnamed: Vec<_> = documented.difference(&named).collect();
    let undocumented: Vec<_> = named.difference(&documented).collect();
    assert!(
        unnamed.is_empty() && undocumented.is_empty(),
        "/openapi.json and the test's table disagree.\nin the document, not the table: {unnamed:?}\nin the table, not the document: {undocumented:?}"
    );

    let ids = real_ids(&app).await;
    let mut conn = app.pool.acquire().await.unwrap();
    let revoked = keys::create(&mut conn, "revoked", Role::Operator, app.clock.now())
        .await
        .unwrap();
    assert!(keys::revoke(&mut conn, revoked.id, app.clock.now()).await.unwrap());
    let wrong = keys::generate().expose_secret().to_string();
    let mut key_of = HashMap::from([
        (Caller::WrongKey, wrong),
        (Caller::RevokedKey, revoked.key.expose_secret().to_string()),
    ]);
    for role in [Role::Operator, Role::Platform, Role::Auditor] {
        key_of.insert(Caller::Role(role), app.key(role).await);
    }

    let calls: Vec<_> = ROUTES
        .iter()
        .chain(UNDOCUMENTED)
        .flat_map(|&(method, template, access)| CALLERS.map(|caller| (method, template, access, caller)))
        .collect();
    let started = Instant::now();
    let answers: Vec<_> = futures::stream::iter(calls.iter().map(|&(method, template, access, caller)| {
        let (app, ids, key_of) = (&app, &ids, &key_of);
        async move {
            let path = concrete(method, template, ids);
            let key = key_of.get(&caller).map(String::as_str);
            let method: Method = method.parse().unwrap();
            let body = (method == Method::POST || method == Method::PATCH).then(|| json!({}));
            let r = app.call(method.clone(), &path, key, body.as_ref()).await;
            judge(method.as_str(), access, caller, &r)
                .map_err(|wrong| format!("{method} {path} as {caller:?}: {wrong}; got {} {}", r.status, r.body))
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    let elapsed = started.elapsed();
    let wrong: Vec<String> = answers.into_iter().filter_map(Result::err).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} calls answered against the roles table:\n{}",
        wrong.len(),
        calls.len(),
        wrong.join("\n")
    );
    eprintln!(
        "access matrix: {} routes x {} callers = {} calls in {:.2?}",
        ROUTES.len() + UNDOCUMENTED.len(),
        CALLERS.len(),
        calls.len(),
        elapsed
    );
}

/// The answer to a path that names no route, as the sandbox's must be when it is off.
async fn no_such_route(app: &TestApp, method: Method) -> Reply {
    app.call(
        method,
        "/v1/no-such-route",
        Some(common::OPERATOR_KEY),
        Some(&json!({})),
    )
    .await
}

#[sqlx::test]
async fn sandbox_controls_exist_only_with_a_manual_clock(pool: PgPool) {
    let sandbox: Vec<(&str, &str)> = ROUTES
        .iter()
        .filter(|(_, path, _)| path.starts_with("/v1/sandbox/"))
        .map(|&(method, path, _)| (method, path))
        .collect();
    assert_eq!(sandbox.len(), 10, "{sandbox:?}");

    // A system clock: the controls are not there, for anybody, exactly as an unknown path.
    let app = TestApp::spawn_with(pool.clone(), &[("CROWDLEDGER__CLOCK__MODE", "system")]).await;
    assert!(
        documented(&app)
            .await
            .iter()
            .all(|(_, path)| !path.starts_with("/v1/sandbox/")),
        "the document lists sandbox controls that are not served"
    );
    let keys = [
        None,
        Some("not-a-key".to_string()),
        Some(common::OPERATOR_KEY.to_string()),
        Some(app.key(Role::Operator).await),
        Some(app.key(Role::Platform).await),
        Some(app.key(Role::Auditor).await),
    ];
    for (method, template) in &sandbox {
        let method: Method = method.parse().unwrap();
        let path = template.replace("{id}", &format!("pay_{}", Uuid::new_v4().simple()));
        let unknown = no_such_route(&app, method.clone()).await;
        unknown.assert_problem(404, "not_found");
        for key in &keys {
            let r = app
                .call(
                    method.clone(),
                    &path,
                    key.as_deref(),
                    Some(&json!({"advance_seconds": 60})),
                )
                .await;
            r.assert_problem(404, "not_found");
            assert_eq!(r.body, unknown.body, "{method} {path} with {key:?}");
        }
    }

    // A manual clock: the operator reaches them, and they work.
    let app = TestApp::spawn(pool).await;
    let now = ok(app.get("/v1/sandbox/clock").await, 200).await;
    let moved = ok(
        app.post("/v1/sandbox/clock", json!({"advance_seconds": 3600})).await,
        200,
    )
    .await;
    let (now, moved): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = (
        serde_json::from_value(now["now"].clone()).unwrap(),
        serde_json::from_value(moved["now"].clone()).unwrap(),
    );
    assert!(moved - now >= chrono::TimeDelta::seconds(3600), "{now} -> {moved}");
    let project = published_project(&app).await;
    let offer = open_offer(&app, &project, json!({}), 7).await;
    let who = investor(&app, "Sophie", "sophisticated").await;
    let p = funded_pledge(&app, &offer, &who, 10).await;
    let read = ok(app.get(&format!("/v1/pledges/{}", id_of_value(&p))).await, 200).await;
    assert_eq!(read["status"], "funded", "{read:#}");
    assert!(
        documented(&app)
            .await
            .contains(&("GET".to_string(), "/v1/sandbox/clock".to_string()))
    );
}
