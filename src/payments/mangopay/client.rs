//! Mangopay, the transport: JSON in PascalCase under `{api_base}/v2.01/{ClientId}/`, a Bearer
//! token from `token`, and objects created under an idempotency key that Mangopay spends on its
//! first use, whatever that use answered (docs/providers/mangopay-api.md sections 1–4).
//!
//! A key is `uuid_v5(namespace, "<step>:<our uuid>:<generation>")`: one per step of a call (a
//! user, a wallet, a pay-in, …) and per generation of the call's key (`provider_calls
//! .key_generation`). Mangopay never replays a key's first answer; a repeat gets 409, and the
//! first answer is read from `GET responses/{key}`. So, on a timeout, a 409 or a 5xx, that
//! answer decides: 2xx, the object is adopted; 4xx or 5xx, the key is spent on a failure and the
//! next try needs the next generation (`CallError::Retry { new_key: true }`); 404, the request
//! never reached Mangopay, and the same key is used again. A step that succeeded under an
//! earlier generation (a transfer made before the payout that follows it failed) is found again
//! the same way, never made twice.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use uuid::Uuid;

use super::token::Tokens;
use crate::payments::calls::CallError;
use crate::payments::wire::{not_sent, without_url};

/// Namespace of our idempotency keys at Mangopay.
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x1eadf93f_d1e3_4b71_84fc_8ba8cd44e1c3);

/// How many requests' time a whole call may take: a call is a few requests in sequence (the
/// parties it needs first, then its object), and a lease must outlast it.
const REQUESTS_PER_CALL: u32 = 4;

pub struct MangopayClient {
    http: reqwest::Client,
    /// `{api_base}/v2.01/{ClientId}`.
    api: String,
    tokens: Tokens,
    /// Where the hosted card page sends the investor back; a payment cannot be made without it.
    pub(super) return_url: Option<String>,
    /// The hosted card page's language.
    pub(super) culture: String,
    timeout: Duration,
}

/// One step of a call: what it creates, for which of our ids; its key follows.
#[derive(Clone, Copy)]
pub(super) struct Step<'a> {
    pub kind: &'a str,
    pub ours: Uuid,
}

impl Step<'_> {
    /// The step's idempotency key under the call's key generation: 36 characters, as Mangopay
    /// takes (16 to 36 letters, digits or dashes).
    pub fn key(&self, generation: i32) -> String {
        let name = format!("{}:{}:{generation}", self.kind, self.ours);
        Uuid::new_v5(&KEY_NAMESPACE, name.as_bytes()).to_string()
    }
}

/// An answer from the API.
struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// Why no answer came.
enum NoReply {
    /// The request never left: nothing can have been done.
    NotSent(CallError),
    /// Sent, and no answer came back (a timeout): Mangopay may have acted.
    Lost(String),
    /// No token to send it with.
    Token(CallError),
}

/// The first answer under a key, as `responses/{key}` keeps it.
enum Saved {
    Created(Value),
    Failed {
        status: u16,
        why: String,
    },
    /// No request under that key reached Mangopay.
    Never,
}

impl MangopayClient {
    pub fn new(
        api_base: &str,
        client_id: &str,
        api_key: SecretString,
        return_url: Option<String>,
        culture: &str,
        timeout: Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("a plain HTTP client builds");
        let api_base = api_base.trim_end_matches('/');
        MangopayClient {
            tokens: Tokens::new(http.clone(), api_base, client_id, api_key),
            http,
            api: format!("{api_base}/v2.01/{client_id}"),
            return_url,
            culture: culture.to_owned(),
            timeout,
        }
    }

    /// How long one whole call may take.
    pub(super) fn call_timeout(&self) -> Duration {
        self.timeout * REQUESTS_PER_CALL
    }

