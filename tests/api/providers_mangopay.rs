//! Rounds through Mangopay (issue 23, PRODUCT.md section 10, docs/mangopay.md): the service
//! configured with `payments.card_provider = "mangopay"` against the local Mangopay of
//! tools/provider-fakes, which follows Mangopay's API reference (docs/providers/mangopay-api.md).
//! Card pledges create users, the offer's escrow wallet and card web pay-ins; a failed round's
//! refunds are pay-in refunds; a payout is a transfer out of the escrow and a payout by wire.
//! Hooks are unsigned GETs: each is read back from the API, which is believed over the hook.

use std::time::Duration;

use crowdledger_provider_fakes::mangopay::{Fault, Kind, MangopayFake};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::fixtures::{self, DAY, ok};
use crate::common::providers::{attempts, mangopay_settings, payment_of};
use crate::common::{OPERATOR_KEY, TestApp};

const RETURN_URL: &str = "https://platform.example/pledges/returned";
const IBAN: &str = "FR7630006000011234567890189";

/// The service on Mangopay, and the fake sending its hooks to the service.
async fn on_mangopay(pool: PgPool, timeout_seconds: &str) -> (TestApp, MangopayFake) {
    let mangopay = MangopayFake::start().await;
    let base = mangopay.base_url();
    let extra = [
        ("CROWDLEDGER__PAYMENTS__CARD_PROVIDER", "mangopay"),
        ("CROWDLEDGER__PAYMENTS__MANGOPAY__RETURN_URL", RETURN_URL),
        ("CROWDLEDGER__PAYMENTS__MANGOPAY__TIMEOUT_SECONDS", timeout_seconds),
    ];
    let app = TestApp::spawn_with(pool, &mangopay_settings(&mangopay, &base, &extra)).await;
    mangopay.set_hook_url(hook_url(&app));
    (app, mangopay)
}

fn hook_url(app: &TestApp) -> String {
    format!("{}/v1/webhooks/mangopay", app.base)
}

/// What Mangopay needs to know of a project: where it is paid, its company number, and its
/// legal representative.
fn payout_details() -> Value {
    json!({
        "bank_account": {"iban": IBAN, "bic": "AGRIFRPP", "owner_name": "Crois/Sens SCIC",
                         "owner_address": {"line1": "12 rue de Siam", "city": "Brest", "postal_code": "29200", "country": "FR"}},
        "company_number": "834 562 190",
        "legal_representative": {"first_name": "Maël", "last_name": "Le Goff", "birthday": "1981-04-12",
                                 "nationality": "FR", "country_of_residence": "FR", "email": "mael@crois-sens.example"},
    })
}

async fn set_payout_details(app: &TestApp, project: &str, details: &Value) {
    let path = format!("/v1/projects/{project}/payout-details");
    let r = app
        .call(reqwest::Method::PUT, &path, Some(OPERATOR_KEY), Some(details))
        .await;
    ok(r, 200).await;
}

/// A project known to Mangopay's rules, and its open offer of 10 to 100 shares at 10.00
/// (`min_target` as given), closing in 9 days: `(project, offer)`.
async fn offer(app: &TestApp, min_target: &str) -> (String, String) {
    let project = fixtures::published_project(app).await;
    set_payout_details(app, &project, &payout_details()).await;
    let terms = json!({"min_target": min_target, "max_target": "1000.00"});
    let offer = fixtures::open_offer(app, &project, terms, 9).await;
    (project, offer)
}

/// The POSTs the fake received at `route` (what follows `/v2.01/{ClientId}/`), in order.
fn posts_to(mangopay: &MangopayFake, route: &str) -> Vec<crowdledger_provider_fakes::mangopay::ReceivedRequest> {
    let path = format!("/v2.01/{}/{route}", mangopay.client_id());
    mangopay
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .collect()
}

/// A stored inbound event of Mangopay's: its outcome and detail.
async fn stored_event(app: &TestApp, event_id: &str) -> Option<(String, Option<String>)> {
    sqlx::query_as("select status::text, detail from inbound_events where provider = 'mangopay' and event_id = $1")
        .bind(event_id)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
}

