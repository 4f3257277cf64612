//! The Stripe fake through real HTTP, as the service's adapter will call it: auth, form bodies,
//! each endpoint's answers and errors, idempotency, faults, a late reply, and signed events.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use crowdledger_provider_fakes::stripe::{DisputeOutcome, Fault, Kind, PINNED_VERSION, StripeFake};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

/// What the service's adapter will be: a form-encoding client with the key and the pinned version.
struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Client {
    fn of(fake: &StripeFake) -> Client {
        Client {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: fake.base_url(),
            key: fake.secret_key().to_owned(),
        }
    }

    /// POSTs `body` as written (brackets unencoded, as Stripe's curl examples send them).
    async fn post(&self, path: &str, body: &str, idempotency_key: Option<&str>) -> Answer {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("stripe-version", PINNED_VERSION)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        answer(request.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> Answer {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("stripe-version", PINNED_VERSION);
        answer(request.send().await.unwrap()).await
    }

    async fn payment_intent(&self, amount: i64) -> Value {
        let answer = self
            .post(
                "/v1/payment_intents",
                &format!("amount={amount}&currency=eur&allowed_payment_method_types[0]=card&metadata[pledge_id]=p1"),
                None,
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap();
    Answer { status, headers, body }
}

fn assert_error(answer: &Answer, status: u16, kind: &str, code: Option<&str>, param: Option<&str>) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let error = &answer.body["error"];
    assert_eq!(error["type"], kind, "{}", answer.body);
    assert_eq!(error["code"].as_str(), code, "{}", answer.body);
    assert_eq!(error["param"].as_str(), param, "{}", answer.body);
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn requests_need_the_secret_key_as_a_bearer_token() {
    let fake = StripeFake::start().await;
    let url = format!("{}/v1/customers", fake.base_url());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let none = answer(http.post(&url).send().await.unwrap()).await;
    assert_error(&none, 401, "invalid_request_error", None, None);
    let wrong = answer(http.post(&url).bearer_auth("sk_test_wrong").send().await.unwrap()).await;
    assert_error(&wrong, 401, "invalid_request_error", None, None);
    assert_eq!(fake.created(Kind::Customer), 0);

    let right = answer(http.post(&url).bearer_auth(fake.secret_key()).send().await.unwrap()).await;
    assert_eq!(right.status, 200);
    assert!(right.body["id"].as_str().unwrap().starts_with("cus_"));
}

#[tokio::test]
async fn a_payment_intent_reads_nested_brackets_and_answers_stripes_object() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let body = "amount=12050&currency=eur&allowed_payment_method_types[0]=card\
        &metadata[pledge_id]=p-1&metadata%5Bpayment_id%5D=pay-1&transfer_group=offer_o1";
    let created = client
        .post("/v1/payment_intents", body, Some("crowdledger-payment-pay-1"))
        .await;

    assert_eq!(created.status, 200, "{}", created.body);
    let intent = &created.body;
    let id = intent["id"].as_str().unwrap();
    assert!(id.starts_with("pi_"));
    assert!(
        intent["client_secret"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{id}_secret_"))
    );
    assert_eq!(intent["object"], "payment_intent");
    assert_eq!(intent["amount"], 12050);
    assert_eq!(intent["amount_received"], 0);
    assert_eq!(intent["currency"], "eur");
    assert_eq!(intent["status"], "requires_payment_method");
    assert_eq!(intent["metadata"], json!({"pledge_id": "p-1", "payment_id": "pay-1"}));
    assert_eq!(intent["payment_method_types"], json!(["card"]));
    assert_eq!(intent["transfer_group"], "offer_o1");
    assert_eq!(intent["livemode"], false);
    assert!(intent["created"].as_i64().unwrap() > 1_700_000_000);
    assert!(created.headers["request-id"].to_str().unwrap().starts_with("req_"));

    let read = client
        .get(&format!("/v1/payment_intents/{id}?expand[]=latest_charge"))
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(&read.body, intent);

    let logged = &fake.requests()[0];
    assert_eq!(
        (logged.method.as_str(), logged.path.as_str()),
        ("POST", "/v1/payment_intents")
    );
    assert_eq!(logged.params["metadata"]["payment_id"], "pay-1");
    assert_eq!(logged.params["allowed_payment_method_types"], json!(["card"]));
    assert_eq!(logged.idempotency_key.as_deref(), Some("crowdledger-payment-pay-1"));
    assert_eq!(logged.stripe_version.as_deref(), Some(PINNED_VERSION));
}

#[tokio::test]
async fn bad_parameters_are_named_in_stripes_error_body() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let cases = [
        ("currency=eur", 400, Some("parameter_missing"), Some("amount")),
        (
            "amount=12.50&currency=eur",
            400,
            Some("parameter_invalid_integer"),
            Some("amount"),
        ),
        ("amount=10&currency=eur", 400, Some("amount_too_small"), Some("amount")),
        ("amount=1000", 400, Some("parameter_missing"), Some("currency")),
        ("amount=1000&currency=EUR", 400, None, Some("currency")),
        (
            "amount=1000&currency=eur&colour=red",
            400,
            Some("parameter_unknown"),
            Some("colour"),
        ),
        (
            "amount=1000&currency=eur&payment_method_types[0]=card",
            400,
            Some("payment_method_types_no_longer_supported"),
            Some("payment_method_types"),
        ),
        (
            "amount=1000&currency=eur&customer=cus_nobody",
            400,
            Some("resource_missing"),
            Some("customer"),
        ),
    ];
    for (body, status, code, param) in cases {
        let answer = client.post("/v1/payment_intents", body, None).await;
        assert_error(&answer, status, "invalid_request_error", code, param);
    }
    assert_eq!(fake.created(Kind::PaymentIntent), 0);

    let missing = client.get("/v1/payment_intents/pi_nothing").await;
    assert_error(
        &missing,
        404,
        "invalid_request_error",
        Some("resource_missing"),
        Some("intent"),
    );
    for path in [
        "/v1/refunds/re_nothing",
        "/v1/transfers/tr_nothing",
        "/v1/disputes/dp_nothing",
    ] {
        assert_error(
            &client.get(path).await,
            404,
            "invalid_request_error",
            Some("resource_missing"),
            Some("id"),
        );
    }
    let unknown_route = client.post("/v1/charges", "amount=100", None).await;
    assert_error(&unknown_route, 404, "invalid_request_error", None, None);
}

#[tokio::test]
async fn a_bank_transfer_intent_shows_instructions_and_is_funded_in_parts() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let customer = client
        .post(
            "/v1/customers",
            "email=ada%40example.com&name=Ada&metadata[investor_id]=i-1",
            None,
        )
        .await;
    assert_eq!(customer.status, 200);
    assert_eq!(customer.body["object"], "customer");
    assert_eq!(customer.body["metadata"]["investor_id"], "i-1");
    let customer_id = customer.body["id"].as_str().unwrap();

    let body = format!(
        "amount=12050&currency=eur&customer={customer_id}&allowed_payment_method_types[0]=customer_balance\
         &payment_method_data[type]=customer_balance\
         &payment_method_options[customer_balance][funding_type]=bank_transfer\
         &payment_method_options[customer_balance][bank_transfer][type]=eu_bank_transfer\
         &payment_method_options[customer_balance][bank_transfer][eu_bank_transfer][country]=FR\
         &confirm=true&metadata[pledge_id]=p-2"
    );
    let created = client.post("/v1/payment_intents", &body, None).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let intent = &created.body;
    assert_eq!(intent["status"], "requires_action");
    assert_eq!(intent["next_action"]["type"], "display_bank_transfer_instructions");
    let instructions = &intent["next_action"]["display_bank_transfer_instructions"];
    assert_eq!(instructions["amount_remaining"], 12050);
    assert_eq!(instructions["type"], "eu_bank_transfer");
    assert!(!instructions["reference"].as_str().unwrap().is_empty());
    let address = &instructions["financial_addresses"][0];
    assert_eq!(address["type"], "iban");
    assert!(address["iban"]["iban"].as_str().unwrap().starts_with("FR"));
    assert!(address["iban"]["bic"].as_str().unwrap().len() == 8);

    let without_country = body.replace("[eu_bank_transfer][country]=FR", "[eu_bank_transfer][country]=");
    let refused = client.post("/v1/payment_intents", &without_country, None).await;
    assert_error(
        &refused,
        400,
        "invalid_request_error",
        Some("parameter_missing"),
        Some("payment_method_options[customer_balance][bank_transfer][eu_bank_transfer][country]"),
    );

    let id = intent["id"].as_str().unwrap();
    let part = fake.partially_fund(id, 5000).await;
    assert_eq!(part.event_type, "payment_intent.partially_funded");
    assert_eq!(
        part.object()["next_action"]["display_bank_transfer_instructions"]["amount_remaining"],
        7050
    );
    let rest = fake.partially_fund(id, 7050).await;
    assert_eq!(rest.event_type, "payment_intent.succeeded");
    assert_eq!(rest.object()["status"], "succeeded");
    assert_eq!(rest.object()["amount_received"], 12050);
}

#[tokio::test]
async fn an_unpaid_intent_can_be_cancelled_once() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let id = client.payment_intent(5000).await["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/payment_intents/{id}/cancel");

    let cancelled = client.post(&path, "cancellation_reason=abandoned", None).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "canceled");
    assert_eq!(cancelled.body["cancellation_reason"], "abandoned");

    let again = client.post(&path, "", None).await;
    assert_error(
        &again,
        400,
        "invalid_request_error",
        Some("payment_intent_unexpected_state"),
        None,
    );
}

