//! The project catalogue through HTTP: creation, the draft → published → archived life, listing
//! by theme and territory with pages, what each role sees and may do, every refused input (a
//! precise problem that writes nothing), and `Idempotency-Key`, sequential and concurrent.

use std::collections::BTreeSet;

use crowdledger::keys::Role;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{self, OPERATOR_KEY, Reply, TestApp, assert_json, fixtures, id_of, send_as as send};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn project(name: &str, territory: &str, themes: &[&str]) -> Value {
    json!({
        "name": name,
        "legal_name": format!("{name} SAS"),
        "legal_form": "SAS",
        "country": "FR",
        "territory": territory,
        "themes": themes,
        "description": "A social enterprise.",
        "impact_indicators": [
            {"name": "jobs created", "unit": "FTE", "baseline": "3", "target": "12.50"},
        ],
    })
}

async fn create(app: &TestApp, name: &str, territory: &str, themes: &[&str]) -> String {
    let r = app.post("/v1/projects", project(name, territory, themes)).await;
    assert_json(&r, 201);
    id_of(&r)
}

async fn publish(app: &TestApp, id: &str) {
    let r = app.post(&format!("/v1/projects/{id}/publish"), json!({})).await;
    assert_json(&r, 200);
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// The ids on one page, and its `next_cursor`.
fn page(r: &Reply) -> (Vec<String>, Option<String>) {
    assert_json(r, 200);
    let ids = r.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {:#}", r.body))
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    let next = r.body.get("next_cursor").map(|n| {
        n.as_str()
            .unwrap_or_else(|| panic!("next_cursor is present but not a string: {:#}", r.body))
            .to_string()
    });
    (ids, next)
}

/// The set of ids a listing returns, all on one page.
async fn listed(app: &TestApp, key: &str, query: &str) -> BTreeSet<String> {
    let r = send(app, Method::GET, &format!("/v1/projects?{query}"), key, &[], None).await;
    let (ids, next) = page(&r);
    assert_eq!(next, None, "{query}: {:#}", r.body);
    ids.into_iter().collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Life
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn a_project_is_created_as_a_draft_and_read_back(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let body = json!({
        "name": "  Crois/Sens ",
        "legal_name": "Crois/Sens SCIC SAS",
        "legal_form": "SCIC SAS",
        "country": "FR",
        "territory": "Pays de Brest",
        "themes": ["employment", "waste"],
        "description": "Repairs and resells furniture.\nHires people far from employment.",
        "impact_indicators": [
            {"name": "jobs for people far from employment", "unit": "FTE", "baseline": "3", "target": "12.50"},
            {"name": "furniture diverted from landfill", "unit": "t/year", "baseline": "0.0", "target": "-4"},
        ],
    });
    let before = app.clock.now();
    let r = app.post("/v1/projects", body).await;
    assert_json(&r, 201);
    let p = &r.body;
    assert_eq!(p["name"], "Crois/Sens", "names are trimmed");
    assert_eq!(p["legal_name"], "Crois/Sens SCIC SAS");
    assert_eq!(p["legal_form"], "SCIC SAS");
    assert_eq!(p["country"], "FR");
    assert_eq!(p["territory"], "Pays de Brest");
    assert_eq!(p["themes"], json!(["employment", "waste"]));
    assert_eq!(p["status"], "draft");
    assert_eq!(
        p["impact_indicators"],
        json!([
            {"name": "jobs for people far from employment", "unit": "FTE", "baseline": "3", "target": "12.50"},
            {"name": "furniture diverted from landfill", "unit": "t/year", "baseline": "0.0", "target": "-4"},
        ])
    );
    let created: chrono::DateTime<chrono::Utc> = p["created_at"].as_str().unwrap().parse().unwrap();
    assert!(created >= before && created <= app.clock.now());
    assert_eq!(p["updated_at"], p["created_at"]);

    let id = id_of(&r);
    let got = app.get(&format!("/v1/projects/{id}")).await;
    assert_json(&got, 200);
    assert_eq!(got.body, r.body);
}

#[sqlx::test]
async fn a_project_with_an_open_offer_is_not_archived_until_the_offer_ends(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let world = fixtures::world(&app, 1).await;
    let r = app
        .post(&format!("/v1/projects/{}/archive", world.project), json!({}))
        .await;
    r.assert_problem(409, "project_has_open_offers");
    assert_eq!(
        app.get(&format!("/v1/projects/{}", world.project)).await.body["status"],
        "published"
    );
    // Nothing changed: the offer still takes pledges.
    let pledge = fixtures::pledge(&app, &world.offer, &world.investors[0], 10, "10.00").await;
    assert_eq!(pledge.status, 201, "{:#}", pledge.body);

    let r = app.post(&format!("/v1/offers/{}/cancel", world.offer), json!({})).await;
    assert_json(&r, 200);
    let r = app
        .post(&format!("/v1/projects/{}/archive", world.project), json!({}))
        .await;
    assert_json(&r, 200);
    assert_eq!(r.body["status"], "archived");
}

#[sqlx::test]
async fn a_project_moves_from_draft_to_published_to_archived_and_never_back(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "Ty Coop", "Pays de Brest", &["culture"]).await;
    app.clock.advance(3600).unwrap();

    let r = app.post(&format!("/v1/projects/{id}/publish"), json!({})).await;
    assert_json(&r, 200);
    assert_eq!(r.body["status"], "published");
    assert_ne!(
        r.body["updated_at"], r.body["created_at"],
        "updated_at follows the clock"
    );
    app.post(&format!("/v1/projects/{id}/publish"), json!({}))
        .await
        .assert_problem(409, "invalid_state_transition");

    let r = app.post(&format!("/v1/projects/{id}/archive"), json!({})).await;
    assert_json(&r, 200);
    assert_eq!(r.body["status"], "archived");
    for action in ["publish", "archive"] {
        let r = app.post(&format!("/v1/projects/{id}/{action}"), json!({})).await;
        r.assert_problem(409, "invalid_state_transition");
        assert!(r.body["detail"].as_str().unwrap().contains("archived"), "{:#}", r.body);
    }
    assert_eq!(app.get(&format!("/v1/projects/{id}")).await.body["status"], "archived");

    // A draft may be archived without ever being published.
    let draft = create(&app, "Never shown", "Hauts-de-France", &["health"]).await;
    let r = app.post(&format!("/v1/projects/{draft}/archive"), json!({})).await;
    assert_json(&r, 200);
    assert_eq!(r.body["status"], "archived");
}

#[sqlx::test]
async fn moves_on_a_missing_project_are_404s(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let missing = uuid::Uuid::now_v7();
    for path in [
        format!("/v1/projects/{missing}/publish"),
        format!("/v1/projects/{missing}/archive"),
        "/v1/projects/not-a-uuid/publish".to_string(),
    ] {
        app.post(&path, json!({})).await.assert_problem(404, "not_found");
    }
    app.get(&format!("/v1/projects/{missing}"))
        .await
        .assert_problem(404, "not_found");
    app.get("/v1/projects/42").await.assert_problem(404, "not_found");
}

#[sqlx::test]
async fn concurrent_publications_publish_once(pool: PgPool) {
    let wide = common::wide_pool(&pool, 32).await;
    let app = TestApp::spawn(wide).await;
    let id = create(&app, "Raced", "Pays de Brest", &["energy"]).await;
    let path = format!("/v1/projects/{id}/publish");
    let replies = common::race(16, |_| app.post(&path, json!({}))).await;
    let won = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(won, 1, "{:#?}", replies.iter().map(|r| &r.body).collect::<Vec<_>>());
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_problem(409, "invalid_state_transition");
    }
}

// ---------------------------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn projects_are_listed_by_theme_and_territory(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let brest_waste = create(&app, "Recyclerie", "Pays de Brest", &["waste", "employment"]).await;
    let brest_energy = create(&app, "Enercoop Bretagne", "Pays de Brest", &["energy"]).await;
    let brest_culture = create(&app, "Ty Films", "pays de brest", &["culture", "inclusion"]).await;
    let hdf_waste = create(&app, "Ressourcerie du Nord", "Hauts-de-France", &["waste"]).await;
    let hdf_mobility = create(&app, "Vélos solidaires", "Hauts-de-France", &["mobility", "employment"]).await;
    let lille_health = create(&app, "Santé pour tous", "Métropole de Lille", &["health"]).await;
    let all = [
        &brest_waste,
        &brest_energy,
        &brest_culture,
        &hdf_waste,
        &hdf_mobility,
        &lille_health,
    ];
    for id in all {
        publish(&app, id).await;
    }
    let platform = app.key(Role::Platform).await;

    for key in [OPERATOR_KEY, platform.as_str()] {
        assert_eq!(listed(&app, key, "").await, set(&all));
        assert_eq!(listed(&app, key, "theme=waste").await, set(&[&brest_waste, &hdf_waste]));
        assert_eq!(
            listed(&app, key, "theme=employment").await,
            set(&[&brest_waste, &hdf_mobility])
        );
        assert_eq!(listed(&app, key, "theme=health").await, set(&[&lille_health]));
        assert_eq!(listed(&app, key, "theme=environment").await, set(&[]));
        let brest = set(&[&brest_waste, &brest_energy, &brest_culture]);
        for spelling in ["Pays%20de%20Brest", "pays+de+brest", "PAYS%20DE%20BREST"] {
            assert_eq!(
                listed(&app, key, &format!("territory={spelling}")).await,
                brest,
                "{spelling}"
            );
        }
        assert_eq!(
            listed(&app, key, "territory=Hauts-de-France").await,
            set(&[&hdf_waste, &hdf_mobility])
        );
        assert_eq!(
            listed(&app, key, "territory=m%C3%A9tropole%20de%20lille").await,
            set(&[&lille_health])
        );
        // Exact, not a substring.
        assert_eq!(listed(&app, key, "territory=Brest").await, set(&[]));
        assert_eq!(listed(&app, key, "territory=Pays%20de%20Brest%20Nord").await, set(&[]));
        // Both filters at once.
        assert_eq!(
            listed(&app, key, "theme=waste&territory=hauts-de-france").await,
            set(&[&hdf_waste])
        );
        assert_eq!(
            listed(&app, key, "theme=energy&territory=hauts-de-france").await,
            set(&[])
        );
    }

    // Items come newest first, with the whole project.
    let r = app.get("/v1/projects?territory=pays%20de%20brest").await;
    let (ids, _) = page(&r);
    assert_eq!(
        ids,
        vec![brest_culture.clone(), brest_energy.clone(), brest_waste.clone()]
    );
    assert_eq!(r.body["items"][0]["themes"], json!(["culture", "inclusion"]));
    assert_eq!(r.body["items"][0]["territory"], "pays de brest");
}

