//! A small client of crowdledger's HTTP API, as an operator: what `crowdledger-demo`,
//! `crowdledger-bench` and `crowdledger-torture` set things up with, so that they go through the
//! API like anyone else. It knows the API only from outside (JSON over HTTP), not the service's
//! code.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The SHA-256 of the Key Investment Information Sheet (ECSP art. 23) [`Api::add_kiis`] gives an
/// offer, in French: the hash of the text `crowdledger-client: the key investment information
/// sheet of the offers it opens` and a newline. Every pledge on such an offer names it in
/// `kiis_sha256`.
pub const KIIS_SHA256: &str = "8ce13e6d875fda38df3e2185a39a5f946164a8055eded02fa51b858d2000e613";

pub struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    /// A client of the service at `base` (e.g. `http://127.0.0.1:8080`) with the key `key`.
    pub fn new(client: reqwest::Client, base: &str, key: &str) -> Self {
        Api {
            client,
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; a non-2xx answer is an error naming its problem's detail.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}: is the service running at {}?", self.base))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "{method} {path} answered {status}: {}",
                answer["detail"].as_str().unwrap_or("")
            );
        }
        Ok(answer)
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// The service's business time, which a manual clock may have moved away from the wall's.
    /// Only a service with a manual clock serves it, as it does the sandbox's other controls.
    pub async fn now(&self) -> anyhow::Result<DateTime<Utc>> {
        let clock = self
            .get("/v1/sandbox/clock")
            .await
            .context("reading the sandbox's clock (the service must run with clock.mode = \"manual\")")?;
        serde_json::from_value(clock["now"].clone()).context("the service's clock answered no time")
    }

    /// Gives a draft or open offer its Key Investment Information Sheet ([`KIIS_SHA256`], in
    /// French): an offer opens only with one.
    pub async fn add_kiis(&self, offer: &str) -> anyhow::Result<()> {
        self.post(
            &format!("/v1/offers/{offer}/documents"),
            json!({"kind": "kiis", "language": "fr", "url": "https://platform.example/kiis-fr.pdf",
                   "sha256": KIIS_SHA256}),
        )
        .await?;
        Ok(())
    }

    /// Whether the service keeps offers' documents (the ECSP gate, whose pledges name the KIIS).
    /// A service from before it answers 404: `scripts/bench-ab` floods one beside today's.
    pub async fn keeps_documents(&self, offer: &str) -> anyhow::Result<bool> {
        let response = self
            .client
            .get(format!("{}/v1/offers/{offer}/documents", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| {
                format!(
                    "GET /v1/offers/{offer}/documents: is the service running at {}?",
                    self.base
                )
            })?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            status if status.is_success() => Ok(true),
            status => bail!("GET /v1/offers/{offer}/documents answered {status}"),
        }
    }

    /// Records a passed entry knowledge test and loss simulation for an investor (ECSP art. 21):
    /// a non-sophisticated investor pledges only once the platform has recorded one.
    pub async fn appropriate(&self, investor: &str) -> anyhow::Result<()> {
        self.post(
            &format!("/v1/investors/{investor}/appropriateness"),
            json!({"knowledge_test": "passed", "loss_capacity": "5000.00", "answers_ref": "quiz/crowdledger-client"}),
        )
        .await?;
        Ok(())
    }

    /// A published project (`name`) with one open EUR offer at 1.00 a share, from `opens_at`
    /// to `closes_at`, targets in shares, its KIIS [`KIIS_SHA256`] (when the service keeps
    /// documents). Returns the offer's id.
    pub async fn open_offer(
        &self,
        name: &str,
        allocation: &str,
        (min_shares, max_shares): (i64, i64),
        (opens_at, closes_at): (DateTime<Utc>, DateTime<Utc>),
    ) -> anyhow::Result<String> {
        let project = id(&self
            .post(
                "/v1/projects",
                json!({"name": name, "legal_name": format!("{name} SAS"), "legal_form": "SAS", "country": "FR",
                       "territory": "Pays de Brest", "themes": ["employment"], "description": "A load-test round.",
                       "impact_indicators": []}),
            )
            .await?)?;
        self.post(&format!("/v1/projects/{project}/publish"), json!({})).await?;
        let offer = id(&self
            .post(
                &format!("/v1/projects/{project}/offers"),
                json!({"currency": "EUR", "share_price": "1.00", "min_target": format!("{min_shares}.00"),
                       "max_target": format!("{max_shares}.00"), "min_ticket": "1.00",
                       "opens_at": opens_at.to_rfc3339(), "closes_at": closes_at.to_rfc3339(),
                       "success_fee_rate": "0.05", "allocation": allocation}),
            )
            .await?)?;
        if self.keeps_documents(&offer).await? {
            self.add_kiis(&offer).await?;
        }
        self.post(&format!("/v1/offers/{offer}/open"), json!({})).await?;
        Ok(offer)
    }

    /// `n` verified, sophisticated investors (`tag` in their names), created 32 at a time.
    pub async fn verified_investors(&self, n: usize, tag: &str) -> anyhow::Result<Vec<String>> {
        self.investors_classified(n, tag, "sophisticated").await
    }

    /// `n` verified non-sophisticated investors (`tag` in their names), each with a passed
    /// appropriateness record when the service keeps them (a service from before the ECSP gate
    /// answers 404 and needs none), created 32 at a time.
    pub async fn retail_investors(&self, n: usize, tag: &str) -> anyhow::Result<Vec<String>> {
        let investors = self.investors_classified(n, tag, "non_sophisticated").await?;
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(&investors)
            .map(|investor| async move {
                let response = self
                    .client
                    .post(format!("{}/v1/investors/{investor}/appropriateness", self.base))
                    .bearer_auth(&self.key)
                    .json(&json!({"knowledge_test": "passed", "loss_capacity": "5000.00",
                                  "answers_ref": "quiz/crowdledger-client"}))
                    .send()
                    .await?;
                match response.status() {
                    status if status.is_success() || status == reqwest::StatusCode::NOT_FOUND => Ok(()),
                    status => bail!("POST /v1/investors/{investor}/appropriateness answered {status}"),
                }
            })
            .buffered(32)
            .try_collect::<()>()
            .await?;
        Ok(investors)
    }

    async fn investors_classified(&self, n: usize, tag: &str, classification: &str) -> anyhow::Result<Vec<String>> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(0..n)
            .map(|i| async move {
                let investor = id(&self
                    .post(
                        "/v1/investors",
                        json!({"kind": "natural", "name": format!("{tag} investor {i}"),
                               "email": format!("investor{i}.{}@{}.example", uuid::Uuid::new_v4().simple(), tag.to_lowercase()),
                               "country": "FR", "classification": classification}),
                    )
                    .await?)?;
                self.post(&format!("/v1/investors/{investor}/kyc"), json!({"status": "verified"}))
                    .await?;
                anyhow::Ok(investor)
            })
            .buffered(32)
            .try_collect()
            .await
    }
}

/// The `id` of a created resource.
pub fn id(v: &Value) -> anyhow::Result<String> {
    v["id"].as_str().map(str::to_owned).context("an answer without an id")
}
