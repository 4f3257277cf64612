//! The lists of money and of where events go (issue 22, PRODUCT.md section 11): sponsors, a
//! sponsor's cheques and deposits, payouts, webhook endpoints (listed, read, changed, deleted)
//! and their deliveries, each a page at a time with an opaque cursor, as the API shows them.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::fixtures::{
    KIIS_SHA256, confirm_payout, funded_pledge, funded_sponsor, investor, ok, pledge_at, small_open_offer, sponsor,
};
use crate::common::{OPERATOR_KEY, Reply, TestApp};
use crate::webhooks_outbound::{Receiver, deliveries, delivery_pass, emit, register, spawn};

/// `path` with one more query parameter.
fn with(path: &str, param: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{param}")
}

/// Every page of a list, `limit` items at a time: each page but the last is full and names the
/// next; the last names none.
async fn walk(app: &TestApp, path: &str, limit: usize) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut next = with(path, &format!("limit={limit}"));
    loop {
        let page = ok(app.get(&next).await, 200).await;
        let items = page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("no items: {page:#}"))
            .clone();
        match page.get("next_cursor") {
            Some(cursor) => {
                assert_eq!(items.len(), limit, "a page before the last is full: {page:#}");
                let cursor = cursor.as_str().expect("a cursor is a string");
                next = with(path, &format!("limit={limit}&cursor={cursor}"));
                pages.push(items);
            }
            None => {
                pages.push(items);
                return pages;
            }
        }
        assert!(pages.len() < 100, "a list that never ends: {path}");
    }
}

fn sizes(pages: &[Vec<Value>]) -> Vec<usize> {
    pages.iter().map(Vec::len).collect()
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

/// Refusals every list shares: a cursor it did not give out, a bad limit, an unknown parameter.
async fn refuses_bad_paging(app: &TestApp, path: &str) {
    for cursor in ["not-a-cursor", "bm9wZQ", "%22x%22"] {
        let r = app.get(&with(path, &format!("cursor={cursor}"))).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["param"], "cursor", "{path}: {:#}", r.body);
    }
    for limit in ["0", "1001", "ten"] {
        let r = app.get(&with(path, &format!("limit={limit}"))).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["param"], "limit", "{path}: {:#}", r.body);
    }
    for unknown in ["after=x", "before=x", "page=2", "sort=asc"] {
        app.get(&with(path, unknown))
            .await
            .assert_problem(422, "validation_failed");
    }
}

/// Each item of a list is what the resource's own read shows.
async fn as_read(app: &TestApp, items: &[Value], read: &str) {
    for item in items {
        let id = item["id"].as_str().unwrap();
        let one = ok(app.get(&format!("{read}/{id}")).await, 200).await;
        assert_eq!(item, &one, "the list and {read}/{id} disagree");
    }
}

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Reply {
    app.call(method, path, Some(OPERATOR_KEY), body.as_ref()).await
}

#[sqlx::test]
async fn sponsors_are_listed_newest_first_with_their_budgets(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut made = Vec::new();
    for name in ["Alpha", "Beta", "Gamma"] {
        made.push(if name == "Beta" {
            funded_sponsor(&app, name, "500.00").await
        } else {
            sponsor(&app, name).await
        });
        app.clock.advance(1).unwrap();
    }
    made.reverse();

    let pages = walk(&app, "/v1/sponsors", 2).await;
    assert_eq!(sizes(&pages), [2, 1]);
    let items = pages.concat();
    assert_eq!(ids(&items), made, "newest first, no repeat, no gap");
    assert_eq!(items[1]["name"], "Beta");
    assert_eq!(items[1]["budget"]["amount"], "500.00");
    assert_eq!(items[0]["budget"]["amount"], "0.00");
    as_read(&app, &items, "/v1/sponsors").await;
    // A page that ends with the list is the last.
    assert_eq!(sizes(&walk(&app, "/v1/sponsors", 3).await), [3]);
    assert_eq!(sizes(&walk(&app, "/v1/sponsors", 100).await), [3]);
    refuses_bad_paging(&app, "/v1/sponsors").await;

    // A cursor of another list, of another shape, is not one of this list's.
    let accounts = ok(app.get("/v1/ledger/accounts?limit=1").await, 200).await;
    let foreign = accounts["next_cursor"].as_str().expect("more than one account");
    let r = app.get(&format!("/v1/sponsors?cursor={foreign}")).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "cursor");
}

