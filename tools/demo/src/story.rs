//! The SenseTour story, loaded through a running service's own HTTP API (the sponsor's deposit
//! confirmed by the sandbox's signed webhook like any other), so what a newcomer then sees is
//! exactly what the API does.

use anyhow::Context;
use chrono::TimeDelta;
use serde_json::{Value, json};

use crowdledger_client::{Api, KIIS_SHA256, id};

/// What the demo created.
pub struct Demo {
    pub sponsor: String,
    pub investor: String,
    pub cheque: String,
    pub code: String,
    pub offers: [String; 2],
    /// The territory's foundation, and its pool matching the first round's pledges.
    pub foundation: String,
    pub pool: String,
    /// The SHA-256 of both offers' Key Investment Information Sheet, which a pledge names.
    pub kiis: String,
}

async fn project(api: &Api, body: Value) -> anyhow::Result<String> {
    let project = id(&api.post("/v1/projects", body).await?)?;
    api.post(&format!("/v1/projects/{project}/publish"), json!({})).await?;
    Ok(project)
}

async fn offer(api: &Api, project: &str, min: &str, max: &str) -> anyhow::Result<String> {
    let now = api.now().await?;
    let offer = id(&api
        .post(
            &format!("/v1/projects/{project}/offers"),
            json!({"currency": "EUR", "share_price": "10.00", "min_target": min, "max_target": max,
                   "min_ticket": "10.00", "opens_at": now.to_rfc3339(),
                   "closes_at": (now + TimeDelta::days(28)).to_rfc3339(),
                   "success_fee_rate": "0.05", "allocation": "first_come"}),
        )
        .await?)?;
    // An offer opens only with its Key Investment Information Sheet (ECSP art. 23).
    api.add_kiis(&offer).await?;
    api.post(&format!("/v1/offers/{offer}/open"), json!({})).await?;
    Ok(offer)
}

/// A sponsor with a budget of `amount` EUR, its deposit confirmed by the sandbox's webhook.
async fn funded_sponsor(api: &Api, name: &str, email: &str, amount: &str) -> anyhow::Result<String> {
    let sponsor = id(&api.post("/v1/sponsors", json!({"name": name, "email": email})).await?)?;
    let deposit = api
        .post(
            &format!("/v1/sponsors/{sponsor}/deposits"),
            json!({"amount": amount, "currency": "EUR"}),
        )
        .await?;
    let payment = deposit["payment"]["payment_id"]
        .as_str()
        .context("a deposit without a payment")?;
    api.post(&format!("/v1/sandbox/deposits/{payment}/succeed"), json!({}))
        .await?;
    Ok(sponsor)
}

