//! Findings 5 and 6: what one client can make the service hold. Metrics labels come from a
//! closed set; a slow request head or a slow unauthenticated body is cut off; each client (an
//! API key, else a remote address) has a budget of requests, beyond which it gets 429.

use reqwest::{Method, StatusCode};
use sqlx::PgPool;

use crate::common::TestApp;

/// The methods a metric's `method` label may hold.
const METHOD_LABELS: [&str; 8] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"];

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
