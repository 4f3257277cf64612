//! The Mangopay fake through real HTTP, as the service's adapter will call it: OAuth tokens, JSON
//! bodies, each endpoint's answers and `param_error`s, transactions that settle with result
//! codes, idempotency keys spent by their first call, faults, late replies, and hooks sent as
//! unsigned GETs.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use crowdledger_provider_fakes::mangopay::{DisputeOutcome, Fault, Kind, MangopayFake};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What the service's adapter will be: a token from Basic credentials, then JSON calls under
/// `/v2.01/{ClientId}/` with the Bearer token.
struct Client {
    http: reqwest::Client,
    base: String,
    client_id: String,
    api_key: String,
    token: String,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Client {
    async fn of(fake: &MangopayFake) -> Client {
        let mut client = Client {
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            base: fake.base_url(),
            client_id: fake.client_id().to_owned(),
            api_key: fake.api_key().to_owned(),
            token: String::new(),
        };
        client.renew_token().await;
        client
    }

    async fn request_token(&self, client_id: &str, api_key: &str, grant_type: &str) -> Answer {
        let request = self
            .http
            .post(format!("{}/v2.01/oauth/token", self.base))
            .basic_auth(client_id, Some(api_key))
            .form(&[("grant_type", grant_type)]);
        answer(request.send().await.unwrap()).await
    }

    async fn renew_token(&mut self) {
        let granted = self
            .request_token(&self.client_id, &self.api_key, "client_credentials")
            .await;
        assert_eq!(granted.status, 200, "{}", granted.body);
        self.token = granted.body["access_token"].as_str().unwrap().to_owned();
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2.01/{}/{path}", self.base, self.client_id)
    }

    fn post_request(&self, path: &str, body: &Value, idempotency_key: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = self.http.post(self.url(path)).bearer_auth(&self.token).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        request
    }

    async fn post(&self, path: &str, body: &Value, idempotency_key: Option<&str>) -> Answer {
        answer(self.post_request(path, body, idempotency_key).send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> Answer {
        answer(
            self.http
                .get(self.url(path))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POSTs and expects 200; the object.
    async fn create(&self, path: &str, body: Value) -> Value {
        let answer = self.post(path, &body, None).await;
        assert_eq!(answer.status, 200, "POST {path}: {}", answer.body);
        answer.body
    }

    async fn investor(&self) -> String {
        let user = self.create("users/natural", payer_body()).await;
        id(&user)
    }

    async fn project(&self) -> String {
        let user = self.create("users/legal", project_body()).await;
        id(&user)
    }

    async fn wallet(&self, owner: &str) -> String {
        let wallet = self
            .create(
                "wallets",
                json!({"Owners": [owner], "Currency": "EUR", "Description": "escrow", "Tag": "crowdledger:offer:o-1"}),
            )
            .await;
        id(&wallet)
    }

    async fn card_payin(&self, author: &str, wallet: &str, amount: i64) -> String {
        let payin = self
            .create("payins/card/web", card_payin_body(author, wallet, amount))
            .await;
        id(&payin)
    }

    /// A card pay-in of `amount` that succeeded, crediting `wallet`.
    async fn paid(&self, fake: &MangopayFake, author: &str, wallet: &str, amount: i64) -> String {
        let payin = self.card_payin(author, wallet, amount).await;
        fake.succeed_payin(&payin).await;
        payin
    }
}

/// What most tests start from: a fake, a client with a token, a hook receiver the fake sends
/// to, an investor (a PAYER) and a project (an OWNER) with its two wallets, the offer's escrow
/// and the one payouts leave from.
struct Round {
    fake: MangopayFake,
    client: Client,
    hooks: mpsc::UnboundedReceiver<HashMap<String, String>>,
    investor: String,
    project: String,
    escrow: String,
    payouts: String,
}

impl Round {
    async fn start() -> Round {
        let fake = MangopayFake::start().await;
        let client = Client::of(&fake).await;
        let (url, hooks) = receiver(Duration::ZERO).await;
        fake.set_hook_url(url);
        let investor = client.investor().await;
        let project = client.project().await;
        let escrow = client.wallet(&project).await;
        let payouts = client.wallet(&project).await;
        Round {
            fake,
            client,
            hooks,
            investor,
            project,
            escrow,
            payouts,
        }
    }
}

fn payer_body() -> Value {
    json!({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com", "UserCategory": "PAYER", "Tag": "crowdledger:investor:i-1"})
}

/// The body of a project's IBAN bank account.
fn iban_account_body() -> Value {
    json!({
        "OwnerName": "Solar Coop",
        "OwnerAddress": {"AddressLine1": "1 rue du Soleil", "City": "Lyon", "PostalCode": "69001", "Country": "FR"},
        "IBAN": "FR7630006000011234567890189",
        "BIC": "AGRIFRPP",
        "Tag": "crowdledger:project:pr-1",
    })
}

fn project_body() -> Value {
    json!({
        "LegalPersonType": "BUSINESS",
        "Name": "Solar Coop",
        "Email": "treasury@solar.example",
        "UserCategory": "OWNER",
        "TermsAndConditionsAccepted": true,
        "HeadquartersAddress": {"AddressLine1": "1 rue du Soleil", "City": "Lyon", "PostalCode": "69001", "Country": "FR"},
        "CompanyNumber": "123456789",
        "LegalRepresentativeFirstName": "Grace",
        "LegalRepresentativeLastName": "Hopper",
        "LegalRepresentativeBirthday": 188_000_000,
        "LegalRepresentativeNationality": "FR",
        "LegalRepresentativeCountryOfResidence": "FR",
    })
}

fn card_payin_body(author: &str, wallet: &str, amount: i64) -> Value {
    json!({
        "AuthorId": author,
        "CreditedWalletId": wallet,
        "DebitedFunds": {"Currency": "EUR", "Amount": amount},
        "Fees": {"Currency": "EUR", "Amount": 0},
        "ReturnURL": "https://platform.example/return",
        "CardType": "CB_VISA_MASTERCARD",
        "Culture": "FR",
        "SecureMode": "DEFAULT",
        "Tag": "crowdledger:payment:p-1",
    })
}

fn eur(amount: i64) -> Value {
    json!({"Currency": "EUR", "Amount": amount})
}

fn id(object: &Value) -> String {
    object["Id"].as_str().expect("an object with an Id").to_owned()
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap();
    Answer { status, headers, body }
}

/// An error report as docs:errors/error-report shows it, with the fields at fault, if any, named.
fn assert_error(answer: &Answer, status: u16, kind: &str, fields: &[&str]) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let body = &answer.body;
    assert_eq!(body["Type"], kind, "{body}");
    assert!(body["Message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["Id"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body["Date"].as_i64().is_some(), "{body}");
    for field in fields {
        assert!(body["errors"][field].is_string(), "{field} not named in {body}");
    }
}

/// A hook endpoint on 127.0.0.1: each GET's query, in arrival order, answered after `delay`.
async fn receiver(delay: Duration) -> (String, mpsc::UnboundedReceiver<HashMap<String, String>>) {
    let (sender, received) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/hooks/mangopay",
            get(
                move |State(sender): State<mpsc::UnboundedSender<HashMap<String, String>>>,
                      Query(query): Query<HashMap<String, String>>| async move {
                    sender.send(query).unwrap();
                    tokio::time::sleep(delay).await;
                    StatusCode::OK
                },
            ),
        )
        .with_state(sender);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/mangopay", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

async fn next(received: &mut mpsc::UnboundedReceiver<HashMap<String, String>>) -> HashMap<String, String> {
    tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("a hook within 10 s")
        .unwrap()
}

fn assert_hook(query: &HashMap<String, String>, event_type: &str, ressource_id: &str) {
    assert_eq!(
        query.get("EventType").map(String::as_str),
        Some(event_type),
        "{query:?}"
    );
    assert_eq!(
        query.get("RessourceId").map(String::as_str),
        Some(ressource_id),
        "{query:?}"
    );
    assert!(query.get("Date").is_some_and(|d| d.parse::<i64>().is_ok()), "{query:?}");
}

#[tokio::test]
async fn calls_need_a_token_from_the_client_credentials_and_a_renewed_one_after_expiry() {
    let fake = MangopayFake::start().await;
    let mut client = Client::of(&fake).await;
    let anonymous = reqwest::Client::builder().no_proxy().build().unwrap();

    let without = answer(anonymous.get(client.url("users/user_m_x")).send().await.unwrap()).await;
    assert_error(&without, 401, "unauthorized", &[]);
    let wrong_token = answer(
        anonymous
            .get(client.url("users/user_m_x"))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&wrong_token, 401, "unauthorized", &[]);
    let wrong_key = client
        .request_token(fake.client_id(), "wrong-key", "client_credentials")
        .await;
    assert_error(&wrong_key, 401, "unauthorized", &[]);
    let wrong_grant = client.request_token(fake.client_id(), fake.api_key(), "password").await;
    assert_error(&wrong_grant, 400, "param_error", &["grant_type"]);

    let granted = client
        .request_token(fake.client_id(), fake.api_key(), "client_credentials")
        .await;
    assert_eq!(granted.body["token_type"], "Bearer");
    assert_eq!(granted.body["expires_in"], 1200);
    // With a token the call gets through to the endpoint, which knows no such user.
    assert_error(&client.get("users/user_m_x").await, 404, "ressource_not_found", &[]);
    let other_client = answer(
        anonymous
            .get(format!("{}/v2.01/another-client/users/user_m_x", fake.base_url()))
            .bearer_auth(&client.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&other_client, 401, "unauthorized", &[]);

    fake.expire_tokens();
    assert_error(&client.get("users/user_m_x").await, 401, "unauthorized", &[]);
    client.renew_token().await;
    assert_eq!(client.get("users/user_m_x").await.status, 404);
    // Client::of's, the wrong key, the wrong grant, the granted one, the renewal.
    assert_eq!(fake.token_requests(), 5);
}

#[tokio::test]
async fn a_token_stops_working_when_its_expires_in_has_passed() {
    let fake = MangopayFake::builder().token_expires_in(1).start().await;
    let client = Client::of(&fake).await;
    let granted = client
        .request_token(fake.client_id(), fake.api_key(), "client_credentials")
        .await;
    assert_eq!(granted.body["expires_in"], 1);
    assert_eq!(client.get("users/user_m_x").await.status, 404);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = client.get("users/user_m_x").await.status;
        if status == 401 {
            break;
        }
        assert_eq!(status, 404);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token still works after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn users_need_the_fields_their_category_requires() {
    let fake = MangopayFake::start().await;
    let client = Client::of(&fake).await;

    let payer = client.create("users/natural", payer_body()).await;
    assert!(id(&payer).starts_with("user_m_"));
    assert_eq!(payer["PersonType"], "NATURAL");
    assert_eq!(payer["Tag"], "crowdledger:investor:i-1");
    assert_eq!(payer["KYCLevel"], "LIGHT");
    assert!(payer["CreationDate"].as_i64().unwrap() > 1_700_000_000);

    // Without a category a natural user needs birthday, nationality and residence too.
    let uncategorised = client
        .post(
            "users/natural",
            &json!({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"}),
            None,
        )
        .await;
    assert_error(
        &uncategorised,
        400,
        "param_error",
        &["Birthday", "Nationality", "CountryOfResidence"],
    );
    let mistyped = client
        .post(
            "users/natural",
            &json!({"LastName": "Lovelace", "Email": "ada.example.com", "UserCategory": "INVESTOR", "PersonType": "LEGAL"}),
            None,
        )
        .await;
    assert_error(
        &mistyped,
        400,
        "param_error",
        &["FirstName", "Email", "UserCategory", "PersonType"],
    );

    let mut owner_without = project_body();
    for field in ["HeadquartersAddress", "CompanyNumber", "TermsAndConditionsAccepted"] {
        owner_without.as_object_mut().unwrap().remove(field);
    }
    let refused = client.post("users/legal", &owner_without, None).await;
    assert_error(
        &refused,
        400,
        "param_error",
        &["HeadquartersAddress", "CompanyNumber", "TermsAndConditionsAccepted"],
    );
    let project = client.create("users/legal", project_body()).await;
    assert_eq!(project["PersonType"], "LEGAL");
    assert_eq!(project["UserCategory"], "OWNER");
    assert!(project["TermsAndConditionsAcceptedDate"].is_i64());
    assert_eq!(fake.created(Kind::User), 2);

    let project_id = id(&project);
    assert_eq!(client.get(&format!("users/{project_id}")).await.body, project);
    assert_eq!(client.get(&format!("users/legal/{project_id}")).await.body, project);
    assert_error(
        &client.get(&format!("users/natural/{project_id}")).await,
        404,
        "ressource_not_found",
        &[],
    );
}

#[tokio::test]
async fn a_card_pledge_is_paid_moved_to_the_project_and_paid_out_with_a_hook_at_each_step() {
    let Round {
        fake,
        client,
        hooks: mut received,
        investor,
        project,
        escrow,
        payouts,
    } = Round::start().await;
    let wallet = client.get(&format!("wallets/{escrow}")).await.body;
    assert_eq!(wallet["Owners"], json!([project]));
    assert_eq!(wallet["Balance"], eur(0));
    assert_eq!(wallet["FundsType"], "DEFAULT");

    let payin = client
        .create("payins/card/web", card_payin_body(&investor, &escrow, 12_050))
        .await;
    let payin_id = id(&payin);
    assert!(payin_id.starts_with("payin_m_"));
    assert_eq!(payin["Status"], "CREATED");
    assert_eq!(
        (payin["PaymentType"].as_str(), payin["ExecutionType"].as_str()),
        (Some("CARD"), Some("WEB"))
    );
    assert!(payin["RedirectURL"].as_str().unwrap().starts_with("https://"));
    assert_eq!(
        payin["ReturnURL"],
        format!("https://platform.example/return?transactionId={payin_id}")
    );
    assert_eq!(payin["CreditedFunds"], eur(12_050));
    assert_eq!(payin["CreditedUserId"], project.as_str());
    assert!(payin["ExecutionDate"].is_null());

    let hook = fake.succeed_payin(&payin_id).await;
    assert_eq!(hook.event_type, "PAYIN_NORMAL_SUCCEEDED");
    assert_hook(&next(&mut received).await, "PAYIN_NORMAL_SUCCEEDED", &payin_id);
    // The hook is only a pointer: the service reads the pay-in back.
    let paid = client.get(&format!("payins/{payin_id}")).await.body;
    assert_eq!(paid["Status"], "SUCCEEDED");
    assert_eq!(paid["ResultCode"], "000000");
    assert!(paid["ExecutionDate"].is_i64());
    assert_eq!(fake.wallet_balance(&escrow), 12_050);

    // The first leg of the payout: net to the project's wallet, the platform's fee kept.
    let transfer = client
        .create(
            "transfers",
            json!({"AuthorId": project, "DebitedWalletId": escrow, "CreditedWalletId": payouts, "DebitedFunds": eur(12_050), "Fees": eur(550), "Tag": "crowdledger:payout:po-1"}),
        )
        .await;
    assert_eq!(transfer["Status"], "SUCCEEDED");
    assert_eq!(transfer["CreditedFunds"], eur(11_500));
    assert_eq!(transfer["Type"], "TRANSFER");
    assert_hook(&next(&mut received).await, "TRANSFER_NORMAL_SUCCEEDED", &id(&transfer));
    assert_eq!(
        (fake.wallet_balance(&escrow), fake.wallet_balance(&payouts)),
        (0, 11_500)
    );
    assert_eq!(client.get(&format!("transfers/{}", id(&transfer))).await.body, transfer);

    let account = client
        .create(&format!("users/{project}/bankaccounts/iban"), iban_account_body())
        .await;
    assert_eq!(
        (account["Type"].as_str(), account["Active"].as_bool()),
        (Some("IBAN"), Some(true))
    );
    assert_eq!(account["UserId"], project.as_str());
    let account_id = id(&account);
    assert_eq!(
        client
            .get(&format!("users/{project}/bankaccounts/{account_id}"))
            .await
            .body,
        account
    );

    let payout = client
        .create(
            "payouts/bankwire",
            json!({"AuthorId": project, "DebitedWalletId": payouts, "DebitedFunds": eur(11_500), "Fees": eur(0), "BankAccountId": account_id, "BankWireRef": "CROWDLEDGER", "PaymentType": "BANK_WIRE"}),
        )
        .await;
    let payout_id = id(&payout);
    assert_eq!(payout["Status"], "CREATED");
    assert_eq!(payout["BankWireRef"], "CROWDLEDGER");
    assert_eq!(fake.wallet_balance(&payouts), 0);
    fake.succeed_payout(&payout_id).await;
    assert_hook(&next(&mut received).await, "PAYOUT_NORMAL_SUCCEEDED", &payout_id);
    assert_eq!(
        client.get(&format!("payouts/{payout_id}")).await.body["Status"],
        "SUCCEEDED"
    );

    let deliveries = fake.hook_deliveries();
    assert_eq!(deliveries.len(), 3);
    assert!(deliveries.iter().all(|d| d.delivered()), "{deliveries:?}");
    assert_eq!(
        (
            fake.created(Kind::PayIn),
            fake.created(Kind::Transfer),
            fake.created(Kind::PayOut)
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn a_bank_wire_pay_in_shows_where_to_wire_and_takes_what_arrives() {
    let Round {
        fake,
        client,
        investor,
        escrow,
        ..
    } = Round::start().await;
    let declare = |amount: i64| json!({"AuthorId": investor, "CreditedWalletId": escrow, "DeclaredDebitedFunds": eur(amount), "DeclaredFees": eur(0), "Tag": "crowdledger:payment:p-2"});

    let payin = client.create("payins/bankwire/direct", declare(10_000)).await;
    assert_eq!(payin["Status"], "CREATED");
    assert_eq!(
        (payin["PaymentType"].as_str(), payin["ExecutionType"].as_str()),
        (Some("BANK_WIRE"), Some("DIRECT"))
    );
    // Placeholders until the money arrives.
    for field in ["DebitedFunds", "CreditedFunds", "Fees"] {
        assert_eq!(payin[field], json!({"Currency": "XXX", "Amount": 0}), "{field}");
    }
    assert_eq!(payin["DeclaredDebitedFunds"], eur(10_000));
    assert!(!payin["WireReference"].as_str().unwrap().is_empty());
    let account = &payin["BankAccount"];
    assert_eq!(account["Type"], "IBAN");
    assert!(account["IBAN"].as_str().unwrap().starts_with("FR"));
    assert!(account["BIC"].is_string() && account["OwnerName"].is_string());

    let right = id(&payin);
    fake.receive_wire(&right, 10_000).await;
    let paid = client.get(&format!("payins/{right}")).await.body;
    assert_eq!(paid["Status"], "SUCCEEDED");
    assert_eq!(
        (paid["DebitedFunds"].clone(), paid["CreditedFunds"].clone()),
        (eur(10_000), eur(10_000))
    );

    // A wire short of the declaration: the pay-in still succeeds, for what arrived.
    let short = id(&client.create("payins/bankwire/direct", declare(5_000)).await);
    let hook = fake.receive_wire(&short, 4_000).await;
    assert_eq!(hook.event_type, "PAYIN_NORMAL_SUCCEEDED");
    let read = client.get(&format!("payins/{short}")).await.body;
    assert_eq!(read["Status"], "SUCCEEDED");
    assert_eq!(read["DebitedFunds"], eur(4_000));
    assert_eq!(read["DeclaredDebitedFunds"], eur(5_000));
    assert_eq!(fake.wallet_balance(&escrow), 14_000);

    // No money within the month.
    let never = id(&client.create("payins/bankwire/direct", declare(3_000)).await);
    assert_eq!(
        fake.fail_payin(&never, "101109").await.event_type,
        "PAYIN_NORMAL_FAILED"
    );
    let expired = client.get(&format!("payins/{never}")).await.body;
    assert_eq!(
        (expired["Status"].as_str(), expired["ResultCode"].as_str()),
        (Some("FAILED"), Some("101109"))
    );
    assert_eq!(expired["ResultMessage"], "The payment period has expired");

    // Refunded by a payout, not a refund.
    let refund = client
        .post(&format!("payins/{right}/refunds"), &json!({"AuthorId": investor}), None)
        .await;
    assert_error(&refund, 400, "param_error", &["InitialTransactionId"]);
}

#[tokio::test]
async fn an_idempotency_key_is_spent_by_its_first_call_which_responses_shows() {
    let fake = MangopayFake::start().await;
    let client = Client::of(&fake).await;
    let key = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let body = payer_body();

    let first = client.post("users/natural", &body, Some(key)).await;
    assert_eq!(first.status, 200);
    // Not a replay: the same request, or any other, is blocked.
    let again = client.post("users/natural", &body, Some(key)).await;
    assert_error(&again, 409, "idempotent_creation_conflict", &[]);
    let other = client.post("wallets", &json!({}), Some(key)).await;
    assert_error(&other, 409, "idempotent_creation_conflict", &[]);
    assert_eq!(fake.created(Kind::User), 1);

    let saved = client.get(&format!("responses/{key}")).await;
    assert_eq!(saved.status, 200);
    assert_eq!(saved.body["StatusCode"], "200");
    assert_eq!(saved.body["Resource"], first.body);
    assert_eq!(saved.body["ContentType"], "application/json; charset=utf-8");
    assert!(
        saved.body["RequestURL"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v2.01/{}/users/natural", fake.client_id()))
    );
    assert!(saved.body["Date"].as_str().unwrap().ends_with(" GMT"));

    // A refused first call spends its key too, and its answer is what responses shows.
    let refused_key = "11111111-2222-3333-4444-555555555555";
    let refused = client.post("users/natural", &json!({}), Some(refused_key)).await;
    assert_eq!(refused.status, 400);
    let retry = client.post("users/natural", &body, Some(refused_key)).await;
    assert_eq!(retry.status, 409);
    let saved = client.get(&format!("responses/{refused_key}")).await;
    assert_eq!(saved.body["StatusCode"], "400");
    assert_eq!(saved.body["Resource"]["Type"], "param_error");

    let unknown = client.get("responses/aaaaaaaaaaaaaaaa").await;
    assert_error(&unknown, 404, "ressource_not_found", &[]);
    for bad in ["fifteen-chars-x", "with_underscore_1234", &"x".repeat(37)] {
        let refused = client.post("users/natural", &body, Some(bad)).await;
        assert_error(&refused, 400, "param_error", &["Idempotency-Key"]);
    }
    assert_eq!(
        client
            .post("users/natural", &body, Some("fifteen-chars-xy"))
            .await
            .status,
        200
    );
    assert_eq!(fake.created(Kind::User), 2);
}

#[tokio::test]
async fn faults_in_front_of_the_api_spend_no_key_and_a_server_error_spends_it() {
    let fake = MangopayFake::start().await;
    let client = Client::of(&fake).await;
    let body = payer_body();
    fake.fail_next("users/natural", 1, Fault::RateLimited);
    fake.fail_next("users/natural", 1, Fault::ServiceUnavailable);
    fake.fail_next("users/natural", 1, Fault::DropConnection);
    let key = "aaaaaaaa-0000-0000-0000-000000000001";

    let limited = client.post("users/natural", &body, Some(key)).await;
    assert_error(&limited, 429, "rate_limit", &[]);
    let remaining = limited.headers["x-ratelimit-remaining"].to_str().unwrap();
    assert!(remaining.starts_with("0,"), "{remaining}");
    assert_eq!(
        limited.headers["x-ratelimit-reset"]
            .to_str()
            .unwrap()
            .split(',')
            .count(),
        4
    );
    assert_eq!(client.post("users/natural", &body, Some(key)).await.status, 503);
    let dropped = client.post_request("users/natural", &body, Some(key)).send().await;
    assert!(dropped.is_err(), "{dropped:?}");
    let done = client.post("users/natural", &body, Some(key)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(fake.created(Kind::User), 1);
    assert_eq!(done.headers["x-ratelimit"].to_str().unwrap().split(',').count(), 4);

    // A 500 from the API itself is the key's outcome: the retry needs a new key.
    fake.fail_next("users/*", 1, Fault::ServerError);
    let key = "aaaaaaaa-0000-0000-0000-000000000002";
    let failed = client.post("users/natural", &body, Some(key)).await;
    assert_error(&failed, 500, "internal_server_error", &[]);
    assert_eq!(client.post("users/natural", &body, Some(key)).await.status, 409);
    let saved = client.get(&format!("responses/{key}")).await.body;
    assert_eq!(saved["StatusCode"], "500");
    assert_eq!(fake.created(Kind::User), 1);

    // Faults are per path: others are untouched, and the token endpoint has its own.
    fake.fail_next("oauth/token", 1, Fault::RateLimited);
    let token = client
        .request_token(fake.client_id(), fake.api_key(), "client_credentials")
        .await;
    assert_eq!(token.status, 429);
    assert_eq!(client.post("users/natural", &body, None).await.status, 200);
}

#[tokio::test]
async fn a_late_reply_comes_after_the_work_which_responses_shows() {
    let Round {
        fake,
        client,
        investor,
        escrow,
        ..
    } = Round::start().await;
    fake.delay_next_reply("payins/card/web", Duration::from_secs(5));
    let key = "bbbbbbbb-0000-0000-0000-000000000001";

    let timed_out = client
        .post_request(
            "payins/card/web",
            &card_payin_body(&investor, &escrow, 5_000),
            Some(key),
        )
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(timed_out.is_timeout(), "{timed_out}");
    assert_eq!(fake.created(Kind::PayIn), 1);

    let retried = client
        .post(
            "payins/card/web",
            &card_payin_body(&investor, &escrow, 5_000),
            Some(key),
        )
        .await;
    assert_eq!(retried.status, 409);
    let saved = client.get(&format!("responses/{key}")).await.body;
    assert_eq!(saved["StatusCode"], "200");
    let payin = saved["Resource"]["Id"].as_str().unwrap();
    assert!(fake.object(payin).is_some());
}

#[tokio::test]
async fn a_held_reply_waits_for_release_after_the_work_is_done() {
    let Round {
        fake,
        client,
        investor,
        escrow,
        ..
    } = Round::start().await;
    let mut held = fake.hold_next_reply("payins/card/web");
    let key = "cccccccc-0000-0000-0000-000000000001";

    let first = tokio::spawn(
        client
            .post_request(
                "payins/card/web",
                &card_payin_body(&investor, &escrow, 5_000),
                Some(key),
            )
            .send(),
    );
    held.processed().await;
    assert_eq!(fake.created(Kind::PayIn), 1);
    assert!(!first.is_finished());
    // What a restarted client finds while the first reply is still held.
    let saved = client.get(&format!("responses/{key}")).await.body;
    assert_eq!(saved["StatusCode"], "200");
    let payin = saved["Resource"]["Id"].as_str().unwrap();
    assert_eq!(fake.object(payin).unwrap()["Status"], "CREATED");

    held.release();
    let first = answer(first.await.unwrap().unwrap()).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, saved["Resource"]);
    assert_eq!(fake.created(Kind::PayIn), 1);
}

#[tokio::test]
async fn transfers_and_payouts_that_cannot_go_through_fail_with_their_result_codes() {
    let Round {
        fake,
        client,
        hooks: mut received,
        investor,
        project,
        escrow,
        payouts,
    } = Round::start().await;
    let transfer = |author: &str, amount: i64| json!({"AuthorId": author, "DebitedWalletId": escrow, "CreditedWalletId": payouts, "DebitedFunds": eur(amount), "Fees": eur(0)});

    let empty = client.create("transfers", transfer(&project, 1_000)).await;
    assert_eq!(
        (empty["Status"].as_str(), empty["ResultCode"].as_str()),
        (Some("FAILED"), Some("001001"))
    );
    assert_eq!(empty["ResultMessage"], "Unsufficient wallet balance");
    assert_hook(&next(&mut received).await, "TRANSFER_NORMAL_FAILED", &id(&empty));
    client.paid(&fake, &investor, &escrow, 1_000).await;
    next(&mut received).await;
    let not_owner = client.create("transfers", transfer(&investor, 1_000)).await;
    assert_eq!(not_owner["ResultCode"], "001002");
    next(&mut received).await;
    let made = client.create("transfers", transfer(&project, 1_000)).await;
    assert_eq!(made["Status"], "SUCCEEDED");
    next(&mut received).await;
    assert_eq!(fake.wallet_balance(&payouts), 1_000);

    let account = id(&client
        .create(&format!("users/{project}/bankaccounts/iban"), iban_account_body())
        .await);
    let payout = |amount: i64| json!({"AuthorId": project, "DebitedWalletId": payouts, "DebitedFunds": eur(amount), "Fees": eur(0), "BankAccountId": account});
    let too_much = client.create("payouts/bankwire", payout(1_001)).await;
    assert_eq!(
        (too_much["Status"].as_str(), too_much["ResultCode"].as_str()),
        (Some("FAILED"), Some("001001"))
    );
    assert_hook(&next(&mut received).await, "PAYOUT_NORMAL_FAILED", &id(&too_much));

    // A payout takes the money when created and gives it back if it fails.
    let failing = id(&client.create("payouts/bankwire", payout(1_000)).await);
    assert_eq!(fake.wallet_balance(&payouts), 0);
    fake.fail_payout(&failing).await;
    assert_hook(&next(&mut received).await, "PAYOUT_NORMAL_FAILED", &failing);
    assert_eq!(
        client.get(&format!("payouts/{failing}")).await.body["ResultCode"],
        "121999"
    );
    assert_eq!(fake.wallet_balance(&payouts), 1_000);

    // A payout that succeeded, then bounced: a refund of it puts the money back.
    let bouncing = id(&client.create("payouts/bankwire", payout(1_000)).await);
    fake.succeed_payout(&bouncing).await;
    next(&mut received).await;
    let returned = fake.return_payout(&bouncing, "BANKACCOUNT_HAS_BEEN_CLOSED").await;
    assert_hook(
        &next(&mut received).await,
        "PAYOUT_REFUND_SUCCEEDED",
        &returned.ressource_id,
    );
    let refund = client.get(&format!("refunds/{}", returned.ressource_id)).await.body;
    assert_eq!(
        (
            refund["InitialTransactionId"].as_str(),
            refund["InitialTransactionType"].as_str()
        ),
        (Some(bouncing.as_str()), Some("PAYOUT"))
    );
    assert_eq!(
        refund["RefundReason"]["RefundReasonType"],
        "BANKACCOUNT_HAS_BEEN_CLOSED"
    );
    assert_eq!(
        client.get(&format!("payouts/{bouncing}")).await.body["Status"],
        "SUCCEEDED"
    );
    assert_eq!(fake.wallet_balance(&payouts), 1_000);
}

#[tokio::test]
async fn a_card_pay_in_is_refunded_up_to_what_it_credited() {
    let Round {
        fake,
        client,
        hooks: mut received,
        investor,
        escrow,
        ..
    } = Round::start().await;
    let unpaid = client.card_payin(&investor, &escrow, 3_000).await;
    let refund_of_unpaid = client
        .post(
            &format!("payins/{unpaid}/refunds"),
            &json!({"AuthorId": investor}),
            None,
        )
        .await;
    assert_error(&refund_of_unpaid, 400, "param_error", &["InitialTransactionId"]);
    let payin = client.paid(&fake, &investor, &escrow, 10_000).await;
    next(&mut received).await;
    let refunds = format!("payins/{payin}/refunds");

    let half = json!({"AuthorId": investor, "DebitedFunds": eur(6_000)});
    assert_error(&client.post(&refunds, &half, None).await, 400, "param_error", &["Fees"]);
    let first = client
        .create(
            &refunds,
            json!({"AuthorId": investor, "DebitedFunds": eur(6_000), "Fees": eur(0), "Tag": "crowdledger:refund:r-1"}),
        )
        .await;
    assert_eq!(first["Status"], "CREATED");
    assert_eq!(
        (first["Type"].as_str(), first["Nature"].as_str()),
        (Some("PAYOUT"), Some("REFUND"))
    );
    assert_eq!(first["InitialTransactionId"], payin.as_str());
    assert_eq!(first["DebitedWalletId"], escrow.as_str());
    assert_eq!(fake.wallet_balance(&escrow), 4_000);

    let too_much = client
        .create(
            &refunds,
            json!({"AuthorId": investor, "DebitedFunds": eur(5_000), "Fees": eur(0)}),
        )
        .await;
    assert_eq!(
        (too_much["Status"].as_str(), too_much["ResultCode"].as_str()),
        (Some("FAILED"), Some("005403"))
    );
    assert_hook(&next(&mut received).await, "PAYIN_REFUND_FAILED", &id(&too_much));

    fake.succeed_refund(&id(&first)).await;
    assert_hook(&next(&mut received).await, "PAYIN_REFUND_SUCCEEDED", &id(&first));
    assert_eq!(
        client.get(&format!("refunds/{}", id(&first))).await.body["Status"],
        "SUCCEEDED"
    );
    // The rest, refunded and failed: a failed refund gives its amount back.
    let rest = client
        .create(
            &refunds,
            json!({"AuthorId": investor, "DebitedFunds": eur(4_000), "Fees": eur(0)}),
        )
        .await;
    assert_eq!(rest["Status"], "CREATED");
    fake.fail_refund(&id(&rest)).await;
    assert_hook(&next(&mut received).await, "PAYIN_REFUND_FAILED", &id(&rest));
    assert_eq!(fake.wallet_balance(&escrow), 4_000);
    // Without amounts a refund asks for all the pay-in credited, more than is left.
    let all_of_it = client.create(&refunds, json!({"AuthorId": investor})).await;
    assert_eq!(all_of_it["ResultCode"], "005403");
}

#[tokio::test]
async fn a_refund_without_amounts_gives_the_payer_all_they_paid_fees_included() {
    let Round {
        fake,
        client,
        investor,
        escrow,
        ..
    } = Round::start().await;
    let mut body = card_payin_body(&investor, &escrow, 10_000);
    body["Fees"] = eur(500);
    let payin = id(&client.create("payins/card/web", body).await);
    fake.succeed_payin(&payin).await;
    assert_eq!(fake.wallet_balance(&escrow), 9_500);

    let refund = client
        .create(&format!("payins/{payin}/refunds"), json!({"AuthorId": investor}))
        .await;
    assert_eq!(refund["Status"], "CREATED");
    assert_eq!(refund["DebitedFunds"], eur(9_500));
    assert_eq!(refund["Fees"], eur(-500));
    assert_eq!(refund["CreditedFunds"], eur(10_000));
    assert_eq!(fake.wallet_balance(&escrow), 0);
}

#[tokio::test]
async fn a_transfer_is_refunded_at_once_to_the_wallet_it_came_from() {
    let Round {
        fake,
        client,
        hooks: mut received,
        investor,
        project,
        escrow,
        payouts,
    } = Round::start().await;
    client.paid(&fake, &investor, &escrow, 2_000).await;
    next(&mut received).await;
    let transfer = client
        .create(
            "transfers",
            json!({"AuthorId": project, "DebitedWalletId": escrow, "CreditedWalletId": payouts, "DebitedFunds": eur(2_000), "Fees": eur(100)}),
        )
        .await;
    next(&mut received).await;

    let refund = client
        .create(
            &format!("transfers/{}/refunds", id(&transfer)),
            json!({"AuthorId": project}),
        )
        .await;
    assert_eq!(refund["Status"], "SUCCEEDED");
    assert_eq!(
        (refund["Type"].as_str(), refund["InitialTransactionType"].as_str()),
        (Some("TRANSFER"), Some("TRANSFER"))
    );
    assert_eq!(
        (refund["DebitedWalletId"].as_str(), refund["CreditedWalletId"].as_str()),
        (Some(payouts.as_str()), Some(escrow.as_str()))
    );
    assert_hook(&next(&mut received).await, "TRANSFER_REFUND_SUCCEEDED", &id(&refund));
    assert_eq!(
        (fake.wallet_balance(&escrow), fake.wallet_balance(&payouts)),
        (2_000, 0)
    );
    let again = client
        .create(
            &format!("transfers/{}/refunds", id(&transfer)),
            json!({"AuthorId": project}),
        )
        .await;
    assert_eq!(again["ResultCode"], "005403");
}

#[tokio::test]
async fn a_dispute_is_opened_then_closed_lost_and_blocks_refunds() {
    let Round {
        fake,
        client,
        hooks: mut received,
        investor,
        escrow,
        ..
    } = Round::start().await;
    let payin = client.paid(&fake, &investor, &escrow, 5_000).await;
    next(&mut received).await;

    let opened = fake.open_dispute(&payin, 5_000).await;
    let dispute_id = opened.ressource_id.clone();
    assert!(dispute_id.starts_with("dispute_m_"));
    assert_hook(&next(&mut received).await, "DISPUTE_CREATED", &dispute_id);
    let dispute = client.get(&format!("disputes/{dispute_id}")).await.body;
    assert_eq!(dispute["InitialTransactionId"], payin.as_str());
    assert_eq!(dispute["InitialTransactionType"], "PAYIN");
    assert_eq!(dispute["DisputedFunds"], eur(5_000));
    assert_eq!(dispute["DisputeType"], "CONTESTABLE");
    assert_eq!(dispute["Status"], "PENDING_CLIENT_ACTION");
    assert!(dispute["ResultCode"].is_null());

    let refund = client
        .create(&format!("payins/{payin}/refunds"), json!({"AuthorId": investor}))
        .await;
    assert_eq!(
        (refund["Status"].as_str(), refund["ResultCode"].as_str()),
        (Some("FAILED"), Some("005408"))
    );
    assert_hook(&next(&mut received).await, "PAYIN_REFUND_FAILED", &id(&refund));

    let closed = fake.close_dispute(&dispute_id, DisputeOutcome::Lost).await;
    assert_eq!(closed.event_type, "DISPUTE_CLOSED");
    assert_hook(&next(&mut received).await, "DISPUTE_CLOSED", &dispute_id);
    let dispute = client.get(&format!("disputes/{dispute_id}")).await.body;
    assert_eq!(
        (dispute["Status"].as_str(), dispute["ResultCode"].as_str()),
        (Some("CLOSED"), Some("LOST"))
    );
    assert!(dispute["ClosedDate"].is_i64());
    // The chargeback comes out of the platform's repudiation wallet, not the escrow.
    assert_eq!(fake.wallet_balance(&escrow), 5_000);
}

#[tokio::test]
async fn a_hook_is_sent_for_any_id_even_one_the_fake_never_had() {
    let fake = MangopayFake::start().await;
    let client = Client::of(&fake).await;
    let (url, mut received) = receiver(Duration::ZERO).await;

    // Before a URL is set hooks are made but go nowhere.
    assert_eq!(fake.send_hook("PAYIN_NORMAL_SUCCEEDED", "payin_m_early").await, None);
    fake.set_hook_url(url);
    fake.set_now(1_700_000_000);
    let status = fake.send_hook("PAYIN_NORMAL_SUCCEEDED", "payin_m_NOT_OURS").await;
    assert_eq!(status, Some(200));
    let query = next(&mut received).await;
    assert_hook(&query, "PAYIN_NORMAL_SUCCEEDED", "payin_m_NOT_OURS");
    assert_eq!(query["Date"], "1700000000");
    assert_error(
        &client.get("payins/payin_m_NOT_OURS").await,
        404,
        "ressource_not_found",
        &[],
    );
    assert_eq!(fake.hooks().len(), 2);
    assert_eq!(fake.hook_deliveries().len(), 1);
    assert_eq!(fake.hook_deliveries()[0].hook.date, 1_700_000_000);
}

#[tokio::test]
async fn a_hook_registered_for_an_event_type_takes_its_hooks() {
    let fake = MangopayFake::start().await;
    let client = Client::of(&fake).await;
    let (catch_all, mut everything) = receiver(Duration::ZERO).await;
    let (payins_url, mut payins) = receiver(Duration::ZERO).await;
    fake.set_hook_url(catch_all);

    let hook = client
        .create(
            "hooks",
            json!({"EventType": "PAYIN_NORMAL_SUCCEEDED", "Url": payins_url, "Tag": "crowdledger"}),
        )
        .await;
    assert_eq!(
        (hook["Status"].as_str(), hook["Validity"].as_str()),
        (Some("ENABLED"), Some("VALID"))
    );
    let second = client
        .post(
            "hooks",
            &json!({"EventType": "PAYIN_NORMAL_SUCCEEDED", "Url": "https://elsewhere.example"}),
            None,
        )
        .await;
    assert_error(&second, 400, "param_error", &["EventType"]);
    let unknown = client
        .post("hooks", &json!({"EventType": "PAYIN_MADE", "Url": "ftp://x"}), None)
        .await;
    assert_error(&unknown, 400, "param_error", &["EventType", "Url"]);

    fake.send_hook("PAYIN_NORMAL_SUCCEEDED", "payin_m_1").await;
    assert_hook(&next(&mut payins).await, "PAYIN_NORMAL_SUCCEEDED", "payin_m_1");
    fake.send_hook("PAYIN_NORMAL_FAILED", "payin_m_2").await;
    assert_hook(&next(&mut everything).await, "PAYIN_NORMAL_FAILED", "payin_m_2");
    assert!(everything.try_recv().is_err());
}

#[tokio::test]
async fn a_receiver_slower_than_the_hook_deadline_counts_as_a_failed_delivery() {
    let fake = MangopayFake::builder()
        .hook_timeout(Duration::from_millis(200))
        .start()
        .await;
    let (url, mut received) = receiver(Duration::from_secs(2)).await;
    fake.set_hook_url(url);

    assert_eq!(fake.send_hook("DISPUTE_CREATED", "dispute_m_1").await, None);
    next(&mut received).await;
    let delivery = &fake.hook_deliveries()[0];
    assert_eq!(delivery.status, None);
    assert!(!delivery.delivered());
    assert!(delivery.elapsed >= Duration::from_millis(200));
}

#[tokio::test]
async fn bad_requests_name_every_field_at_fault_and_unknown_ids_are_404() {
    let Round {
        fake,
        client,
        investor,
        escrow,
        ..
    } = Round::start().await;

    let empty = client.post("payins/card/web", &json!({}), None).await;
    assert_error(
        &empty,
        400,
        "param_error",
        &[
            "AuthorId",
            "CreditedWalletId",
            "DebitedFunds",
            "Fees",
            "ReturnURL",
            "Culture",
        ],
    );
    let mut wrong = card_payin_body("user_m_nobody", "wlt_m_nowhere", 0);
    wrong["Fees"] = json!({"Currency": "eur", "Amount": 1.5});
    wrong["Culture"] = json!("XX");
    let wrong = client.post("payins/card/web", &wrong, None).await;
    assert_error(
        &wrong,
        400,
        "param_error",
        &[
            "AuthorId",
            "CreditedWalletId",
            "DebitedFunds.Amount",
            "Fees.Currency",
            "Fees.Amount",
            "Culture",
        ],
    );
    let mut dollars = card_payin_body(&investor, &escrow, 1_000);
    dollars["DebitedFunds"] = json!({"Currency": "USD", "Amount": 1_000});
    dollars["Fees"] = json!({"Currency": "USD", "Amount": 0});
    assert_error(
        &client.post("payins/card/web", &dollars, None).await,
        400,
        "param_error",
        &["CreditedWalletId"],
    );
    let not_json = client
        .http
        .post(client.url("wallets"))
        .bearer_auth(&client.token)
        .body("Owners=1")
        .send()
        .await
        .unwrap();
    assert_error(&answer(not_json).await, 400, "param_error", &["Body"]);
    let two_owners = client
        .post(
            "wallets",
            &json!({"Owners": [investor, investor], "Currency": "EUR", "Description": "x"}),
            None,
        )
        .await;
    assert_error(&two_owners, 400, "param_error", &["Owners"]);
    let bad_iban = client
        .post(
            &format!("users/{investor}/bankaccounts/iban"),
            &json!({"OwnerName": "Ada", "OwnerAddress": {"AddressLine1": "1 rue", "City": "Paris", "PostalCode": "75001", "Country": "FR"}, "IBAN": "FR7730006000011234567890189"}),
            None,
        )
        .await;
    assert_error(&bad_iban, 400, "param_error", &["IBAN"]);
    assert_eq!(bad_iban.body["errors"]["IBAN"], "The value is not a valid IBAN");
    assert_eq!(fake.created(Kind::PayIn) + fake.created(Kind::BankAccount), 0);

    for path in [
        "wallets/wlt_m_x",
        "payins/payin_m_x",
        "transfers/transfer_m_x",
        "payouts/payout_m_x",
        "refunds/refund_m_x",
        "disputes/dispute_m_x",
        "users/user_m_x/bankaccounts/bankacc_m_x",
    ] {
        assert_error(&client.get(path).await, 404, "ressource_not_found", &[]);
    }
    assert_eq!(
        client
            .post("users/user_m_x/bankaccounts/iban", &json!({}), None)
            .await
            .status,
        404
    );
    assert_eq!(client.post("cards/registrations", &json!({}), None).await.status, 404);
}

#[tokio::test]
async fn the_fakes_clock_dates_objects_and_hooks() {
    let fake = MangopayFake::start().await;
    let client = Client::of(&fake).await;
    fake.set_now(1_700_000_000);
    let investor = client.investor().await;
    let escrow = client.wallet(&client.project().await).await;
    let payin = client.card_payin(&investor, &escrow, 1_000).await;
    fake.set_now(1_700_000_060);
    let hook = fake.succeed_payin(&payin).await;

    let read = client.get(&format!("payins/{payin}")).await.body;
    assert_eq!(read["CreationDate"], 1_700_000_000);
    assert_eq!(read["ExecutionDate"], 1_700_000_060);
    assert_eq!(hook.date, 1_700_000_060);
    let requests = fake.requests();
    let created = requests.iter().find(|r| r.path.ends_with("/payins/card/web")).unwrap();
    assert_eq!(created.method, "POST");
    assert_eq!(created.body["DebitedFunds"], eur(1_000));
}
