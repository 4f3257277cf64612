//! The operator console (PRODUCT.md section 14, docs/console.md) over HTTP: the session, the
//! headers every page carries, and what the first pages show. (The browser journeys come with
//! the rest of the console.)

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::common::fixtures::{self, ok};
use crate::common::{OPERATOR_KEY, TestApp};

/// A client that shows redirects instead of following them, and keeps no cookies of its own.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn key_of(app: &TestApp, role: &str) -> (String, String) {
    let r = ok(
        app.post("/v1/api-keys", json!({"role": role, "name": format!("{role} console")}))
            .await,
        201,
    )
    .await;
    (
        r["id"].as_str().unwrap().to_string(),
        r["key"].as_str().unwrap().to_string(),
    )
}

async fn sign_in(app: &TestApp, key: &str) -> Response {
    browser()
        .post(format!("{}/console/sign-in", app.base))
        .form(&[("key", key)])
        .send()
        .await
        .unwrap()
}

/// The session cookie a successful sign-in set, as `name=value`.
async fn session(app: &TestApp, key: &str) -> String {
    let r = sign_in(app, key).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> (StatusCode, String) {
    let r = browser()
        .get(format!("{}{path}", app.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(
        r.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"),
        "{path}"
    );
    (status, r.text().await.unwrap())
}

fn csrf_in(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a form with its token") + r#"name="csrf" value=""#.len();
    html[at..at + 64].to_string()
}

#[sqlx::test]
async fn a_key_signs_in_into_a_strict_session_cookie_and_is_never_shown_or_put_in_a_url(db: PgPool) {
    let app = TestApp::spawn(db).await;
    // No session: to the sign-in page, which asks for the key in a form that posts.
    let r = browser()
        .get(format!("{}/console/projects", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), r.headers()[LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );
    let form = browser()
        .get(format!("{}/console/sign-in", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(form.headers()["x-frame-options"], "DENY");
    let form = form.text().await.unwrap();
    assert!(
        form.contains(r#"<form method="post" action="/console/sign-in""#),
        "{form}"
    );
    assert!(form.contains(r#"type="password""#));

    // Refused: an unknown key, and a platform's key; neither is echoed nor kept.
    let wrong = sign_in(&app, "not-a-key-of-ours-0123456789").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let body = wrong.text().await.unwrap();
    assert!(
        body.contains("Unknown or revoked API key") && !body.contains("not-a-key-of-ours"),
        "{body}"
    );
    let (_, platform) = key_of(&app, "platform").await;
    let refused = sign_in(&app, &platform).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(!refused.text().await.unwrap().contains(&platform));

    // An operator: a session cookie only this site's console pages send, no script can read.
    let r = sign_in(&app, OPERATOR_KEY).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/console/projects");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attribute in ["Path=/console", "HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(
        !set.contains("Max-Age") && !set.contains("Expires"),
        "a session cookie: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let (status, html) = page(&app, &cookie, "/console/projects").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"<span class="role">operator</span>"#), "{html}");
    assert!(!html.contains(OPERATOR_KEY), "the key is never in a page");

    // Signing out takes the page's token; without it, nothing happens.
    let out = |token: &str| {
        browser()
            .post(format!("{}/console/sign-out", app.base))
            .header(COOKIE, &cookie)
            .form(&[("csrf", token)])
            .send()
    };
    assert_eq!(out(&"0".repeat(64)).await.unwrap().status(), StatusCode::FORBIDDEN);
    let done = out(&csrf_in(&html)).await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert!(done.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));

    // A revoked key's session ends with it.
    let (id, auditor) = key_of(&app, "auditor").await;
    let cookie = session(&app, &auditor).await;
    assert_eq!(page(&app, &cookie, "/console/projects").await.0, StatusCode::OK);
    ok(app.post(&format!("/v1/api-keys/{id}/revoke"), json!({})).await, 200).await;
    assert_eq!(page(&app, &cookie, "/console/projects").await.0, StatusCode::SEE_OTHER);
}

#[sqlx::test]
async fn projects_by_territory_and_theme_and_a_round_with_its_live_figures(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let world = fixtures::world(&app, 2).await;
    fixtures::funded_pledge(&app, &world.offer, &world.investors[0], 12).await;
    fixtures::funded_pledge(&app, &world.offer, &world.investors[1], 3).await;
    let other = json!({"name": "Ressourcerie <Herve>", "legal_name": "Ressourcerie SC", "legal_form": "SC",
                       "country": "BE", "territory": "Pays de Herve", "themes": ["waste"],
                       "description": "Repairs furniture.", "impact_indicators": []});
    let herve = ok(app.post("/v1/projects", other).await, 201).await;
    let herve = herve["id"].as_str().unwrap().to_string();
    let cookie = session(&app, OPERATOR_KEY).await;

    let (_, html) = page(&app, &cookie, "/console/projects").await;
    assert!(
        html.contains("<h2>Pays de Brest</h2>") && html.contains("<h2>Pays de Herve</h2>"),
        "{html}"
    );
    // Escaped: a name is text, never markup.
    assert!(
        html.contains("Ressourcerie &#60;Herve&#62;") || html.contains("Ressourcerie &lt;Herve&gt;"),
        "{html}"
    );
    assert!(!html.contains("<Herve>"));
    let (_, waste) = page(&app, &cookie, "/console/projects?theme=waste").await;
    assert!(
        waste.contains("Pays de Herve") && !waste.contains("Pays de Brest"),
        "{waste}"
    );
    let (_, brest) = page(&app, &cookie, "/console/projects?territory=pays+de+brest").await;
    assert!(
        brest.contains("Crois/Sens") && !brest.contains("Ressourcerie"),
        "{brest}"
    );

    let (status, round) = page(&app, &cookie, &format!("/console/projects/{}", world.project)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(round.contains(&world.offer), "{round}");
    assert!(round.contains(r#"<span class="status open">open</span>"#));
    assert!(round.contains(r#"<td class="num">150.00 EUR</td>"#), "{round}");
    assert!(round.contains(r#"<progress max="100" value="15""#), "{round}");
    assert!(round.contains("15 of 100 shares; minimum 10"));
    assert!(
        round.contains("<td>8 d 23 h</td>") || round.contains("<td>9 d 0 h</td>"),
        "{round}"
    );

    // An auditor sees no draft: not in the list, and not by its address.
    let (_, auditor) = key_of(&app, "auditor").await;
    let cookie = session(&app, &auditor).await;
    let (_, html) = page(&app, &cookie, "/console/projects").await;
    assert!(!html.contains("Ressourcerie"), "{html}");
    let (status, _) = page(&app, &cookie, &format!("/console/projects/{herve}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = page(&app, &cookie, &format!("/console/projects/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn post_form(app: &TestApp, cookie: &str, path: &str, csrf: &str) -> reqwest::Response {
    browser()
        .post(format!("{}{path}", app.base))
        .header(COOKIE, cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap()
}

#[sqlx::test]
async fn an_operator_closes_a_round_early_once_told_what_happens_to_the_money_and_an_auditor_cannot(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let world = fixtures::world(&app, 3).await;
    fixtures::funded_pledge(&app, &world.offer, &world.investors[0], 12).await;
    fixtures::funded_pledge(&app, &world.offer, &world.investors[1], 3).await;
    ok(
        fixtures::pledge(&app, &world.offer, &world.investors[2], 5, "10.00").await,
        201,
    )
    .await;
    let round = format!("/console/offers/{}", world.offer);

    // The auditor reads the round and its pledges, and is offered no action, nor may take one.
    let (_, auditor) = key_of(&app, "auditor").await;
    let watcher = session(&app, &auditor).await;
    let (status, html) = page(&app, &watcher, &round).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Pledges") && !html.contains("Close early"), "{html}");
    // The chart: the two fundings as steps, against the minimum and the cap.
    assert!(
        html.contains(r#"role="img" aria-label="Shares funded over time: 15 of 100, minimum 10""#),
        "{html}"
    );
    let points = html.split(r#"<polyline class="funded" points=""#).nth(1).unwrap();
    let points = &points[..points.find('"').unwrap()];
    assert_eq!(points.split(' ').count(), 6, "{points}");
    assert!(html.contains(">minimum 10</text>") && html.contains(">cap 100</text>"));
    let (_, funded) = page(&app, &watcher, &format!("{round}?status=funded")).await;
    assert_eq!(funded.matches(r#"<span class="status funded">"#).count(), 2, "{funded}");
    assert_eq!(
        page(&app, &watcher, &format!("{round}/close")).await.0,
        StatusCode::FORBIDDEN
    );
    let r = post_form(&app, &watcher, &format!("{round}/close"), &csrf_in(&html)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        ok(app.get(&format!("/v1/offers/{}", world.offer)).await, 200).await["status"],
        "open"
    );

    // The operator is told what will happen to the money, then confirms.
    let cookie = session(&app, OPERATOR_KEY).await;
    let (_, html) = page(&app, &cookie, &round).await;
    assert!(
        html.contains(&format!(r#"href="{round}/close">Close early…</a>"#)),
        "{html}"
    );
    let (status, confirm) = page(&app, &cookie, &format!("{round}/close")).await;
    assert_eq!(status, StatusCode::OK);
    for said in [
        "1 unpaid pledge(s) are cancelled",
        "With 15 of the minimum's 10 shares funded",
        "5% success fee",
    ] {
        assert!(confirm.contains(said), "{said}: {confirm}");
    }
    let wrong = post_form(&app, &cookie, &format!("{round}/close"), &"f".repeat(64)).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let done = post_form(&app, &cookie, &format!("{round}/close"), &csrf_in(&confirm)).await;
    assert_eq!(
        (done.status(), done.headers()[LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, round.as_str())
    );
    let offer = ok(app.get(&format!("/v1/offers/{}", world.offer)).await, 200).await;
    assert_eq!(
        (offer["status"].as_str(), offer["amount_raised"].as_str()),
        (Some("succeeded"), Some("150.00"))
    );
    let (_, html) = page(&app, &cookie, &round).await;
    assert!(html.contains(r#"<span class="status succeeded">succeeded</span>"#) && !html.contains("Close early"));
    // The cap table, as the API gives it, and its CSV to download.
    assert!(
        html.contains(&format!(r#"href="{round}/cap-table">Cap table</a>"#)),
        "{html}"
    );
    let (status, table) = page(&app, &watcher, &format!("{round}/cap-table")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        table.contains(r#"<td class="num">15</td><td class="num">150.00 EUR</td>"#),
        "{table}"
    );
    assert!(
        table.contains(r#"<td class="num">12</td><td class="num">120.00 EUR</td>"#),
        "{table}"
    );
    let csv = browser()
        .get(format!("{}{round}/cap-table.csv", app.base))
        .header(COOKIE, &watcher)
        .send()
        .await
        .unwrap();
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    let csv = csv.text().await.unwrap();
    assert!(
        csv.starts_with("investor_id,investor_name,shares,amount,currency,holder\r\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // Recorded in the audit trail like the API's close, under the operator's key.
    let trail = ok(app.get(&format!("/v1/audit-log?object_id={}", world.offer)).await, 200).await;
    let routes: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert!(routes.contains(&"/console/offers/{id}/close"), "{trail:#}");

    // A round below its minimum cannot be closed early: the page says why and offers no button.
    let other = fixtures::world(&app, 1).await;
    fixtures::funded_pledge(&app, &other.offer, &other.investors[0], 2).await;
    let (_, confirm) = page(&app, &cookie, &format!("/console/offers/{}/close", other.offer)).await;
    assert!(
        confirm.contains("Only 2 of the minimum&#39;s 10 shares are funded")
            && !confirm.contains("<form method=\"post\" action=\"/console/offers"),
        "{confirm}"
    );
    let r = post_form(
        &app,
        &cookie,
        &format!("/console/offers/{}/close", other.offer),
        &csrf_in(&confirm),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

/// The console's routes by role: without a session every one leads to the sign-in page; an
/// auditor reads what an operator reads and is refused the actions (PRODUCT.md section 14).
#[sqlx::test]
async fn every_console_route_answers_each_role_as_its_table_says(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let world = fixtures::world(&app, 1).await;
    fixtures::funded_pledge(&app, &world.offer, &world.investors[0], 10).await;
    let closed = fixtures::world(&app, 1).await;
    fixtures::funded_pledge(&app, &closed.offer, &closed.investors[0], 10).await;
    ok(
        app.post(&format!("/v1/offers/{}/close", closed.offer), json!({})).await,
        200,
    )
    .await;
    let (_, auditor) = key_of(&app, "auditor").await;
    let operator = session(&app, OPERATOR_KEY).await;
    let auditor = session(&app, &auditor).await;
    let (project, open, done) = (&world.project, &world.offer, &closed.offer);
    // (path, operator's status, auditor's status)
    let table = [
        ("/console/projects".to_string(), 200, 200),
        (format!("/console/projects/{project}"), 200, 200),
        (format!("/console/offers/{open}"), 200, 200),
        (format!("/console/offers/{open}?status=funded"), 200, 200),
        (format!("/console/offers/{open}/close"), 200, 403),
        (format!("/console/offers/{open}/cap-table"), 409, 409),
        (format!("/console/offers/{done}/cap-table"), 200, 200),
        (format!("/console/offers/{done}/cap-table.csv"), 200, 200),
        (format!("/console/offers/{}", uuid::Uuid::new_v4()), 404, 404),
        ("/console/books/verify".to_string(), 200, 200),
    ];
    for (path, as_operator, as_auditor) in &table {
        assert_eq!(
            page(&app, &operator, path).await.0.as_u16(),
            *as_operator,
            "operator: {path}"
        );
        assert_eq!(
            page(&app, &auditor, path).await.0.as_u16(),
            *as_auditor,
            "auditor: {path}"
        );
        let anonymous = page(&app, "crowdledger_console=", path).await.0;
        assert_eq!(anonymous, StatusCode::SEE_OTHER, "no session: {path}");
    }
    // `verify`, each invariant by name, as the API reports them.
    let (_, html) = page(&app, &auditor, "/console/books/verify").await;
    let report = ok(app.get("/v1/ledger/verify").await, 200).await;
    let checks = report["checks"].as_array().unwrap();
    assert!(html.contains("Every invariant holds"), "{html}");
    for check in checks {
        let name = check["name"].as_str().unwrap();
        assert!(html.contains(&format!("<code>{name}</code>")), "{name} in {html}");
    }
    assert_eq!(
        html.matches(r#"<span class="status succeeded">holds</span>"#).count(),
        checks.len()
    );
}