fn cheque_body(app: &TestApp, sponsor: &str, face: &str) -> Value {
    json!({"sponsor_id": sponsor, "beneficiary_name": "Winner", "beneficiary_email": "winner@example.org",
           "face_value": face, "currency": "EUR",
           "expires_at": (app.clock.now() + chrono::TimeDelta::days(30)).to_rfc3339()})
}

#[sqlx::test]
async fn a_sponsors_cheques_and_deposits_are_listed_and_filtered_by_status(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sponsor_id = funded_sponsor(&app, "SenseTour Belgium", "1000.00").await;
    app.clock.advance(1).unwrap();
    let pending = ok(
        app.post(
            &format!("/v1/sponsors/{sponsor_id}/deposits"),
            json!({"amount": "250.00", "currency": "EUR"}),
        )
        .await,
        201,
    )
    .await;
    app.clock.advance(1).unwrap();

    // Deposits: the pending one first, then the confirmed one.
    let deposits = format!("/v1/sponsors/{sponsor_id}/deposits");
    let pages = walk(&app, &deposits, 1).await;
    assert_eq!(sizes(&pages), [1, 1]);
    let items = pages.concat();
    assert_eq!(items[0], pending);
    assert_eq!(items[1]["status"], "succeeded");
    as_read(&app, &items, "/v1/deposits").await;
    let only = |status: &str| {
        let path = format!("{deposits}?status={status}");
        let app = &app;
        async move { ids(ok(app.get(&path).await, 200).await["items"].as_array().unwrap()) }
    };
    assert_eq!(only("pending").await, [pending["id"].as_str().unwrap()]);
    assert_eq!(only("succeeded").await, ids(&items[1..]));
    assert!(only("failed").await.is_empty());
    let r = app.get(&format!("{deposits}?status=lost")).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "status", "{:#}", r.body);
    refuses_bad_paging(&app, &deposits).await;

    // Cheques: one stays active, one is cancelled, one is spent in a pledge.
    let mut cheques = Vec::new();
    for _ in 0..3 {
        cheques.push(
            ok(
                app.post("/v1/cheques", cheque_body(&app, &sponsor_id, "100.00")).await,
                201,
            )
            .await,
        );
        app.clock.advance(1).unwrap();
    }
    let (active, cancelled, spent) = (&cheques[0], &cheques[1], &cheques[2]);
    ok(
        app.post(
            &format!("/v1/cheques/{}/cancel", cancelled["id"].as_str().unwrap()),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    let (_, offer) = small_open_offer(&app).await;
    let who = investor(&app, "Camille", "sophisticated").await;
    let pledged = pledge_at(
        &app.client,
        &app.base,
        &offer,
        &json!({"investor_id": who, "shares": 10,
                "funding": [{"kind": "cheque", "cheque_code": spent["code"], "amount": "100.00"}],
                "kiis_sha256": KIIS_SHA256}),
    )
    .await;
    assert_eq!(pledged.status, 201, "{:#}", pledged.body);

    let listed = format!("/v1/sponsors/{sponsor_id}/cheques");
    let pages = walk(&app, &listed, 2).await;
    assert_eq!(sizes(&pages), [2, 1]);
    let items = pages.concat();
    assert_eq!(ids(&items), ids(&[spent.clone(), cancelled.clone(), active.clone()]));
    let statuses: Vec<&str> = items.iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["spent", "cancelled", "active"]);
    // As `GET /v1/cheques/{id}` shows them: never the code, which is shown once at issue.
    as_read(&app, &items, "/v1/cheques").await;
    for (item, issued) in items.iter().zip([spent, cancelled, active]) {
        assert!(item.get("code").is_none(), "{item:#}");
        let code = issued["code"].as_str().unwrap();
        assert!(!item.to_string().contains(code), "the list shows a cheque's code");
    }
    for (status, expected) in [
        ("active", vec![active]),
        ("spent", vec![spent]),
        ("cancelled", vec![cancelled]),
        ("expired", vec![]),
    ] {
        let r = ok(app.get(&format!("{listed}?status={status}")).await, 200).await;
        let expected: Vec<Value> = expected.into_iter().cloned().collect();
        assert_eq!(ids(r["items"].as_array().unwrap()), ids(&expected), "status={status}");
    }
    app.get(&format!("{listed}?status=used"))
        .await
        .assert_problem(422, "validation_failed");
    refuses_bad_paging(&app, &listed).await;

    // Another sponsor's lists are its own; an unknown sponsor has none.
    let other = sponsor(&app, "Nobody Yet").await;
    for path in [
        format!("/v1/sponsors/{other}/cheques"),
        format!("/v1/sponsors/{other}/deposits"),
    ] {
        let r = ok(app.get(&path).await, 200).await;
        assert_eq!(r, json!({"items": []}), "{path}");
    }
    let unknown = Uuid::now_v7();
    for path in [
        format!("/v1/sponsors/{unknown}/cheques"),
        format!("/v1/sponsors/{unknown}/deposits"),
    ] {
        app.get(&path).await.assert_problem(404, "not_found");
    }
    app.assert_books_verify().await;
}

