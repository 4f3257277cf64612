//! The run's outbound-webhook endpoint: checks each delivery's signature and counts it by
//! event id (`webhook-id`), so the checks can tell every event arrived, and how many twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use crowdledger::webhooks::signature::{self, WebhookSecret};

use crate::check::Received;

#[derive(Default)]
struct Seen {
    secret: OnceLock<WebhookSecret>,
    events: Mutex<HashMap<String, u64>>,
    bad_signatures: Mutex<u64>,
}

pub struct Receiver {
    url: String,
    seen: Arc<Seen>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let seen = Arc::new(Seen::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(seen.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Receiver { url, seen })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The endpoint's secret, known once the endpoint is registered.
    pub fn set_secret(&self, secret: WebhookSecret) {
        let _ = self.seen.secret.set(secret);
    }

    /// The event ids received so far.
    pub fn seen(&self) -> HashSet<String> {
        self.seen.events.lock().unwrap().keys().cloned().collect()
    }

    pub fn counts(&self) -> Received {
        let events = self.seen.events.lock().unwrap();
        Received {
            deliveries: events.values().sum(),
            distinct_events: events.len() as u64,
            bad_signatures: *self.seen.bad_signatures.lock().unwrap(),
        }
    }
}

async fn receive(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let verified = seen.secret.get().is_some_and(|secret| {
        signature::verify(
            &[secret],
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            &body,
            chrono::Utc::now().timestamp(),
        )
        .is_ok()
    });
    if !verified {
        *seen.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    *seen
        .events
        .lock()
        .unwrap()
        .entry(header("webhook-id").to_string())
        .or_default() += 1;
    StatusCode::NO_CONTENT
}
