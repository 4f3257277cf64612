//! Findings 5 and 6: what one client can make the service hold. Metrics labels come from a
//! closed set; a slow request head or a slow unauthenticated body is cut off; each client (an
//! API key, else a remote address) has a budget of requests, beyond which it gets 429.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crowdledger::keys::Role;
use reqwest::{Method, StatusCode};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestApp, read};

/// The methods a metric's `method` label may hold.
const METHOD_LABELS: [&str; 8] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"];

/// The `host:port` the app listens on.
fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// What the peer does next on `stream`: the bytes it sent until it closed the connection (reset
/// included), read while `trickle` keeps writing. `None` if the peer neither answered nor
/// closed before `trickle` ran out of bytes to send.
async fn answer_while_trickling(stream: TcpStream, trickle: Vec<u8>, every: Duration) -> Option<Vec<u8>> {
    let (mut reader, mut writer) = stream.into_split();
    let read_all = async move {
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    // The client's pace, not a wait for the server: the server must act before the bytes run out.
    let write_slowly = async move {
        for byte in trickle {
            tokio::time::sleep(every).await;
            if writer.write_all(&[byte]).await.is_err() {
                // The server closed the connection: what it sent (if anything) is still to read.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        received = read_all => Some(received),
        () = write_slowly => None,
    }
}

#[sqlx::test]
async fn made_up_methods_and_paths_never_become_metric_labels(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for i in 0..30 {
        let method = Method::from_bytes(format!("FORGEDMETHOD{i}").as_bytes()).unwrap();
        for path in ["/v1/projects".to_string(), format!("/madeuppath{i}/x")] {
            let r = app
                .client
                .request(method.clone(), format!("{}{path}", app.base))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_client_error(), "{method} {path}: {}", r.status());
        }
        let r = app
            .client
            .get(format!("{}/madeuppath{i}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    let text = app
        .client
        .get(format!("{}/metrics", app.metrics_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !text.contains("FORGEDMETHOD"),
        "a made-up method became a label:\n{text}"
    );
    assert!(!text.contains("madeuppath"), "a made-up path became a label:\n{text}");
    let series: Vec<&str> = text.lines().filter(|l| l.starts_with("http_requests_total{")).collect();
    assert!(
        series
            .iter()
            .any(|l| l.contains(r#"method="other""#) && l.contains(r#"route="/v1/projects""#)),
        "made-up methods are not counted as `other`:\n{text}"
    );
    assert!(
        series
            .iter()
            .any(|l| l.contains(r#"method="other""#) && l.contains(r#"route="unmatched""#)),
        "made-up paths are not counted as `unmatched`:\n{text}"
    );
    for line in &series {
        let method = line
            .split(r#"method=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("a series without a method: {line}"));
        assert!(METHOD_LABELS.contains(&method), "{line}");
    }
}

#[sqlx::test]
async fn a_request_head_trickling_in_is_cut_off_after_the_header_timeout(pool: PgPool) {
    let app = TestApp::spawn_with(pool, &[("CROWDLEDGER__HTTP__HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // A header line's byte every 100 ms, for up to 30 s: a slowloris never ends its head.
    let trickle = b"X-Slow: a\r\n".repeat(28);
    let answer = answer_while_trickling(stream, trickle, Duration::from_millis(100)).await;
    let answer = answer.expect("the connection was still open 30 s into an unfinished request head");
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "an unfinished head was served: {}",
        String::from_utf8_lossy(&answer)
    );
    // A client that sends its head at once is served as before.
    assert_eq!(
        app.client
            .get(format!("{}/health", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[sqlx::test]
async fn a_webhook_body_trickling_in_is_abandoned_and_its_slot_freed(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        &[
            ("CROWDLEDGER__HTTP__UNAUTHENTICATED_BODY_TIMEOUT_SECONDS", "1"),
            // One slot: the slow body holds the only one until it is cut off.
            ("CROWDLEDGER__HTTP__MAX_IN_FLIGHT", "1"),
        ],
    )
    .await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    stream
        .write_all(
            b"POST /v1/webhooks/sandbox HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 400\r\n\r\n{",
        )
        .await
        .unwrap();
    // One byte of the body every 100 ms: 200 of its 400 bytes take 20 s.
    let answer = answer_while_trickling(stream, vec![b' '; 200], Duration::from_millis(100)).await;
    let answer = answer.expect("a webhook body trickling in for 20 s was still being read");
    // The answer is a 408, unless the connection was reset before it could be read (the
    // server closes it with the rest of the body unread).
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    if !answer.is_empty() {
        assert!(answer.contains("body_timeout"), "{answer}");
    }

    // The slot is free again: the next request is served, not refused as `overloaded`.
    let health = app.client.get(format!("{}/health", app.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[sqlx::test]
async fn a_client_beyond_its_budget_gets_429_with_retry_after_and_no_other_client_does(pool: PgPool) {
    // Three requests each, and one more every 1,000 s: no refill during the test.
    let app = TestApp::spawn_with(
        pool,
        &[
            ("CROWDLEDGER__RATE_LIMIT__KEY_PER_SECOND", "0.001"),
            ("CROWDLEDGER__RATE_LIMIT__KEY_BURST", "3"),
            ("CROWDLEDGER__RATE_LIMIT__ADDRESS_PER_SECOND", "0.001"),
            ("CROWDLEDGER__RATE_LIMIT__ADDRESS_BURST", "3"),
        ],
    )
    .await;
    let (first, second) = (app.key(Role::Platform).await, app.key(Role::Platform).await);
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
            .build()
            .unwrap()
    };
    let get = |client: reqwest::Client, path: &'static str, key: Option<String>| {
        let url = format!("{}{path}", app.base);
        async move {
            let mut req = client.get(url);
            if let Some(key) = key {
                req = req.bearer_auth(key);
            }
            read(req.send().await.unwrap()).await
        }
    };
    let assert_limited = |r: crate::common::Reply| {
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
        assert_eq!(r.content_type, "application/problem+json");
        assert_eq!(r.body["code"], "rate_limited", "{:?}", r.body);
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=1000).contains(&retry), "Retry-After: {retry}");
    };
    let local = from([127, 0, 0, 1]);

    // One key: its fourth request is refused.
    for _ in 0..3 {
        assert_eq!(
            get(local.clone(), "/v1/projects", Some(first.clone())).await.status,
            200
        );
    }
    assert_limited(get(local.clone(), "/v1/projects", Some(first.clone())).await);
    // Another key, from the same address, is not.
    assert_eq!(
        get(local.clone(), "/v1/projects", Some(second.clone())).await.status,
        200
    );

    // Without a key, the address is the client: its keyless requests so far were none.
    for _ in 0..3 {
        assert_eq!(get(local.clone(), "/health", None).await.status, 200);
    }
    assert_limited(get(local.clone(), "/health", None).await);
    // Another address is not limited.
    assert_eq!(get(from([127, 0, 0, 2]), "/health", None).await.status, 200);
    // Keys are still charged to themselves, not to their address.
    assert_eq!(get(local.clone(), "/v1/projects", Some(second)).await.status, 200);

    // Made-up keys buy no fresh budget: their 401s are charged to their address.
    let guesser = from([127, 0, 0, 3]);
    for i in 0..3 {
        let r = get(guesser.clone(), "/v1/projects", Some(format!("clk_made-up-{i}"))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_limited(get(guesser.clone(), "/v1/projects", Some("clk_made-up-3".to_string())).await);
    assert_limited(get(guesser, "/health", None).await);
}
