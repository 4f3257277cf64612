//! Finding 9: secrets kept where they should not be. A replayed endpoint registration never
//! shows the signing secret, and no stored response holds it.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{OPERATOR_KEY, TestApp, send};

/// How many stored idempotent responses contain `text`, read as the database's owner.
async fn stored_responses_containing(app: &TestApp, text: &str) -> i64 {
    sqlx::query_scalar("select count(*) from idempotency_keys where strpos(response_body, $1) > 0")
        .bind(text)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_replayed_endpoint_registration_never_shows_the_secret_nor_stores_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let auth = format!("Bearer {OPERATOR_KEY}");
    let headers = [("authorization", auth.as_str()), ("idempotency-key", "register-once")];
    let body = json!({"url": "https://93.184.215.14/hooks", "events": ["payout.paid"]});
    let path = "/v1/webhook-endpoints";

    let first = send(&app, reqwest::Method::POST, path, &headers, Some(&body)).await;
    assert_eq!(first.status, 201, "{:#}", first.body);
    let secret = first.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    // The key material alone, in case something stored it without its prefix.
    let material = secret.trim_start_matches("whsec_").to_string();

    let replay = send(&app, reqwest::Method::POST, path, &headers, Some(&body)).await;
    assert_eq!(replay.status, 201, "{:#}", replay.body);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert!(
        replay.body["secret"].is_null(),
        "a replay shows the secret again: {:#}",
        replay.body
    );
    assert!(!replay.body.to_string().contains(&material), "{:#}", replay.body);
    let mut expected = first.body.clone();
    expected["secret"] = Value::Null;
    assert_eq!(replay.body, expected, "a replay is the first answer but for the secret");

    // A rotation answers its new secret once; sent with a key, nothing of it is stored either.
    let id = first.body["id"].as_str().unwrap();
    let rotated = send(
        &app,
        reqwest::Method::POST,
        &format!("/v1/webhook-endpoints/{id}/rotate-secret"),
        &[("authorization", auth.as_str()), ("idempotency-key", "rotate-once")],
        None,
    )
    .await;
    assert_eq!(rotated.status, 200, "{:#}", rotated.body);
    let new_material = rotated.body["secret"]
        .as_str()
        .unwrap()
        .trim_start_matches("whsec_")
        .to_string();

    for text in [&material, &new_material] {
        assert_eq!(
            stored_responses_containing(&app, text).await,
            0,
            "a secret is stored in idempotency_keys"
        );
    }
}

/// The service's migrations before 0025.
#[derive(Debug)]
struct Before0025;

impl sqlx::migrate::MigrationSource<'static> for Before0025 {
    fn resolve(
        self,
    ) -> futures::future::BoxFuture<'static, Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>> {
        let earlier = crowdledger::db::MIGRATOR
            .iter()
            .filter(|m| m.version < 25)
            .cloned()
            .collect();
        Box::pin(async move { Ok(earlier) })
    }
}

#[sqlx::test(migrations = false)]
async fn migration_0025_scrubs_endpoint_secrets_already_stored_for_replays(pool: PgPool) {
    use crowdledger::db::MIGRATOR;
    sqlx::migrate::Migrator::new(Before0025)
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // As the service stored a registration's answer before: the secret in clear.
    let secret = crowdledger::webhooks::signature::WebhookSecret::generate().expose_string();
    let stored = format!(
        r#"{{"id":"0194a1b2-0000-7000-8000-000000000001","url":"https://platform.example/hooks","events":["payout.paid"],"status":"active","secret":"{secret}","created_at":"2026-12-01T00:00:00Z"}}"#
    );
    let cheque = r#"{"id":"0194a1b2-0000-7000-8000-000000000002","code":null,"memo":"secret"}"#;
    for (key, body) in [("endpoint", stored.as_str()), ("cheque", cheque)] {
        sqlx::query(
            "insert into idempotency_keys (scope, key, fingerprint, response_status, response_body, created_at)
             values ('bootstrap', $1, '\\x00', 201, $2, now())",
        )
        .bind(key)
        .bind(body)
        .execute(&pool)
        .await
        .unwrap();
    }
    MIGRATOR.run(&pool).await.unwrap();

    let after: Vec<(String, String)> = sqlx::query_as("select key, response_body from idempotency_keys order by key")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        after[0],
        ("cheque".to_string(), cheque.to_string()),
        "other answers are left as they were"
    );
    assert_eq!(after[1].1, stored.replace(&format!(r#""{secret}""#), "null"));
    assert!(!after[1].1.contains(secret.trim_start_matches("whsec_")));
}