    /// One request with the current token; with a renewed one once more if Mangopay refuses it.
    async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, NoReply> {
        let mut token = self.tokens.get().await.map_err(NoReply::Token)?;
        let mut renewed = false;
        loop {
            let mut request = self
                .http
                .request(method.clone(), format!("{}/{path}", self.api))
                .bearer_auth(token.access.expose_secret());
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(err) if err.is_connect() => return Err(NoReply::NotSent(not_sent("Mangopay", &err))),
                Err(err) => return Err(NoReply::Lost(without_url(&err))),
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !renewed {
                // Expired or revoked before its time: Mangopay checks the token before the key,
                // so the same request may go again.
                token = self.tokens.renew(&token).await.map_err(NoReply::Token)?;
                renewed = true;
                continue;
            }
            let headers = response.headers().clone();
            let bytes = response.bytes().await.map_err(|e| NoReply::Lost(without_url(&e)))?;
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Ok(Reply { status, headers, body });
        }
    }

    /// `GET path`: the object, or None when Mangopay has no such object (404, or 400 for an id
    /// it cannot read).
    pub(super) async fn read(&self, path: &str) -> Result<Option<Value>, CallError> {
        match self.request(Method::GET, path, None, None).await {
            Ok(reply) if reply.status.is_success() => Ok(Some(reply.body)),
            Ok(reply) if matches!(reply.status, StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST) => Ok(None),
            Ok(reply) => Err(refusal(&reply)),
            Err(NoReply::NotSent(err) | NoReply::Token(err)) => Err(err),
            Err(NoReply::Lost(why)) => Err(CallError::Unknown { why }),
        }
    }

    /// Creates an object by `POST path` under `step`'s key for `generation`, or adopts the one a
    /// request under this key, or an earlier generation's, created.
    pub(super) async fn create(
        &self,
        step: Step<'_>,
        generation: i32,
        path: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        for earlier in 0..generation {
            if let Saved::Created(object) = self.saved(&step.key(earlier)).await? {
                return Ok(object);
            }
        }
        let key = step.key(generation);
        match self.request(Method::POST, path, Some(&key), Some(body)).await {
            Ok(reply) if reply.status.is_success() => Ok(reply.body),
            Ok(reply) if reply.status == StatusCode::CONFLICT || reply.status.is_server_error() => {
                self.recover(&key, refusal(&reply)).await
            }
            Ok(reply) => Err(refusal(&reply)),
            Err(NoReply::NotSent(err) | NoReply::Token(err)) => Err(err),
            Err(NoReply::Lost(why)) => self.recover(&key, CallError::Unknown { why }).await,
        }
    }

    /// What became of a request under `key` that got no clear answer (`meanwhile`).
    async fn recover(&self, key: &str, meanwhile: CallError) -> Result<Value, CallError> {
        match self.saved(key).await {
            Ok(Saved::Created(object)) => Ok(object),
            Ok(Saved::Failed { status, why }) => Err(CallError::Retry {
                status: Some(status),
                after: None,
                new_key: true,
                why: format!("Mangopay's first answer under our key was {status}, which spent it: {why}"),
            }),
            Ok(Saved::Never) => Err(CallError::Retry {
                status: meanwhile.status(),
                after: None,
                new_key: false,
                why: format!("{meanwhile}; Mangopay never received it"),
            }),
            Err(_) => Err(meanwhile),
        }
    }

    /// `GET responses/{key}`: the first answer given under `key`.
    async fn saved(&self, key: &str) -> Result<Saved, CallError> {
        let Some(saved) = self.read(&format!("responses/{key}")).await? else {
            return Ok(Saved::Never);
        };
        // Mangopay writes the status as a string ("200").
        let status = match &saved["StatusCode"] {
            Value::String(s) => s.parse::<u16>().ok(),
            other => other.as_u64().and_then(|s| u16::try_from(s).ok()),
        };
        match status {
            Some(status) if (200..300).contains(&status) => Ok(Saved::Created(saved["Resource"].clone())),
            Some(status) => Ok(Saved::Failed {
                status,
                why: message(&saved["Resource"]),
            }),
            None => Err(CallError::Unknown {
                why: "Mangopay's saved response has no StatusCode".into(),
            }),
        }
    }
}

