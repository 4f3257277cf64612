//! The flood the crashes land in: card pledges funded by the provider's signed webhook, cheque
//! pledges racing for the same cheques, spread over every `serve` process. Each operation is
//! retried with the same idempotency key or event id until some process answers, as a real
//! client or provider would; what was acknowledged is recorded, to be checked afterwards.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crowdledger::webhooks::signature::{self, WebhookSecret};

/// How long an operation is retried before the client gives up on it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(90);

/// What the flood works on.
pub struct World {
    pub bases: Vec<String>,
    pub key: String,
    pub sandbox_secret: WebhookSecret,
    pub investors: Vec<String>,
    /// Offers taking pledges: first_come and pro_rata, some closing during the run.
    pub offers: Vec<String>,
    pub cheque_codes: Vec<String>,
    pub run: String,
}

/// A pledge some process acknowledged (201, or 200 on a replay of its key).
#[derive(Clone, Debug)]
pub struct AckedPledge {
    pub id: String,
    pub offer: String,
    pub shares: i64,
    /// Funded as acknowledged: by a cheque at once, or by a payment webhook answered `applied`.
    pub funded: bool,
}

/// Everything the clients were told.
#[derive(Default)]
pub struct Acks {
    pub pledges: Mutex<Vec<AckedPledge>>,
    /// Outcomes by kind, for the report.
    pub outcomes: Mutex<BTreeMap<String, u64>>,
    seq: AtomicU64,
}

impl Acks {
    fn count(&self, outcome: impl Into<String>) {
        *self.outcomes.lock().unwrap().entry(outcome.into()).or_default() += 1;
    }
}

/// Sends `request` to a random process; on a transport error or a 5xx (a process killed, the
/// database down) tries again, on another one, until one answers or the client gives up.
async fn retrying(
    http: &reqwest::Client,
    world: &World,
    acks: &Acks,
    request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> Option<(StatusCode, Value)> {
    let deadline = Instant::now() + GIVE_UP_AFTER;
    loop {
        let base = &world.bases[rand::rng().random_range(0..world.bases.len())];
        match request(http, base).send().await {
            Ok(response) if !response.status().is_server_error() => {
                let status = response.status();
                return Some((status, response.json().await.unwrap_or_default()));
            }
            Ok(response) => acks.count(format!("retried after {}", response.status().as_u16())),
            Err(_) => acks.count("retried after a transport error"),
        }
        if Instant::now() > deadline {
            return None;
        }
        let pause = Duration::from_millis(rand::rng().random_range(100..300));
        tokio::time::sleep(pause).await;
    }
}

/// One client: operations until `stop`.
pub async fn client(http: reqwest::Client, world: &World, acks: &Acks, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let seq = acks.seq.fetch_add(1, Ordering::Relaxed);
        let by_cheque = !world.cheque_codes.is_empty() && rand::rng().random_bool(0.15);
        if by_cheque {
            cheque_pledge(&http, world, acks, seq).await;
        } else {
            card_pledge(&http, world, acks, seq).await;
        }
    }
}

async fn pledge(
    http: &reqwest::Client,
    world: &World,
    acks: &Acks,
    seq: u64,
    shares: i64,
    funding: Value,
) -> Option<(String, Value)> {
    let (investor, offer) = {
        let mut rng = rand::rng();
        (
            &world.investors[rng.random_range(0..world.investors.len())],
            world.offers[rng.random_range(0..world.offers.len())].clone(),
        )
    };
    // Every offer was opened by `crowdledger_client::Api::open_offer`, with its KIIS.
    let body = json!({"investor_id": investor, "shares": shares, "funding": funding,
                      "kiis_sha256": crowdledger_client::KIIS_SHA256});
    let key = format!("torture-{}-{seq}", world.run);
    let answer = retrying(http, world, acks, |http, base| {
        http.post(format!("{base}/v1/offers/{offer}/pledges"))
            .bearer_auth(&world.key)
            .header("idempotency-key", &key)
            .json(&body)
    })
    .await;
    match answer {
        Some((status, value)) if status == StatusCode::CREATED || status == StatusCode::OK => {
            let id = value["id"].as_str().unwrap_or_default().to_string();
            Some((offer, value)).filter(|_| !id.is_empty())
        }
        Some((status, value)) => {
            acks.count(format!(
                "pledge {} {}",
                status.as_u16(),
                value["code"].as_str().unwrap_or("")
            ));
            None
        }
        None => {
            acks.count("pledge: gave up");
            None
        }
    }
}

