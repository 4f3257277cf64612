//! Finding 9: secrets kept where they should not be. A replayed endpoint registration never
//! shows the signing secret, and no stored response holds it; a ballot's seed cannot be read
//! (or recomputed) from the database before the offer has closed and revealed it.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::common::fixtures::*;
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

/// Every column of the offer's row, as the database's owner reads it (bytea as `\x…` hex).
async fn offer_row(app: &TestApp, offer: &str) -> String {
    sqlx::query_scalar("select to_jsonb(o)::text from offers o where o.id = $1::uuid")
        .bind(offer)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Opens an oversubscribed ballot round of 100 shares and funds 12 pledges (318 shares).
async fn oversubscribed_ballot(app: &TestApp) -> String {
    let terms = json!({"min_target": "500.00", "max_target": "1000.00", "allocation": "ballot"});
    let World { offer, investors, .. } = world_with(app, terms, 28, 12).await;
    for (i, who) in (0..).zip(&investors) {
        funded_pledge(app, &offer, who, 10 + i * 3).await;
    }
    offer
}

/// Closes the round; checks the revealed seed against the commitment and the draw against the
/// documented recomputation; returns the seed.
async fn close_and_check_the_draw(app: &TestApp, offer: &str, commitment: &str) -> Vec<u8> {
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    let seed = hex::decode(closed["seed"].as_str().expect("the seed is revealed at the close")).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&seed)),
        commitment,
        "the seed is not the committed one"
    );
    let pledges = pledges_of(app, offer).await;
    let allocated: Vec<i64> = pledges
        .iter()
        .map(|p| p["allocated_shares"].as_i64().unwrap())
        .collect();
    assert_eq!(allocated, recompute_ballot(&seed, &pledges, 100));
    assert_eq!(allocated.iter().sum::<i64>(), 100);
    app.assert_books_verify().await;
    seed
}

#[sqlx::test]
async fn a_ballot_seed_cannot_be_read_from_the_database_before_the_close(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = oversubscribed_ballot(&app).await;
    let open = ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await;
    let commitment = open["commitment"].as_str().unwrap().to_string();
    assert!(open.get("seed").is_none());
    // What a reader of the database (a backup, a replica, a leaked dump) sees while it is open.
    let stored_while_open = offer_row(&app, &offer).await;

    let seed = close_and_check_the_draw(&app, &offer, &commitment).await;
    let seed_hex = hex::encode(&seed);
    assert!(
        !stored_while_open.contains(&seed_hex),
        "the seed was in the database while the offer was open: {stored_while_open}"
    );
    // Nor anything a reader could turn into the draw: no stored bytes hash to the commitment.
    let row: Value = serde_json::from_str(&stored_while_open).unwrap();
    for (column, value) in row.as_object().unwrap() {
        if let Some(bytes) = value
            .as_str()
            .and_then(|s| s.strip_prefix("\\x"))
            .and_then(|h| hex::decode(h).ok())
        {
            assert_ne!(
                hex::encode(Sha256::digest(&bytes)),
                commitment,
                "{column} holds the seed"
            );
            assert_ne!(bytes, seed, "{column} holds the seed");
        }
    }
}

#[sqlx::test]
async fn a_ballot_opened_before_seeds_were_derived_still_closes_with_its_stored_seed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = oversubscribed_ballot(&app).await;
    // As migration 0023 found an offer opened earlier: its seed stored, committed to, no nonce.
    let legacy_seed = [7u8; 32];
    let commitment = hex::encode(Sha256::digest(legacy_seed));
    sqlx::query("update offers set ballot_nonce = null, ballot_seed = $2, ballot_commitment = $3 where id = $1::uuid")
        .bind(&offer)
        .bind(legacy_seed.as_slice())
        .bind(&commitment)
        .execute(&app.pool)
        .await
        .unwrap();
    let seed = close_and_check_the_draw(&app, &offer, &commitment).await;
    assert_eq!(seed, legacy_seed);
}

