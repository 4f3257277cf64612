//! Refunds as objects (issue 22, PRODUCT.md section 11): one per pledge given card money back,
//! listed and read through `GET /v1/refunds`, named by the pledge (`refunded_amount` and its
//! refunds' ids), confirmed by the sandbox by the refund's own id, announced by a
//! `refund.succeeded` event.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestApp;
use crate::common::fixtures::{balance, funded_pledge, investor, ok, open_offer, published_project, small_open_offer};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(id).collect()
}

async fn refund_succeeded_events(app: &TestApp) -> Vec<Value> {
    sqlx::query_scalar("select payload from outbox_events where event_type = 'refund.succeeded' order by created_at")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// A funded pledge of `shares` on a new offer of 10 to 100 shares, which is then cancelled:
/// `(offer, pledge ids)`, each pledge refunded in full.
async fn cancelled_offer(app: &TestApp, shares: &[i64]) -> (String, Vec<String>) {
    let (_, offer) = small_open_offer(app).await;
    let mut pledges = Vec::new();
    for (i, &n) in shares.iter().enumerate() {
        let who = investor(app, &format!("Investor {i}"), "sophisticated").await;
        pledges.push(id(&funded_pledge(app, &offer, &who, n).await));
    }
    let cancelled = ok(app.post(&format!("/v1/offers/{offer}/cancel"), json!({})).await, 200).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled:#}");
    (offer, pledges)
}

#[sqlx::test]
async fn a_revoked_pledges_refund_is_listed_read_and_succeeded_by_its_own_id(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, offer) = small_open_offer(&app).await;
    let carol = investor(&app, "Carol", "non_sophisticated").await;
    let pledge = funded_pledge(&app, &offer, &carol, 12).await;
    let pledge_id = id(&pledge);
    // Just made, nothing given back.
    assert_eq!(
        (&pledge["refunded_amount"], &pledge["refunds"]),
        (&Value::Null, &json!([]))
    );

    let revoked = ok(
        app.post(&format!("/v1/pledges/{pledge_id}/revoke"), json!({})).await,
        200,
    )
    .await;
    assert_eq!(revoked["status"], "revoked", "{revoked:#}");
    assert_eq!(revoked["refunded_amount"], "120.00", "{revoked:#}");
    let refunds = revoked["refunds"].as_array().expect("refunds");
    assert_eq!(refunds.len(), 1, "{revoked:#}");
    let refund_id = refunds[0].as_str().unwrap().to_string();

    // The pledge shows the same when read, and in its offer's list.
    let read = ok(app.get(&format!("/v1/pledges/{pledge_id}")).await, 200).await;
    assert_eq!(
        (&read["refunded_amount"], &read["refunds"]),
        (&json!("120.00"), &json!([refund_id]))
    );
    let listed = ok(app.get(&format!("/v1/offers/{offer}/pledges")).await, 200).await;
    assert_eq!(listed["items"][0]["refunds"], json!([refund_id]), "{listed:#}");

    // The refund, read and listed alike.
    let refund = ok(app.get(&format!("/v1/refunds/{refund_id}")).await, 200).await;
    let page = ok(app.get(&format!("/v1/refunds?pledge_id={pledge_id}")).await, 200).await;
    assert_eq!(page["items"], json!([refund]), "{page:#}");
    assert!(page.get("next_cursor").is_none(), "{page:#}");
    let provider_id = refund["payment"]["payment_id"].as_str().unwrap().to_string();
    assert!(provider_id.starts_with("re_"), "{refund:#}");
    assert_eq!(
        (
            &refund["pledge_id"],
            &refund["offer_id"],
            &refund["amount"],
            &refund["currency"],
            &refund["status"],
            &refund["reason"],
            &refund["payment"]["provider"],
        ),
        (
            &json!(pledge_id),
            &json!(offer),
            &json!("120.00"),
            &json!("EUR"),
            &json!("pending"),
            &json!("revoked"),
            &json!("sandbox"),
        )
    );
    assert!(
        refund["created_at"].is_string() && refund.get("succeeded_at").is_none(),
        "{refund:#}"
    );
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "120.00");

    // The sandbox confirms it by the refund's own id, and answers the refund, succeeded.
    let paid = ok(
        app.post(&format!("/v1/sandbox/refunds/{refund_id}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(
        (&paid["id"], &paid["status"]),
        (&json!(refund_id), &json!("succeeded")),
        "{paid:#}"
    );
    assert!(paid["succeeded_at"].is_string(), "{paid:#}");
    assert_eq!(ok(app.get(&format!("/v1/refunds/{refund_id}")).await, 200).await, paid);
    assert_eq!(balance(&app, "refunds:sandbox:eur").await, "0.00");

    // One `refund.succeeded` event, whose data is the refund.
    let events = refund_succeeded_events(&app).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["type"], "refund.succeeded");
    assert_eq!(events[0]["data"], paid);

    // Confirmed again: nothing changes, no second event.
    let again = ok(
        app.post(&format!("/v1/sandbox/refunds/{refund_id}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(again, paid);
    assert_eq!(refund_succeeded_events(&app).await.len(), 1);

    // The provider's own id is not the refund's: the control does not know it, nor an unknown id.
    app.post(&format!("/v1/sandbox/refunds/{provider_id}/succeed"), json!({}))
        .await
        .assert_problem(404, "not_found");
    app.post(&format!("/v1/sandbox/refunds/{}/succeed", Uuid::now_v7()), json!({}))
        .await
        .assert_problem(404, "not_found");
    app.get(&format!("/v1/refunds/{}", Uuid::now_v7()))
        .await
        .assert_problem(404, "not_found");
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn an_oversubscribed_pro_rata_close_refunds_each_pledge_its_unallocated_part(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let project = published_project(&app).await;
    // 100 shares on offer at 10.00, 250 pledged: each pledge gets 40%.
    let terms = json!({"min_target": "100.00", "max_target": "1000.00", "allocation": "pro_rata"});
    let offer = open_offer(&app, &project, terms, 28).await;
    let mut pledges = Vec::new();
    for (name, shares) in [("Ana", 150), ("Bo", 100)] {
        let who = investor(&app, name, "sophisticated").await;
        pledges.push(id(&funded_pledge(&app, &offer, &who, shares).await));
    }
    // Another round, cancelled: its refund is not this offer's.
    let (other_offer, other_pledges) = cancelled_offer(&app, &[7]).await;

    let closed = ok(app.post(&format!("/v1/offers/{offer}/close"), json!({})).await, 200).await;
    assert_eq!(closed["status"], "succeeded", "{closed:#}");

    let page = ok(app.get(&format!("/v1/refunds?offer_id={offer}")).await, 200).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page:#}");
    for (pledge_id, allocated, back) in [(&pledges[0], 60, "900.00"), (&pledges[1], 40, "600.00")] {
        let p = ok(app.get(&format!("/v1/pledges/{pledge_id}")).await, 200).await;
        assert_eq!(
            (&p["status"], &p["allocated_shares"], &p["refunded_amount"]),
            (&json!("allocated"), &json!(allocated), &json!(back)),
            "{p:#}"
        );
        let refund = items.iter().find(|r| r["pledge_id"] == json!(pledge_id)).unwrap();
        assert_eq!(p["refunds"], json!([refund["id"]]), "{p:#}");
        assert_eq!(
            (
                &refund["amount"],
                &refund["reason"],
                &refund["status"],
                &refund["offer_id"]
            ),
            (&json!(back), &json!("not_allocated"), &json!("pending"), &json!(offer)),
            "{refund:#}"
        );
    }

    // The cancelled round's pledge: refunded in full, for the reason its round ended.
    let other = ok(app.get(&format!("/v1/pledges/{}", other_pledges[0])).await, 200).await;
    assert_eq!(
        (&other["status"], &other["refunded_amount"]),
        (&json!("refunded"), &json!("70.00"))
    );
    let theirs = ok(app.get(&format!("/v1/refunds?offer_id={other_offer}")).await, 200).await;
    assert_eq!(ids(&theirs), [other["refunds"][0].as_str().unwrap()], "{theirs:#}");
    assert_eq!(theirs["items"][0]["reason"], "offer_cancelled");
    assert_eq!(ids(&ok(app.get("/v1/refunds").await, 200).await).len(), 3);
    app.assert_books_verify().await;
}

#[sqlx::test]
async fn refunds_page_newest_first_and_filter(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // Five refunds made in one transaction (one time), then two a second later.
    let (first, first_pledges) = cancelled_offer(&app, &[1, 2, 3, 4, 5]).await;
    app.clock.advance(1).unwrap();
    let (second, _) = cancelled_offer(&app, &[6, 7]).await;
    let newest_first: Vec<String> =
        sqlx::query_scalar("select id::text from refunds order by created_at desc, id desc")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(newest_first.len(), 7);

    // A page boundary inside the five that share a time: no repeat, no skip.
    let mut seen = Vec::new();
    let mut path = "/v1/refunds?limit=3".to_string();
    let mut pages = 0;
    loop {
        let page = ok(app.get(&path).await, 200).await;
        pages += 1;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert_eq!(ids(&page).len(), 3, "{page:#}");
                path = format!("/v1/refunds?limit=3&cursor={cursor}");
            }
            None => break,
        }
    }
    assert_eq!((pages, &seen), (3, &newest_first));
    // A last page exactly full: no next_cursor.
    let all = ok(app.get("/v1/refunds?limit=7").await, 200).await;
    assert_eq!(ids(&all), newest_first);
    assert!(all.get("next_cursor").is_none(), "{all:#}");
    // The default page holds them all.
    assert_eq!(ids(&ok(app.get("/v1/refunds").await, 200).await), newest_first);

    // Filters: by offer, by pledge, by status, together.
    let of_second = ok(app.get(&format!("/v1/refunds?offer_id={second}")).await, 200).await;
    assert_eq!(ids(&of_second), newest_first[..2]);
    let of_pledge = ok(
        app.get(&format!("/v1/refunds?pledge_id={}", first_pledges[2])).await,
        200,
    )
    .await;
    assert_eq!(of_pledge["items"].as_array().unwrap().len(), 1, "{of_pledge:#}");
    assert_eq!(of_pledge["items"][0]["amount"], "30.00");
    let paid = &newest_first[4];
    ok(
        app.post(&format!("/v1/sandbox/refunds/{paid}/succeed"), json!({}))
            .await,
        200,
    )
    .await;
    let succeeded = ok(app.get("/v1/refunds?status=succeeded").await, 200).await;
    assert_eq!(ids(&succeeded), [paid.as_str()]);
    let pending = ok(app.get("/v1/refunds?status=pending&limit=1000").await, 200).await;
    let expected: Vec<String> = newest_first.iter().filter(|r| *r != paid).cloned().collect();
    assert_eq!(ids(&pending), expected);
    let first_pending = ok(
        app.get(&format!("/v1/refunds?offer_id={first}&status=pending&limit=2"))
            .await,
        200,
    )
    .await;
    assert_eq!(ids(&first_pending), expected[2..4]);
    assert!(first_pending["next_cursor"].is_string(), "{first_pending:#}");
    let none = ok(app.get(&format!("/v1/refunds?offer_id={}", Uuid::now_v7())).await, 200).await;
    assert_eq!((&none["items"], none.get("next_cursor")), (&json!([]), None));

    // Refused, naming the parameter: a cursor not given out, a limit out of range, an unknown
    // parameter, a status that is not one, an id that is not one.
    for (query, param) in [
        ("cursor=bm90LWEtY3Vyc29y", Some("cursor")),
        ("cursor=%%%", Some("cursor")),
        ("limit=0", Some("limit")),
        ("limit=1001", Some("limit")),
        ("reason=revoked", None),
        ("status=owed", Some("status")),
        ("offer_id=42", Some("offer_id")),
    ] {
        let r = app.get(&format!("/v1/refunds?{query}")).await;
        r.assert_problem(422, "validation_failed");
        if let Some(param) = param {
            assert_eq!(r.body["param"], param, "{query}: {:#}", r.body);
        }
    }
}