async fn card_pledge(http: &reqwest::Client, world: &World, acks: &Acks, seq: u64) {
    let shares = rand::rng().random_range(1..=5);
    let funding = json!([{"kind": "card", "amount": format!("{shares}.00")}]);
    let Some((offer, answer)) = pledge(http, world, acks, seq, shares, funding).await else {
        return;
    };
    let id = answer["id"].as_str().unwrap_or_default().to_string();
    acks.count("pledge (card) acknowledged");
    // The provider confirms the payment: the sandbox's event, signed the Standard Webhooks way.
    let event_id = format!("evt_torture_{}_{seq}", world.run);
    let body = serde_json::to_vec(&json!({"id": event_id, "type": "payment.succeeded",
        "created": chrono::Utc::now().timestamp(),
        "data": {"payment_id": answer["payment"]["payment_id"], "amount": answer["amount"], "currency": answer["currency"]}}))
    .expect("JSON serialises");
    // Providers repeat themselves: one event in ten is delivered twice.
    let deliveries = if rand::rng().random_bool(0.1) { 2 } else { 1 };
    let mut funded = false;
    for delivery in 0..deliveries {
        let answer = retrying(http, world, acks, |http, base| {
            // Signed when sent, as a provider retrying later would.
            let now = chrono::Utc::now().timestamp();
            http.post(format!("{base}/v1/webhooks/sandbox"))
                .header("content-type", "application/json")
                .header("webhook-id", &event_id)
                .header("webhook-timestamp", now.to_string())
                .header(
                    "webhook-signature",
                    signature::signature_header(&[&world.sandbox_secret], &event_id, now, &body),
                )
                .body(body.clone())
        })
        .await;
        match answer {
            Some((StatusCode::OK, v)) => {
                let outcome = v["outcome"].as_str().unwrap_or("?");
                acks.count(format!(
                    "payment webhook 200 {outcome}{}",
                    if v["duplicate"] == true { " (duplicate)" } else { "" }
                ));
                if delivery > 0 && v["duplicate"] != true {
                    acks.count("VIOLATION: a repeated event applied again");
                }
                funded |= outcome == "applied";
            }
            Some((status, v)) => acks.count(format!(
                "payment webhook {} {}",
                status.as_u16(),
                v["code"].as_str().unwrap_or("")
            )),
            None => acks.count("payment webhook: gave up"),
        }
    }
    acks.pledges.lock().unwrap().push(AckedPledge {
        id,
        offer,
        shares: answer["shares"].as_i64().unwrap_or(-1),
        funded,
    });
}

/// One card pledge and its funding, as the flood makes them.
pub async fn card_pledge_once(http: &reqwest::Client, world: &World, acks: &Acks) {
    let seq = acks.seq.fetch_add(1, Ordering::Relaxed);
    card_pledge(http, world, acks, seq).await;
}

async fn cheque_pledge(http: &reqwest::Client, world: &World, acks: &Acks, seq: u64) {
    let (shares, code) = {
        let mut rng = rand::rng();
        (
            rng.random_range(1..=10),
            &world.cheque_codes[rng.random_range(0..world.cheque_codes.len())],
        )
    };
    let funding = json!([{"kind": "cheque", "amount": format!("{shares}.00"), "cheque_code": code}]);
    let Some((offer, answer)) = pledge(http, world, acks, seq, shares, funding).await else {
        return;
    };
    acks.count("pledge (cheque) acknowledged");
    acks.pledges.lock().unwrap().push(AckedPledge {
        id: answer["id"].as_str().unwrap_or_default().to_string(),
        offer,
        shares: answer["shares"].as_i64().unwrap_or(-1),
        funded: true,
    });
}