/// A round that succeeds at once (10 shares of 10.00 fund its minimum) and its payout asked for.
async fn paid_round(app: &TestApp) -> (String, Value) {
    let (_, offer) = small_open_offer(app).await;
    let who = investor(app, "Sophie", "sophisticated").await;
    funded_pledge(app, &offer, &who, 10).await;
    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");
    let payout = ok(app.post(&format!("/v1/offers/{offer}/payouts"), json!({})).await, 201).await;
    (offer, payout)
}

#[sqlx::test]
async fn payouts_are_listed_as_they_were_made_and_paid(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (first_offer, first) = paid_round(&app).await;
    app.clock.advance(1).unwrap();
    let (second_offer, second) = paid_round(&app).await;
    confirm_payout(&app, &first).await;
    let first_id = first["id"].as_str().unwrap();
    let paid = app
        .wait_for(&format!("/v1/payouts/{first_id}"), |p| p["status"] == "paid")
        .await;

    // The read is the view `POST /v1/offers/{id}/payouts` answers, paid or not.
    assert_eq!(first["status"], "pending");
    assert!(first["paid_at"].is_null(), "{first:#}");
    assert_eq!(first["amount"], "95.00", "100.00 raised less the 5% fee");
    assert_eq!(
        (&first["offer_id"], &first["currency"]),
        (&json!(first_offer), &json!("EUR"))
    );
    assert_eq!(first["payment"]["provider"], "sandbox");
    let mut expected = first.clone();
    expected["status"] = json!("paid");
    expected["paid_at"] = paid["paid_at"].clone();
    assert!(paid["paid_at"].is_string(), "{paid:#}");
    assert_eq!(paid, expected);
    let again = ok(
        app.post(&format!("/v1/offers/{first_offer}/payouts"), json!({})).await,
        200,
    )
    .await;
    assert_eq!(again, paid);

    let pages = walk(&app, "/v1/payouts", 1).await;
    assert_eq!(sizes(&pages), [1, 1]);
    let items = pages.concat();
    assert_eq!(items, [second.clone(), paid.clone()], "newest first");
    as_read(&app, &items, "/v1/payouts").await;
    assert_eq!(sizes(&walk(&app, "/v1/payouts", 2).await), [2]);

    for (offer, expected) in [(&first_offer, &paid), (&second_offer, &second)] {
        let r = ok(app.get(&format!("/v1/payouts?offer_id={offer}")).await, 200).await;
        assert_eq!(r, json!({"items": [expected]}));
    }
    let r = ok(app.get(&format!("/v1/payouts?offer_id={}", Uuid::now_v7())).await, 200).await;
    assert_eq!(r, json!({"items": []}));
    let r = app.get("/v1/payouts?offer_id=first").await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "offer_id", "{:#}", r.body);
    refuses_bad_paging(&app, "/v1/payouts").await;
    refuses_bad_paging(&app, &format!("/v1/payouts?offer_id={first_offer}")).await;
    app.get(&format!("/v1/payouts/{}", Uuid::now_v7()))
        .await
        .assert_problem(404, "not_found");

    // Auditors read them too.
    let auditor = app.key(crowdledger::keys::Role::Auditor).await;
    let r = app.call(Method::GET, "/v1/payouts", Some(&auditor), None).await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    assert_eq!(r.body["items"], json!([second, paid]));
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn webhook_endpoints_are_listed_changed_and_deleted(pool: PgPool) {
    let app = spawn(pool).await;
    let mut made = Vec::new();
    for n in 0..3 {
        made.push(register(&app, &format!("http://127.0.0.1:9/hook{n}"), &["pledge.funded"]).await);
        app.clock.advance(1).unwrap();
    }
    made.reverse();

    let pages = walk(&app, "/v1/webhook-endpoints", 2).await;
    assert_eq!(sizes(&pages), [2, 1]);
    let items = pages.concat();
    assert_eq!(ids(&items), ids(&made));
    as_read(&app, &items, "/v1/webhook-endpoints").await;
    for (item, registered) in items.iter().zip(&made) {
        let secret = registered["secret"].as_str().unwrap();
        assert!(secret.starts_with("whsec_"));
        assert!(
            item.get("secret").is_none() && !item.to_string().contains(secret),
            "{item:#}"
        );
        assert_eq!(
            (&item["status"], &item["disabled_at"]),
            (&json!("enabled"), &Value::Null)
        );
        assert_eq!(item["url"], registered["url"]);
    }
    refuses_bad_paging(&app, "/v1/webhook-endpoints").await;

    let id = made[2]["id"].as_str().unwrap();
    let path = format!("/v1/webhook-endpoints/{id}");
    let patch = |body: Value| call(&app, Method::PATCH, &path, Some(body));
    let r =
        patch(json!({"url": "http://127.0.0.1:9/moved", "events": ["payout.paid", "pledge.funded", "payout.paid"]}))
            .await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    assert_eq!(r.body["url"], "http://127.0.0.1:9/moved");
    assert_eq!(r.body["events"], json!(["payout.paid", "pledge.funded"]));
    assert_eq!(r.body["status"], "enabled");
    assert!(r.body.get("secret").is_none(), "{:#}", r.body);
    let changed = r.body;
    assert_eq!(ok(app.get(&path).await, 200).await, changed);

    // Refused as at registration, and nothing changes.
    for (body, code, param) in [
        (json!({"events": []}), "validation_failed", Some("events")),
        (
            json!({"events": ["pledge.exploded"]}),
            "validation_failed",
            Some("events"),
        ),
        (json!({"url": "ftp://example.org/x"}), "invalid_target", None),
        (json!({"url": "http://127.0.0.1:9/a\nb"}), "validation_failed", None),
        (json!({"status": "paused"}), "validation_failed", Some("status")),
        (json!({"status": "active"}), "validation_failed", Some("status")),
        (json!({"secret": "mine"}), "validation_failed", None),
        (json!({"url": 7}), "validation_failed", Some("url")),
    ] {
        let r = patch(body.clone()).await;
        r.assert_problem(422, code);
        if let Some(param) = param {
            assert_eq!(r.body["param"], param, "{body}: {:#}", r.body);
        }
    }
    assert_eq!(ok(app.get(&path).await, 200).await, changed);
    // An empty change changes nothing.
    assert_eq!(ok(patch(json!({})).await, 200).await, changed);

    // Disabled by hand and enabled again.
    let disabled = ok(patch(json!({"status": "disabled"})).await, 200).await;
    assert_eq!(disabled["status"], "disabled");
    let at: chrono::DateTime<chrono::Utc> = serde_json::from_value(disabled["disabled_at"].clone()).unwrap();
    assert!(
        (app.clock.now() - at).abs() < chrono::TimeDelta::seconds(1),
        "disabled at {at}"
    );
    app.clock.advance(60).unwrap();
    let again = ok(patch(json!({"status": "disabled"})).await, 200).await;
    assert_eq!(
        again["disabled_at"], disabled["disabled_at"],
        "disabled since the first time"
    );
    let enabled = ok(patch(json!({"status": "enabled"})).await, 200).await;
    assert_eq!(
        (&enabled["status"], &enabled["disabled_at"]),
        (&json!("enabled"), &Value::Null)
    );

    // Deleted: gone from every route, and from the list.
    let gone = made[1]["id"].as_str().unwrap();
    let gone_path = format!("/v1/webhook-endpoints/{gone}");
    let r = call(&app, Method::DELETE, &gone_path, None).await;
    assert_eq!(r.status, 204, "{:#}", r.body);
    app.get(&gone_path).await.assert_problem(404, "not_found");
    call(&app, Method::PATCH, &gone_path, Some(json!({"status": "enabled"})))
        .await
        .assert_problem(404, "not_found");
    call(&app, Method::DELETE, &gone_path, None)
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("{gone_path}/deliveries"))
        .await
        .assert_problem(404, "not_found");
    app.post(&format!("{gone_path}/rotate-secret"), json!({}))
        .await
        .assert_problem(404, "not_found");
    let listed = ok(app.get("/v1/webhook-endpoints").await, 200).await;
    assert_eq!(
        ids(listed["items"].as_array().unwrap()),
        [made[0]["id"].as_str().unwrap(), id]
    );

    let unknown = format!("/v1/webhook-endpoints/{}", Uuid::now_v7());
    app.get(&unknown).await.assert_problem(404, "not_found");
    call(&app, Method::PATCH, &unknown, Some(json!({})))
        .await
        .assert_problem(404, "not_found");
    call(&app, Method::DELETE, &unknown, None)
        .await
        .assert_problem(404, "not_found");
}