#[sqlx::test]
async fn listing_filters_are_checked(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    create(&app, "One", "Pays de Brest", &["waste"]).await;
    for query in [
        "theme=recycling",
        "theme=Waste",
        "theme=",
        "status=deleted",
        "territory=",
        "territory=%20%20",
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "after=42",
        "cursor=42",
        "colour=green",
    ] {
        app.get(&format!("/v1/projects?{query}"))
            .await
            .assert_problem(422, "validation_failed");
    }
}

#[sqlx::test]
async fn projects_are_paged_newest_first(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(create(&app, &format!("Project {i}"), "Hauts-de-France", &["inclusion"]).await);
        app.clock.advance(1).unwrap();
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let query = match &cursor {
            Some(c) => format!("/v1/projects?limit=2&cursor={c}"),
            None => "/v1/projects?limit=2".to_string(),
        };
        let (ids, next) = page(&app.get(&query).await);
        pages.push(ids.len());
        seen.extend(ids);
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, vec![2, 2, 1]);
    assert_eq!(seen, newest_first);

    // A page that ends exactly at the last project is the last page.
    let (ids, next) = page(&app.get("/v1/projects?limit=5").await);
    assert_eq!(ids.len(), 5);
    assert_eq!(next, None);
    // A project created between two pages comes first, and does not shift the next page.
    let (first, next) = page(&app.get("/v1/projects?limit=3").await);
    assert_eq!(first, newest_first[..3].to_vec());
    create(&app, "Project 5", "Hauts-de-France", &["inclusion"]).await;
    let (ids, next) = page(&app.get(&format!("/v1/projects?limit=3&cursor={}", next.unwrap())).await);
    assert_eq!(ids, newest_first[3..].to_vec());
    assert_eq!(next, None);
    // A cursor this list did not give out.
    let r = app.get(&format!("/v1/projects?cursor={}", created[0])).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["param"], "cursor", "{:#}", r.body);
    // The default page holds them all.
    let (ids, next) = page(&app.get("/v1/projects").await);
    assert_eq!((ids.len(), next), (6, None));
}

