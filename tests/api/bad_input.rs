//! Bad input through the real HTTP API, on every route that writes: bodies over the limit, deep
//! nesting, empty bodies, wrong content types, huge numbers and malformed amounts, unicode
//! tricks in names, junk and traversal in ids. Each is a 4xx `application/problem+json` with a
//! stable code, never a 5xx nor a plain-text rejection, and no table gains or loses a row.

use std::collections::BTreeMap;

use crowdledger::webhooks::signature::{self, WebhookSecret};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{self, OPERATOR_KEY, Reply, TestApp, fixtures};

/// The sandbox secret of config/default.toml, which the test app runs with.
const SANDBOX_SECRET: &str = "whsec_c2FuZGJveC1kZXZlbG9wbWVudC1zZWNyZXQtY2hhbmdlLW1l";

/// Rows per table, every table of the schema: what a refused request must leave as it was.
async fn snapshot(app: &TestApp) -> BTreeMap<String, i64> {
    // The audit trail is written a moment after its writes: reading it waits for every row
    // queued, so the counts include the trail of what was done before.
    assert_eq!(app.get("/v1/audit-log?limit=1").await.status, 200);
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables
          where table_schema = current_schema() and table_type = 'BASE TABLE' and table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let counts = tables
        .iter()
        .map(|t| format!("select '{t}', count(*) from {t}"))
        .collect::<Vec<_>>()
        .join(" union all ");
    sqlx::query_as::<_, (String, i64)>(&counts)
        .fetch_all(&app.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// A route that writes, and a body it accepts.
struct Route {
    path: String,
    valid: Value,
    /// Pledges need an `Idempotency-Key`; a fresh one goes with each request.
    needs_key: bool,
}

/// What the write routes need to exist: a published project, a verified investor, an open
/// offer, a funded sponsor.
struct World {
    project: String,
    offer: String,
    investor: String,
    sponsor: String,
}

async fn world(app: &TestApp) -> World {
    let (project, offer) = fixtures::small_open_offer(app).await;
    World {
        investor: fixtures::investor(app, "Camille", "sophisticated").await,
        sponsor: fixtures::funded_sponsor(app, "SenseTour Belgium", "5000.00").await,
        project,
        offer,
    }
}

fn project_body() -> Value {
    json!({
        "name": "Crois/Sens", "legal_name": "Crois/Sens SAS", "legal_form": "SAS", "country": "FR",
        "territory": "Pays de Brest", "themes": ["employment"], "description": "A social enterprise.",
        "impact_indicators": [{"name": "jobs", "unit": "people", "baseline": "3", "target": "12"}],
    })
}

fn routes(app: &TestApp, w: &World) -> Vec<Route> {
    let now = app.clock.now();
    let route = |path: String, valid: Value| Route {
        path,
        valid,
        needs_key: false,
    };
    vec![
        route("/v1/projects".into(), project_body()),
        route(
            "/v1/investors".into(),
            json!({"kind": "natural", "name": "Lou", "email": "lou@example.org", "country": "BE",
                   "net_worth": {"amount": "250000.00", "currency": "EUR"}}),
        ),
        route(
            format!("/v1/projects/{}/offers", w.project),
            json!({"currency": "EUR", "share_price": "10.00", "min_target": "100.00", "max_target": "1000.00",
                   "min_ticket": "10.00", "max_ticket": "500.00", "opens_at": now.to_rfc3339(),
                   "closes_at": (now + chrono::TimeDelta::days(9)).to_rfc3339(), "success_fee_rate": "0.05",
                   "allocation": "first_come", "payment_window_seconds": 1800}),
        ),
        Route {
            path: format!("/v1/offers/{}/pledges", w.offer),
            valid: json!({"investor_id": w.investor, "shares": 2, "funding": [{"kind": "card", "amount": "20.00"}],
                          "kiis_sha256": fixtures::KIIS_SHA256}),
            needs_key: true,
        },
        route(
            "/v1/sponsors".into(),
            json!({"name": "Ashoka", "email": "prizes@example.org", "currency": "EUR"}),
        ),
        route(
            format!("/v1/sponsors/{}/deposits", w.sponsor),
            json!({"amount": "100.00", "currency": "EUR"}),
        ),
        route(
            "/v1/cheques".into(),
            json!({"sponsor_id": w.sponsor, "beneficiary_name": "Lou", "beneficiary_email": "lou@example.org",
                   "face_value": "100.00", "currency": "EUR",
                   "expires_at": (now + chrono::TimeDelta::days(30)).to_rfc3339(), "memo": "contest"}),
        ),
        route(
            "/v1/webhook-endpoints".into(),
            json!({"url": "https://127.0.0.1:9/hooks", "events": ["pledge.funded"]}),
        ),
    ]
}

/// Sends `body` as it is to `route`, with `content_type` if any.
async fn send(app: &TestApp, route: &Route, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
    let mut req = app
        .client
        .post(format!("{}{}", app.base, route.path))
        .bearer_auth(OPERATOR_KEY)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if route.needs_key {
        req = req.header("idempotency-key", uuid::Uuid::new_v4().to_string());
    }
    common::read(req.send().await.unwrap()).await
}

async fn send_json(app: &TestApp, route: &Route, body: &Value) -> Reply {
    send(app, route, Some("application/json"), body.to_string()).await
}

/// Asserts the refusal: this status and code, as problem+json, and the same rows as `before`.
async fn refused(app: &TestApp, before: &BTreeMap<String, i64>, r: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(r.status.as_u16(), status, "{what}: {:#}", r.body);
    assert_eq!(r.content_type, "application/problem+json", "{what}: {:#}", r.body);
    assert_eq!(r.body["code"], code, "{what}: {:#}", r.body);
    assert_eq!(r.body["status"], status, "{what}");
    for field in ["type", "title", "detail"] {
        assert!(r.body[field].is_string(), "{what}: problem lacks {field}: {:#}", r.body);
    }
    assert_eq!(&snapshot(app).await, before, "{what} wrote something");
}

/// Replaces what `pointer` names in `body` (a JSON pointer: `/funding/0/amount`).
fn with(body: &Value, pointer: &str, value: Value) -> Value {
    let mut altered = body.clone();
    *altered
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {body}")) = value;
    altered
}

/// A test's setting: the app over its world, the write routes, and the rows before any bad input.
struct Scene {
    app: TestApp,
    world: World,
    routes: Vec<Route>,
    before: BTreeMap<String, i64>,
}

impl Scene {
    async fn new(pool: PgPool) -> Scene {
        let app = spawn(pool).await;
        let world = world(&app).await;
        let routes = routes(&app, &world);
        let before = snapshot(&app).await;
        Scene {
            app,
            world,
            routes,
            before,
        }
    }

    /// The write route whose path ends with `suffix`.
    fn route(&self, suffix: &str) -> &Route {
        self.routes.iter().find(|r| r.path.ends_with(suffix)).unwrap()
    }

    async fn refused(&self, r: &Reply, status: u16, code: &str, what: &str) {
        refused(&self.app, &self.before, r, status, code, what).await;
    }

    /// Sends `route`'s valid body with `pointer` set to each of `values`: each is refused with
    /// `status` and `code`, and writes nothing.
    async fn refuse_each(&self, route: &Route, pointer: &str, values: Vec<Value>, status: u16, code: &str) {
        for value in values {
            let r = send_json(&self.app, route, &with(&route.valid, pointer, value.clone())).await;
            let shown: String = value.to_string().chars().take(40).collect();
            self.refused(&r, status, code, &format!("{}{pointer} = {shown}", route.path))
                .await;
        }
    }

    /// Every valid body is accepted: the refusals were the bad parts' doing, not the route's.
    async fn all_valid_accepted(&self) {
        for route in &self.routes {
            let r = send_json(&self.app, route, &route.valid).await;
            assert_eq!(r.status, 201, "{} refused its valid body: {:#}", route.path, r.body);
        }
    }
}

async fn spawn(pool: PgPool) -> TestApp {
    // The valid webhook endpoint points at the loopback; nothing is ever delivered to it here.
    TestApp::spawn_with(
        pool,
        &[
            ("CROWDLEDGER__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
            (
                "CROWDLEDGER__PAYMENTS__STRIPE__WEBHOOK_SECRET",
                "whsec_stripe_test_secret_for_crowdledger",
            ),
        ],
    )
    .await
}

#[sqlx::test]
async fn oversized_deep_and_empty_bodies_are_refused(pool: PgPool) {
    let s = Scene::new(pool).await;
    let app = &s.app;
    for route in &s.routes {
        // Valid JSON, its fields valid but for one string past the limit (256 KiB by default).
        let first = route.valid.as_object().unwrap().keys().next().unwrap().clone();
        let big = with(&route.valid, &format!("/{first}"), json!("x".repeat(300 * 1024)));
        let r = send_json(app, route, &big).await;
        s.refused(&r, 413, "payload_too_large", &format!("{} oversized", route.path))
            .await;
        let r = send(app, route, Some("application/json"), vec![b' '; 2 * 1024 * 1024]).await;
        s.refused(&r, 413, "payload_too_large", &format!("{} 2 MiB of spaces", route.path))
            .await;

        let deep = [
            "[".repeat(10_000),
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)),
            format!(r#"{{"name": {}"x"{}}}"#, "[".repeat(5_000), "]".repeat(5_000)),
        ];
        for body in deep {
            let r = send(app, route, Some("application/json"), body).await;
            // Refused as too deep (400), or at the first value of the wrong type (422).
            let (status, code) = if r.status == 400 {
                (400, "malformed_json")
            } else {
                (422, "validation_failed")
            };
            s.refused(&r, status, code, &format!("{} deep", route.path)).await;
        }
        let good = route.valid.to_string();
        for body in [
            String::new(),
            " ".into(),
            good[..good.len() - 1].to_string(),
            format!("{good}{good}"),
            "{".into(),
            "nul\u{0}".into(),
        ] {
            let r = send(app, route, Some("application/json"), body.clone()).await;
            s.refused(&r, 400, "malformed_json", &format!("{} {body:?}", route.path))
                .await;
        }
        // Lone surrogates, escaped, in the first field: no string can hold them.
        let marked = with(&route.valid, &format!("/{first}"), json!("MARK")).to_string();
        for surrogate in [r"\ud800", r"\udc00x", r"x\udbff"] {
            let body = marked.replace("MARK", surrogate);
            let r = send(app, route, Some("application/json"), body).await;
            let what = format!("{} {first} = {surrogate}", route.path);
            s.refused(&r, 400, "malformed_json", &what).await;
        }
        let r = send(app, route, Some("application/json"), vec![0xff, 0xfe, b'{', b'}']).await;
        s.refused(&r, 400, "malformed_json", &format!("{} not UTF-8", route.path))
            .await;
        // Not an object, or the fields' values in an array, which serde alone would take.
        let in_order = format!(
            "[{}]",
            route
                .valid
                .as_object()
                .unwrap()
                .values()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        for body in ["null", "[]", "{}", "\"x\"", "0", "true", &in_order] {
            let r = send(app, route, Some("application/json"), body.to_string()).await;
            s.refused(&r, 422, "validation_failed", &format!("{} {body}", route.path))
                .await;
        }
    }
    s.all_valid_accepted().await;
}

#[sqlx::test]
async fn bodies_that_do_not_say_json_are_415s(pool: PgPool) {
    let s = Scene::new(pool).await;
    let app = &s.app;
    for route in &s.routes {
        let body = route.valid.to_string();
        for ct in [
            None,
            Some("text/plain"),
            Some("application/xml"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            Some("json"),
            Some(""),
        ] {
            let r = send(app, route, ct, body.clone()).await;
            let what = format!("{} as {ct:?}", route.path);
            s.refused(&r, 415, "unsupported_media_type", &what).await;
        }
    }
}

/// Amounts that are not a positive decimal string in the currency's precision.
fn bad_amounts() -> Vec<Value> {
    vec![
        json!(10),
        json!(10.5),
        json!(1e300),
        json!(-0.0),
        json!("1e400"),
        json!("1E3"),
        json!("1234567890123456789012345678901234567890"),
        json!("1234567890123456789012345678901234567890.00"),
        json!("0.0000000000000000000000000000000000000001"),
        json!("-0"),
        json!("-0.00"),
        json!("0"),
        json!("-10.00"),
        json!("10.001"),
        // A third decimal, though zero: more decimals than EUR has.
        json!("10.000"),
        json!("10.0000000000000000000000001"),
        json!("NaN"),
        json!("Infinity"),
        json!("-Infinity"),
        json!("１０"),
        json!("10\u{0}"),
        json!(" 10"),
        json!("10 "),
        json!("0x10"),
        json!("1_000"),
        json!("+10"),
        json!(""),
        json!(null),
        json!(true),
        json!(["10.00"]),
        json!({"amount": "10.00"}),
    ]
}

#[sqlx::test]
async fn huge_numbers_and_malformed_amounts_are_422s(pool: PgPool) {
    let s = Scene::new(pool).await;
    let amounts = [
        (s.route("/offers"), "/share_price"),
        (s.route("/offers"), "/min_target"),
        (s.route("/offers"), "/max_target"),
        (s.route("/offers"), "/min_ticket"),
        (s.route("/offers"), "/max_ticket"),
        (s.route("/pledges"), "/funding/0/amount"),
        (s.route("/deposits"), "/amount"),
        (s.route("/cheques"), "/face_value"),
    ];
    for (route, pointer) in amounts {
        // An optional amount may be null: absent.
        let optional = pointer == "/max_ticket";
        let values = bad_amounts()
            .into_iter()
            .filter(|a| !(optional && a.is_null()))
            .collect();
        s.refuse_each(route, pointer, values, 422, "validation_failed").await;
    }
    // Where zero is a fair value (a net worth, a fee rate), the rest is still refused.
    let zero = [json!("0"), json!("-0"), json!("-0.00")];
    for (route, pointer) in [
        (s.route("/investors"), "/net_worth/amount"),
        (s.route("/offers"), "/success_fee_rate"),
    ] {
        let values = bad_amounts().into_iter().filter(|a| !zero.contains(a)).collect();
        s.refuse_each(route, pointer, values, 422, "validation_failed").await;
    }
    // Whole numbers out of range, or not whole.
    let counts = [
        (s.route("/pledges"), "/shares"),
        (s.route("/offers"), "/payment_window_seconds"),
    ];
    for (route, pointer) in counts {
        let values = vec![
            json!(0),
            json!(-1),
            json!(1.5),
            json!(1e300),
            json!(i64::MIN),
            json!(u64::MAX),
            json!("2"),
        ];
        s.refuse_each(route, pointer, values, 422, "validation_failed").await;
    }
    // Numbers past any float are not even JSON the parser can read: 400, whatever the field.
    // Long integers and tiny ones are read as floats, and refused as such.
    let forty = "9".repeat(40);
    let four_hundred = "9".repeat(400);
    let huge: [(&str, u16, &str); 5] = [
        ("1e400", 400, "malformed_json"),
        ("-1e400", 400, "malformed_json"),
        (&four_hundred, 400, "malformed_json"),
        (&forty, 422, "validation_failed"),
        ("1e-400", 422, "validation_failed"),
    ];
    for (route, pointer) in amounts.iter().chain(&counts) {
        let marked = with(&route.valid, pointer, json!("HUGE")).to_string();
        for (number, status, code) in huge {
            let body = marked.replace("\"HUGE\"", number);
            let r = send(&s.app, route, Some("application/json"), body).await;
            s.refused(&r, status, code, &format!("{}{pointer} = {number:.12}", route.path))
                .await;
        }
    }
    s.all_valid_accepted().await;
}

/// Names that would show as something other than what they are, or not show at all.
fn tricky_names() -> Vec<String> {
    vec![
        // Right-to-left override: "Sens\u{202e}SAS" shows as "SensSAS" reversed after the mark.
        "Crois\u{202e}Sens".into(),
        "\u{202e}Crois/Sens".into(),
        "Crois\u{202d}Sens".into(),
        "Crois\u{2066}Sens\u{2069}".into(),
        "Crois\u{2067}Sens".into(),
        "Crois\u{202a}Sens\u{202c}".into(),
        // Invisible: nothing to show, or an invisible difference from another name.
        "\u{200d}".into(),
        "\u{200b}".into(),
        "\u{200d}\u{200d}\u{200c}".into(),
        "\u{feff}".into(),
        "\u{2060}".into(),
        "Crois/Sens\u{200b}".into(),
        "\u{200b}Crois/Sens".into(),
        "Crois\u{200b}Sens".into(),
        "\u{feff}Crois/Sens".into(),
        "\u{200d}Crois/Sens".into(),
        "Crois/Sens\u{200c}".into(),
        "Crois\u{200d}\u{200d}Sens".into(),
        // Control characters.
        "Crois\u{0}Sens".into(),
        "\u{0}".into(),
        "Crois\nSens".into(),
        "Crois\u{1b}[31mSens".into(),
        "Crois\u{85}Sens".into(),
        "Crois\u{7f}Sens".into(),
        // Empty, or only spaces.
        String::new(),
        " \t ".into(),
        "\u{3000}".into(),
        // Far too long: 100,000 characters, in one byte and in four.
        "x".repeat(100_000),
        "🌍".repeat(50_000),
    ]
}

#[sqlx::test]
async fn unicode_tricks_in_names_are_refused(pool: PgPool) {
    let s = Scene::new(pool).await;
    // 100,000 four-byte characters are over the body limit before they are a name.
    let (fits, too_big): (Vec<String>, Vec<String>) = tricky_names().into_iter().partition(|n| n.len() < 256 * 1024);
    let as_json = |names: &[String]| names.iter().map(|n| json!(n)).collect::<Vec<_>>();
    for (route, pointer) in [
        (s.route("/v1/projects"), "/name"),
        (s.route("/v1/projects"), "/legal_name"),
        (s.route("/v1/projects"), "/legal_form"),
        (s.route("/v1/projects"), "/territory"),
        (s.route("/v1/projects"), "/impact_indicators/0/name"),
        (s.route("/investors"), "/name"),
        (s.route("/v1/sponsors"), "/name"),
        (s.route("/cheques"), "/beneficiary_name"),
    ] {
        s.refuse_each(route, pointer, as_json(&fits), 422, "validation_failed")
            .await;
        s.refuse_each(route, pointer, as_json(&too_big), 413, "payload_too_large")
            .await;
    }
    // Codes are not names: the tricks are refused there too.
    for (route, pointer) in [
        (s.route("/v1/projects"), "/country"),
        (s.route("/deposits"), "/currency"),
    ] {
        s.refuse_each(route, pointer, as_json(&fits), 422, "validation_failed")
            .await;
    }
    // The tricks inside otherwise valid addresses.
    let tricks = [
        "\u{202e}", "\u{2066}", "\u{200f}", "\u{200b}", "\u{feff}", "\u{200d}", "\u{0}", "\n",
    ];
    let mut emails: Vec<Value> = tricks
        .iter()
        .flat_map(|t| {
            [
                format!("{t}lou@example.org"),
                format!("lou{t}@example.org"),
                format!("lou@example.org{t}"),
            ]
        })
        // Spaces around an address are trimmed, not refused.
        .filter(|e| e.trim() == e)
        .map(Value::from)
        .collect();
    emails.push(json!(format!("{}@example.org", "x".repeat(100_000))));
    for (route, pointer) in [
        (s.route("/investors"), "/email"),
        (s.route("/v1/sponsors"), "/email"),
        (s.route("/cheques"), "/beneficiary_email"),
    ] {
        s.refuse_each(route, pointer, emails.clone(), 422, "validation_failed")
            .await;
    }
    let endpoints = s.route("/webhook-endpoints");
    let mut urls: Vec<Value> = tricks
        .iter()
        .map(|t| json!(format!("https://127.0.0.1:9/ho{t}oks")))
        .collect();
    urls.extend([json!(format!("https://127.0.0.1:9/{}", "x".repeat(100_000))), json!("")]);
    s.refuse_each(endpoints, "/url", urls, 422, "validation_failed").await;
    let not_http = vec![
        json!("javascript:alert(1)"),
        json!("file:///etc/passwd"),
        json!("https://"),
        json!("127.0.0.1:9"),
    ];
    s.refuse_each(endpoints, "/url", not_http, 422, "invalid_target").await;
    for (route, pointer) in [
        (s.route("/v1/projects"), "/description"),
        (s.route("/cheques"), "/memo"),
    ] {
        let texts = vec![json!("A\u{0}B"), json!("d".repeat(100_000))];
        s.refuse_each(route, pointer, texts, 422, "validation_failed").await;
    }

    // Real names in many scripts are names: joiners between letters (Persian, emoji) stay.
    let sponsors = s.route("/v1/sponsors");
    for name in [
        "Zoë Ça-va d'Œuvre",
        "مریم\u{200c}ها",
        "क्\u{200d}ष",
        "👩\u{200d}🌾 Ferme",
        "שלום עליכם",
        "東京 ソーシャル",
    ] {
        let r = send_json(&s.app, sponsors, &with(&sponsors.valid, "/name", json!(name))).await;
        assert_eq!(r.status, 201, "{name:?} refused: {:#}", r.body);
        assert_eq!(r.body["name"], name);
    }
}

/// Sends a request exactly as written, path included: an HTTP client would resolve `../` and
/// `%2e%2e` itself before sending.
async fn raw(app: &TestApp, method: &str, path: &str, body: &str) -> Reply {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {OPERATOR_KEY}\r\n\
         idempotency-key: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        uuid::Uuid::new_v4(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            value.trim().parse().unwrap(),
        );
    }
    assert!(
        headers.get("transfer-encoding").is_none(),
        "{path}: a chunked reply, which this reader does not decode"
    );
    let content_type = headers
        .get("content-type")
        .map_or(String::new(), |v| v.to_str().unwrap().to_string());
    Reply {
        status: reqwest::StatusCode::from_u16(status).unwrap(),
        content_type,
        headers,
        body: serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    }
}

#[sqlx::test]
async fn junk_and_traversal_in_ids_are_404s(pool: PgPool) {
    let s = Scene::new(pool).await;
    let (app, w) = (&s.app, &s.world);
    let unknown = uuid::Uuid::now_v7().to_string();
    let junk = [
        "..".to_string(),
        "../..".into(),
        "../../../etc/passwd".into(),
        "%2e%2e".into(),
        "%2e%2e%2f".into(),
        "..%2F..%2Fetc%2Fpasswd".into(),
        "%252e%252e%252f".into(),
        "%c0%ae%c0%ae%c0%af".into(),
        "..\\..\\windows".into(),
        ".".into(),
        "%00".into(),
        format!("{unknown}%00"),
        format!("{}x", w.offer),
        format!("{}/", w.offer),
        format!("{{{}", w.offer),
        format!("{}-", w.offer),
        format!("{} ", w.offer).replace(' ', "%20"),
        format!("{}%0A", w.offer),
        "not-a-uuid".into(),
        "00000000-0000-0000-0000-00000000000g".into(),
        "%F0%9F%8C%8D".into(),
        "%EF%BC%91".into(),
        "1".repeat(10_000),
        format!("{}{}", w.offer, "0".repeat(10_000)),
        unknown.clone(),
    ];
    // Each route with a valid body, so only the id is wrong.
    let routes: Vec<(&str, &str, Value)> = vec![
        ("POST", "/v1/projects/{}/publish", json!({})),
        ("POST", "/v1/projects/{}/archive", json!({})),
        ("POST", "/v1/projects/{}/offers", s.route("/offers").valid.clone()),
        ("POST", "/v1/investors/{}/kyc", json!({"status": "verified"})),
        ("POST", "/v1/offers/{}/open", json!({})),
        ("POST", "/v1/offers/{}/close", json!({})),
        ("POST", "/v1/offers/{}/cancel", json!({})),
        ("POST", "/v1/offers/{}/payouts", json!({})),
        ("POST", "/v1/offers/{}/pledges", s.route("/pledges").valid.clone()),
        ("POST", "/v1/pledges/{}/revoke", json!({})),
        (
            "POST",
            "/v1/sponsors/{}/deposits",
            json!({"amount": "100.00", "currency": "EUR"}),
        ),
        ("POST", "/v1/cheques/{}/cancel", json!({})),
        ("POST", "/v1/webhook-endpoints/{}/rotate-secret", json!({})),
        ("POST", "/v1/webhook-deliveries/{}/redeliver", json!({})),
        ("POST", "/v1/sandbox/payments/{}/succeed", json!({})),
        ("POST", "/v1/sandbox/deposits/{}/succeed", json!({})),
        ("GET", "/v1/projects/{}", Value::Null),
        ("GET", "/v1/investors/{}", Value::Null),
        ("GET", "/v1/offers/{}", Value::Null),
        ("GET", "/v1/offers/{}/cap-table", Value::Null),
        ("GET", "/v1/pledges/{}", Value::Null),
        ("GET", "/v1/sponsors/{}", Value::Null),
        ("GET", "/v1/cheques/{}", Value::Null),
        ("GET", "/v1/webhook-endpoints/{}/deliveries", Value::Null),
        ("GET", "/v1/ledger/accounts/{}", Value::Null),
    ];
    for (method, template, body) in &routes {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        for id in &junk {
            let path = template.replace("{}", id);
            let r = raw(app, method, &path, &body).await;
            s.refused(&r, 404, "not_found", &format!("{method} {path:.120}")).await;
        }
    }
    // The same junk in query parameters that filter lists.
    for path in [
        "/v1/ledger/accounts?code_prefix=%00",
        "/v1/ledger/accounts?cursor=offer%00",
        "/v1/projects?territory=Brest%00",
        "/v1/projects?theme=..%2F",
        "/v1/projects?cursor=..%2F..%2F",
        "/v1/webhooks/quarantine?limit=1e400",
    ] {
        let r = raw(app, "GET", path, "").await;
        s.refused(&r, 422, "validation_failed", &format!("GET {path}")).await;
    }
    // Traversal in the provider's name of the inbound webhook route.
    for provider in [
        "..",
        "../sandbox",
        "%2e%2e",
        "sandbox%00",
        "SANDBOX",
        "sandbox%2f..",
        &"s".repeat(10_000),
    ] {
        let path = format!("/v1/webhooks/{provider}");
        let r = raw(app, "POST", &path, "{}").await;
        s.refused(&r, 404, "not_found", &format!("POST {path:.120}")).await;
    }
}

/// Posts `body` to the sandbox's inbound route with these webhook headers.
async fn deliver(app: &TestApp, provider: &str, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
    let mut req = app
        .client
        .post(format!("{}/v1/webhooks/{provider}", app.base))
        .body(body);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    common::read(req.send().await.unwrap()).await
}

/// The three Standard Webhooks headers of a correct signature of `body`, now.
fn signed(app: &TestApp, id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let secret: WebhookSecret = SANDBOX_SECRET.parse().unwrap();
    let ts = app.clock.now().timestamp();
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            signature::signature_header(&[&secret], id, ts, body),
        ),
    ]
}

#[sqlx::test]
async fn inbound_webhooks_refuse_bad_input_before_reading_it(pool: PgPool) {
    let app = spawn(pool).await;
    let before = snapshot(&app).await;
    let event = |payment: &str, amount: &str| {
        json!({"id": "evt_1", "type": "payment.succeeded", "created": 1,
               "data": {"payment_id": payment, "amount": amount, "currency": "EUR"}})
        .to_string()
        .into_bytes()
    };
    // Over the body limit, signed or not: refused before the signature is even computed.
    let big = event(&"p".repeat(300 * 1024), "10.00");
    for headers in [vec![], signed(&app, "evt_big", &big)] {
        for provider in ["sandbox", "stripe"] {
            let r = deliver(&app, provider, &headers, big.clone()).await;
            refused(
                &app,
                &before,
                &r,
                413,
                "payload_too_large",
                &format!("{provider}: oversized"),
            )
            .await;
        }
    }
    // Unsigned junk is never read: 401, whatever it holds.
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        "[".repeat(10_000).into_bytes(),
        event("pay_1", "1e400"),
        event("pay_1", "1234567890123456789012345678901234567890"),
        event("pay\u{0}1", "10.00"),
        br#"{"id": "\ud800"}"#.to_vec(),
        vec![0xff; 1024],
    ];
    let secret: WebhookSecret = SANDBOX_SECRET.parse().unwrap();
    let ts = app.clock.now().timestamp().to_string();
    for body in &bodies {
        let valid_elsewhere = signature::signature_header(&[&secret], "evt_1", 1, body);
        for headers in [
            vec![],
            vec![("webhook-id", "evt_1".to_string()), ("webhook-timestamp", ts.clone())],
            vec![
                ("webhook-id", "evt_1".to_string()),
                ("webhook-timestamp", ts.clone()),
                ("webhook-signature", "v1,".to_string() + &"A".repeat(10_000)),
            ],
            vec![
                ("webhook-id", "evt_1".to_string()),
                ("webhook-timestamp", "1e400".to_string()),
                ("webhook-signature", valid_elsewhere.clone()),
            ],
            vec![
                ("webhook-id", "../../evt_1".to_string()),
                ("webhook-timestamp", ts.clone()),
                ("webhook-signature", valid_elsewhere.clone()),
            ],
            vec![("stripe-signature", format!("t={ts},v1={}", "0".repeat(64)))],
        ] {
            for provider in ["sandbox", "stripe"] {
                let r = deliver(&app, provider, &headers, body.clone()).await;
                let what = format!(
                    "{provider}: unsigned {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(40)])
                );
                refused(&app, &before, &r, 401, "invalid_signature", &what).await;
            }
        }
    }
}

