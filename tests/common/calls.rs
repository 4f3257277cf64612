//! What the queue of calls to networked providers holds (migration 0034), as the tests of each
//! provider (Stripe, Mangopay) read it.

use super::TestApp;

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
