//! Outbound webhooks against a real receiver on loopback: signed so that an independent
//! implementation verifies them, retried on the documented schedule, endpoints disabled when
//! retries run out, redelivered on request, signed with both secrets after a rotation.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crowdledger::outbox::EventType;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgPool;

use crate::common::{self, TestApp, fixtures};

#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// A webhook receiver: records what it gets, answers the scripted statuses, then 200.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub(crate) got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    pub(crate) async fn start(script: &[u16]) -> (Receiver, String) {
        let receiver = Receiver::default();
        receiver.script.lock().unwrap().extend(script);
        let r = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let r = r.clone();
                async move {
                    r.got.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    pub(crate) fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.count() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {n} deliveries arrived",
                self.count()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.got.lock().unwrap().clone()
    }
}

/// Standard Webhooks verification, written here from the specification, independently of the
/// service's code: which of `secrets` signed this delivery?
fn signed_by(r: &Received, secrets: &[&str]) -> Vec<usize> {
    let header = |n: &str| r.headers.get(n).unwrap().to_str().unwrap().to_string();
    let (id, ts, sigs) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let mut content = format!("{id}.{ts}.").into_bytes();
    content.extend_from_slice(&r.body);
    let mut signers = Vec::new();
    for (i, secret) in secrets.iter().enumerate() {
        let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(&content);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        if sigs.split(' ').any(|s| s == expected) {
            signers.push(i);
        }
    }
    signers
}

pub(crate) async fn spawn(pool: PgPool) -> TestApp {
    TestApp::spawn_with(pool, &[("CROWDLEDGER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")]).await
}

pub(crate) async fn register(app: &TestApp, url: &str, events: &[&str]) -> Value {
    let r = app
        .post("/v1/webhook-endpoints", json!({"url": url, "events": events}))
        .await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    r.body
}

pub(crate) async fn emit(app: &TestApp, kind: &str, data: Value) {
    let mut conn = app.pool.acquire().await.unwrap();
    crowdledger::outbox::emit(
        &mut conn,
        EventType::parse(kind).expect("an event type"),
        data,
        app.clock.now(),
    )
    .await
    .unwrap();
}

/// An endpoint's deliveries, newest first (one page holds them all in these tests).
pub(crate) async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/v1/webhook-endpoints/{endpoint}/deliveries?limit=1000"))
        .await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    assert!(r.body.get("next_cursor").is_none(), "{:#}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

/// One pass of the service's delivery job at the app's clock, run here rather than waited for:
/// every event committed so far is fanned out, then every due delivery is sent; returns how many
/// were attempted. Fan-out passes only transactions older than every running one, and parallel
/// tests share the cluster, so this polls until the cursor has passed every event. A test that
/// shows nothing is sent runs this pass instead of sleeping while the service's loop comes round.
pub(crate) async fn delivery_pass(app: &TestApp) -> usize {
    use crowdledger::webhooks::outbound::{self, REQUEST_TIMEOUT};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        outbound::fan_out(&app.pool, app.clock.now()).await.unwrap();
        let behind: bool = sqlx::query_scalar(
            "select exists (select 1 from outbox_events e, outbox_cursor c where (e.created_xact, e.seq) > (c.xact, c.seq))",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if !behind {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "fan-out never passed every event");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Loopback allowed, as these tests' app is.
    let client = crowdledger::webhooks::guard::GuardedClient::new(true, REQUEST_TIMEOUT);
    outbound::deliver_all_due(&app.pool, &client, || app.clock.now(), || false)
        .await
        .unwrap()
}

#[sqlx::test]
async fn subscribed_events_arrive_signed_and_verifiable(pool: PgPool) {
    let app = spawn(pool).await;
    let (receiver, url) = Receiver::start(&[]).await;
    let endpoint = register(&app, &url, &["pledge.funded", "offer.succeeded"]).await;
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let id = endpoint["id"].as_str().unwrap();

    emit(&app, "pledge.created", json!({"n": 0})).await;
    emit(&app, "pledge.funded", json!({"n": 1})).await;
    emit(&app, "offer.succeeded", json!({"n": 2})).await;
    let got = receiver.wait_for(2).await;
    let types: Vec<String> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["offer.succeeded", "pledge.funded"],
        "pledge.created was not subscribed"
    );
    for r in &got {
        assert_eq!(
            signed_by(r, &[&secret]),
            [0],
            "the signature does not verify independently"
        );
        let ts: i64 = r.headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
        assert!((ts - app.clock.now().timestamp()).abs() < 60);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["id"].as_str().unwrap(), r.headers["webhook-id"].to_str().unwrap());
    }
    let log = app
        .wait_for_value(
            || deliveries(&app, id),
            |d| d.len() == 2 && d.iter().all(|x| x["status"] == "delivered"),
        )
        .await;
    assert!(
        log.iter()
            .all(|d| d["attempts"] == 1 && d["attempt_log"][0]["status_code"] == 200)
    );
    // The secret is shown once: nowhere in what the API returns later.
    let listed = app.get(&format!("/v1/webhook-endpoints/{id}/deliveries")).await;
    assert!(!listed.body.to_string().contains(&secret));
}

