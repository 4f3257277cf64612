//! What the tests of networked providers (Stripe, Mangopay) share: the settings that point the
//! service at a local fake, and the queue of calls made to it (migration 0034), as they read it.

use crowdledger_provider_fakes::mangopay::MangopayFake;

use super::TestApp;

/// The settings that point the service at a local Mangopay (its client id, API key and address),
/// with `extra` ones, as `TestApp::spawn_with` takes them.
pub fn mangopay_settings<'a>(
    mangopay: &'a MangopayFake,
    base: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut settings = vec![
        ("CROWDLEDGER__PAYMENTS__MANGOPAY__CLIENT_ID", mangopay.client_id()),
        ("CROWDLEDGER__PAYMENTS__MANGOPAY__API_KEY", mangopay.api_key()),
        ("CROWDLEDGER__PAYMENTS__MANGOPAY__API_BASE", base),
    ];
    settings.extend_from_slice(extra);
    settings
}

/// What each attempt of the call that creates `object` came to, in order.
pub async fn attempts(app: &TestApp, object: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select a.outcome from provider_call_attempts a join provider_calls c on c.id = a.call_id
          where c.object_id = $1::uuid order by a.id",
    )
    .bind(object)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// Our id of a pledge's payment.
pub async fn payment_of(app: &TestApp, pledge: &str) -> String {
    let id: uuid::Uuid = sqlx::query_scalar("select id from payments where pledge_id = $1::uuid")
        .bind(pledge)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    id.to_string()
}