#[tokio::test]
async fn the_same_key_replays_the_first_answer_and_refuses_other_parameters() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let body = "amount=5000&currency=eur&metadata[payment_id]=pay-9";
    let first = client.post("/v1/payment_intents", body, Some("key-9")).await;
    let replay = client.post("/v1/payment_intents", body, Some("key-9")).await;

    assert_eq!(first.status, 200);
    assert_eq!((replay.status, &replay.body), (first.status, &first.body));
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(fake.created(Kind::PaymentIntent), 1);

    let other = client
        .post("/v1/payment_intents", "amount=6000&currency=eur", Some("key-9"))
        .await;
    assert_error(&other, 400, "idempotency_error", None, None);
    let other_endpoint = client.post("/v1/customers", "", Some("key-9")).await;
    assert_error(&other_endpoint, 400, "idempotency_error", None, None);
    assert_eq!(fake.created(Kind::PaymentIntent), 1);

    // A request that fails validation is not saved: the key stays free for the corrected one.
    let invalid = client.post("/v1/payment_intents", "currency=eur", Some("key-10")).await;
    assert_eq!(invalid.status, 400);
    let valid = client.post("/v1/payment_intents", body, Some("key-10")).await;
    assert_eq!(valid.status, 200);
    assert_eq!(fake.created(Kind::PaymentIntent), 2);
}