// ---------------------------------------------------------------------------------------------
// Roles and visibility
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn drafts_and_archives_are_seen_by_operators_only(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let draft = create(&app, "Draft", "Pays de Brest", &["waste"]).await;
    let published = create(&app, "Published", "Pays de Brest", &["waste"]).await;
    let archived = create(&app, "Archived", "Pays de Brest", &["waste"]).await;
    publish(&app, &published).await;
    publish(&app, &archived).await;
    assert_json(
        &app.post(&format!("/v1/projects/{archived}/archive"), json!({})).await,
        200,
    );

    assert_eq!(
        listed(&app, OPERATOR_KEY, "").await,
        set(&[&draft, &published, &archived])
    );
    assert_eq!(listed(&app, OPERATOR_KEY, "status=draft").await, set(&[&draft]));
    assert_eq!(listed(&app, OPERATOR_KEY, "status=archived").await, set(&[&archived]));
    assert_eq!(
        listed(&app, OPERATOR_KEY, "status=published&theme=waste").await,
        set(&[&published])
    );

    for role in [Role::Platform, Role::Auditor] {
        let key = app.key(role).await;
        assert_eq!(listed(&app, &key, "").await, set(&[&published]), "{role:?}");
        assert_eq!(listed(&app, &key, "status=published").await, set(&[&published]));
        // Asking for what they cannot see gives nothing, as a 404 does for one project.
        assert_eq!(listed(&app, &key, "status=draft").await, set(&[]));
        assert_eq!(listed(&app, &key, "status=archived").await, set(&[]));
        assert_eq!(
            listed(&app, &key, "territory=pays%20de%20brest").await,
            set(&[&published])
        );

        let r = send(&app, Method::GET, &format!("/v1/projects/{published}"), &key, &[], None).await;
        assert_json(&r, 200);
        for hidden in [&draft, &archived] {
            send(&app, Method::GET, &format!("/v1/projects/{hidden}"), &key, &[], None)
                .await
                .assert_problem(404, "not_found");
        }
    }
}

