//! Stripe's request bodies: `application/x-www-form-urlencoded` with bracketed keys for nesting
//! (`metadata[pledge_id]=…`, `a[b][c]=…`) and indexes for lists (`a[0]=…`, or `a[]=…` as in
//! Stripe's curl examples), decoded into JSON values so that handlers read them like a JSON body
//! and the idempotency layer compares them structurally.
//!
//! Source: stripe-node `src/utils.ts` `stringifyRequestData` (docs/providers/stripe-api.md section 2).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A key whose brackets cannot be read, or that mixes shapes (`a=1&a[b]=2`, `a[0]=1&a[b]=2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    /// The key as it was sent.
    pub param: String,
}

enum Node {
    Leaf(String),
    Map(BTreeMap<String, Node>),
    List(BTreeMap<usize, Node>),
}

/// Decodes a form body (or a query string) into a JSON object: every value is a string, nested
/// keys become objects, indexed keys become arrays in index order. Percent-encoded brackets are
/// read like plain ones; a repeated plain key keeps its last value.
pub fn decode(body: &[u8]) -> Result<Map<String, Value>, FormError> {
    let mut root = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(body) {
        let error = || FormError { param: key.to_string() };
        let path = split_key(&key).ok_or_else(error)?;
        let (first, rest) = path.split_first().ok_or_else(error)?;
        if first.is_empty() {
            return Err(error());
        }
        let slot = root.entry(first.clone()).or_insert_with(|| empty_for(rest.first()));
        insert(slot, rest, value.into_owned()).ok_or_else(error)?;
    }
    Ok(root.into_iter().map(|(k, node)| (k, into_value(node))).collect())
}

/// `a[b][0]` → `["a", "b", "0"]`; `None` when a bracket is left open or text follows a `]`.
fn split_key(key: &str) -> Option<Vec<String>> {
    let (head, mut rest) = match key.find('[') {
        Some(at) => key.split_at(at),
        None => return Some(vec![key.to_owned()]),
    };
    let mut path = vec![head.to_owned()];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let close = inner.find(']')?;
        path.push(inner[..close].to_owned());
        rest = &inner[close + 1..];
    }
    Some(path)
}

/// The container a key segment implies: a list for `[]` or `[n]`, an object otherwise.
fn empty_for(segment: Option<&String>) -> Node {
    match segment {
        None => Node::Leaf(String::new()),
        Some(s) if s.is_empty() || s.parse::<usize>().is_ok() => Node::List(BTreeMap::new()),
        Some(_) => Node::Map(BTreeMap::new()),
    }
}

fn insert(node: &mut Node, path: &[String], value: String) -> Option<()> {
    let Some((segment, rest)) = path.split_first() else {
        return match node {
            Node::Leaf(old) => {
                *old = value;
                Some(())
            }
            _ => None,
        };
    };
    let child = match node {
        Node::Map(map) if !segment.is_empty() => map.entry(segment.clone()).or_insert_with(|| empty_for(rest.first())),
        Node::List(list) => {
            // `a[]` appends; an explicit index may arrive in any order.
            let index = if segment.is_empty() {
                list.len()
            } else {
                segment.parse().ok()?
            };
            list.entry(index).or_insert_with(|| empty_for(rest.first()))
        }
        _ => return None,
    };
    insert(child, rest, value)
}

fn into_value(node: Node) -> Value {
    match node {
        Node::Leaf(s) => Value::String(s),
        Node::Map(map) => Value::Object(map.into_iter().map(|(k, n)| (k, into_value(n))).collect()),
        Node::List(list) => Value::Array(list.into_values().map(into_value).collect()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decoded(body: &str) -> Value {
        Value::Object(decode(body.as_bytes()).unwrap())
    }

    #[test]
    fn nested_keys_become_objects_and_indexes_become_arrays() {
        let body = "amount=12050&currency=eur&metadata[pledge_id]=p1&metadata[payment_id]=p2\
            &allowed_payment_method_types[1]=customer_balance&allowed_payment_method_types[0]=card\
            &payment_method_options[customer_balance][bank_transfer][eu_bank_transfer][country]=FR";
        assert_eq!(
            decoded(body),
            json!({
                "amount": "12050",
                "currency": "eur",
                "metadata": {"pledge_id": "p1", "payment_id": "p2"},
                "allowed_payment_method_types": ["card", "customer_balance"],
                "payment_method_options": {"customer_balance": {"bank_transfer": {"eu_bank_transfer": {"country": "FR"}}}},
            })
        );
    }

    #[test]
    fn encoded_brackets_and_empty_brackets_read_like_plain_indexes() {
        assert_eq!(
            decoded("expand%5B%5D=latest_charge&expand[]=customer&metadata%5Bk%5D=a%20b"),
            json!({"expand": ["latest_charge", "customer"], "metadata": {"k": "a b"}})
        );
    }

    #[test]
    fn arrays_of_objects_keep_their_fields_together() {
        assert_eq!(
            decoded("items[0][price]=a&items[1][price]=b&items[0][quantity]=2"),
            json!({"items": [{"price": "a", "quantity": "2"}, {"price": "b"}]})
        );
    }

    #[test]
    fn keys_that_mix_shapes_or_leave_a_bracket_open_are_refused() {
        for body in ["a=1&a[b]=2", "a[b]=1&a=2", "a[0]=1&a[b]=2", "a[b=1", "a[b]c=1", "[a]=1"] {
            assert!(decode(body.as_bytes()).is_err(), "{body}");
        }
    }
}