#[sqlx::test]
async fn a_ballot_whose_seed_no_longer_matches_its_commitment_is_not_drawn(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let offer = oversubscribed_ballot(&app).await;
    // As if ballot.seed_key had been changed since the open: the seed derived now is not the
    // one committed to.
    sqlx::query("update offers set ballot_commitment = repeat('0', 64) where id = $1::uuid")
        .bind(&offer)
        .execute(&app.pool)
        .await
        .unwrap();
    app.post(&format!("/v1/offers/{offer}/close"), json!({}))
        .await
        .assert_problem(500, "internal_error");
    let o = ok(app.get(&format!("/v1/offers/{offer}")).await, 200).await;
    assert_eq!(o["status"], "closing", "{o:#}");
    assert_eq!(o["shares_allocated"], 0, "{o:#}");
    assert!(o.get("seed").is_none(), "{o:#}");
}

/// A ballot offer in draft with its KIIS, opening now, closing in 28 days.
async fn draft_ballot(app: &TestApp, project: &str) -> String {
    let now = app.clock.now();
    let body = json!({
        "currency": "EUR", "share_price": "10.00", "min_target": "500.00", "max_target": "1000.00",
        "min_ticket": "10.00", "opens_at": now.to_rfc3339(),
        "closes_at": (now + chrono::TimeDelta::days(28)).to_rfc3339(),
        "success_fee_rate": "0.05", "allocation": "ballot",
    });
    let offer = ok(app.post(&format!("/v1/projects/{project}/offers"), body).await, 201).await;
    let id = offer["id"].as_str().unwrap().to_string();
    add_kiis(app, &id).await;
    id
}

#[sqlx::test]
async fn without_a_seed_key_the_system_clock_opens_no_ballot(pool: PgPool) {
    let sandbox_secret = crowdledger::webhooks::signature::WebhookSecret::generate().expose_string();
    let system = [
        ("CROWDLEDGER__CLOCK__MODE", "system"),
        (
            "CROWDLEDGER__PAYMENTS__SANDBOX__WEBHOOK_SECRET",
            sandbox_secret.as_str(),
        ),
    ];
    let keyless = TestApp::spawn_with(pool.clone(), &system).await;
    let project = published_project(&keyless).await;
    let offer = draft_ballot(&keyless, &project).await;
    keyless
        .post(&format!("/v1/offers/{offer}/open"), json!({}))
        .await
        .assert_problem(409, "ballot_key_missing");
    let still = ok(keyless.get(&format!("/v1/offers/{offer}")).await, 200).await;
    assert_eq!(still["status"], "draft");
    assert!(still.get("commitment").is_none());
    // The other allocations need no key.
    open_offer(
        &keyless,
        &project,
        json!({"min_target": "500.00", "max_target": "1000.00"}),
        28,
    )
    .await;

    // With a key configured, the same offer opens.
    let key = "c2VlZC1rZXktZm9yLXRoaXMtdGVzdC1vbmx5LTAxMjM0NTY3ODlhYmNkZWY=";
    let keyed = TestApp::spawn_with(pool, &[system[0], system[1], ("CROWDLEDGER__BALLOT__SEED_KEY", key)]).await;
    let opened = ok(keyed.post(&format!("/v1/offers/{offer}/open"), json!({})).await, 200).await;
    assert_eq!(opened["status"], "open");
    assert!(opened["commitment"].is_string(), "{opened:#}");
}

/// The service's migrations before 0023.
#[derive(Debug)]
struct Before0023;

impl sqlx::migrate::MigrationSource<'static> for Before0023 {
    fn resolve(
        self,
    ) -> futures::future::BoxFuture<'static, Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>> {
        let earlier = crowdledger::db::MIGRATOR
            .iter()
            .filter(|m| m.version < 23)
            .cloned()
            .collect();
        Box::pin(async move { Ok(earlier) })
    }
}

#[sqlx::test(migrations = false)]
async fn migration_0023_scrubs_endpoint_secrets_already_stored_for_replays(pool: PgPool) {
    use crowdledger::db::MIGRATOR;
    sqlx::migrate::Migrator::new(Before0023)
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
