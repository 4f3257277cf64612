//! Shared test harness: the real app on port 0 over a fresh database, an HTTP client, world
//! builders (`fixtures`) and `race` for concurrent requests.
// The API binary uses all of it (checked: without this line it has no dead code); the ledger,
// secrets_in_logs and bench_smoke binaries use parts.
#![allow(dead_code)]

pub mod fixtures;
pub mod providers;
pub mod sandbox;

use std::time::Duration;

use crowdledger::clock::Clock;
use crowdledger::config::Settings;
use crowdledger::keys::{self, Role};
use crowdledger::{App, launch};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;

pub const OPERATOR_KEY: &str = "test-bootstrap-operator-key-0123456789abcdef";

pub fn settings(extra: &[(&str, &str)]) -> Settings {
    let mut env: Vec<(String, String)> = vec![
        ("CROWDLEDGER__AUTH__BOOTSTRAP_OPERATOR_KEY".into(), OPERATOR_KEY.into()),
        ("CROWDLEDGER__CLOCK__MODE".into(), "manual".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let lookup = env.clone();
    Settings::load_from(
        move |n| lookup.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()),
        env,
    )
    .unwrap()
}

pub struct TestApp {
    pub base: String,
    pub metrics_base: String,
    pub client: reqwest::Client,
    /// The test's own pool, as the database's owner: fixtures and inspection. The app itself
    /// serves through a pool logged in as [`SERVICE_ROLE`].
    pub pool: PgPool,
    pub clock: Clock,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn spawn(pool: PgPool) -> TestApp {
        TestApp::spawn_with(pool, &[]).await
    }

    pub async fn spawn_with(pool: PgPool, extra: &[(&str, &str)]) -> TestApp {
        // Every HTTP test thereby shows the service works with the least privilege it is given.
        let serving = service_pool(&pool).await;
        TestApp::spawn_serving(pool, serving, extra).await
    }

    /// The app serving through `serving` (e.g. a pool on a database out of reach), while the
    /// test reads and writes through `pool`.
    pub async fn spawn_serving(pool: PgPool, serving: PgPool, extra: &[(&str, &str)]) -> TestApp {
        let settings = settings(extra);
        let clock = Clock::new(settings.clock.mode);
        let app = App::with_pool(&settings, serving, clock.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metrics_base = format!("http://{}", metrics.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(launch(app, listener, Some(metrics), async {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        TestApp {
            base,
            metrics_base,
            client,
            pool,
            clock,
            _shutdown: tx,
        }
    }

    pub async fn key(&self, role: Role) -> String {
        let mut conn = self.pool.acquire().await.unwrap();
        let created = keys::create(&mut conn, "test", role, self.clock.now()).await.unwrap();
        created.key.expose_secret().to_string()
    }

    pub async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Option<&Value>) -> Reply {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        read(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(OPERATOR_KEY), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(OPERATOR_KEY), Some(&body)).await
    }

    /// Sends raw bytes with the given content type, as a misbehaving client would.
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
        let mut req = self
            .client
            .post(format!("{}{}", self.base, path))
            .bearer_auth(OPERATOR_KEY)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        read(req.send().await.unwrap()).await
    }

    /// Counts of rows a failed request must not have written.
    pub async fn row_counts(&self) -> (i64, i64, i64) {
        sqlx::query_as(
            "select (select count(*) from ledger_accounts), (select count(*) from ledger_entries),
                    (select count(*) from ledger_postings)",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Polls `path` until `done` holds for its body (background jobs act within a second).
    pub async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.get(path).await;
            if r.status == 200 && done(&r.body) {
                return r.body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gave up waiting on {path}: {:#}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Calls `fetch` until `done` holds for what it returns (or gives up after 20 s).
    pub async fn wait_for_value<T: std::fmt::Debug, Fut: std::future::Future<Output = T>>(
        &self,
        fetch: impl Fn() -> Fut,
        done: impl Fn(&T) -> bool,
    ) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let value = fetch().await;
            if done(&value) {
                return value;
            }
            assert!(std::time::Instant::now() < deadline, "gave up waiting: {value:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn assert_books_verify(&self) {
        let r = self.get("/v1/ledger/verify").await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["ok"], true, "ledger invariants broken: {:#}", r.body);
    }
}

pub async fn read(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        content_type,
        headers,
        body,
    }
}

impl Reply {
    /// Asserts a problem+json error with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {:#}", self.body);
        assert_eq!(self.content_type, "application/problem+json", "body: {:#}", self.body);
        assert_eq!(self.body["code"], code, "body: {:#}", self.body);
        assert_eq!(self.body["status"], status);
        for field in ["type", "title", "detail"] {
            assert!(self.body[field].is_string(), "problem lacks {field}: {:#}", self.body);
        }
    }
}

/// The login the service uses (scripts/lib/pg.sh creates it in the test cluster): a member of
/// `crowdledger_app`, owner of nothing, no superuser (docs/database-roles.md).
pub use crowdledger_testkit::SERVICE_ROLE;

/// A pool on the same database as `pool`, as large, logged in as [`SERVICE_ROLE`]. When the app
/// holding it stops, its connections close, and `#[sqlx::test]` can drop the database (which
/// waits a few seconds for other sessions to end).
pub async fn service_pool(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(pool.options().get_max_connections())
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_with(pool.connect_options().as_ref().clone().username(SERVICE_ROLE))
        .await
        .unwrap_or_else(|e| panic!("logging in as {SERVICE_ROLE} (scripts/lib/pg.sh creates it): {e}"))
}

/// Runs `request(0)` to `request(n - 1)` at once and returns their results in that order. Each
/// waits at a barrier until all `n` have started, so they reach the service together rather
/// than as fast as they happen to be sent: what the concurrency tests need to make requests race.
pub async fn race<T, Fut: Future<Output = T>>(n: usize, request: impl Fn(usize) -> Fut) -> Vec<T> {
    let barrier = tokio::sync::Barrier::new(n);
    let barrier = &barrier;
    futures::future::join_all((0..n).map(|i| {
        let request = request(i);
        async move {
            barrier.wait().await;
            request.await
        }
    }))
    .await
}

/// A pool with room for many concurrent writers, on the same database as `pool`.
pub async fn wide_pool(pool: &PgPool, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap()
}

// Each test binary uses part of the harness (as `#![allow(dead_code)]` above says).
#[allow(unused_imports)]
pub use crowdledger_testkit::{database_url, free_port, service_url};

/// `crowdledger serve` as a child process (crowdledger-testkit's), running the binary Cargo
/// built for these very tests.
pub struct Served;

impl Served {
    /// Starts `crowdledger serve` on `pool`'s database, logged in as [`SERVICE_ROLE`], with the
    /// bootstrap key `key`, and waits until ready.
    pub async fn start(pool: &PgPool, key: &str) -> crowdledger_testkit::Served {
        Served::start_with(pool, key, &[]).await
    }

    /// Like `start`, with extra environment variables (settings).
    pub async fn start_with(pool: &PgPool, key: &str, env: &[(&str, &str)]) -> crowdledger_testkit::Served {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_crowdledger"));
        crowdledger_testkit::Served::start_binary(bin, pool, key, env).await
    }
}

/// Every `$ref` reachable from `node` names a schema of the OpenAPI document `doc`.
pub fn assert_refs_resolve(doc: &Value, node: &Value) {
    fn walk(doc: &Value, node: &Value, seen: &mut std::collections::HashSet<String>) {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    let name = target
                        .strip_prefix("#/components/schemas/")
                        .unwrap_or_else(|| panic!("unexpected $ref {target}"));
                    let schema = &doc["components"]["schemas"][name];
                    assert!(!schema.is_null(), "$ref {target} names no schema");
                    if seen.insert(name.to_string()) {
                        walk(doc, schema, seen);
                    }
                }
                map.values().for_each(|v| walk(doc, v, seen));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v, seen)),
            _ => {}
        }
    }
    walk(doc, node, &mut std::collections::HashSet::new());
}

/// Sends a request with exactly these headers (no key unless one is among them).
pub async fn send(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Reply {
    let mut req = app.client.request(method, format!("{}{}", app.base, path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    read(req.send().await.unwrap()).await
}

/// Sends a request with `key` as its bearer key, plus these headers.
pub async fn send_as(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    let auth = format!("Bearer {key}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    send(app, method, path, &all, body).await
}

/// Asserts a JSON (not problem) reply with this status.
pub fn assert_json(r: &Reply, status: u16) {
    assert_eq!(r.status.as_u16(), status, "body: {:#}", r.body);
    assert_eq!(r.content_type, "application/json", "body: {:#}", r.body);
}

/// The `id` of a created resource.
pub fn id_of(r: &Reply) -> String {
    r.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {:#}", r.body))
        .to_string()
}
