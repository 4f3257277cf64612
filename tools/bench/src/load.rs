//! The load itself: closed loop (C clients, each sending its next request when the last one is
//! answered) and open loop (a fixed arrival rate; latency counts from the moment a request was
//! due, so a stalled service cannot hide behind a slowed-down client).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde_json::json;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

use crowdledger::webhooks::signature::{self, WebhookSecret};

/// What a flood asks of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// One card pledge.
    Pledge,
    /// One card pledge, then the sandbox's signed webhook that funds it.
    Funded,
}

#[derive(Clone, Copy, Debug)]
pub enum Pace {
    Closed {
        clients: usize,
    },
    /// `rate` requests a second over at most `connections` connections, as wrk2 does: a
    /// request due while all are busy waits for one, and its latency still counts from when
    /// it was due.
    Open {
        rate: f64,
        connections: usize,
    },
}

/// The target: one hot offer and the investors taking turns on it.
pub struct Target {
    pub base: String,
    pub investors: Vec<String>,
    /// Distinguishes runs, so idempotency keys never repeat.
    pub run: String,
    /// Numbers every request of the run, across phases: its idempotency key and investor.
    pub seq: AtomicU64,
    /// The sandbox's webhook secret: with it the generator plays the provider and posts the
    /// signed `payment.succeeded` itself; without it, it asks the sandbox's control to.
    pub sandbox_secret: Option<WebhookSecret>,
    // Parsed and formatted once: the generator's own cost per request is kept small, so that
    // the machine's two cores go to the service and Postgres it measures.
    pledges_url: reqwest::Url,
    webhook_url: reqwest::Url,
    authorization: HeaderValue,
    /// The end of a pledge's body: the KIIS it names (nothing for a service from before the ECSP
    /// gate: `scripts/bench-ab` floods one beside today's) and, for retail investors, the risk
    /// warning acknowledged.
    kiis_field: String,
}