#[sqlx::test]
async fn only_operators_write_the_catalogue(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "Draft", "Pays de Brest", &["waste"]).await;
    let before = count(&app, "projects").await;
    for role in [Role::Platform, Role::Auditor] {
        let key = app.key(role).await;
        let body = project("Intruder", "Pays de Brest", &["waste"]);
        send(&app, Method::POST, "/v1/projects", &key, &[], Some(&body))
            .await
            .assert_problem(403, "forbidden");
        // Refused before the body is read: a bad body from them is still a 403.
        send(&app, Method::POST, "/v1/projects", &key, &[], Some(&json!({"name": 1})))
            .await
            .assert_problem(403, "forbidden");
        for action in ["publish", "archive"] {
            send(
                &app,
                Method::POST,
                &format!("/v1/projects/{id}/{action}"),
                &key,
                &[],
                None,
            )
            .await
            .assert_problem(403, "forbidden");
        }
    }
    for (path, method) in [
        ("/v1/projects".to_string(), Method::POST),
        ("/v1/projects".to_string(), Method::GET),
        (format!("/v1/projects/{id}"), Method::GET),
        (format!("/v1/projects/{id}/publish"), Method::POST),
    ] {
        let r = common::read(
            app.client
                .request(method, format!("{}{path}", app.base))
                .json(&project("Anonymous", "Pays de Brest", &["waste"]))
                .send()
                .await
                .unwrap(),
        )
        .await;
        r.assert_problem(401, "unauthorized");
    }
    assert_eq!(count(&app, "projects").await, before);
    assert_eq!(app.get(&format!("/v1/projects/{id}")).await.body["status"], "draft");
}

// ---------------------------------------------------------------------------------------------
// Refused inputs
// ---------------------------------------------------------------------------------------------

/// A valid body with one change made by `edit`.
fn edited(edit: impl FnOnce(&mut Value)) -> Value {
    let mut body = project("Edited", "Pays de Brest", &["waste"]);
    edit(&mut body);
    body
}