/// GETs a notification to the service as Mangopay would, by its query.
async fn notify(app: &TestApp, query: &str) -> crate::common::Reply {
    crate::common::send(
        app,
        reqwest::Method::GET,
        &format!("/v1/webhooks/mangopay?{query}"),
        &[],
        None,
    )
    .await
}

/// A card pledge of `shares` at 10.00 by `investor`: `(pledge id, pay-in id)`.
async fn card_pledge(app: &TestApp, offer: &str, investor: &str, shares: i64) -> (String, String) {
    let p = ok(fixtures::pledge(app, offer, investor, shares, "10.00").await, 201).await;
    let payin = p["payment"]["payment_id"].as_str().expect("named at once").to_owned();
    (p["id"].as_str().unwrap().to_owned(), payin)
}

#[sqlx::test]
async fn a_round_through_mangopay_pays_in_by_card_funds_on_read_back_hooks_and_pays_out_by_transfer_and_wire(
    pool: PgPool,
) {
    let (app, mangopay) = on_mangopay(pool, "10").await;
    let (project, offer) = offer(&app, "100.00").await;
    let investors = fixtures::investors(&app, 2).await;

    // Each card pledge creates a pay-in on Mangopay's hosted page, at once, and answers where
    // the investor pays.
    let mut pledges = Vec::new();
    for (investor, shares) in investors.iter().zip([12, 8]) {
        let p = ok(fixtures::pledge(&app, &offer, investor, shares, "10.00").await, 201).await;
        assert_eq!(p["payment"]["provider"], "mangopay", "{p:#}");
        let payin_id = p["payment"]["payment_id"].as_str().expect("named at once").to_owned();
        assert!(payin_id.starts_with("payin_m_"), "{p:#}");
        let payin = mangopay.object(&payin_id).expect("the pay-in exists at Mangopay");
        assert_eq!(p["payment"]["redirect_url"], payin["RedirectURL"], "{p:#}");
        // Never stored: the payment session asks Mangopay for the hosted page again.
        let session = app
            .get(&format!("/v1/pledges/{}/payment-session", p["id"].as_str().unwrap()))
            .await;
        assert_eq!(session.body["redirect_url"], payin["RedirectURL"], "{:#}", session.body);
        assert!(p["payment"].get("client_secret").is_none());
        let payment = payment_of(&app, p["id"].as_str().unwrap()).await;
        assert_eq!(payin["Status"], "CREATED");
        assert_eq!(
            payin["DebitedFunds"],
            json!({"Currency": "EUR", "Amount": shares * 1000})
        );
        assert_eq!(payin["Fees"], json!({"Currency": "EUR", "Amount": 0}));
        assert_eq!(payin["Tag"], format!("crowdledger:payment:{payment}"));
        assert_eq!(payin["Culture"], "FR");
        assert!(payin["ReturnURL"].as_str().unwrap().starts_with(RETURN_URL));
        let author = mangopay.object(payin["AuthorId"].as_str().unwrap()).unwrap();
        assert_eq!(
            (&author["PersonType"], &author["UserCategory"], &author["Tag"]),
            (
                &json!("NATURAL"),
                &json!("PAYER"),
                &json!(format!("crowdledger:investor:{investor}"))
            )
        );
        pledges.push((p["id"].as_str().unwrap().to_owned(), payin_id, shares));
    }
    // Two payers, the project as the OWNER of the offer's one escrow wallet.
    assert_eq!((mangopay.created(Kind::User), mangopay.created(Kind::Wallet)), (3, 1));
    let escrow_id = mangopay.object(&pledges[0].1).unwrap()["CreditedWalletId"]
        .as_str()
        .unwrap()
        .to_owned();
    let escrow = mangopay.object(&escrow_id).unwrap();
    assert_eq!(escrow["Tag"], format!("crowdledger:offer:{offer}"));
    let owner = mangopay.object(escrow["Owners"][0].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            &owner["PersonType"],
            &owner["UserCategory"],
            &owner["CompanyNumber"],
            &owner["Name"]
        ),
        (
            &json!("LEGAL"),
            &json!("OWNER"),
            &json!("834 562 190"),
            &json!("Crois/Sens SAS")
        )
    );
    assert_eq!(owner["Tag"], format!("crowdledger:project:{project}"));
    assert_eq!(owner["LegalRepresentativeLastName"], "Le Goff");
    // Every creation went with a key of its own, in Mangopay's format.
    let keys: Vec<String> = mangopay
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && !r.path.ends_with("oauth/token"))
        .map(|r| r.idempotency_key.expect("every creation has a key"))
        .collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert!(keys.iter().all(|k| k.len() == 36), "{keys:?}");
    assert_eq!(keys.iter().collect::<std::collections::HashSet<_>>().len(), keys.len());
    // Where the investor pays is never stored: a read shows the pay-in, not its page.
    let read = app.get(&format!("/v1/pledges/{}", pledges[0].0)).await;
    assert_eq!(read.body["payment"]["payment_id"], pledges[0].1.as_str());
    assert!(read.body["payment"].get("redirect_url").is_none(), "{:#}", read.body);

    // The investors pay; each hook is read back and funds its pledge, within Mangopay's 2 s.
    for (pledge, payin, _) in &pledges {
        let hook = mangopay.succeed_payin(payin).await;
        assert_eq!(hook.event_type, "PAYIN_NORMAL_SUCCEEDED");
        let delivered = mangopay.hook_deliveries().last().cloned().unwrap();
        assert!(delivered.delivered(), "{delivered:?}");
        let funded = app.get(&format!("/v1/pledges/{pledge}")).await;
        assert_eq!(funded.body["status"], "funded", "{:#}", funded.body);
        let event = format!("PAYIN_NORMAL_SUCCEEDED:{payin}:{}", hook.date);
        assert_eq!(stored_event(&app, &event).await.unwrap().0, "applied");
    }
    assert_eq!(fixtures::balance(&app, "psp:mangopay:eur").await, "200.00");
    assert_eq!(mangopay.wallet_balance(&escrow_id), 20_000);

    // Closed: 200.00 raised, 5% to the platform, 190.00 owed to the project.
    ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    let payout = ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 201).await;
    assert_eq!(payout["amount"], "190.00");
    let payout_id = payout["id"].as_str().unwrap().to_owned();
    // The transfer out of the escrow, the bank account and the payout by wire are made after
    // commit; the payout waits for the bank.
    let named = app
        .wait_for(&format!("/v1/payouts/{payout_id}"), |p| {
            p["payment"]["payment_id"].is_string()
        })
        .await;
    assert_eq!(named["status"], "pending", "{named:#}");
    let wire_id = named["payment"]["payment_id"].as_str().unwrap().to_owned();
    assert_eq!(attempts(&app, &payout_id).await, ["done"]);
    assert_eq!(
        [Kind::Transfer, Kind::BankAccount, Kind::PayOut, Kind::Wallet].map(|k| mangopay.created(k)),
        [1, 1, 1, 2]
    );
    let transfer = posts_to(&mangopay, "transfers").remove(0).body;
    assert_eq!(transfer["DebitedWalletId"], escrow_id.as_str());
    assert_eq!(transfer["DebitedFunds"], json!({"Currency": "EUR", "Amount": 20_000}));
    assert_eq!(
        transfer["Fees"],
        json!({"Currency": "EUR", "Amount": 1_000}),
        "the fee leaves the escrow"
    );
    let project_wallet = transfer["CreditedWalletId"].as_str().unwrap().to_owned();
    let wire = mangopay.object(&wire_id).unwrap();
    assert_eq!(wire["DebitedWalletId"], project_wallet.as_str());
    assert_eq!(wire["DebitedFunds"], json!({"Currency": "EUR", "Amount": 19_000}));
    assert_eq!(wire["Tag"], format!("crowdledger:payout:{payout_id}"));
    let account = mangopay.object(wire["BankAccountId"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&account["IBAN"], &account["UserId"]),
        (&json!(IBAN), &escrow["Owners"][0])
    );
    assert_eq!(mangopay.wallet_balance(&escrow_id), 0);
    assert_eq!(mangopay.wallet_balance(&project_wallet), 0, "the wire took it");

    // The bank confirms: the payout is paid.
    mangopay.succeed_payout(&wire_id).await;
    assert!(mangopay.hook_deliveries().last().unwrap().delivered());
    let paid = app.get(&format!("/v1/payouts/{payout_id}")).await;
    assert_eq!(paid.body["status"], "paid", "{:#}", paid.body);
    // What stays at Mangopay, in its fees wallet, is the platform's fee.
    assert_eq!(fixtures::balance(&app, "psp:mangopay:eur").await, "10.00");
    // The transfer's own hook moves nothing: the payout's call settled it.
    let transfer_hooks = app
        .wait_for_value(
            || async {
                sqlx::query_scalar::<_, String>(
                    "select status::text from inbound_events
                      where provider = 'mangopay' and event_type = 'TRANSFER_NORMAL_SUCCEEDED'",
                )
                .fetch_all(&app.pool)
                .await
                .unwrap()
            },
            |stored| !stored.is_empty(),
        )
        .await;
    assert_eq!(transfer_hooks, ["ignored"]);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_failed_round_on_mangopay_refunds_each_pay_in_confirmed_by_its_read_back_hook(pool: PgPool) {
    let (app, mangopay) = on_mangopay(pool, "10").await;
    let (_, offer) = offer(&app, "1000.00").await;
    let investors = fixtures::investors(&app, 2).await;
    let mut pledges = Vec::new();
    for investor in &investors {
        let (pledge, payin) = card_pledge(&app, &offer, investor, 10).await;
        mangopay.succeed_payin(&payin).await;
        pledges.push((pledge, payin));
    }
    let escrow = mangopay.object(&pledges[0].1).unwrap()["CreditedWalletId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(mangopay.wallet_balance(&escrow), 20_000);

    // Past its close below the minimum: the round fails, and each card's money is owed back.
    app.clock.advance(10 * DAY).unwrap();
    app.wait_for(&format!("/v1/offers/{offer}"), |o| o["status"] == "failed")
        .await;
    let refunds = app
        .wait_for(&format!("/v1/refunds?offer_id={offer}"), |page| {
            let items = page["items"].as_array().unwrap();
            items.len() == 2 && items.iter().all(|r| r["payment"]["payment_id"].is_string())
        })
        .await;
    assert_eq!(mangopay.created(Kind::Refund), 2);
    for refund in refunds["items"].as_array().unwrap() {
        let (id, provider_id) = (
            refund["id"].as_str().unwrap(),
            refund["payment"]["payment_id"].as_str().unwrap(),
        );
        assert_eq!(refund["status"], "pending");
        let payin = &pledges
            .iter()
            .find(|(p, _)| refund["pledge_id"] == p.as_str())
            .unwrap()
            .1;
        let asked = posts_to(&mangopay, &format!("payins/{payin}/refunds"));
        assert_eq!(asked.len(), 1, "{asked:#?}");
        // By the pay-in's author, for all of it, no fees.
        assert_eq!(asked[0].body["AuthorId"], mangopay.object(payin).unwrap()["AuthorId"]);
        assert_eq!(
            asked[0].body["DebitedFunds"],
            json!({"Currency": "EUR", "Amount": 10_000})
        );
        assert_eq!(asked[0].body["Fees"], json!({"Currency": "EUR", "Amount": 0}));
        assert_eq!(asked[0].body["Tag"], format!("crowdledger:refund:{id}"));
        // The card is credited: the read-back hook confirms the refund.
        let hook = mangopay.succeed_refund(provider_id).await;
        assert_eq!(hook.event_type, "PAYIN_REFUND_SUCCEEDED");
        assert_eq!(app.get(&format!("/v1/refunds/{id}")).await.body["status"], "succeeded");
    }
    for (pledge, _) in &pledges {
        let p = app.get(&format!("/v1/pledges/{pledge}")).await;
        assert_eq!(p.body["status"], "refunded", "{:#}", p.body);
    }
    assert_eq!(mangopay.wallet_balance(&escrow), 0);
    assert_eq!(fixtures::balance(&app, "psp:mangopay:eur").await, "0.00");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_token_is_asked_for_once_kept_and_renewed_when_mangopay_refuses_it(pool: PgPool) {
    let (app, mangopay) = on_mangopay(pool, "10").await;
    let (_, offer) = offer(&app, "100.00").await;
    let investors = fixtures::investors(&app, 3).await;

    card_pledge(&app, &offer, &investors[0], 1).await;
    card_pledge(&app, &offer, &investors[1], 1).await;
    assert_eq!(mangopay.token_requests(), 1, "one token for every call while it lasts");

    // The token ends before its time: the first call refused asks for a new one, once, and
    // goes on with it.
    mangopay.expire_tokens();
    let (_, payin) = card_pledge(&app, &offer, &investors[2], 1).await;
    assert!(mangopay.object(&payin).is_some());
    assert_eq!(mangopay.token_requests(), 2);
    let token_asks = mangopay
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v2.01/oauth/token")
        .collect::<Vec<_>>();
    assert!(
        token_asks
            .iter()
            .all(|r| r.body == json!("grant_type=client_credentials")),
        "{token_asks:#?}"
    );
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_pay_in_whose_answer_is_lost_is_adopted_through_its_key_and_made_once(pool: PgPool) {
    let (app, mangopay) = on_mangopay(pool, "1").await;
    let (_, offer) = offer(&app, "100.00").await;
    let investor = fixtures::investor(&app, "Late Answer", "sophisticated").await;

    // Mangopay creates the pay-in but answers after our timeout, and its saved answer cannot be
    // read at once either: the pledge stands, its payment not yet named.
    mangopay.delay_next_reply("payins/card/web", Duration::from_secs(3));
    mangopay.fail_next("responses/*", 1, Fault::ServiceUnavailable);
    let p = ok(fixtures::pledge(&app, &offer, &investor, 10, "10.00").await, 201).await;
    assert_eq!(p["status"], "pending_payment");
    assert_eq!(
        p["payment"],
        json!({"provider": "mangopay", "payment_id": null}),
        "{p:#}"
    );
    assert_eq!(mangopay.created(Kind::PayIn), 1);
    let pledge = p["id"].as_str().unwrap();
    let payment = payment_of(&app, pledge).await;
    assert_eq!(attempts(&app, &payment).await, ["unknown"]);

    // After the backoff the worker asks again with the same keys: Mangopay answers 409, and the
    // first answers, read from responses/{key}, are adopted.
    app.clock.advance(2).unwrap();
    let named = app
        .wait_for(&format!("/v1/pledges/{pledge}"), |p| {
            p["payment"]["payment_id"].is_string()
        })
        .await;
    assert_eq!(attempts(&app, &payment).await, ["unknown", "done"]);
    assert_eq!(mangopay.created(Kind::PayIn), 1, "paid in once");
    assert_eq!((mangopay.created(Kind::User), mangopay.created(Kind::Wallet)), (2, 1));
    let asked = posts_to(&mangopay, "payins/card/web");
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[0].idempotency_key, asked[1].idempotency_key);
    let key = asked[0].idempotency_key.clone().unwrap();
    let read_back = mangopay
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("responses/{key}")))
        .count();
    assert_eq!(read_back, 2, "once after the timeout (refused), once after the 409");
    let payin = named["payment"]["payment_id"].as_str().unwrap();
    assert_eq!(
        mangopay.object(payin).unwrap()["Tag"],
        format!("crowdledger:payment:{payment}")
    );

    // And the investor's payment funds the pledge.
    mangopay.succeed_payin(payin).await;
    let funded = app.get(&format!("/v1/pledges/{pledge}")).await;
    assert_eq!(funded.body["status"], "funded", "{:#}", funded.body);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn hooks_are_checked_read_back_and_stored_once_whatever_they_claim(pool: PgPool) {
    let (app, mangopay) = on_mangopay(pool, "10").await;
    let (_, offer) = offer(&app, "100.00").await;
    let investors = fixtures::investors(&app, 2).await;

    // A query that is not Mangopay's is refused, before Mangopay is asked anything.
    let asked_before = mangopay.requests().len();
    for query in [
        "",
        "EventType=PAYIN_NORMAL_SUCCEEDED&RessourceId=payin_m_1",
        "EventType=payin&RessourceId=payin_m_1&Date=1764000000",
        "EventType=PAYIN_NORMAL_SUCCEEDED&RessourceId=..%2Fusers&Date=1764000000",
        "EventType=PAYIN_NORMAL_SUCCEEDED&RessourceId=payin_m_1&Date=soon",
    ] {
        notify(&app, query).await.assert_problem(400, "malformed_request");
    }
    assert_eq!(mangopay.requests().len(), asked_before);
    // Mangopay posts nothing.
    let posted = app.post("/v1/webhooks/mangopay", json!({})).await;
    posted.assert_problem(404, "not_found");

    // A hook about something Mangopay does not have is not ours: stored, ignored.
    assert_eq!(
        mangopay.send_hook("PAYIN_NORMAL_SUCCEEDED", "payin_m_NOTOURS").await,
        Some(200)
    );
    let hook = mangopay.hooks().last().cloned().unwrap();
    let event = format!("PAYIN_NORMAL_SUCCEEDED:payin_m_NOTOURS:{}", hook.date);
    assert_eq!(
        stored_event(&app, &event).await,
        Some(("ignored".into(), Some("not ours".into())))
    );

    // A paid pledge's hook, delivered twice: applied once, then a repeat.
    let (pledge, payin) = card_pledge(&app, &offer, &investors[0], 10).await;
    let hook = mangopay.succeed_payin(&payin).await;
    let query = format!(
        "EventType={}&RessourceId={}&Date={}",
        hook.event_type, hook.ressource_id, hook.date
    );
    let again = notify(&app, &query).await;
    assert_eq!(again.status, 200, "{:#}", again.body);
    assert_eq!(
        (&again.body["outcome"], &again.body["duplicate"]),
        (&json!("applied"), &json!(true))
    );
    assert_eq!(app.get(&format!("/v1/pledges/{pledge}")).await.body["status"], "funded");

    // The API cannot be asked: 503, nothing stored, and Mangopay's next try is applied.
    let (late, late_payin) = card_pledge(&app, &offer, &investors[1], 5).await;
    mangopay.set_hook_url("http://127.0.0.1:9/nobody-listens");
    let hook = mangopay.succeed_payin(&late_payin).await;
    mangopay.set_hook_url(hook_url(&app));
    mangopay.fail_next("payins/*", 1, Fault::ServiceUnavailable);
    let query = format!(
        "EventType={}&RessourceId={}&Date={}",
        hook.event_type, hook.ressource_id, hook.date
    );
    notify(&app, &query).await.assert_problem(503, "provider_unreachable");
    let event = format!("{}:{}:{}", hook.event_type, hook.ressource_id, hook.date);
    assert_eq!(stored_event(&app, &event).await, None);
    let retried = notify(&app, &query).await;
    assert_eq!(
        (retried.status.as_u16(), &retried.body["outcome"]),
        (200, &json!("applied"))
    );
    assert_eq!(app.get(&format!("/v1/pledges/{late}")).await.body["status"], "funded");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_hook_that_says_succeeded_of_a_pay_in_the_api_says_failed_fails_the_payment(pool: PgPool) {
    let (app, mangopay) = on_mangopay(pool, "10").await;
    let (_, offer) = offer(&app, "100.00").await;
    let investor = fixtures::investor(&app, "Card Declined", "sophisticated").await;
    let (pledge, payin) = card_pledge(&app, &offer, &investor, 10).await;

    // The hosted session runs out; its own hook is lost.
    mangopay.set_hook_url("http://127.0.0.1:9/nobody-listens");
    mangopay.fail_payin(&payin, "101109").await;
    mangopay.set_hook_url(hook_url(&app));
    // A hook claims it succeeded: the API says FAILED, and that is what happens.
    assert_eq!(mangopay.send_hook("PAYIN_NORMAL_SUCCEEDED", &payin).await, Some(200));
    let p = app.get(&format!("/v1/pledges/{pledge}")).await;
    assert_eq!(p.body["status"], "cancelled", "{:#}", p.body);
    let status: String = sqlx::query_scalar("select status::text from payments where provider_payment_id = $1")
        .bind(&payin)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "failed");
    assert_eq!(fixtures::balance(&app, "psp:mangopay:eur").await, "0.00");
    let o = app.get(&format!("/v1/offers/{offer}")).await;
    assert_eq!(o.body["shares_reserved"], 0, "{:#}", o.body);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn a_card_pledge_needs_what_mangopay_asks_of_the_project_before_anything_is_written(pool: PgPool) {
    let (app, mangopay) = on_mangopay(pool, "10").await;
    let project = fixtures::published_project(&app).await;
    let mut details = payout_details();
    details.as_object_mut().unwrap().remove("legal_representative");
    set_payout_details(&app, &project, &details).await;
    let terms = json!({"min_target": "100.00", "max_target": "1000.00"});
    let offer = fixtures::open_offer(&app, &project, terms, 9).await;
    let investor = fixtures::investor(&app, "Too Early", "sophisticated").await;

    let refused = fixtures::pledge(&app, &offer, &investor, 10, "10.00").await;
    refused.assert_problem(409, "payout_details_missing");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("payout_details.legal_representative"),
        "{:#}",
        refused.body
    );
    let written: i64 = sqlx::query_scalar("select count(*) from pledges")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(written, 0);
    assert!(mangopay.requests().is_empty(), "Mangopay was asked nothing");
}

#[sqlx::test]
async fn a_bank_wire_of_the_declared_amount_funds_the_pledge_and_another_amount_is_quarantined(pool: PgPool) {
    let (app, mangopay) = on_mangopay(pool, "10").await;
    let (_, offer) = offer(&app, "100.00").await;
    let investors = fixtures::investors(&app, 2).await;
    let wire = |investor: &str| {
        json!({"investor_id": investor, "shares": 10, "funding": [{"kind": "bank_transfer", "amount": "100.00"}],
               "kiis_sha256": fixtures::KIIS_SHA256})
    };

    // The pledge answers the account and the reference Mangopay shows for its bank-wire pay-in.
    let p = ok(
        fixtures::pledge_at(&app.client, &app.base, &offer, &wire(&investors[0])).await,
        201,
    )
    .await;
    let payin_id = p["payment"]["payment_id"].as_str().unwrap().to_owned();
    let payin = mangopay.object(&payin_id).unwrap();
    assert_eq!(payin["PaymentType"], "BANK_WIRE", "{payin:#}");
    assert_eq!(
        payin["DeclaredDebitedFunds"],
        json!({"Currency": "EUR", "Amount": 10_000})
    );
    assert_eq!(p["payment"]["iban"], payin["BankAccount"]["IBAN"], "{p:#}");
    assert_eq!(p["payment"]["bic"], payin["BankAccount"]["BIC"]);
    assert_eq!(p["payment"]["reference"], payin["WireReference"]);
    // The declared amount arrives: read back, funded.
    mangopay.receive_wire(&payin_id, 10_000).await;
    let funded = app.get(&format!("/v1/pledges/{}", p["id"].as_str().unwrap())).await;
    assert_eq!(funded.body["status"], "funded", "{:#}", funded.body);

    // Another investor wires less than declared: Mangopay credits what came, the service
    // quarantines it and books nothing; the pledge waits.
    let short = ok(
        fixtures::pledge_at(&app.client, &app.base, &offer, &wire(&investors[1])).await,
        201,
    )
    .await;
    let short_payin = short["payment"]["payment_id"].as_str().unwrap().to_owned();
    let before = app.row_counts().await;
    let hook = mangopay.receive_wire(&short_payin, 3_000).await;
    let (status, _) = stored_event(&app, &format!("PAYIN_NORMAL_SUCCEEDED:{short_payin}:{}", hook.date))
        .await
        .expect("the hook is stored");
    assert_eq!(status, "quarantined");
    assert_eq!(app.row_counts().await, before);
    let waiting = app.get(&format!("/v1/pledges/{}", short["id"].as_str().unwrap())).await;
    assert_eq!(waiting.body["status"], "pending_payment");
    app.assert_books_verify().await;
}
