//! The finishing touches of the OpenAPI document that utoipa's derives do not write: links from
//! each operation that makes (or lists) an object to the operations that take its id, so a
//! client generator or a fuzzer's stateful phase can follow a create with real ids.

use serde_json::{Value, json};

/// Where ids come from and where they go: the operation (`METHOD path`) and status whose
/// response holds the id, the path every operation taking it starts with, and where in the
/// response the id is (an OpenAPI runtime expression).
const LINKS: &[(&str, &str, &str, &str)] = &[
    ("POST /v1/projects", "201", "/v1/projects/{id}", "$response.body#/id"),
    (
        "POST /v1/projects/{id}/offers",
        "201",
        "/v1/offers/{id}",
        "$response.body#/id",
    ),
    ("POST /v1/investors", "201", "/v1/investors/{id}", "$response.body#/id"),
    (
        "POST /v1/offers/{id}/pledges",
        "201",
        "/v1/pledges/{id}",
        "$response.body#/id",
    ),
    (
        "POST /v1/offers/{id}/pledges",
        "201",
        "/v1/sandbox/payments/{id}",
        "$response.body#/payment/payment_id",
    ),
    ("POST /v1/sponsors", "201", "/v1/sponsors/{id}", "$response.body#/id"),
    (
        "POST /v1/sponsors/{id}/deposits",
        "201",
        "/v1/deposits/{id}",
        "$response.body#/id",
    ),
    (
        "POST /v1/sponsors/{id}/deposits",
        "201",
        "/v1/sandbox/deposits/{id}",
        "$response.body#/payment/payment_id",
    ),
    ("POST /v1/cheques", "201", "/v1/cheques/{id}", "$response.body#/id"),
    (
        "POST /v1/ledger/accounts",
        "201",
        "/v1/ledger/accounts/{id}",
        "$response.body#/id",
    ),
    (
        "POST /v1/ledger/entries",
        "201",
        "/v1/ledger/entries/{id}",
        "$response.body#/id",
    ),
    (
        "POST /v1/webhook-endpoints",
        "201",
        "/v1/webhook-endpoints/{id}",
        "$response.body#/id",
    ),
    (
        "GET /v1/webhook-endpoints/{id}/deliveries",
        "200",
        "/v1/webhook-deliveries/{id}",
        "$response.body#/items/0/id",
    ),
    (
        "POST /v1/offers/{id}/payouts",
        "201",
        "/v1/sandbox/payouts/{id}",
        "$response.body#/payment/payment_id",
    ),
    (
        "POST /v1/offers/{id}/payouts",
        "201",
        "/v1/payouts/{id}",
        "$response.body#/id",
    ),
    ("POST /v1/api-keys", "201", "/v1/api-keys/{id}", "$response.body#/id"),
    // Lists: the first item's id, for objects no create answers with (refunds) and for ids a
    // fuzzer should also reach from a read.
    ("GET /v1/refunds", "200", "/v1/refunds/{id}", FIRST_ITEM),
    ("GET /v1/refunds", "200", "/v1/sandbox/refunds/{id}", FIRST_ITEM),
    ("GET /v1/payouts", "200", "/v1/payouts/{id}", FIRST_ITEM),
    ("GET /v1/projects", "200", "/v1/projects/{id}", FIRST_ITEM),
    ("GET /v1/offers", "200", "/v1/offers/{id}", FIRST_ITEM),
    ("GET /v1/projects/{id}/offers", "200", "/v1/offers/{id}", FIRST_ITEM),
    ("GET /v1/investors", "200", "/v1/investors/{id}", FIRST_ITEM),
    ("GET /v1/investors/{id}/pledges", "200", "/v1/pledges/{id}", FIRST_ITEM),
    ("GET /v1/offers/{id}/pledges", "200", "/v1/pledges/{id}", FIRST_ITEM),
    ("GET /v1/sponsors", "200", "/v1/sponsors/{id}", FIRST_ITEM),
    ("GET /v1/sponsors/{id}/cheques", "200", "/v1/cheques/{id}", FIRST_ITEM),
    ("GET /v1/sponsors/{id}/deposits", "200", "/v1/deposits/{id}", FIRST_ITEM),
    (
        "GET /v1/webhook-endpoints",
        "200",
        "/v1/webhook-endpoints/{id}",
        FIRST_ITEM,
    ),
    ("GET /v1/ledger/accounts", "200", "/v1/ledger/accounts/{id}", FIRST_ITEM),
    // No operation answers with an event: they are made by the others, and listed.
    ("GET /v1/events", "200", "/v1/events/{id}", FIRST_ITEM),
];

const FIRST_ITEM: &str = "$response.body#/items/0/id";

/// Adds [`LINKS`] to the document; returns the links whose source operation or response is not
/// in it (none, in a document that matches the table: a test checks). A link with no operation
/// to go to (the sandbox's, under a system clock) is left out.
pub fn add_links(doc: &mut Value) -> Vec<&'static str> {
    let mut unapplied = Vec::new();
    let targets: Vec<(String, String, String)> = operations(doc);
    for (source, status, prefix, expression) in LINKS {
        let (method, path) = source.split_once(' ').expect("METHOD path");
        let taking: Vec<&(String, String, String)> = targets
            .iter()
            .filter(|(_, p, _)| p == prefix || p.starts_with(&format!("{prefix}/")))
            .collect();
        let response = doc.pointer_mut(&format!(
            "/paths/{}/{}/responses/{status}",
            escape(path),
            method.to_lowercase()
        ));
        let Some(response) = response else {
            unapplied.push(*source);
            continue;
        };
        let links = response
            .as_object_mut()
            .expect("a response is an object")
            .entry("links")
            .or_insert_with(|| json!({}));
        for (_, _, operation_id) in taking {
            links[operation_id.as_str()] = json!({
                "operationId": operation_id,
                "parameters": { "id": expression },
            });
        }
    }
    unapplied
}

/// Every operation as (method, path, operationId).
fn operations(doc: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if let Some(id) = op["operationId"].as_str() {
                out.push((method.clone(), path.clone(), id.to_string()));
            }
        }
    }
    out
}

/// A path as a JSON pointer token: `~` → `~0`, `/` → `~1`.
fn escape(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}
