//! Secrets never reach the logs. This test binary records everything the service traces, down
//! to TRACE and including its libraries', while a whole flow runs through HTTP: keys, a round,
//! card payments confirmed by the sandbox's signed webhook and by one signed here, a forged
//! webhook, a prize cheque issued and spent, an outbound endpoint delivered to and its secret
//! rotated. Then none of the secrets that passed through may appear in what was recorded.
//!
//! It stays a binary of its own (not a module of tests/api): the recording subscriber is global to
//! the process, so beside other tests it would trace all of them at TRACE, slowing them and
//! recording what is not this flow's.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use common::fixtures::{self, ok};
use common::{OPERATOR_KEY, TestApp, send, send_as};
use crowdledger::keys::{self, Role};
use crowdledger::webhooks::signature::{self, WebhookSecret};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::PgPool;
use tracing::Level;

/// Everything the process traced since the recording started.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Recorded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Recorded {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Starts recording (once per process: the subscriber is global, and so are the `log` records
/// of libraries that use that crate, which it takes in too).
fn recording() -> Recorded {
    static RECORDED: OnceLock<Recorded> = OnceLock::new();
    RECORDED
        .get_or_init(|| {
            let recorded = Recorded::default();
            let writer = recorded.clone();
            tracing_subscriber::fmt()
                .with_max_level(Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
            recorded
        })
        .clone()
}

/// The forms a secret could be logged in: as given, and for `whsec_` secrets, the key's base64.
fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    if let Some(key) = secret.strip_prefix("whsec_") {
        forms.push(key.to_string());
    }
    if secret.starts_with("CHQ-") {
        // What the service hashes: the code without its prefix and dashes.
        forms.push(secret.trim_start_matches("CHQ-").replace('-', ""));
    }
    forms
}