#[sqlx::test]
async fn bad_projects_are_refused_and_write_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let indicator =
        |baseline: Value, target: Value| json!({"name": "n", "unit": "u", "baseline": baseline, "target": target});
    let cases: Vec<(&str, Value)> = vec![
        (
            "baseline as a JSON number",
            edited(|b| b["impact_indicators"] = json!([indicator(json!(3), json!("5"))])),
        ),
        (
            "target as a JSON number",
            edited(|b| b["impact_indicators"] = json!([indicator(json!("3"), json!(5.5))])),
        ),
        (
            "baseline in exponent notation",
            edited(|b| b["impact_indicators"] = json!([indicator(json!("1e3"), json!("5"))])),
        ),
        (
            "baseline not a number",
            edited(|b| b["impact_indicators"] = json!([indicator(json!("many"), json!("5"))])),
        ),
        (
            "empty indicator name",
            edited(|b| b["impact_indicators"] = json!([{"name": " ", "unit": "u", "baseline": "1", "target": "2"}])),
        ),
        (
            "empty indicator unit",
            edited(|b| b["impact_indicators"] = json!([{"name": "n", "unit": "", "baseline": "1", "target": "2"}])),
        ),
        (
            "indicator missing its target",
            edited(|b| b["impact_indicators"] = json!([{"name": "n", "unit": "u", "baseline": "1"}])),
        ),
        (
            "unknown field in an indicator",
            edited(|b| {
                b["impact_indicators"] =
                    json!([{"name": "n", "unit": "u", "baseline": "1", "target": "2", "weight": "1"}])
            }),
        ),
        (
            "two indicators with one name",
            edited(|b| {
                b["impact_indicators"] = json!([indicator(json!("1"), json!("2")), indicator(json!("3"), json!("4"))])
            }),
        ),
        (
            "21 indicators",
            edited(|b| {
                b["impact_indicators"] = (0..21)
                    .map(|i| json!({"name": format!("n{i}"), "unit": "u", "baseline": "1", "target": "2"}))
                    .collect();
            }),
        ),
        ("unknown theme", edited(|b| b["themes"] = json!(["waste", "sport"]))),
        ("capitalised theme", edited(|b| b["themes"] = json!(["Waste"]))),
        ("empty themes", edited(|b| b["themes"] = json!([]))),
        (
            "duplicate themes",
            edited(|b| b["themes"] = json!(["waste", "energy", "waste"])),
        ),
        ("themes not a list", edited(|b| b["themes"] = json!("waste"))),
        ("alpha-3 country", edited(|b| b["country"] = json!("FRA"))),
        ("lowercase country", edited(|b| b["country"] = json!("fr"))),
        ("unassigned country", edited(|b| b["country"] = json!("ZZ"))),
        ("empty name", edited(|b| b["name"] = json!(""))),
        ("blank legal name", edited(|b| b["legal_name"] = json!("   "))),
        (
            "name over 200 characters",
            edited(|b| b["name"] = json!("x".repeat(201))),
        ),
        ("name on two lines", edited(|b| b["name"] = json!("a\nb"))),
        ("empty territory", edited(|b| b["territory"] = json!(""))),
        (
            "NUL in the description",
            edited(|b| b["description"] = json!("a\u{0}b")),
        ),
        (
            "description over 20000 characters",
            edited(|b| b["description"] = json!("é".repeat(20_001))),
        ),
        (
            "missing legal form",
            edited(|b| {
                b.as_object_mut().unwrap().remove("legal_form");
            }),
        ),
        (
            "missing impact indicators",
            edited(|b| {
                b.as_object_mut().unwrap().remove("impact_indicators");
            }),
        ),
        ("unknown field", edited(|b| b["status"] = json!("published"))),
        ("null name", edited(|b| b["name"] = Value::Null)),
        ("not an object", json!(["a project"])),
    ];
    for (what, body) in cases {
        let r = app.post("/v1/projects", body).await;
        assert_eq!(r.status, 422, "{what}: {:#}", r.body);
        r.assert_problem(422, "validation_failed");
    }
    app.post_raw("/v1/projects", Some("application/json"), "{\"name\": \"Crois")
        .await
        .assert_problem(400, "malformed_json");
    app.post_raw(
        "/v1/projects",
        None,
        project("No type", "Pays de Brest", &["waste"]).to_string(),
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    assert_eq!(count(&app, "projects").await, 0);
    assert_eq!(count(&app, "idempotency_keys").await, 0);

    // Limits are inclusive.
    let r = app
        .post(
            "/v1/projects",
            edited(|b| {
                b["name"] = json!("é".repeat(200));
                b["description"] = json!("x".repeat(20_000));
                b["themes"] = json!([
                    "employment",
                    "environment",
                    "culture",
                    "waste",
                    "health",
                    "inclusion",
                    "energy",
                    "mobility"
                ]);
                b["impact_indicators"] = (0..20)
                    .map(|i| json!({"name": format!("n{i}"), "unit": "u", "baseline": "-1.5", "target": "2"}))
                    .collect();
            }),
        )
        .await;
    assert_json(&r, 201);
    assert_eq!(count(&app, "projects").await, 1);
}

// ---------------------------------------------------------------------------------------------
// Idempotency-Key
// ---------------------------------------------------------------------------------------------