#[sqlx::test]
async fn signed_events_with_hostile_contents_are_quarantined_not_failed(pool: PgPool) {
    let app = spawn(pool).await;
    let ledger = app.row_counts().await;
    let event = |id: &str, kind: &str, payment: &str, amount: &str, currency: &str| {
        json!({"id": id, "type": kind, "created": 1,
               "data": {"payment_id": payment, "amount": amount, "currency": currency}})
        .to_string()
        .into_bytes()
    };
    let succeeded = |id: &str, payment: &str, amount: &str, currency: &str| {
        (
            id.to_string(),
            event(id, "payment.succeeded", payment, amount, currency),
        )
    };
    let hostile: Vec<(String, Vec<u8>)> = vec![
        succeeded("evt_nul_payment", "pay\u{0}1", "10.00", "EUR"),
        succeeded("evt_huge", "pay_1", "1e400", "EUR"),
        succeeded("evt_digits", "pay_1", &"9".repeat(40), "EUR"),
        succeeded("evt_decimals", "pay_1", "10.001", "EUR"),
        succeeded("evt_minus_zero", "pay_1", "-0.00", "EUR"),
        succeeded("evt_nul_amount", "pay_1", "1\u{0}", "EUR"),
        succeeded("evt_nul_currency", "pay_1", "10.00", "E\u{0}R"),
        succeeded("evt_long_payment", &"p".repeat(100_000), "10.00", "EUR"),
        (
            "evt_nul_type".into(),
            event("evt_nul_type", "payment.\u{0}succeeded", "pay_1", "10.00", "EUR"),
        ),
        (
            "evt_rtl".into(),
            event("evt_rtl", "refund.succeeded", "\u{202e}re_1", "10.00", "EUR"),
        ),
        (
            "evt_long_payout".into(),
            event("evt_long_payout", "payout.paid", &"p".repeat(100_000), "10.00", "EUR"),
        ),
        (
            "evt_deep".into(),
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        ),
        ("evt_empty".into(), Vec::new()),
    ];
    for (id, body) in &hostile {
        let r = deliver(&app, "sandbox", &signed(&app, id, body), body.clone()).await;
        assert_eq!(r.status, 200, "{id}: {:#}", r.body);
        assert_eq!(r.body["outcome"], "quarantined", "{id}: {:#}", r.body);
        // An id the database could not hold is replaced by the body's hash.
        let kept = r.body["event_id"].as_str().unwrap();
        assert!(kept == id || kept.starts_with("unreadable:"), "{id}: {:#}", r.body);
        assert!(!kept.contains('\0'));
        // A repeat is a repeat, whatever the id it was kept under.
        let again = deliver(&app, "sandbox", &signed(&app, id, body), body.clone()).await;
        assert_eq!(again.body["duplicate"], true, "{id}: {:#}", again.body);
    }
    // Event ids the database cannot store or index: empty, NUL, 10,000 characters.
    for id in ["", "evt\u{0}", &"e".repeat(10_000)] {
        let body = event(id, "payment.succeeded", "pay_1", "10.00", "EUR");
        let header_id = if id.is_empty() || id.contains('\0') {
            "evt_odd"
        } else {
            id
        };
        let r = deliver(&app, "sandbox", &signed(&app, header_id, &body), body).await;
        assert_eq!(r.status, 200, "{id:.20?}: {:#}", r.body);
        assert_eq!(r.body["outcome"], "quarantined", "{id:.20?}: {:#}", r.body);
        assert!(r.body["event_id"].as_str().unwrap().starts_with("unreadable:"));
    }
    assert_eq!(app.row_counts().await, ledger, "a hostile event touched the ledger");
    let listed = app.get("/v1/webhooks/quarantine?limit=1000").await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), hostile.len() + 3);
    app.assert_books_verify().await;
}