#[sqlx::test]
async fn no_secret_reaches_the_logs(pool: PgPool) {
    let recorded = recording();
    let sandbox_secret = WebhookSecret::generate().expose_string();
    let app = TestApp::spawn_with(
        pool,
        &[
            ("CROWDLEDGER__PAYMENTS__SANDBOX__WEBHOOK_SECRET", &sandbox_secret),
            ("CROWDLEDGER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
        ],
    )
    .await;
    let mut secrets: Vec<(&str, String)> = vec![
        ("the bootstrap operator key", OPERATOR_KEY.to_string()),
        ("the sandbox's webhook secret", sandbox_secret.clone()),
    ];

    // Keys: two working, one revoked, one made up.
    let platform = app.key(Role::Platform).await;
    let auditor = app.key(Role::Auditor).await;
    let mut conn = app.pool.acquire().await.unwrap();
    let revoked = keys::create(&mut conn, "revoked", Role::Operator, app.clock.now())
        .await
        .unwrap();
    assert!(keys::revoke(&mut conn, revoked.id, app.clock.now()).await.unwrap());
    let revoked = revoked.key.expose_secret().to_string();
    let wrong = keys::generate().expose_secret().to_string();
    for key in [&revoked, &wrong] {
        send_as(&app, Method::GET, "/v1/ledger/verify", key, &[], None)
            .await
            .assert_problem(401, "unauthorized");
    }
    secrets.extend([
        ("a platform key", platform.clone()),
        ("an auditor key", auditor.clone()),
        ("a revoked key", revoked),
        ("a wrong key", wrong),
    ]);

    // An outbound endpoint that answers, and its secret before and after a rotation.
    let delivered = Arc::new(Mutex::new(0usize));
    let counter = delivered.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            *counter.lock().unwrap() += 1;
            std::future::ready(axum::http::StatusCode::OK)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let events = ["pledge.funded", "cheque.issued", "cheque.redeemed"];
    let endpoint = ok(
        app.post("/v1/webhook-endpoints", json!({"url": url, "events": events}))
            .await,
        201,
    )
    .await;
    let endpoint_id = endpoint["id"].as_str().unwrap();
    let rotated = ok(
        app.post(&format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret"), json!({}))
            .await,
        200,
    )
    .await;
    for secret in [&endpoint["secret"], &rotated["secret"]] {
        secrets.push(("an endpoint's secret", secret.as_str().unwrap().to_string()));
    }

    // A round: the platform pledges twice; the sandbox confirms one payment, a provider
    // (this test, with the sandbox's secret) the other; a forged confirmation is refused.
    let project = fixtures::published_project(&app).await;
    let offer = fixtures::open_offer(&app, &project, json!({"min_target": "100.00"}), 9).await;
    let investor = fixtures::investor(&app, "Camille", "sophisticated").await;
    let pledge = |shares: i64, funding: serde_json::Value| {
        let (app, platform, offer, investor) = (&app, &platform, &offer, &investor);
        async move {
            let key = uuid::Uuid::new_v4().to_string();
            let body = json!({"investor_id": investor, "shares": shares, "funding": funding,
                              "kiis_sha256": fixtures::KIIS_SHA256});
            let r = send_as(
                app,
                Method::POST,
                &format!("/v1/offers/{offer}/pledges"),
                platform,
                &[("idempotency-key", &key)],
                Some(&body),
            )
            .await;
            ok(r, 201).await
        }
    };
    let first = pledge(10, json!([{"kind": "card", "amount": "100.00"}])).await;
    let payment = first["payment"]["payment_id"].as_str().unwrap();
    let paid = ok(
        app.post(&format!("/v1/sandbox/payments/{payment}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(paid["applied"], true, "{paid:#}");

    let second = pledge(20, json!([{"kind": "card", "amount": "200.00"}])).await;
    let payment = second["payment"]["payment_id"].as_str().unwrap();
    let now = app.clock.now().timestamp();
    let event = |id: &str| {
        serde_json::to_vec(&json!({"id": id, "type": "payment.succeeded", "created": now,
            "data": {"payment_id": payment, "amount": "200.00", "currency": "EUR"}}))
        .unwrap()
    };
    let deliver = |id: &'static str, secret: WebhookSecret| {
        let body = event(id);
        let signature = signature::signature_header(&[&secret], id, now, &body);
        let app = &app;
        async move {
            let req = app
                .client
                .post(format!("{}/v1/webhooks/sandbox", app.base))
                .header("webhook-id", id)
                .header("webhook-timestamp", now.to_string())
                .header("webhook-signature", signature)
                .body(body);
            common::read(req.send().await.unwrap()).await
        }
    };
    let forger = WebhookSecret::generate();
    secrets.push(("the forger's secret", forger.expose_string()));
    deliver("evt_forged", forger)
        .await
        .assert_problem(401, "invalid_signature");
    let applied = ok(deliver("evt_signed", sandbox_secret.parse().unwrap()).await, 200).await;
    assert_eq!(applied["outcome"], "applied", "{applied:#}");

    // A prize cheque: issued (its code shown once), then spent in a pledge.
    let sponsor = fixtures::funded_sponsor(&app, "SenseTour Belgium", "2000.00").await;
    let expires = app.clock.now() + chrono::TimeDelta::days(90);
    let cheque = ok(
        app.post(
            "/v1/cheques",
            json!({"sponsor_id": sponsor, "beneficiary_name": "Winner", "beneficiary_email": "winner@example.org",
                   "face_value": "2000.00", "currency": "EUR", "expires_at": expires.to_rfc3339()}),
        )
        .await,
        201,
    )
    .await;
    let code = cheque["code"].as_str().unwrap().to_string();
    let spent = pledge(50, json!([{"kind": "cheque", "cheque_code": code, "amount": "500.00"}])).await;
    assert_eq!(spent["status"], "funded", "{spent:#}");
    secrets.push(("a cheque's code", code));

    // Reads by every role, and the outbound deliveries signed with the endpoint's secrets.
    for key in [OPERATOR_KEY, &auditor] {
        let r = send_as(&app, Method::GET, "/v1/ledger/verify", key, &[], None).await;
        assert_eq!(ok(r, 200).await["ok"], true);
    }
    let read = send_as(
        &app,
        Method::GET,
        &format!("/v1/pledges/{}", spent["id"].as_str().unwrap()),
        &platform,
        &[],
        None,
    )
    .await;
    ok(read, 200).await;
    send(&app, Method::GET, "/health", &[], None).await;
    // The console keeps the auditor's key in its session cookie: signing in, then a page.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = browser
        .post(format!("{}/console/sign-in", app.base))
        .form(&[("key", auditor.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = format!("crowdledger_console={auditor}");
    let page = browser
        .get(format!("{}/console/projects", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    app.wait_for_value(|| async { *delivered.lock().unwrap() }, |n| *n >= 4)
        .await;

    // The recording works, at TRACE, and finds what it is asked for.
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    tracing::trace!(%canary, "the recording is on");
    let logs = recorded.text();
    assert!(logs.contains(&canary), "the recording missed a TRACE event");
    // Requests' spans, and the libraries' own events (every statement sqlx runs) are in it.
    assert!(
        logs.contains("/v1/cheques") && logs.contains("/v1/webhooks/sandbox"),
        "{logs}"
    );
    assert!(logs.contains("sqlx::query"), "{logs}");

    let found: Vec<&str> = secrets
        .iter()
        .filter(|(_, secret)| forms(secret).iter().any(|form| logs.contains(form)))
        .map(|(what, _)| *what)
        .collect();
    assert!(found.is_empty(), "in the logs: {found:?}");
    eprintln!(
        "secrets in logs: {} secrets checked against {} lines ({} bytes) of TRACE output",
        secrets.len(),
        logs.lines().count(),
        logs.len()
    );
}

#[sqlx::test]
async fn no_mangopay_secret_reaches_the_logs(pool: PgPool) {
    use base64::Engine;
    let recorded = recording();
    let mangopay = crowdledger_provider_fakes::mangopay::MangopayFake::start().await;
    let app = TestApp::spawn_with(
        pool,
        &[
            ("CROWDLEDGER__PAYMENTS__CARD_PROVIDER", "mangopay"),
            ("CROWDLEDGER__PAYMENTS__MANGOPAY__CLIENT_ID", mangopay.client_id()),
            ("CROWDLEDGER__PAYMENTS__MANGOPAY__API_KEY", mangopay.api_key()),
            ("CROWDLEDGER__PAYMENTS__MANGOPAY__API_BASE", &mangopay.base_url()),
            (
                "CROWDLEDGER__PAYMENTS__MANGOPAY__RETURN_URL",
                "https://platform.example/back",
            ),
        ],
    )
    .await;
    mangopay.set_hook_url(format!("{}/v1/webhooks/mangopay", app.base));

    // A card pledge paid on Mangopay: a token asked for, users, a wallet, a pay-in, a hook read
    // back with the token; then the token refused and renewed.
    let project = fixtures::published_project(&app).await;
    let details = json!({
        "bank_account": {"iban": "FR7630006000011234567890189", "owner_name": "Crois/Sens SCIC",
                         "owner_address": {"line1": "12 rue de Siam", "city": "Brest", "postal_code": "29200", "country": "FR"}},
        "company_number": "834 562 190",
        "legal_representative": {"first_name": "Maël", "last_name": "Le Goff", "birthday": "1981-04-12",
                                 "nationality": "FR", "country_of_residence": "FR", "email": "mael@crois-sens.example"},
    });
    let path = format!("/v1/projects/{project}/payout-details");
    ok(
        app.call(Method::PUT, &path, Some(OPERATOR_KEY), Some(&details)).await,
        200,
    )
    .await;
    let terms = json!({"min_target": "100.00", "max_target": "1000.00"});
    let offer = fixtures::open_offer(&app, &project, terms, 9).await;
    let investor = fixtures::investor(&app, "Ada Lovelace", "sophisticated").await;
    let p = ok(fixtures::pledge(&app, &offer, &investor, 10, "10.00").await, 201).await;
    mangopay.expire_tokens();
    mangopay
        .succeed_payin(p["payment"]["payment_id"].as_str().unwrap())
        .await;
    let funded = app.get(&format!("/v1/pledges/{}", p["id"].as_str().unwrap())).await;
    assert_eq!(funded.body["status"], "funded", "{:#}", funded.body);

    let tokens = mangopay.issued_tokens();
    assert_eq!(tokens.len(), 2, "one token, then one renewed");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", mangopay.client_id(), mangopay.api_key()));
    let mut secrets = vec![
        ("Mangopay's API key", mangopay.api_key().to_string()),
        ("the Basic credentials", basic),
    ];
    secrets.extend(tokens.into_iter().map(|t| ("a Mangopay token", t)));
    let logs = recorded.text();
    assert!(logs.contains("/v1/webhooks/mangopay"), "the recording missed the hook");
    let found: Vec<&str> = secrets
        .iter()
        .filter(|(_, secret)| logs.contains(secret.as_str()))
        .map(|(what, _)| *what)
        .collect();
    assert!(found.is_empty(), "in the logs: {found:?}");
}