#[sqlx::test]
async fn the_same_key_and_body_create_one_project(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let body = project("Once", "Pays de Brest", &["waste"]);
    let key = [("idempotency-key", "create-once-1")];
    let first = send(&app, Method::POST, "/v1/projects", OPERATOR_KEY, &key, Some(&body)).await;
    assert_json(&first, 201);
    app.clock.advance(60).unwrap();
    let again = send(&app, Method::POST, "/v1/projects", OPERATOR_KEY, &key, Some(&body)).await;
    assert_json(&again, 201);
    assert_eq!(again.body, first.body, "the first response, replayed");
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(count(&app, "projects").await, 1);

    // The same key with another body is refused and writes nothing.
    let other = project("Other", "Pays de Brest", &["waste"]);
    send(&app, Method::POST, "/v1/projects", OPERATOR_KEY, &key, Some(&other))
        .await
        .assert_problem(422, "idempotency_key_reused");
    assert_eq!(count(&app, "projects").await, 1);

    // Another key is another request.
    let r = send(
        &app,
        Method::POST,
        "/v1/projects",
        OPERATOR_KEY,
        &[("idempotency-key", "create-once-2")],
        Some(&body),
    )
    .await;
    assert_json(&r, 201);
    assert_ne!(id_of(&r), id_of(&first));
    // Without a key, every request creates.
    assert_json(&app.post("/v1/projects", body.clone()).await, 201);
    assert_eq!(count(&app, "projects").await, 3);

    // A refused request does not use the key up.
    let bad = edited(|b| b["country"] = json!("FRA"));
    let fresh = [("idempotency-key", "create-once-3")];
    send(&app, Method::POST, "/v1/projects", OPERATOR_KEY, &fresh, Some(&bad))
        .await
        .assert_problem(422, "validation_failed");
    assert_json(
        &send(&app, Method::POST, "/v1/projects", OPERATOR_KEY, &fresh, Some(&body)).await,
        201,
    );
    assert_eq!(count(&app, "projects").await, 4);

    // A malformed key is refused.
    send(
        &app,
        Method::POST,
        "/v1/projects",
        OPERATOR_KEY,
        &[("idempotency-key", "has space")],
        Some(&body),
    )
    .await
    .assert_problem(422, "validation_failed");
    assert_eq!(count(&app, "projects").await, 4);
}

