//! Fixtures for round tests: a published project, verified investors, an open offer, pledges,
//! all through the HTTP API.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{Reply, TestApp};

pub const DAY: i64 = 86_400;

/// The SHA-256 of the Key Investment Information Sheet [`open_offer`] gives every offer (ECSP
/// art. 23): pledges name it in `kiis_sha256`.
pub const KIIS_SHA256: &str = "5f2b6c0e8a1d4f3b9c7e2a6d1f0b8c3e4a5d6f7e8b9c0a1d2e3f4a5b6c7d8e9f";

/// Gives an offer its Key Investment Information Sheet ([`KIIS_SHA256`], in French).
pub async fn add_kiis(app: &TestApp, offer: &str) {
    ok(
        app.post(
            &format!("/v1/offers/{offer}/documents"),
            json!({"kind": "kiis", "language": "fr", "url": "https://platform.example/kiis-fr.pdf",
                   "sha256": KIIS_SHA256}),
        )
        .await,
        201,
    )
    .await;
}

/// Records a passed entry knowledge test and loss simulation for an investor (ECSP art. 21),
/// valid two years from the service's clock.
pub async fn appropriate(app: &TestApp, investor: &str) -> Value {
    ok(
        app.post(
            &format!("/v1/investors/{investor}/appropriateness"),
            json!({"knowledge_test": "passed", "loss_capacity": "5000.00", "answers_ref": "quiz/test"}),
        )
        .await,
        201,
    )
    .await
}

pub async fn ok(r: Reply, status: u16) -> Value {
    assert_eq!(r.status.as_u16(), status, "{:#}", r.body);
    r.body
}

pub async fn published_project(app: &TestApp) -> String {
    let body = json!({
        "name": "Crois/Sens", "legal_name": "Crois/Sens SAS", "legal_form": "SAS", "country": "FR",
        "territory": "Pays de Brest", "themes": ["employment", "inclusion"],
        "description": "A social enterprise.", "impact_indicators": [],
    });
    let project = ok(app.post("/v1/projects", body).await, 201).await;
    let id = project["id"].as_str().unwrap().to_string();
    ok(app.post(&format!("/v1/projects/{id}/publish"), json!({})).await, 200).await;
    id
}

/// A verified investor; a non-sophisticated one with a passed appropriateness record.
pub async fn investor(app: &TestApp, name: &str, classification: &str) -> String {
    let body = json!({"kind": "natural", "name": name, "email": format!("{}@example.org", uuid::Uuid::new_v4().simple()),
                      "country": "FR", "classification": classification});
    let investor = ok(app.post("/v1/investors", body).await, 201).await;
    let id = investor["id"].as_str().unwrap().to_string();
    ok(
        app.post(&format!("/v1/investors/{id}/kyc"), json!({"status": "verified"}))
            .await,
        200,
    )
    .await;
    if classification != "sophisticated" {
        appropriate(app, &id).await;
    }
    id
}

/// Creates and opens an offer, with its KIIS ([`KIIS_SHA256`]); `opens_at` is now, `closes_at`
/// in `days`.
pub async fn open_offer(app: &TestApp, project: &str, terms: Value, days: i64) -> String {
    let now = app.clock.now();
    let mut body = json!({
        "currency": "EUR", "share_price": "10.00", "min_target": "100000.00", "max_target": "150000.00",
        "min_ticket": "10.00", "opens_at": now.to_rfc3339(),
        "closes_at": (now + chrono::TimeDelta::seconds(days * DAY)).to_rfc3339(),
        "success_fee_rate": "0.05", "allocation": "first_come",
    });
    for (k, v) in terms.as_object().unwrap() {
        body[k] = v.clone();
    }
    let offer = ok(app.post(&format!("/v1/projects/{project}/offers"), body).await, 201).await;
    let id = offer["id"].as_str().unwrap().to_string();
    add_kiis(app, &id).await;
    ok(app.post(&format!("/v1/offers/{id}/open"), json!({})).await, 200).await;
    id
}

/// A published project and its open first_come offer of 10 to 100 shares at 10.00, closing in
/// 9 days: `(project, offer)`.
pub async fn small_open_offer(app: &TestApp) -> (String, String) {
    let project = published_project(app).await;
    let terms = json!({"min_target": "100.00", "max_target": "1000.00"});
    let offer = open_offer(app, &project, terms, 9).await;
    (project, offer)
}

/// What most round tests start from: a published project, its open offer, and verified
/// sophisticated investors (in the order they were asked for).
pub struct World {
    pub project: String,
    pub offer: String,
    pub investors: Vec<String>,
}

/// The usual world: [`small_open_offer`]'s project and offer (10 to 100 shares at 10.00, first
/// come, closing in 9 days) and `investors` investors.
pub async fn world(app: &TestApp, investors: usize) -> World {
    let (project, offer) = small_open_offer(app).await;
    World {
        project,
        offer,
        investors: self::investors(app, investors).await,
    }
}

/// A world whose offer has `terms` over [`open_offer`]'s and closes in `days`.
pub async fn world_with(app: &TestApp, terms: Value, days: i64, investors: usize) -> World {
    let project = published_project(app).await;
    let offer = open_offer(app, &project, terms, days).await;
    World {
        project,
        offer,
        investors: self::investors(app, investors).await,
    }
}

/// `n` verified sophisticated investors, `Investor 0` to `Investor {n - 1}`, registered at once.
pub async fn investors(app: &TestApp, n: usize) -> Vec<String> {
    futures::future::join_all(
        (0..n).map(|i| async move { investor(app, &format!("Investor {i}"), "sophisticated").await }),
    )
    .await
}

