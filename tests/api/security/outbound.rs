//! Finding 8: the outbound SSRF guard. A delivery never follows a redirect (a 3xx is a failed
//! attempt), a target in any special-purpose block of the IANA registries is refused (mapped and
//! embedded IPv4 forms judged by their IPv4 address), a name is checked as it is resolved for
//! the connection itself, and a receiver's answer is read no further than 64 KiB.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestApp;

const ALLOW_PRIVATE: (&str, &str) = ("CROWDLEDGER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true");

/// A server on loopback that counts every request it gets, whatever its method or path, and
/// answers each with `answer()`.
async fn counting_server<R: IntoResponse + Send + 'static>(
    answer: impl Fn() -> R + Clone + Send + Sync + 'static,
) -> (Arc<AtomicUsize>, std::net::SocketAddr) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let answer = answer.clone();
        async move { answer() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (hits, addr)
}

async fn register(app: &TestApp, url: &str) -> String {
    let r = app
        .post("/v1/webhook-endpoints", json!({"url": url, "events": ["payout.paid"]}))
        .await;
    assert_eq!(r.status, 201, "{:#}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

/// An endpoint written straight into the table, as one registered while its name still
/// resolved to a public address would be.
async fn stored_endpoint(app: &TestApp, url: &str) -> String {
    let id = Uuid::now_v7();
    sqlx::query("insert into webhook_endpoints (id, url, events, secret, created_at) values ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(url)
        .bind(vec!["payout.paid".to_string()])
        .bind(crowdledger::webhooks::signature::WebhookSecret::generate().expose_string())
        .bind(app.clock.now())
        .execute(&app.pool)
        .await
        .unwrap();
    id.to_string()
}

async fn emit_payout(app: &TestApp) {
    let mut conn = app.pool.acquire().await.unwrap();
    crowdledger::outbox::emit(
        &mut conn,
        crowdledger::outbox::EventType::PayoutPaid,
        json!({"amount": "10.00"}),
        app.clock.now(),
    )
    .await
    .unwrap();
}

/// The endpoint's only delivery, once its first attempt is logged. (The listing reads the
/// delivery and its attempts in two statements: the attempt may show before the delivery's
/// own count and status do, so both are waited for.)
async fn first_attempt(app: &TestApp, endpoint: &str) -> Value {
    let path = format!("/v1/webhook-endpoints/{endpoint}/deliveries");
    let deliveries = app
        .wait_for(&path, |d| {
            d["items"].as_array().is_some_and(|d| {
                d.len() == 1 && d[0]["attempts"] == 1 && !d[0]["attempt_log"].as_array().unwrap().is_empty()
            })
        })
        .await;
    deliveries["items"][0].clone()
}

#[sqlx::test]
async fn a_redirect_is_a_failed_attempt_and_is_never_followed(pool: PgPool) {
    // Loopback targets are allowed here, so only the redirect rule can keep the request from
    // reaching the second server: redirects are refused whatever the target.
    let app = TestApp::spawn_with(pool, &[ALLOW_PRIVATE]).await;
    let (inner_hits, inner) = counting_server(|| StatusCode::OK).await;
    let location = format!("http://{inner}/admin/internal");
    let (outer_hits, outer) =
        counting_server(move || (StatusCode::FOUND, [(header::LOCATION, location.clone())])).await;
    let endpoint = register(&app, &format!("http://{outer}/hook")).await;
    emit_payout(&app).await;

    let delivery = first_attempt(&app, &endpoint).await;
    let attempt = &delivery["attempt_log"][0];
    assert_eq!(attempt["status_code"], 302, "{delivery:#}");
    assert_eq!(
        delivery["status"], "pending",
        "a 3xx is a failure, retried: {delivery:#}"
    );
    assert_eq!(delivery["attempts"], 1);
    assert!(
        attempt["error"].as_str().is_some_and(|e| e.contains("redirect")),
        "{delivery:#}"
    );
    assert_eq!(outer_hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        inner_hits.load(Ordering::SeqCst),
        0,
        "the redirect was followed to the address it named"
    );
}

#[sqlx::test]
async fn an_endless_answer_is_read_no_further_than_64_kib(pool: PgPool) {
    let app = TestApp::spawn_with(pool, &[ALLOW_PRIVATE]).await;
    // A body that never ends: reading it whole would never finish (nor fit in memory).
    let (hits, receiver) = counting_server(|| {
        let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
        let endless = futures::stream::repeat_with(move || Ok::<_, Infallible>(chunk.clone()));
        (StatusCode::OK, Body::from_stream(endless))
    })
    .await;
    let endpoint = register(&app, &format!("http://{receiver}/hook")).await;
    emit_payout(&app).await;

    let delivery = first_attempt(&app, &endpoint).await;
    let attempt = &delivery["attempt_log"][0];
    assert_eq!(attempt["status_code"], 200, "{delivery:#}");
    assert_eq!(delivery["status"], "delivered", "{delivery:#}");
    let kept = attempt["response_body"]
        .as_str()
        .expect("the answer is kept with the attempt");
    assert_eq!(kept.len(), 64 * 1024);
    assert!(kept.bytes().all(|b| b == b'x'));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[sqlx::test]
async fn targets_in_special_purpose_blocks_are_refused_at_registration(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for target in [
        "198.18.0.1",           // benchmarking, RFC 2544
        "198.19.255.254",       //
        "100.64.0.1",           // shared address space (CGNAT), RFC 6598
        "192.0.0.8",            // IETF protocol assignments, RFC 6890
        "192.31.196.1",         // AS112-v4, RFC 7535
        "192.52.193.1",         // AMT, RFC 7450
        "192.88.99.1",          // 6to4 relay anycast, RFC 7526
        "192.175.48.1",         // AS112 direct delegation, RFC 7534
        "240.0.0.1",            // reserved, RFC 1112
        "[64:ff9b::7f00:1]",    // NAT64 of 127.0.0.1, RFC 6052
        "[64:ff9b::a9fe:a9fe]", // NAT64 of 169.254.169.254 (cloud metadata)
        "[64:ff9b:1::a00:1]",   // local-use NAT64, RFC 8215
        "[2002:7f00:1::1]",     // 6to4 of 127.0.0.1, RFC 3056
        "[2002:808:808::1]",    // 6to4 at all (deprecated, RFC 7526)
        "[::7f00:1]",           // IPv4-compatible 127.0.0.1, RFC 4291
        "[::ffff:0:7f00:1]",    // IPv4-translated, RFC 2765
        "[::ffff:a00:1]",       // IPv4-mapped 10.0.0.1, RFC 4291
        "[fec0::1]",            // site-local, RFC 3879
        "[2001::1]",            // Teredo, within 2001::/23, RFC 4380
        "[2001:2::1]",          // benchmarking, RFC 5180
        "[2001:db8::1]",        // documentation, RFC 3849
        "[3fff::1]",            // documentation, RFC 9637
        "[2620:4f:8000::1]",    // AS112 direct delegation, RFC 7534
        "[100::1]",             // discard-only, RFC 6666
        "[5f00::1]",            // SRv6 SIDs, RFC 9602
        "[ff02::1]",            // multicast, RFC 4291
        "[4000::1]",            // outside global unicast 2000::/3: unallocated
    ] {
        let r = app
            .post(
                "/v1/webhook-endpoints",
                json!({"url": format!("https://{target}/hook"), "events": ["payout.paid"]}),
            )
            .await;
        assert_eq!(r.status, 422, "{target} was accepted: {:#}", r.body);
        assert_eq!(r.body["code"], "invalid_target", "{target}: {:#}", r.body);
    }
    // Public addresses, also behind NAT64 or mapped, remain fine targets.
    for target in [
        "93.184.215.14",
        "[64:ff9b::5db8:d70e]",
        "[::ffff:5db8:d70e]",
        "[2606:4700::1111]",
    ] {
        register(&app, &format!("https://{target}/hook")).await;
    }
}

#[sqlx::test]
async fn a_name_resolving_to_an_internal_address_is_refused_when_connecting(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (hits, receiver) = counting_server(|| StatusCode::OK).await;
    let port = receiver.port();
    // Registered while allowed (say, before its name was pointed at loopback): the delivery
    // decides on the address it is about to connect to.
    let by_name = stored_endpoint(&app, &format!("http://localhost:{port}/hook")).await;
    let mapped = stored_endpoint(&app, &format!("http://[::ffff:127.0.0.1]:{port}/hook")).await;
    emit_payout(&app).await;

    for endpoint in [by_name, mapped] {
        let delivery = first_attempt(&app, &endpoint).await;
        let attempt = &delivery["attempt_log"][0];
        assert!(attempt["status_code"].is_null(), "{delivery:#}");
        assert!(
            attempt["error"].as_str().is_some_and(|e| e.contains("internal")),
            "{delivery:#}"
        );
        assert_eq!(delivery["status"], "pending", "{delivery:#}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "an internal address was reached");
}

#[sqlx::test]
async fn a_name_is_still_delivered_to_through_the_guarded_resolver(pool: PgPool) {
    // The guard resolves names itself; with private targets allowed, `localhost` is reached on
    // the port of its URL.
    let app = TestApp::spawn_with(pool, &[ALLOW_PRIVATE]).await;
    let (hits, receiver) = counting_server(|| (StatusCode::OK, "thanks")).await;
    let endpoint = register(&app, &format!("http://localhost:{}/hook", receiver.port())).await;
    emit_payout(&app).await;
    let delivery = first_attempt(&app, &endpoint).await;
    assert_eq!(delivery["status"], "delivered", "{delivery:#}");
    assert_eq!(delivery["attempt_log"][0]["response_body"], "thanks");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