#[sqlx::test]
async fn the_same_key_sent_twice_at_once_creates_one_project(pool: PgPool) {
    let wide = common::wide_pool(&pool, 16).await;
    let app = TestApp::spawn(wide).await;
    let body = project("Concurrent", "Hauts-de-France", &["mobility"]);
    for round in 0..5 {
        let key = format!("concurrent-{round}");
        let headers = [("idempotency-key", key.as_str())];
        let (a, b) = tokio::join!(
            send(&app, Method::POST, "/v1/projects", OPERATOR_KEY, &headers, Some(&body)),
            send(&app, Method::POST, "/v1/projects", OPERATOR_KEY, &headers, Some(&body)),
        );
        assert_json(&a, 201);
        assert_json(&b, 201);
        assert_eq!(id_of(&a), id_of(&b), "round {round}");
        let replayed = [&a, &b]
            .iter()
            .filter(|r| r.headers.get("idempotent-replayed").is_some())
            .count();
        assert_eq!(replayed, 1, "one created, the other replayed");
        assert_eq!(count(&app, "projects").await, round + 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Payout details
// ---------------------------------------------------------------------------------------------

fn payout_details() -> Value {
    json!({
        "stripe_account": "acct_1Nv0FGQ9RKHgCVdK",
        "bank_account": {
            "iban": "FR76 3000 6000 0112 3456 7890 189",
            "bic": "AGRIFRPP",
            "owner_name": "Crois/Sens SCIC",
            "owner_address": {"line1": "12 rue de Siam", "city": "Brest", "postal_code": "29200", "country": "FR"},
        },
        "company_number": "834 562 190",
        "legal_representative": {"first_name": "Maël", "last_name": "Le Goff", "birthday": "1981-04-12",
                                 "nationality": "FR", "country_of_residence": "FR",
                                 "email": "mael@crois-sens.example"},
    })
}

async fn put_payout(app: &TestApp, id: &str, body: &Value) -> Reply {
    send(
        app,
        Method::PUT,
        &format!("/v1/projects/{id}/payout-details"),
        OPERATOR_KEY,
        &[],
        Some(body),
    )
    .await
}

async fn stored_payout(app: &TestApp, id: &str) -> (Option<String>, Option<Value>) {
    sqlx::query_as("select payout_stripe_account, payout_bank_account from projects where id = $1::uuid")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn payout_details_are_set_whole_kept_exactly_and_shown_masked(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "Crois/Sens", "Pays de Brest", &["waste"]).await;
    publish(&app, &id).await;
    let fresh = app.get(&format!("/v1/projects/{id}")).await;
    assert_eq!(
        fresh.body["payout_details"],
        json!({"stripe_account": null, "bank_account": null, "company_number": null, "legal_representative": null})
    );

    let r = put_payout(&app, &id, &payout_details()).await;
    assert_json(&r, 200);
    assert_eq!(
        r.body["payout_details"],
        json!({
            "stripe_account": "acct_1Nv0FGQ9RKHgCVdK",
            "bank_account": {
                "iban": "FR76•••••••••••••••••••0189",
                "bic": "AGRIFRPP",
                "owner_name": "Crois/Sens SCIC",
                "owner_address": {"line1": "12 rue de Siam", "line2": null, "city": "Brest", "region": null,
                                  "postal_code": "29200", "country": "FR"},
            },
            "company_number": "834 562 190",
            // Without the birthday and e-mail, which Mangopay needs and no reader does.
            "legal_representative": {"first_name": "Maël", "last_name": "Le Goff", "nationality": "FR",
                                     "country_of_residence": "FR"},
        })
    );
    // Kept whole, in electronic form: the payout to the bank needs every digit.
    let (stripe, bank) = stored_payout(&app, &id).await;
    assert_eq!(stripe.as_deref(), Some("acct_1Nv0FGQ9RKHgCVdK"));
    assert_eq!(bank.unwrap()["iban"], "FR7630006000011234567890189");
    // No caller reads the whole IBAN back, the operator included.
    for role in [Role::Operator, Role::Platform, Role::Auditor] {
        let key = app.key(role).await;
        let got = send(&app, Method::GET, &format!("/v1/projects/{id}"), &key, &[], None).await;
        assert_json(&got, 200);
        assert_eq!(got.body["payout_details"], r.body["payout_details"], "{role:?}");
        let listed = send(&app, Method::GET, "/v1/projects", &key, &[], None).await;
        for text in [got.body.to_string(), listed.body.to_string()] {
            assert!(!text.contains("3000600001123456789"), "{role:?} saw the IBAN: {text}");
            assert!(
                !text.contains("1981-04-12") && !text.contains("mael@"),
                "{role:?} saw the representative's birthday or e-mail: {text}"
            );
        }
    }

    // The body is the whole of it: what is left out is cleared.
    let r = put_payout(&app, &id, &json!({"stripe_account": "acct_2Other"})).await;
    assert_json(&r, 200);
    assert_eq!(
        r.body["payout_details"],
        json!({"stripe_account": "acct_2Other", "bank_account": null, "company_number": null,
               "legal_representative": null})
    );
    assert_eq!(stored_payout(&app, &id).await, (Some("acct_2Other".to_string()), None));
    let r = put_payout(&app, &id, &json!({})).await;
    assert_json(&r, 200);
    assert_eq!(stored_payout(&app, &id).await, (None, None));

    // Who changed where the money goes is in the audit trail.
    let trail = app.get(&format!("/v1/audit-log?object_id={id}")).await;
    assert_json(&trail, 200);
    let puts = trail.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["method"] == "PUT" && i["route"] == "/v1/projects/{id}/payout-details")
        .count();
    assert_eq!(puts, 3, "{:#}", trail.body);
}

#[sqlx::test]
async fn bad_payout_details_are_refused_by_field_and_change_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "Crois/Sens", "Pays de Brest", &["waste"]).await;
    assert_json(&put_payout(&app, &id, &payout_details()).await, 200);
    let kept = stored_payout(&app, &id).await;

    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = payout_details();
        edit(&mut body);
        body
    };
    for (body, param) in [
        (
            with(&|b| b["bank_account"]["iban"] = json!("FR76 3000 6000 0112 3456 7890 188")),
            "bank_account.iban",
        ),
        (
            with(&|b| b["bank_account"]["iban"] = json!("FR7630006000011234567890")),
            "bank_account.iban",
        ),
        (with(&|b| b["bank_account"]["iban"] = json!(76)), "bank_account.iban"),
        (
            with(&|b| b["bank_account"]["bic"] = json!("AGRI FR PP")),
            "bank_account.bic",
        ),
        (
            with(&|b| b["bank_account"]["owner_name"] = json!("  ")),
            "bank_account.owner_name",
        ),
        (
            with(&|b| b["bank_account"]["owner_address"]["country"] = json!("ZZ")),
            "bank_account.owner_address.country",
        ),
        (
            with(&|b| b["bank_account"]["owner_address"]["city"] = json!("Brest\nFrance")),
            "bank_account.owner_address.city",
        ),
        (
            with(&|b| {
                b["bank_account"]["owner_address"]
                    .as_object_mut()
                    .unwrap()
                    .retain(|k, _| k != "postal_code")
            }),
            "bank_account.owner_address.postal_code",
        ),
        (
            with(&|b| b["stripe_account"] = json!("cus_Nv0FGQ9RKHgCVdK")),
            "stripe_account",
        ),
        (
            with(&|b| b["stripe_account"] = json!("acct_Nv0F GQ9")),
            "stripe_account",
        ),
        (with(&|b| b["iban"] = json!("FR7630006000011234567890189")), "iban"),
        (with(&|b| b["company_number"] = json!(" ")), "company_number"),
        (
            with(&|b| b["legal_representative"]["email"] = json!("mael")),
            "legal_representative.email",
        ),
        (
            with(&|b| b["legal_representative"]["birthday"] = json!("12/04/1981")),
            "legal_representative.birthday",
        ),
        (
            with(&|b| b["legal_representative"]["nationality"] = json!("French")),
            "legal_representative.nationality",
        ),
    ] {
        let r = put_payout(&app, &id, &body).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["param"], param, "{body}: {:#}", r.body);
    }
    put_payout(&app, &uuid::Uuid::now_v7().to_string(), &payout_details())
        .await
        .assert_problem(404, "not_found");
    for role in [Role::Platform, Role::Auditor] {
        let key = app.key(role).await;
        let path = format!("/v1/projects/{id}/payout-details");
        send(&app, Method::PUT, &path, &key, &[], Some(&json!({})))
            .await
            .assert_problem(403, "forbidden");
    }
    assert_eq!(stored_payout(&app, &id).await, kept);
}