#[sqlx::test]
async fn a_changed_url_is_guarded_like_a_new_one(pool: PgPool) {
    // Without webhooks.allow_private_targets.
    let app = TestApp::spawn(pool).await;
    let mut conn = app.pool.acquire().await.unwrap();
    let endpoint = crowdledger::webhooks::outbound::create_endpoint(
        &mut conn,
        "https://93.184.215.14/hook",
        &["payout.paid".to_string()],
        app.clock.now(),
    )
    .await
    .unwrap();
    let path = format!("/v1/webhook-endpoints/{}", endpoint.id);
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
    ] {
        call(&app, Method::PATCH, &path, Some(json!({"url": url})))
            .await
            .assert_problem(422, "invalid_target");
    }
    assert_eq!(ok(app.get(&path).await, 200).await["url"], "https://93.184.215.14/hook");
}

/// The `webhook-id` of each delivery a receiver got: the event's id.
fn received_events(receiver: &Receiver) -> Vec<String> {
    receiver
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.headers.get("webhook-id").unwrap().to_str().unwrap().to_string())
        .collect()
}

async fn event_ids(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("select id::text from outbox_events order by seq")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn only_enabled_endpoints_get_deliveries(pool: PgPool) {
    let app = spawn(pool).await;
    let (control, control_url) = Receiver::start(&[]).await;
    let (paused, paused_url) = Receiver::start(&[]).await;
    let (deleted, deleted_url) = Receiver::start(&[]).await;
    let control_id = register(&app, &control_url, &["pledge.funded"]).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let paused_id = register(&app, &paused_url, &["pledge.funded"]).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deleted_id = register(&app, &deleted_url, &["pledge.funded"]).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call(
        &app,
        Method::PATCH,
        &format!("/v1/webhook-endpoints/{paused_id}"),
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    let r = call(
        &app,
        Method::DELETE,
        &format!("/v1/webhook-endpoints/{deleted_id}"),
        None,
    )
    .await;
    assert_eq!(r.status, 204);

    for n in 0..3 {
        emit(&app, "pledge.funded", json!({"n": n})).await;
    }
    control.wait_for(3).await;
    delivery_pass(&app).await;
    assert_eq!((paused.count(), deleted.count()), (0, 0));
    assert!(
        deliveries(&app, &paused_id).await.is_empty(),
        "nothing is queued for a disabled endpoint"
    );

    // The control's deliveries, a page at a time, newest event first.
    let path = format!("/v1/webhook-endpoints/{control_id}/deliveries");
    let done = app
        .wait_for_value(
            || deliveries(&app, &control_id),
            |d| d.len() == 3 && d.iter().all(|x| x["status"] == "delivered"),
        )
        .await;
    let pages = walk(&app, &path, 2).await;
    assert_eq!(sizes(&pages), [2, 1]);
    assert_eq!(pages.concat(), done);
    let mut sent = event_ids(&app).await;
    sent.reverse();
    let listed: Vec<&str> = done.iter().map(|d| d["event_id"].as_str().unwrap()).collect();
    assert_eq!(listed, sent);
    assert!(done.iter().all(|d| d["attempt_log"].as_array().unwrap().len() == 1));
    refuses_bad_paging(&app, &path).await;

    // Enabled again, it gets what happens from then on.
    let r = call(
        &app,
        Method::PATCH,
        &format!("/v1/webhook-endpoints/{paused_id}"),
        Some(json!({"status": "enabled"})),
    )
    .await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    emit(&app, "pledge.funded", json!({"n": 3})).await;
    paused.wait_for(1).await;
    control.wait_for(4).await;
    delivery_pass(&app).await;
    let latest = event_ids(&app).await.pop().unwrap();
    assert_eq!(received_events(&paused), [latest]);
    assert_eq!(deleted.count(), 0, "a deleted endpoint is never sent anything");
    // The deleted endpoint's rows stay, as history, with nothing pending for it.
    let kept: (bool, i64) = sqlx::query_as(
        "select deleted_at is not null, (select count(*) from webhook_deliveries where endpoint_id = $1)
           from webhook_endpoints where id = $1",
    )
    .bind(deleted_id.parse::<Uuid>().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(kept, (true, 0));
}

#[sqlx::test]
async fn an_endpoint_disabled_by_exhausted_retries_is_enabled_again_by_a_patch(pool: PgPool) {
    let app = spawn(pool).await;
    let (receiver, url) = Receiver::start(&[500; 8]).await;
    let id = register(&app, &url, &["pledge.refunded"]).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    emit(&app, "pledge.refunded", json!({})).await;
    receiver.wait_for(1).await;
    for (n, delay) in crowdledger::webhooks::outbound::RETRY_DELAYS_SECONDS.iter().enumerate() {
        app.wait_for_value(|| deliveries(&app, &id), |d| d[0]["attempts"] == n + 1)
            .await;
        app.clock.advance(*delay).unwrap();
        receiver.wait_for(n + 2).await;
    }
    let path = format!("/v1/webhook-endpoints/{id}");
    let disabled = app.wait_for(&path, |e| e["status"] == "disabled").await;
    assert!(disabled["disabled_at"].is_string(), "{disabled:#}");
    let listed = ok(app.get("/v1/webhook-endpoints").await, 200).await;
    assert_eq!(listed["items"][0]["status"], "disabled");

    let r = call(&app, Method::PATCH, &path, Some(json!({"status": "enabled"}))).await;
    assert_eq!(r.status, 200, "{:#}", r.body);
    assert_eq!(
        (&r.body["status"], &r.body["disabled_at"]),
        (&json!("enabled"), &Value::Null)
    );
    emit(&app, "pledge.refunded", json!({"after": "enabled"})).await;
    receiver.wait_for(9).await;
    let latest = event_ids(&app).await.pop().unwrap();
    assert_eq!(received_events(&receiver).last(), Some(&latest));
    app.wait_for_value(|| deliveries(&app, &id), |d| d[0]["status"] == "delivered")
        .await;
}