#[sqlx::test]
async fn failed_deliveries_are_retried_on_schedule(pool: PgPool) {
    let app = spawn(pool).await;
    let (receiver, url) = Receiver::start(&[500, 503]).await;
    let endpoint = register(&app, &url, &["payout.paid"]).await;
    let id = endpoint["id"].as_str().unwrap().to_string();
    emit(&app, "payout.paid", json!({"amount": "10.00"})).await;
    receiver.wait_for(1).await;
    // The next attempt waits 5 s of service time; nothing is sent before.
    let pending = app
        .wait_for_value(|| deliveries(&app, &id), |d| d[0]["attempts"] == 1)
        .await;
    assert_eq!(pending[0]["status"], "pending");
    app.clock.advance(5).unwrap();
    receiver.wait_for(2).await;
    app.wait_for_value(|| deliveries(&app, &id), |d| d[0]["attempts"] == 2)
        .await;
    // Then 5 minutes: at 290 s the retry is not due, so a pass of the job sends nothing.
    app.clock.advance(290).unwrap();
    assert_eq!(delivery_pass(&app).await, 0, "retried before its time");
    assert_eq!(receiver.count(), 2, "retried before its time");
    let due: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(deliveries(&app, &id).await[0]["next_attempt_at"].clone()).unwrap();
    assert!(due > app.clock.now(), "the retry is due before its time: {due}");
    app.clock.advance(10).unwrap();
    receiver.wait_for(3).await;
    let log = app
        .wait_for_value(|| deliveries(&app, &id), |d| d[0]["status"] == "delivered")
        .await;
    let codes: Vec<Value> = log[0]["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(503), json!(200)]);
}

#[sqlx::test]
async fn exhausted_retries_disable_the_endpoint_until_a_redelivery(pool: PgPool) {
    let app = spawn(pool).await;
    let (receiver, url) = Receiver::start(&[500; 8]).await;
    let endpoint = register(&app, &url, &["pledge.refunded"]).await;
    let id = endpoint["id"].as_str().unwrap().to_string();
    emit(&app, "pledge.refunded", json!({})).await;
    receiver.wait_for(1).await;
    for (n, delay) in [5, 300, 1800, 7200, 18000, 36000, 36000].iter().enumerate() {
        app.wait_for_value(|| deliveries(&app, &id), |d| d[0]["attempts"] == n + 1)
            .await;
        app.clock.advance(*delay).unwrap();
        receiver.wait_for(n + 2).await;
    }
    let log = app
        .wait_for_value(|| deliveries(&app, &id), |d| d[0]["status"] == "exhausted")
        .await;
    assert_eq!(log[0]["attempts"], 8);
    let (status, disabled_events): (String, i64) = sqlx::query_as(
        "select (select status::text from webhook_endpoints where id = $1::uuid),
                (select count(*) from outbox_events where event_type = 'endpoint.disabled' and payload->'data'->>'endpoint_id' = $1)",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), disabled_events), ("disabled", 1));
    // A disabled endpoint gets nothing new: the event is fanned out to no delivery for it.
    emit(&app, "pledge.refunded", json!({"later": true})).await;
    app.clock.advance(86_400).unwrap();
    assert_eq!(delivery_pass(&app).await, 0);
    assert_eq!(receiver.count(), 8);
    assert_eq!(deliveries(&app, &id).await.len(), 1);

    let delivery = log[0]["id"].as_str().unwrap();
    let r = app
        .post(&format!("/v1/webhook-deliveries/{delivery}/redeliver"), json!({}))
        .await;
    assert_eq!(r.status, 202, "{:#}", r.body);
    receiver.wait_for(9).await;
    app.wait_for_value(
        || deliveries(&app, &id),
        |d| d.iter().any(|x| x["id"] == delivery && x["status"] == "delivered"),
    )
    .await;
    app.post(
        &format!("/v1/webhook-deliveries/{}/redeliver", uuid::Uuid::new_v4()),
        json!({}),
    )
    .await
    .assert_problem(404, "not_found");
}

#[sqlx::test]
async fn after_a_rotation_both_secrets_sign_for_a_day(pool: PgPool) {
    let app = spawn(pool).await;
    let (receiver, url) = Receiver::start(&[]).await;
    let endpoint = register(&app, &url, &["offer.opened"]).await;
    let id = endpoint["id"].as_str().unwrap().to_string();
    let old = endpoint["secret"].as_str().unwrap().to_string();
    let rotated = app
        .post(&format!("/v1/webhook-endpoints/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(rotated.status, 200, "{:#}", rotated.body);
    let new = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(old, new);

    emit(&app, "offer.opened", json!({"n": 1})).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(signed_by(&got[0], &[&old, &new]), [0, 1]);

    app.clock.advance(24 * 3600 + 1).unwrap();
    emit(&app, "offer.opened", json!({"n": 2})).await;
    let got = receiver.wait_for(2).await;
    assert_eq!(
        signed_by(&got[1], &[&old, &new]),
        [1],
        "the old secret stops signing after 24 h"
    );
}

#[sqlx::test]
async fn bad_endpoints_are_refused_and_nothing_is_written(pool: PgPool) {
    // Without webhooks.allow_private_targets.
    let app = TestApp::spawn(pool).await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from webhook_endpoints")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.8/hook",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let r = app
            .post("/v1/webhook-endpoints", json!({"url": url, "events": ["payout.paid"]}))
            .await;
        r.assert_problem(422, "invalid_target");
    }
    for (body, code) in [
        (
            json!({"url": "ftp://example.org/x", "events": ["payout.paid"]}),
            "invalid_target",
        ),
        (
            json!({"url": "https://example.org/x", "events": []}),
            "validation_failed",
        ),
        (
            json!({"url": "https://example.org/x", "events": ["pledge.exploded"]}),
            "validation_failed",
        ),
        (json!({"url": "https://example.org/x"}), "validation_failed"),
        (
            json!({"url": "https://example.org/x", "events": ["payout.paid"], "secret": "mine"}),
            "validation_failed",
        ),
    ] {
        app.post("/v1/webhook-endpoints", body).await.assert_problem(422, code);
    }
    assert_eq!(count().await, 0);
    let auditor = app.key(crowdledger::keys::Role::Auditor).await;
    let r = app
        .call(
            reqwest::Method::POST,
            "/v1/webhook-endpoints",
            Some(&auditor),
            Some(&json!({"url": "https://example.org/x", "events": ["payout.paid"]})),
        )
        .await;
    r.assert_problem(403, "forbidden");
    app.get(&format!("/v1/webhook-endpoints/{}/deliveries", uuid::Uuid::new_v4()))
        .await
        .assert_problem(404, "not_found");
}

/// A small round through the API: opened, one pledge paid, closed, paid out. Returns the offer.
async fn full_round(app: &TestApp) -> String {
    let (_, offer) = fixtures::small_open_offer(app).await;
    let investor = fixtures::investor(app, "Ida", "sophisticated").await;
    fixtures::funded_pledge(app, &offer, &investor, 20).await;
    let closed = app.post(&format!("/v1/offers/{offer}/close"), json!({})).await;
    assert_eq!(closed.body["status"], "succeeded", "{:#}", closed.body);
    let payout = app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await.body;
    let payout = payout["payment"]["payment_id"].as_str().unwrap();
    assert_eq!(
        app.post(&format!("/v1/sandbox/payouts/{payout}/succeed"), json!({}))
            .await
            .status,
        200
    );
    offer
}

#[sqlx::test]
async fn a_receiver_gets_every_event_of_a_full_round(pool: PgPool) {
    let app = spawn(pool).await;
    let (receiver, url) = Receiver::start(&[]).await;
    let endpoint = register(&app, &url, &EventType::ALL.map(EventType::as_str)).await;
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    let id = endpoint["id"].as_str().unwrap().to_string();
    let offer = full_round(&app).await;
    let expected = [
        "offer.opened",
        "pledge.created",
        "pledge.funded",
        "offer.closing",
        "offer.succeeded",
        "payout.created",
        "payout.paid",
    ];
    let got = receiver.wait_for(expected.len()).await;
    let mut types = Vec::new();
    for r in &got {
        assert_eq!(signed_by(r, &[&secret]), [0], "every delivery verifies");
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["data"]["offer_id"], offer.as_str(), "{body:#}");
        types.push(body["type"].as_str().unwrap().to_string());
    }
    let mut sorted_got = types.clone();
    sorted_got.sort();
    let mut sorted_expected = expected.to_vec();
    sorted_expected.sort();
    assert_eq!(sorted_got, sorted_expected);
    // Nothing more trickles in: every event is fanned out, none is left to send, and each
    // delivery was made once.
    assert_eq!(delivery_pass(&app).await, 0);
    let log = app
        .wait_for_value(
            || deliveries(&app, &id),
            |d| d.iter().all(|x| x["status"] == "delivered"),
        )
        .await;
    assert_eq!(log.len(), expected.len());
    assert_eq!(receiver.count(), expected.len());
}

#[sqlx::test]
async fn pending_events_are_delivered_after_a_crash(pool: PgPool) {
    let (receiver, url) = Receiver::start(&[503, 503, 503]).await;
    let env = [("CROWDLEDGER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true")];
    let first = common::Served::start_with(&pool, common::OPERATOR_KEY, &env).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/webhook-endpoints", first.base))
        .bearer_auth(common::OPERATOR_KEY)
        .json(&json!({"url": url, "events": ["pledge.funded"]}))
        .send()
        .await
        .unwrap();
    let endpoint = common::read(r).await.body;
    assert!(endpoint["secret"].is_string(), "{endpoint:#}");
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    let mut conn = pool.acquire().await.unwrap();
    for n in 0..3 {
        crowdledger::outbox::emit(
            &mut conn,
            EventType::PledgeFunded,
            json!({ "n": n }),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    }
    // The receiver is failing: the first attempts are made and logged, retries are scheduled,
    // then the service dies. (A crash in the middle of a request leaves a 60 s lease to expire
    // first; that path is slower, not different.)
    receiver.wait_for(3).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sqlx::query_scalar::<_, i64>("select count(*) from webhook_attempts")
        .fetch_one(&pool)
        .await
        .unwrap()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first attempts were not logged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    first.crash();
    // Written while no service runs: it must not be lost either.
    crowdledger::outbox::emit(
        &mut conn,
        EventType::PledgeFunded,
        json!({ "n": 3 }),
        chrono::Utc::now(),
    )
    .await
    .unwrap();

    let _second = common::Served::start_with(&pool, common::OPERATOR_KEY, &env).await;
    // Retries are 5 s apart in real time here; the receiver answers 200 once its 503s are used.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let delivered: i64 = sqlx::query_scalar("select count(*) from webhook_deliveries where status = 'delivered'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if delivered == 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{delivered} of 4 delivered after the restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let got = receiver.got.lock().unwrap().clone();
    let mut seen: Vec<i64> = got
        .iter()
        .filter(|r| signed_by(r, &[&secret]) == [0])
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, [0, 1, 2, 3], "every event arrived, signed (at least once)");
}

#[sqlx::test]
async fn an_event_that_commits_after_a_later_one_is_still_delivered(pool: PgPool) {
    let (receiver, url) = Receiver::start(&[]).await;
    let app = spawn(pool).await;
    register(&app, &url, &["pledge.funded"]).await;
    // The first event's transaction stays open while a later event commits.
    let mut first = app.pool.begin().await.unwrap();
    crowdledger::outbox::emit(&mut first, EventType::PledgeFunded, json!({ "n": 0 }), app.clock.now())
        .await
        .unwrap();
    emit(&app, "pledge.funded", json!({ "n": 1 })).await;
    // No fan-out may pass the open transaction: the later event waits behind it.
    crowdledger::webhooks::outbound::fan_out(&app.pool, app.clock.now())
        .await
        .unwrap();
    let fanned: i64 = sqlx::query_scalar("select count(*) from webhook_deliveries")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(fanned, 0);
    first.commit().await.unwrap();
    let mut seen: Vec<i64> = receiver
        .wait_for(2)
        .await
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [0, 1], "both events arrived, the late one too");
}

#[sqlx::test]
async fn a_backlog_is_delivered_in_one_pass_and_failures_wait_for_their_retry(pool: PgPool) {
    // No service runs here: the test drives fan-out and delivery itself.
    let events = 150;
    let (receiver, url) = Receiver::start(&vec![500; events]).await;
    let now = chrono::Utc::now();
    let mut conn = pool.acquire().await.unwrap();
    crowdledger::webhooks::outbound::create_endpoint(&mut conn, &url, &["pledge.funded".to_string()], now)
        .await
        .unwrap();
    for n in 0..events {
        crowdledger::outbox::emit(&mut conn, EventType::PledgeFunded, json!({ "n": n }), now)
            .await
            .unwrap();
    }
    drop(conn);
    use crowdledger::webhooks::outbound::{DELIVERY_BATCH, deliver_all_due, fan_out};
    assert!(events > 4 * DELIVERY_BATCH, "the backlog spans several batches");
    // Fan-out passes only transactions below the cluster's oldest running one, and parallel
    // tests share the cluster: an open transaction elsewhere can hold it back for a while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        fan_out(&pool, now).await.unwrap();
        let fanned: i64 = sqlx::query_scalar("select count(*) from webhook_deliveries")
            .fetch_one(&pool)
            .await
            .unwrap();
        if fanned == events as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {fanned} of {events} fanned out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Loopback allowed, as the service's own setting would in development.
    let client =
        crowdledger::webhooks::guard::GuardedClient::new(true, crowdledger::webhooks::outbound::REQUEST_TIMEOUT);

    // Every delivery is attempted once; the failed ones are not tried again until their retry.
    let attempted = deliver_all_due(&pool, &client, || now, || false).await.unwrap();
    assert_eq!(attempted, events);
    assert_eq!(receiver.count(), events);
    let pending: i64 =
        sqlx::query_scalar("select count(*) from webhook_deliveries where status = 'pending' and attempts = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pending, events as i64);

    // At the first retry, one pass delivers them all.
    let retry = now + chrono::TimeDelta::seconds(crowdledger::webhooks::outbound::RETRY_DELAYS_SECONDS[0] + 1);
    let attempted = deliver_all_due(&pool, &client, || retry, || false).await.unwrap();
    assert_eq!(attempted, events);
    let delivered: i64 = sqlx::query_scalar("select count(*) from webhook_deliveries where status = 'delivered'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(delivered, events as i64);

    // Asked to stop, it sends nothing.
    assert_eq!(deliver_all_due(&pool, &client, || retry, || true).await.unwrap(), 0);
}