#[sqlx::test]
async fn the_openapi_document_describes_the_catalogue(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app.get("/openapi.json").await;
    assert_json(&r, 200);
    let paths = &r.body["paths"];
    for (path, methods) in [
        ("/v1/projects", &["get", "post"][..]),
        ("/v1/projects/{id}", &["get"]),
        ("/v1/projects/{id}/publish", &["post"]),
        ("/v1/projects/{id}/archive", &["post"]),
        ("/v1/projects/{id}/payout-details", &["put"]),
    ] {
        for method in methods {
            let op = &paths[path][method];
            assert_eq!(op["tags"], json!(["projects"]), "{method} {path}: {op:#}");
            assert!(
                op["security"].as_array().is_some_and(|s| !s.is_empty()),
                "{method} {path}"
            );
        }
    }
    let schemas = &r.body["components"]["schemas"];
    for name in ["ProjectView", "ProjectInput", "Theme", "ProjectStatus", "ProjectPage"] {
        assert!(schemas.get(name).is_some(), "{name} missing from the schemas");
    }
    for path in ["/v1/projects", "/v1/projects/{id}", "/v1/projects/{id}/publish"] {
        common::assert_refs_resolve(&r.body, &paths[path]);
    }
}

/// The migration repeats the rules, so a writer other than the API cannot store what it refuses.
#[sqlx::test]
async fn the_database_refuses_projects_the_api_would(pool: PgPool) {
    let insert = |column: &'static str, value: &'static str| {
        let pool = pool.clone();
        async move {
            let mut row = [
                ("name", "'n'"),
                ("legal_name", "'l'"),
                ("legal_form", "'f'"),
                ("country", "'FR'"),
                ("territory", "'t'"),
                ("themes", "array['waste']"),
                ("description", "''"),
                ("impact_indicators", "'[]'::jsonb"),
                ("payout_stripe_account", "null"),
                ("payout_bank_account", "null"),
            ];
            row.iter_mut()
                .filter(|(c, _)| *c == column)
                .for_each(|(_, v)| *v = value);
            let columns: Vec<&str> = row.iter().map(|(c, _)| *c).collect();
            let values: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
            let sql = format!(
                "insert into projects (id, {}, created_at, updated_at) values (gen_random_uuid(), {}, now(), now())",
                columns.join(", "),
                values.join(", ")
            );
            sqlx::query(&sql).execute(&pool).await
        }
    };
    insert("name", "'ok'").await.expect("the baseline row is valid");
    for (column, value, constraint) in [
        ("name", "''", "projects_name_length"),
        ("country", "'FRA'", "projects_country_format"),
        ("country", "'fr'", "projects_country_format"),
        ("themes", "array[]::text[]", "projects_themes_known"),
        ("themes", "array['sport']", "projects_themes_known"),
        ("themes", "array['waste', null]", "projects_themes_known"),
        ("impact_indicators", "'{}'::jsonb", "projects_impact_indicators_array"),
        ("description", "repeat('x', 20001)", "projects_description_length"),
        (
            "payout_stripe_account",
            "'cus_123'",
            "projects_payout_stripe_account_format",
        ),
        (
            "payout_bank_account",
            "'[]'::jsonb",
            "projects_payout_bank_account_shape",
        ),
        (
            "payout_bank_account",
            r#"'{"iban": "FR76 3000", "owner_name": "o", "owner_address": {}}'::jsonb"#,
            "projects_payout_bank_account_shape",
        ),
        (
            "payout_bank_account",
            r#"'{"iban": "FR7630006000011234567890189", "owner_address": {}}'::jsonb"#,
            "projects_payout_bank_account_shape",
        ),
    ] {
        let err = insert(column, value).await.expect_err(value);
        let db = err.as_database_error().unwrap_or_else(|| panic!("{value}: {err}"));
        assert_eq!(db.constraint(), Some(constraint), "{column} = {value}: {db}");
    }
}
