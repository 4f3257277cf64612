//! The document is the behaviour: the committed `docs/openapi.json` is what a production
//! service serves (a change to the API shows in review as a change to that file), and every
//! route that honours an `Idempotency-Key` declares it.
//!
//! After a change to the API: `UPDATE_OPENAPI=1 cargo test --test api openapi::` rewrites the
//! committed copy.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::Value;
use sqlx::PgPool;

use crate::common::{TestApp, send};

fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

/// Where two documents first differ, as a JSON pointer.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => {
                        if let Some(d) = first_difference(p, q, &here) {
                            return Some(d);
                        }
                    }
                    _ => return Some(here),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}/{i}"))),
        _ => (a != b).then(|| at.to_string()),
    }
}

#[sqlx::test]
async fn the_committed_document_is_the_one_served(pool: PgPool) {
    let app = TestApp::spawn_with(pool, &[("CROWDLEDGER__CLOCK__MODE", "system")]).await;
    let served = send(&app, Method::GET, "/openapi.json", &[], None).await;
    assert_eq!(served.status, 200);
    let path = committed();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        let text = serde_json::to_string_pretty(&served.body).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).expect("docs/openapi.json is committed");
    let committed: Value = serde_json::from_str(&text).expect("docs/openapi.json is JSON");
    if let Some(at) = first_difference(&committed, &served.body, "") {
        panic!(
            "docs/openapi.json differs from the served document at {at}: committed {}, served {}; \
             if the API change is meant, run UPDATE_OPENAPI=1 cargo test --test api openapi:: and commit it",
            committed.pointer(&at).unwrap_or(&Value::Null),
            served.body.pointer(&at).unwrap_or(&Value::Null),
        );
    }
}

/// Every handler taking an idempotency key (`MaybeKey`, `RequiredKey`) declares the
/// `Idempotency-Key` header in its `#[utoipa::path]`: read from the source, where both are.
#[test]
fn every_route_honouring_an_idempotency_key_declares_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut undeclared = Vec::new();
    let mut honouring = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, chunk) in text.split("#[utoipa::path(").enumerate().skip(1) {
            // The attribute and the handler's signature, up to its body.
            let signature = chunk.split(") -> ").next().unwrap_or(chunk);
            if signature.contains("MaybeKey") || signature.contains("RequiredKey") {
                honouring += 1;
                let attribute = chunk.split("async fn").next().unwrap_or(chunk);
                if !attribute.contains("\"Idempotency-Key\"") {
                    undeclared.push(format!("{} (path attribute {i})", file.display()));
                }
            }
        }
    }
    assert!(
        honouring >= 10,
        "found only {honouring} handlers taking a key: is the scan still right?"
    );
    assert_eq!(undeclared, Vec::<String>::new());
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