pub async fn pledge(app: &TestApp, offer: &str, investor: &str, shares: i64, price: &str) -> Reply {
    let amount = (Decimal::from(shares) * price.parse::<Decimal>().unwrap()).to_string();
    let body = json!({"investor_id": investor, "shares": shares, "funding": [{"kind": "card", "amount": amount}],
                      "kiis_sha256": KIIS_SHA256});
    app.client
        .post(format!("{}/v1/offers/{offer}/pledges", app.base))
        .bearer_auth(super::OPERATOR_KEY)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await
        .map(|r| async move { super::read(r).await })
        .unwrap()
        .await
}

/// Pledges and pays; returns the pledge.
pub async fn funded_pledge(app: &TestApp, offer: &str, investor: &str, shares: i64) -> Value {
    let p = ok(pledge(app, offer, investor, shares, "10.00").await, 201).await;
    let payment = p["payment"]["payment_id"].as_str().unwrap();
    ok(
        app.post(&format!("/v1/sandbox/payments/{payment}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    p
}

/// Plays the provider confirming a payout (`POST /v1/offers/{id}/payouts`'s reply).
pub async fn confirm_payout(app: &TestApp, payout: &Value) {
    let id = payout["payment"]["payment_id"].as_str().unwrap();
    ok(
        app.post(&format!("/v1/sandbox/payouts/{id}/succeed"), json!({})).await,
        200,
    )
    .await;
}

pub async fn balance(app: &TestApp, code: &str) -> String {
    let r = ok(app.get(&format!("/v1/ledger/accounts?code_prefix={code}")).await, 200).await;
    let items = r["items"].as_array().unwrap();
    let exact: Vec<&Value> = items.iter().filter(|a| a["code"] == code).collect();
    exact
        .first()
        .map_or("0.00".to_string(), |a| a["balance"].as_str().unwrap().to_string())
}

pub async fn pledges_of(app: &TestApp, offer: &str) -> Vec<Value> {
    let r = ok(app.get(&format!("/v1/offers/{offer}/pledges?limit=1000")).await, 200).await;
    r["items"].as_array().unwrap().clone()
}

/// A sponsor's budget, as the API shows it.
pub async fn budget(app: &TestApp, sponsor: &str) -> String {
    let s = ok(app.get(&format!("/v1/sponsors/{sponsor}")).await, 200).await;
    s["budget"]["amount"]
        .as_str()
        .unwrap_or_else(|| panic!("no budget in {s:#}"))
        .to_string()
}

/// A sponsor in EUR with an empty budget.
pub async fn sponsor(app: &TestApp, name: &str) -> String {
    sponsor_in(app, name, "EUR").await
}

pub async fn sponsor_in(app: &TestApp, name: &str, currency: &str) -> String {
    let s = ok(
        app.post("/v1/sponsors", json!({"name": name, "currency": currency}))
            .await,
        201,
    )
    .await;
    s["id"].as_str().unwrap().to_string()
}

/// A sponsor whose deposit of `amount` EUR the sandbox has confirmed.
pub async fn funded_sponsor(app: &TestApp, name: &str, amount: &str) -> String {
    funded_sponsor_in(app, name, amount, "EUR").await
}

/// A sponsor in `currency` whose deposit of `amount` the sandbox has confirmed.
pub async fn funded_sponsor_in(app: &TestApp, name: &str, amount: &str, currency: &str) -> String {
    let id = sponsor_in(app, name, currency).await;
    let deposit = ok(
        app.post(
            &format!("/v1/sponsors/{id}/deposits"),
            json!({"amount": amount, "currency": currency}),
        )
        .await,
        201,
    )
    .await;
    let payment = deposit["payment"]["payment_id"].as_str().unwrap();
    let sent = ok(
        app.post(&format!("/v1/sandbox/deposits/{payment}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(sent["applied"], true, "{sent:#}");
    id
}

/// A cheque of `face` EUR from `sponsor` to a contest's winner, expiring in `days`: as issued
/// (its `code` shown this once).
pub async fn issue_cheque(app: &TestApp, sponsor: &str, face: &str, days: i64) -> Value {
    let expires = app.clock.now() + chrono::TimeDelta::days(days);
    ok(
        app.post(
            "/v1/cheques",
            json!({"sponsor_id": sponsor, "beneficiary_name": "Winner", "beneficiary_email": "winner@example.org",
                   "face_value": face, "currency": "EUR", "expires_at": expires.to_rfc3339()}),
        )
        .await,
        201,
    )
    .await
}

/// The ballot, recomputed from the revealed seed and the public pledge list, independently of
/// the service's code (docs/ballot.md): pledges in the order of HMAC-SHA256(seed, pledge id),
/// each taking its shares until the cap is reached.
pub fn recompute_ballot(seed: &[u8], pledges: &[Value], cap: i64) -> Vec<i64> {
    use hmac::{Hmac, Mac};
    let key = |id: &str| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(seed).unwrap();
        mac.update(id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let mut order: Vec<usize> = (0..pledges.len()).collect();
    order.sort_by_key(|&i| key(pledges[i]["id"].as_str().unwrap()));
    let mut left = cap;
    let mut out = vec![0; pledges.len()];
    for i in order {
        let take = pledges[i]["shares"].as_i64().unwrap().min(left);
        out[i] = take;
        left -= take;
    }
    out
}

/// Sends a pledge with this body and a fresh Idempotency-Key to `base` (a test app or a `serve`
/// process), as the operator.
pub async fn pledge_at(client: &reqwest::Client, base: &str, offer: &str, body: &Value) -> Reply {
    let r = client
        .post(format!("{base}/v1/offers/{offer}/pledges"))
        .bearer_auth(super::OPERATOR_KEY)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await
        .unwrap();
    super::read(r).await
}