#[tokio::test]
async fn injected_faults_answer_first_and_a_retry_with_the_same_key_succeeds_once() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    fake.fail_next("/v1/payment_intents", 1, Fault::RateLimited);
    fake.fail_next("/v1/payment_intents", 1, Fault::ServerError);
    let body = "amount=5000&currency=eur";

    let limited = client.post("/v1/payment_intents", body, Some("k")).await;
    assert_error(&limited, 429, "invalid_request_error", Some("rate_limit"), None);
    assert_eq!(limited.headers["stripe-should-retry"], "true");
    let failed = client.post("/v1/payment_intents", body, Some("k")).await;
    assert_error(&failed, 500, "api_error", None, None);
    let done = client.post("/v1/payment_intents", body, Some("k")).await;
    assert_eq!(done.status, 200);
    let again = client.post("/v1/payment_intents", body, Some("k")).await;
    assert_eq!(again.body, done.body);

    assert_eq!(fake.created(Kind::PaymentIntent), 1);
    assert_eq!(fake.requests().len(), 4);
    // Other paths are unaffected.
    assert_eq!(client.post("/v1/customers", "", None).await.status, 200);
}

#[tokio::test]
async fn a_late_reply_leaves_the_intent_created_and_the_retry_gets_it() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    fake.delay_next_reply("/v1/payment_intents", Duration::from_secs(5));
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let body = "amount=5000&currency=eur&metadata[payment_id]=pay-late";

    let timed_out = impatient
        .post(format!("{}/v1/payment_intents", fake.base_url()))
        .bearer_auth(fake.secret_key())
        .header("idempotency-key", "late")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap_err();
    assert!(timed_out.is_timeout(), "{timed_out}");
    assert_eq!(fake.created(Kind::PaymentIntent), 1);

    let retried = client.post("/v1/payment_intents", body, Some("late")).await;
    assert_eq!(retried.status, 200);
    assert_eq!(retried.headers["idempotent-replayed"], "true");
    assert_eq!(retried.body["metadata"]["payment_id"], "pay-late");
    assert!(fake.object(retried.body["id"].as_str().unwrap()).is_some());
    assert_eq!(fake.created(Kind::PaymentIntent), 1);
}