/// What a refusal means for the call (docs/providers/mangopay-api.md section 4): a rate limit, an
/// outage or a key in use (409, when its first answer cannot be read) is waited out; anything
/// else no repeat cures.
fn refusal(reply: &Reply) -> CallError {
    let status = Some(reply.status.as_u16());
    let why = format!("Mangopay answered {}: {}", reply.status, message(&reply.body));
    let again = matches!(reply.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::CONFLICT);
    if again || reply.status.is_server_error() {
        CallError::Retry {
            status,
            after: rate_limit_reset(&reply.headers, crate::clock::wall_clock().timestamp()),
            new_key: false,
            why,
        }
    } else {
        CallError::Permanent { status, why }
    }
}

/// An error body in words: its type, message and the fields at fault (`errors`, or `Errors` as
/// the docs' table spells it).
fn message(body: &Value) -> String {
    let fields = body
        .get("errors")
        .or_else(|| body.get("Errors"))
        .and_then(Value::as_object)
        .map(|errors| {
            errors
                .iter()
                .map(|(field, why)| format!("{field}: {}", why.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|f| !f.is_empty());
    let mut words = format!(
        "{} {}",
        body["Type"].as_str().unwrap_or("error"),
        body["Message"].as_str().unwrap_or("without a message")
    );
    if let Some(fields) = fields {
        words.push_str(&format!(" ({fields})"));
    }
    words.truncate(500);
    words
}

/// How long until Mangopay takes calls again: the soonest `x-ratelimit-reset` (Unix seconds) of
/// a window with nothing left in `x-ratelimit-remaining`; each header lists one value per window.
fn rate_limit_reset(headers: &reqwest::header::HeaderMap, now: i64) -> Option<Duration> {
    let values = |name: &str| -> Vec<i64> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_default()
    };
    let (remaining, reset) = (values("x-ratelimit-remaining"), values("x-ratelimit-reset"));
    remaining
        .iter()
        .zip(&reset)
        .filter(|(left, _)| **left <= 0)
        .map(|(_, at)| *at)
        .min()
        .map(|at| Duration::from_secs(u64::try_from(at - now).unwrap_or(0).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_derived_per_step_and_generation_in_mangopays_format() {
        let ours = Uuid::from_u128(7);
        let step = Step { kind: "payment", ours };
        let key = step.key(0);
        assert_eq!(key.len(), 36);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert_eq!(key, step.key(0), "the same step and generation, the same key");
        assert_ne!(key, step.key(1));
        assert_ne!(key, Step { kind: "refund", ours }.key(0));
    }

    #[test]
    fn a_rate_limit_is_waited_out_until_the_spent_window_resets() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-ratelimit-remaining", "0, 2200, 0, 105000".parse().unwrap());
        headers.insert(
            "x-ratelimit-reset",
            "1000900, 1001800, 1003600, 1086400".parse().unwrap(),
        );
        assert_eq!(rate_limit_reset(&headers, 1_000_000), Some(Duration::from_secs(900)));
        headers.insert("x-ratelimit-remaining", "5, 2200, 1, 105000".parse().unwrap());
        assert_eq!(rate_limit_reset(&headers, 1_000_000), None);
        assert_eq!(rate_limit_reset(&reqwest::header::HeaderMap::new(), 1_000_000), None);
    }

    #[test]
    fn error_bodies_are_told_with_the_fields_at_fault() {
        let body = serde_json::json!({"Message": "One or several required parameters are missing or incorrect.",
            "Type": "param_error", "Id": "x", "Date": 1, "errors": {"IBAN": "The value is not a valid IBAN"}});
        assert_eq!(
            message(&body),
            "param_error One or several required parameters are missing or incorrect. (IBAN: The value is not a valid IBAN)"
        );
        assert_eq!(message(&Value::Null), "error without a message");
    }
}