impl Target {
    pub fn new(
        base: &str,
        key: &str,
        offer: &str,
        investors: Vec<String>,
        sandbox_secret: Option<WebhookSecret>,
        kiis: Option<&str>,
        retail: bool,
    ) -> anyhow::Result<Self> {
        let kiis = kiis.map_or_else(String::new, |k| format!(r#","kiis_sha256":"{k}""#));
        let warning = if retail { r#","risk_acknowledged":true"# } else { "" };
        Ok(Target {
            kiis_field: format!("{kiis}{warning}"),
            base: base.to_string(),
            pledges_url: format!("{base}/v1/offers/{offer}/pledges").parse()?,
            webhook_url: format!("{base}/v1/webhooks/sandbox").parse()?,
            authorization: HeaderValue::try_from(format!("Bearer {key}"))?,
            investors,
            run: uuid::Uuid::new_v4().simple().to_string(),
            seq: AtomicU64::new(0),
            sandbox_secret,
        })
    }
}

/// Latencies and outcomes, overall and per second of the run.
pub struct Recorder {
    started: Instant,
    inner: Mutex<Recorded>,
}

pub struct Recorded {
    pub all: Histogram<u64>,
    pub seconds: Vec<(u64, Histogram<u64>)>,
    pub outcomes: BTreeMap<String, u64>,
    /// Pledges the service answered 201 to, with their shares.
    pub acknowledged: Vec<(String, i64)>,
}

fn histogram() -> Histogram<u64> {
    // Microseconds, from 1 µs to 2 min, 3 significant digits.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

impl Recorder {
    pub fn new(started: Instant) -> Self {
        Recorder {
            started,
            inner: Mutex::new(Recorded {
                all: histogram(),
                seconds: Vec::new(),
                outcomes: BTreeMap::new(),
                acknowledged: Vec::new(),
            }),
        }
    }

    fn record(&self, due: Instant, outcome: &str, acknowledged: Option<(String, i64)>) {
        let done = Instant::now();
        let micros = done.saturating_duration_since(due).as_micros().clamp(1, 120_000_000) as u64;
        let second = done.saturating_duration_since(self.started).as_secs();
        let mut r = self.inner.lock().expect("recorder poisoned");
        *r.outcomes.entry(outcome.to_string()).or_default() += 1;
        if let Some(ack) = acknowledged {
            r.acknowledged.push(ack);
            r.all.saturating_record(micros);
            match r.seconds.last_mut() {
                Some((s, h)) if *s == second => h.saturating_record(micros),
                _ => {
                    let mut h = histogram();
                    h.saturating_record(micros);
                    r.seconds.push((second, h));
                }
            }
        }
    }

    pub fn finish(self) -> Recorded {
        self.inner.into_inner().expect("recorder poisoned")
    }
}

/// The fields of a created pledge that the generator reads.
#[derive(Deserialize)]
struct Created {
    id: String,
    amount: String,
    currency: String,
    payment: Option<CreatedPayment>,
}

#[derive(Deserialize)]
struct CreatedPayment {
    payment_id: String,
}

/// A refusal's stable code, or a webhook's acknowledgement, or the sandbox control's answer.
#[derive(Deserialize, Default)]
struct Answer {
    code: Option<String>,
    outcome: Option<String>,
    duplicate: Option<bool>,
    applied: Option<bool>,
}

async fn send(client: &reqwest::Client, target: &Target, seq: u64, work: Work) -> (String, Option<(String, i64)>) {
    let investor = &target.investors[seq as usize % target.investors.len()];
    let shares = 1 + (seq % 5) as i64;
    let body = format!(
        r#"{{"investor_id":"{investor}","shares":{shares},"funding":[{{"kind":"card","amount":"{shares}.00"}}]{}}}"#,
        target.kiis_field
    );
    let answer = client
        .post(target.pledges_url.clone())
        .header(AUTHORIZATION, target.authorization.clone())
        .header(CONTENT_TYPE, APPLICATION_JSON)
        .header("idempotency-key", format!("bench-{}-{seq}", target.run))
        .body(body)
        .send()
        .await;
    let response = match answer {
        Ok(r) => r,
        Err(e) => {
            return (
                format!("transport: {}", if e.is_timeout() { "timeout" } else { "error" }),
                None,
            );
        }
    };
    let status = response.status();
    if response.headers().contains_key("idempotent-replayed") {
        // Every key is fresh: a replay here means the generator reused one.
        return ("replayed (generator error)".into(), None);
    }
    let bytes = response.bytes().await.unwrap_or_default();
    if status != 201 {
        let answer: Answer = serde_json::from_slice(&bytes).unwrap_or_default();
        return (
            format!("{} {}", status.as_u16(), answer.code.as_deref().unwrap_or("")),
            None,
        );
    }
    let Ok(created) = serde_json::from_slice::<Created>(&bytes) else {
        return ("201 unreadable".into(), None);
    };
    if work == Work::Pledge {
        return ("201 accepted".into(), Some((created.id, shares)));
    }
    let payment = created.payment.map(|p| p.payment_id).unwrap_or_default();
    let funded = match &target.sandbox_secret {
        Some(secret) => {
            // What the provider sends: the sandbox's event, signed the Standard Webhooks way.
            let event_id = format!("evt_bench_{}_{seq}", target.run);
            // The provider's own clock, as a real provider's would be: the service checks the
            // timestamp against the wall clock (300 s tolerance), however its manual clock moved.
            let now = chrono::Utc::now().timestamp();
            let body = serde_json::to_vec(&json!({"id": event_id, "type": "payment.succeeded", "created": now,
                "data": {"payment_id": payment, "amount": created.amount, "currency": created.currency}}))
            .expect("JSON serialises");
            client
                .post(target.webhook_url.clone())
                .header(CONTENT_TYPE, APPLICATION_JSON)
                .header("webhook-id", &event_id)
                .header("webhook-timestamp", now.to_string())
                .header(
                    "webhook-signature",
                    signature::signature_header(&[secret], &event_id, now, &body),
                )
                .body(body)
                .send()
                .await
        }
        None => {
            client
                .post(format!("{}/v1/sandbox/payments/{payment}/succeed", target.base))
                .header(AUTHORIZATION, target.authorization.clone())
                .json(&json!({}))
                .send()
                .await
        }
    };
    match funded {
        Ok(r) if r.status() == 200 => {
            let answer: Answer = serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or_default();
            // The sandbox's control answers `applied`; the webhook endpoint its `outcome`.
            if answer.applied == Some(true)
                || (answer.outcome.as_deref() == Some("applied") && answer.duplicate == Some(false))
            {
                ("200 funded".into(), Some((created.id, shares)))
            } else {
                (
                    format!("200 {}", answer.outcome.as_deref().unwrap_or("not applied")),
                    None,
                )
            }
        }
        Ok(r) => (format!("funding {}", r.status().as_u16()), None),
        Err(_) => ("funding transport error".into(), None),
    }
}

/// Floods the target for `duration`; returns what was recorded.
pub async fn flood(target: Arc<Target>, work: Work, pace: Pace, duration: Duration) -> Recorded {
    let connections = match pace {
        Pace::Closed { clients } => clients,
        Pace::Open { connections, .. } => connections,
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a plain HTTP client builds");
    // Connect first, as wrk does: the phase measures requests, not TCP handshakes.
    futures::future::join_all((0..connections).map(|_| client.get(format!("{}/health", target.base)).send())).await;
    let started = Instant::now();
    let deadline = started + duration;
    let recorder = Arc::new(Recorder::new(started));
    match pace {
        Pace::Closed { clients } => {
            let tasks: Vec<_> = (0..clients)
                .map(|_| {
                    let (client, target, recorder) = (client.clone(), target.clone(), recorder.clone());
                    tokio::spawn(async move {
                        while Instant::now() < deadline {
                            let n = target.seq.fetch_add(1, Ordering::Relaxed);
                            let due = Instant::now();
                            let (outcome, ack) = send(&client, &target, n, work).await;
                            recorder.record(due, &outcome, ack);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("a client task panicked");
            }
        }
        Pace::Open { rate, connections } => {
            // One task per connection, as wrk2 has: each takes the next slot of the one schedule,
            // waits for its time and sends; a slot that comes due while every connection is
            // busy is sent late, its latency still counted from when it was due.
            let interval = Duration::from_secs_f64(1.0 / rate);
            let slots = Arc::new(AtomicU64::new(0));
            let tasks: Vec<_> = (0..connections)
                .map(|_| {
                    let (client, target, recorder, slots) =
                        (client.clone(), target.clone(), recorder.clone(), slots.clone());
                    tokio::spawn(async move {
                        loop {
                            let slot = slots.fetch_add(1, Ordering::Relaxed);
                            let due = started + interval.mul_f64(slot as f64);
                            if due >= deadline {
                                break;
                            }
                            tokio::time::sleep_until(due.into()).await;
                            let n = target.seq.fetch_add(1, Ordering::Relaxed);
                            let (outcome, ack) = send(&client, &target, n, work).await;
                            recorder.record(due, &outcome, ack);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("a request task panicked");
            }
        }
    }
    Arc::into_inner(recorder).expect("every task has finished").finish()
}