#[tokio::test]
async fn refunds_take_no_more_than_was_captured_and_not_yet_refunded() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let id = client.payment_intent(10_000).await["id"].as_str().unwrap().to_owned();

    let unpaid = client.post("/v1/refunds", &format!("payment_intent={id}"), None).await;
    assert_error(
        &unpaid,
        400,
        "invalid_request_error",
        Some("charge_not_found"),
        Some("payment_intent"),
    );
    fake.succeed_payment(&id, 10_000).await;

    let first = client
        .post(
            "/v1/refunds",
            &format!("payment_intent={id}&amount=6000&metadata[refund_id]=r-1"),
            None,
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let refund = &first.body;
    assert!(refund["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(refund["object"], "refund");
    assert_eq!(
        (refund["amount"].as_i64(), refund["status"].as_str()),
        (Some(6000), Some("pending"))
    );
    assert_eq!(
        (refund["currency"].as_str(), refund["payment_intent"].as_str()),
        (Some("eur"), Some(id.as_str()))
    );
    assert_eq!(refund["metadata"]["refund_id"], "r-1");

    let too_much = client
        .post("/v1/refunds", &format!("payment_intent={id}&amount=5000"), None)
        .await;
    assert_error(
        &too_much,
        400,
        "invalid_request_error",
        Some("amount_too_large"),
        Some("amount"),
    );
    let rest = client.post("/v1/refunds", &format!("payment_intent={id}"), None).await;
    assert_eq!(rest.body["amount"], 4000);
    let none_left = client.post("/v1/refunds", &format!("payment_intent={id}"), None).await;
    assert_error(
        &none_left,
        400,
        "invalid_request_error",
        Some("charge_already_refunded"),
        None,
    );

    // A failed refund gives its amount back.
    let failed = fake.fail_refund(rest.body["id"].as_str().unwrap()).await;
    assert_eq!(failed.event_type, "refund.updated");
    assert_eq!(failed.json()["data"]["previous_attributes"]["status"], "pending");
    let again = client
        .post("/v1/refunds", &format!("payment_intent={id}&amount=4000"), None)
        .await;
    assert_eq!(again.status, 200);

    let read = client
        .get(&format!("/v1/refunds/{}", refund["id"].as_str().unwrap()))
        .await;
    assert_eq!(&read.body, refund);
    assert_eq!(fake.created(Kind::Refund), 3);
}

#[tokio::test]
async fn transfers_draw_on_the_available_balance() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    fake.set_available_balance("eur", 1000);
    let body = "amount=1500&currency=eur&destination=acct_project1&transfer_group=offer_o1&metadata[payout_id]=po-1";

    let short = client.post("/v1/transfers", body, Some("payout-1")).await;
    assert_error(&short, 400, "invalid_request_error", Some("balance_insufficient"), None);
    // The refusal ran the endpoint, so it is saved under its key like any answer.
    let replayed = client.post("/v1/transfers", body, Some("payout-1")).await;
    assert_eq!(replayed.body, short.body);

    fake.set_available_balance("eur", 2000);
    let made = client.post("/v1/transfers", body, Some("payout-2")).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let transfer = &made.body;
    assert!(transfer["id"].as_str().unwrap().starts_with("tr_"));
    assert_eq!(transfer["object"], "transfer");
    assert_eq!(
        (transfer["amount"].as_i64(), transfer["currency"].as_str()),
        (Some(1500), Some("eur"))
    );
    assert_eq!(transfer["destination"], "acct_project1");
    assert_eq!(transfer["transfer_group"], "offer_o1");
    assert_eq!(transfer["metadata"]["payout_id"], "po-1");
    assert_eq!(fake.available_balance("eur"), 500);

    let read = client
        .get(&format!("/v1/transfers/{}", transfer["id"].as_str().unwrap()))
        .await;
    assert_eq!(&read.body, transfer);
    let nowhere = client
        .post("/v1/transfers", "amount=1&currency=eur&destination=ba_123", None)
        .await;
    assert_error(
        &nowhere,
        400,
        "invalid_request_error",
        Some("resource_missing"),
        Some("destination"),
    );
    assert_eq!(fake.created(Kind::Transfer), 1);
}

/// A webhook endpoint on 127.0.0.1: every POST's headers and body, in arrival order.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, String)>) {
    let (sender, received) = mpsc::unbounded_channel();
    let app =
        Router::new()
            .route(
                "/webhooks/stripe",
                post(
                    |State(sender): State<mpsc::UnboundedSender<(HeaderMap, String)>>,
                     headers: HeaderMap,
                     body: String| async move {
                        sender.send((headers, body)).unwrap();
                        StatusCode::OK
                    },
                ),
            )
            .with_state(sender);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/stripe", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Stripe's check as its reference states it, written apart from the fake's signer: HMAC-SHA256
/// keyed by the secret's bytes over "<t>.<body>", compared with any `v1`.
fn verifies(secret: &str, header: &str, body: &str) -> bool {
    let items: Vec<(&str, &str)> = header.split(',').filter_map(|item| item.split_once('=')).collect();
    let Some(t) = items.iter().find(|(k, _)| *k == "t").map(|(_, v)| *v) else {
        return false;
    };
    items.iter().filter(|(k, _)| *k == "v1").any(|(_, v1)| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        hex::decode(v1).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
    })
}