/// A verified investor who pledges `shares` at 10.00 by card in `offer` and pays.
async fn card_pledge(api: &Api, key: &str, offer: &str, name: &str, shares: i64) -> anyhow::Result<Value> {
    let investor = id(&api
        .post(
            "/v1/investors",
            json!({"kind": "natural", "name": name, "email": "yannick.legoff@example.org", "country": "FR",
                   "classification": "sophisticated"}),
        )
        .await?)?;
    api.post(&format!("/v1/investors/{investor}/kyc"), json!({"status": "verified"}))
        .await?;
    let amount = format!("{}.00", shares * 10);
    let pledge: Value = reqwest::Client::new()
        .post(format!("{}/v1/offers/{offer}/pledges", api.base()))
        .bearer_auth(key)
        .header("idempotency-key", format!("demo-matched-{offer}"))
        .json(
            &json!({"investor_id": investor, "shares": shares, "kiis_sha256": KIIS_SHA256,
                      "funding": [{"kind": "card", "amount": amount}]}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let payment = pledge["payment"]["payment_id"]
        .as_str()
        .context("a card pledge without its payment")?;
    api.post(&format!("/v1/sandbox/payments/{payment}/succeed"), json!({}))
        .await?;
    Ok(pledge)
}

/// Loads the story into the service at `base`, as the operator `key`.
pub async fn load(base: &str, key: &str) -> anyhow::Result<Demo> {
    let api = Api::new(reqwest::Client::new(), base, key);
    let sponsor = funded_sponsor(&api, "SenseTour Belgium", "prizes@sensetour.example", "10000.00").await?;

    let brest = project(
        &api,
        json!({"name": "Crois/Sens", "legal_name": "Crois/Sens SCIC", "legal_form": "SCIC", "country": "FR",
               "territory": "Pays de Brest", "themes": ["employment", "inclusion"],
               "description": "Work-integration workshops repairing bicycles.",
               "impact_indicators": [{"name": "people in work", "unit": "people", "baseline": "12", "target": "40"}]}),
    )
    .await?;
    let liege = project(
        &api,
        json!({"name": "Ressourcerie du Pays de Herve", "legal_name": "Ressourcerie du Pays de Herve SC",
               "legal_form": "SC", "country": "BE", "territory": "Pays de Herve", "themes": ["waste", "environment"],
               "description": "Collects, repairs and resells furniture and appliances.",
               "impact_indicators": [{"name": "waste diverted", "unit": "t/year", "baseline": "300", "target": "900"}]}),
    )
    .await?;
    let offers = [
        offer(&api, &brest, "50000.00", "150000.00").await?,
        offer(&api, &liege, "20000.00", "80000.00").await?,
    ];

    // The territory's foundation matches the Brest round's pledges euro for euro (docs/matchfunding.md).
    let foundation = funded_sponsor(
        &api,
        "Fondation du Pays de Brest",
        "dons@fondation-brest.example",
        "20000.00",
    )
    .await?;
    let pool = id(&api
        .post(
            &format!("/v1/sponsors/{foundation}/match-pools"),
            json!({"amount": "10000.00", "ratio": "1", "max_per_pledge": "500.00", "max_per_project": "5000.00",
                   "eligible_project_ids": [brest],
                   "expires_at": (api.now().await? + TimeDelta::days(90)).to_rfc3339()}),
        )
        .await?)?;
    card_pledge(&api, key, &offers[0], "Yannick Le Goff", 40).await?;

    let investor = id(&api
        .post(
            "/v1/investors",
            json!({"kind": "natural", "name": "Camille Martin", "email": "camille.martin@example.org",
                   "country": "BE", "classification": "non_sophisticated"}),
        )
        .await?)?;
    api.post(&format!("/v1/investors/{investor}/kyc"), json!({"status": "verified"}))
        .await?;
    // A non-sophisticated investor pledges only once the platform has recorded their entry
    // knowledge test and loss simulation (ECSP art. 21).
    api.appropriate(&investor).await?;
    let cheque = api
        .post(
            "/v1/cheques",
            json!({"sponsor_id": sponsor, "beneficiary_name": "Camille Martin",
                   "beneficiary_email": "camille.martin@example.org", "face_value": "2000.00", "currency": "EUR",
                   "expires_at": (api.now().await? + TimeDelta::days(365)).to_rfc3339(),
                   "memo": "SenseTour Belgium contest: a virtual cheque to invest in a social project"}),
        )
        .await?;
    Ok(Demo {
        sponsor,
        investor,
        cheque: id(&cheque)?,
        code: cheque["code"]
            .as_str()
            .context("a cheque without its code")?
            .to_string(),
        offers,
        foundation,
        pool,
        kiis: KIIS_SHA256.to_string(),
    })
}

/// What to call next, with this service's address and key.
pub fn next_steps(demo: &Demo, base: &str, key: &str) -> String {
    let auth = format!("-H 'Authorization: Bearer {key}' -H 'Content-Type: application/json'");
    format!(
        "The SenseTour story is loaded:
  sponsor  {sponsor}  (budget 8000.00 EUR after issuing the cheque)
  winner   {investor}  Camille Martin, KYC verified, entry knowledge test passed
  cheque   {cheque}  2000.00 EUR, code {code}  (shown only now)
  offers   {a}  Crois/Sens, Pays de Brest
           {b}  Ressourcerie du Pays de Herve
  foundation {foundation}  Fondation du Pays de Brest
  pool     {pool}  10000.00 EUR matching Crois/Sens pledges euro for euro, at most 500.00 each:
           Yannick Le Goff's 400.00 card pledge is already matched with 400.00
  kiis     {kiis}  the SHA-256 of both offers' key investment information sheet

Invest 1500.00 of the cheque in the first round (150 shares at 10.00):
  curl {auth} -H 'Idempotency-Key: demo-1' \\
    -d '{{\"investor_id\":\"{investor}\",\"shares\":150,\"risk_acknowledged\":true,\"kiis_sha256\":\"{kiis}\",\"funding\":[{{\"kind\":\"cheque\",\"cheque_code\":\"{code}\",\"amount\":\"1500.00\"}}]}}' \\
    {base}/v1/offers/{a}/pledges
The foundation's pool matches it with 500.00, in shares held in its name:
  curl {auth} {base}/v1/match-pools/{pool}/matches
Then the rest, 500.00, in the second:
  curl {auth} -H 'Idempotency-Key: demo-2' \\
    -d '{{\"investor_id\":\"{investor}\",\"shares\":50,\"kiis_sha256\":\"{kiis}\",\"funding\":[{{\"kind\":\"cheque\",\"cheque_code\":\"{code}\",\"amount\":\"500.00\"}}]}}' \\
    {base}/v1/offers/{b}/pledges
See the cheque, the sponsor and the books:
  curl {auth} {base}/v1/cheques/{cheque}
  curl {auth} {base}/v1/sponsors/{sponsor}
  curl {auth} {base}/v1/ledger/verify
Docs: {base}/docs",
        sponsor = demo.sponsor,
        investor = demo.investor,
        cheque = demo.cheque,
        code = demo.code,
        kiis = demo.kiis,
        foundation = demo.foundation,
        pool = demo.pool,
        a = demo.offers[0],
        b = demo.offers[1],
    )
}