async fn next(received: &mut mpsc::UnboundedReceiver<(HeaderMap, String)>) -> (HeaderMap, String) {
    tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("an event within 10 s")
        .unwrap()
}

#[tokio::test]
async fn state_changes_send_signed_events_that_can_be_sent_again() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let (url, mut received) = receiver().await;
    fake.set_webhook_url(url);
    let id = client.payment_intent(12_050).await["id"].as_str().unwrap().to_owned();

    let event = fake.succeed_payment(&id, 12_050).await;
    let (headers, body) = next(&mut received).await;
    assert_eq!(body, event.body);
    let signature = headers["stripe-signature"].to_str().unwrap();
    assert!(signature.starts_with("t="), "{signature}");
    assert!(verifies(fake.webhook_secret(), signature, &body));
    assert!(!verifies("whsec_other", signature, &body));
    let envelope: Value = serde_json::from_str(&body).unwrap();
    assert!(envelope["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(envelope["object"], "event");
    assert_eq!(envelope["type"], "payment_intent.succeeded");
    assert_eq!(envelope["api_version"], PINNED_VERSION);
    assert_eq!(envelope["livemode"], false);
    assert_eq!(envelope["data"]["object"]["id"], id.as_str());
    assert_eq!(envelope["data"]["object"]["amount_received"], 12_050);
    assert_eq!(fake.deliveries()[0].status, Some(200));

    // A duplicate: the same body, signed again.
    assert_eq!(fake.deliver(&event.id).await, Some(200));
    let (headers, body) = next(&mut received).await;
    assert_eq!(body, event.body);
    assert!(verifies(
        fake.webhook_secret(),
        headers["stripe-signature"].to_str().unwrap(),
        &body
    ));

    // Events an API call causes name its idempotency key.
    let refund = client
        .post("/v1/refunds", &format!("payment_intent={id}"), Some("refund-key"))
        .await;
    let (_, body) = next(&mut received).await;
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["type"], "refund.created");
    assert_eq!(created["request"]["idempotency_key"], "refund-key");
    let succeeded = fake.succeed_refund(refund.body["id"].as_str().unwrap()).await;
    assert_eq!(succeeded.object()["status"], "succeeded");
    assert_eq!(next(&mut received).await.1, succeeded.body);

    let types: Vec<String> = fake.events().into_iter().map(|e| e.event_type).collect();
    assert_eq!(types, ["payment_intent.succeeded", "refund.created", "refund.updated"]);
}

#[tokio::test]
async fn disputes_open_and_close_with_their_events_and_read_back() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let (url, mut received) = receiver().await;
    fake.set_webhook_url(url);
    let id = client.payment_intent(5000).await["id"].as_str().unwrap().to_owned();
    fake.succeed_payment(&id, 5000).await;
    next(&mut received).await;

    let opened = fake.dispute(&id, 5000).await;
    assert_eq!(next(&mut received).await.1, opened.body);
    let dispute = opened.object();
    assert_eq!(opened.event_type, "charge.dispute.created");
    assert_eq!(
        (dispute["status"].as_str(), dispute["payment_intent"].as_str()),
        (Some("needs_response"), Some(id.as_str()))
    );
    let dispute_id = dispute["id"].as_str().unwrap();
    assert!(dispute_id.starts_with("dp_"));

    let closed = fake.close_dispute(dispute_id, DisputeOutcome::Lost).await;
    assert_eq!(next(&mut received).await.1, closed.body);
    assert_eq!(closed.event_type, "charge.dispute.closed");
    assert_eq!(closed.object()["status"], "lost");
    assert_eq!(
        client.get(&format!("/v1/disputes/{dispute_id}")).await.body["status"],
        "lost"
    );
}

#[tokio::test]
async fn a_transfer_sends_transfer_created() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let (url, mut received) = receiver().await;
    fake.set_webhook_url(url);
    let made = client
        .post("/v1/transfers", "amount=700&currency=eur&destination=acct_1", None)
        .await;
    let (headers, body) = next(&mut received).await;
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "transfer.created");
    assert_eq!(event["data"]["object"], made.body);
    assert!(verifies(
        fake.webhook_secret(),
        headers["stripe-signature"].to_str().unwrap(),
        &body
    ));
}

#[tokio::test]
async fn a_held_reply_waits_for_release_after_the_work_is_done() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let mut held = fake.hold_next_reply("/v1/payment_intents");
    let body = "amount=5000&currency=eur";

    let first = tokio::spawn({
        let client = Client::of(&fake);
        async move { client.post("/v1/payment_intents", body, Some("held")).await }
    });
    held.processed().await;
    assert_eq!(fake.created(Kind::PaymentIntent), 1);
    assert!(!first.is_finished());

    // What a restarted client sees while the first reply is still held: the saved answer.
    let retried = client.post("/v1/payment_intents", body, Some("held")).await;
    assert_eq!(retried.headers["idempotent-replayed"], "true");
    held.release();
    let first = first.await.unwrap();
    assert_eq!((first.status, &first.body), (retried.status, &retried.body));
    assert_eq!(fake.created(Kind::PaymentIntent), 1);
}

#[tokio::test]
async fn a_cash_balance_funding_with_the_reference_pays_the_intent() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let customer = client.post("/v1/customers", "name=Ada", None).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = format!(
        "amount=10000&currency=eur&customer={customer}&allowed_payment_method_types[0]=customer_balance\
         &payment_method_options[customer_balance][funding_type]=bank_transfer\
         &payment_method_options[customer_balance][bank_transfer][type]=eu_bank_transfer\
         &payment_method_options[customer_balance][bank_transfer][eu_bank_transfer][country]=DE&confirm=true"
    );
    let intent = client.post("/v1/payment_intents", &body, None).await.body;
    let reference = intent["next_action"]["display_bank_transfer_instructions"]["reference"]
        .as_str()
        .unwrap();
    let fund = format!("/v1/test_helpers/customers/{customer}/fund_cash_balance");

    let stray = client
        .post(&fund, "amount=300&currency=eur&reference=SOMETHING-ELSE", None)
        .await;
    assert_eq!(stray.status, 200, "{}", stray.body);
    assert_eq!(stray.body["object"], "customer_cash_balance_transaction");
    assert_eq!(stray.body["ending_balance"], 300);
    let short = client
        .post(&fund, &format!("amount=4000&currency=eur&reference={reference}"), None)
        .await;
    assert_eq!(short.body["ending_balance"], 300);
    let over = client
        .post(&fund, &format!("amount=7000&currency=eur&reference={reference}"), None)
        .await;
    assert_eq!(over.body["ending_balance"], 1300);

    let types: Vec<String> = fake.events().into_iter().map(|e| e.event_type).collect();
    assert_eq!(types, ["payment_intent.partially_funded", "payment_intent.succeeded"]);
    let paid = client
        .get(&format!("/v1/payment_intents/{}", intent["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (paid.body["status"].as_str(), paid.body["amount_received"].as_i64()),
        (Some("succeeded"), Some(10_000))
    );
    let nobody = client
        .post(
            "/v1/test_helpers/customers/cus_nobody/fund_cash_balance",
            "amount=1&currency=eur",
            None,
        )
        .await;
    assert_error(
        &nobody,
        404,
        "invalid_request_error",
        Some("resource_missing"),
        Some("customer"),
    );
}

#[tokio::test]
async fn charge_refunded_shows_the_charge_without_a_refund_list() {
    let fake = StripeFake::start().await;
    let client = Client::of(&fake);
    let id = client.payment_intent(5000).await["id"].as_str().unwrap().to_owned();
    fake.succeed_payment(&id, 5000).await;
    client
        .post("/v1/refunds", &format!("payment_intent={id}&amount=2000"), None)
        .await;

    let charge = fake.charge_refunded(&id).await.object();
    assert!(charge["id"].as_str().unwrap().starts_with("ch_"));
    assert_eq!(
        (charge["amount_refunded"].as_i64(), charge["refunded"].as_bool()),
        (Some(2000), Some(false))
    );
    assert_eq!(charge["payment_intent"], id.as_str());
    assert!(charge.get("refunds").is_none());
}
