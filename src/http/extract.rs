//! Extractors whose rejections are [`ApiError`]s, so a malformed body, path or query gets the
//! same problem+json shape as every other error.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::{ApiError, Code};

/// `Json` whose rejection is a problem: 400 `malformed_json` for bad syntax, 415 for a missing
/// `Content-Type: application/json`, 413 for a body over the limit, 422 `validation_failed` for
/// well-formed JSON of the wrong shape (a JSON number where an amount string belongs, say).
/// Every body is a JSON object: serde would also fill a struct from an array of its fields, in
/// order, which no client means and the OpenAPI document does not describe.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let AppBytes(bytes) = AppBytes::from_request(req, state).await?;
        from_json_body(&bytes).map(AppJson)
    }
}

/// A body read as `T`: 400 `malformed_json` for bytes that are not JSON, 422 naming the field
/// (`param`) and saying in words what is wrong with it for JSON of the wrong shape.
pub(crate) fn from_json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The plain parse serves every good body (a pledge's among them); only a refused one is
    // parsed again with its path tracked, which costs an allocation per key, to name the field.
    let value = serde_json::from_slice(bytes).map_err(|plain| explain_refusal::<T>(bytes, &plain))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::validation("the body must be a JSON object"));
    }
    Ok(value)
}

/// Why `bytes` are not a `T`, from a second parse that tracks where it stopped.
fn explain_refusal<T: DeserializeOwned>(bytes: &[u8], plain: &serde_json::Error) -> ApiError {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => refusal(&e.path().to_string(), &e.into_inner()),
        // Only what follows the value can be wrong then (trailing characters).
        Ok(_) => match de.end() {
            Err(e) => not_valid_json(&e),
            // The same bytes parse the same way; should they not, the plain parse's reason stands.
            Ok(()) => refusal(".", plain),
        },
    }
}

/// 422 naming the field for JSON of the wrong shape, 400 for bytes that are not JSON.
fn refusal(path: &str, e: &serde_json::Error) -> ApiError {
    match e.classify() {
        serde_json::error::Category::Data => field_error(path, &e.to_string(), Field::Body),
        _ => not_valid_json(e),
    }
}

fn not_valid_json(e: &serde_json::Error) -> ApiError {
    ApiError::new(Code::MalformedJson, format!("the body is not valid JSON: {e}"))
}

/// `application/json`, or any `application/…+json`, as axum's `Json` takes.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(essence) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
    else {
        return false;
    };
    let essence = essence.trim().to_ascii_lowercase();
    essence
        .strip_prefix("application/")
        .is_some_and(|subtype| subtype == "json" || (subtype.ends_with("+json") && subtype.len() > 5))
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(_) => {
                ApiError::validation("the body does not have the shape this route takes")
            }
            JsonRejection::JsonSyntaxError(_) => ApiError::new(Code::MalformedJson, "the body is not valid JSON"),
            JsonRejection::MissingJsonContentType(_) => not_json(),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
            other => ApiError::rejected(other.status(), other.body_text()),
        }
    }
}

fn not_json() -> ApiError {
    ApiError::new(
        Code::UnsupportedMediaType,
        "expected a body with Content-Type: application/json",
    )
}

/// Whether the client asked for CSV (`Accept: text/csv`) rather than JSON, for the reports that
/// offer both (the cap table, a sponsor's statement).
pub(crate) fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"))
}

pub(crate) fn too_large() -> ApiError {
    ApiError::new(Code::PayloadTooLarge, "the request body is too large")
}

/// The raw body, for routes that verify bytes before reading them (signed webhooks). Its
/// rejection, a body over the limit above all, is a problem like every other.
pub(crate) struct AppBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for AppBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(AppBytes)
            .map_err(ApiError::from)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => too_large(),
            status => ApiError::rejected(status, rejection.body_text()),
        }
    }
}

/// `Path` whose rejection is a 404 problem: an id that cannot exist names no resource, and
/// that includes one holding a NUL (`%00`), which no Postgres text can hold.
pub(crate) struct AppPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) = axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        if holds_nul(parts.uri.path()) {
            return Err(ApiError::not_found("no such resource: the path holds a NUL character"));
        }
        Ok(AppPath(value))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::not_found(format!("no such resource: {}", rejection.body_text()))
    }
}

/// `Query` whose rejection is a 422 `validation_failed` problem, a NUL (`%00`) included.
pub(crate) struct AppQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        if holds_nul(query) {
            return Err(ApiError::validation("query parameters cannot hold a NUL character"));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(AppQuery).map_err(|e| {
            let path = e.path().to_string();
            field_error(&path, &e.into_inner().to_string(), Field::Query)
        })
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::validation(rejection.body_text())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Field {
    Body,
    Query,
}

/// 422 naming the field at `path` (a path into the body, `terms.min_ticket`) and saying in words
/// what is wrong with it, from serde's message: no parser internals (`i64`, line and column).
fn field_error(path: &str, message: &str, field: Field) -> ApiError {
    let message = strip_position(message);
    let parent = match path {
        "." | "?" => "",
        p => p,
    };
    let join = |name: &str| {
        if parent.is_empty() {
            name.to_string()
        } else if parent == name || parent.ends_with(&format!(".{name}")) {
            parent.to_string()
        } else {
            format!("{parent}.{name}")
        }
    };
    let what = match field {
        Field::Body => "field",
        Field::Query => "parameter",
    };
    if let Some(name) = between_backticks(message.strip_prefix("missing field ")) {
        let param = join(name);
        return ApiError::invalid(param.clone(), format!("{what} `{param}` is required"));
    }
    if let Some(name) = between_backticks(message.strip_prefix("unknown field ")) {
        let param = join(name);
        return ApiError::invalid(param.clone(), format!("this route takes no {what} `{param}`"));
    }
    let param = if parent.is_empty() {
        None
    } else {
        Some(parent.to_string())
    };
    let words = in_words(message);
    match param {
        Some(param) => ApiError::invalid(param.clone(), format!("{what} `{param}` {words}")),
        None => ApiError::validation(format!(
            "the {} {words}",
            if field == Field::Body { "body" } else { "query" }
        )),
    }
}

fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => &message[..i],
        _ => message,
    }
}

fn between_backticks(s: Option<&str>) -> Option<&str> {
    let s = s?.strip_prefix('`')?;
    s.split('`').next()
}

/// serde's "invalid type: integer `1`, expected a string" → "must be a string, not the number 1".
fn in_words(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let got = between_backticks(Some(rest)).unwrap_or("");
        let allowed = rest
            .split_once("expected ")
            .map(|(_, e)| e.trim_start_matches("one of ").replace('`', ""))
            .unwrap_or_default();
        return format!("must be one of {allowed}, not \"{got}\"");
    }
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((got, expected)) = rest.split_once(", expected ")
        {
            return format!("must be {}, not {}", expected_in_words(expected), got.replace('`', ""));
        }
    }
    match message {
        "invalid digit found in string" | "cannot parse integer from empty string" => "must be a whole number".into(),
        "number too large to fit in target type" | "number too small to fit in target type" => "is out of range".into(),
        "provided string was not `true` or `false`" => "must be true or false".into(),
        m if m.starts_with("UUID parsing failed")
            || m.starts_with("invalid character")
            || m.starts_with("invalid length") =>
        {
            "must be a UUID".into()
        }
        m if m.starts_with("input contains invalid characters") || m.starts_with("premature end of input") => {
            "must be a date and time (RFC 3339, e.g. 2026-05-01T12:00:00Z)".into()
        }
        m => m.to_string(),
    }
}

fn expected_in_words(expected: &str) -> &str {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" | "an integer" => {
            "a whole number"
        }
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a sequence" => "a list",
        "a map" => "an object",
        "a UUID string" => "a UUID",
        e if e.starts_with("struct ") || e.starts_with("a map") => "an object",
        e if e.contains("date and time") || e.contains("RFC 3339") => "a date and time (RFC 3339)",
        e => e,
    }
}

/// Whether a raw (percent-encoded) path or query decodes to a NUL somewhere.
fn holds_nul(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| w == b"%00")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Terms {
        min_ticket: String,
        shares: i64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        terms: Terms,
    }

    fn refused(body: &str) -> ApiError {
        from_json_body::<Body>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_wrong_type_names_the_field_in_words() {
        let e = refused(r#"{"name": "x", "terms": {"min_ticket": "10", "shares": "many"}}"#);
        assert_eq!(e.code(), Code::ValidationFailed);
        assert_eq!(e.param(), Some("terms.shares"));
        assert_eq!(
            e.detail(),
            "field `terms.shares` must be a whole number, not string \"many\""
        );
        assert!(!e.detail().contains("line"), "{}", e.detail());
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let e = refused(r#"{"terms": {"min_ticket": "10", "shares": 1}}"#);
        assert_eq!((e.param(), e.detail()), (Some("name"), "field `name` is required"));
        let e = refused(r#"{"name": "x", "terms": {"min_ticket": "10", "shares": 1, "colour": 2}}"#);
        assert_eq!(e.param(), Some("terms.colour"));
        let e = refused(r#"{"name": "x", "terms": {"shares": 1}}"#);
        assert_eq!(e.param(), Some("terms.min_ticket"));
    }

    #[test]
    fn bad_syntax_is_malformed_json() {
        assert_eq!(refused(r#"{"name": "#).code(), Code::MalformedJson);
        assert_eq!(
            refused(r#"{"name": "x", "terms": {"min_ticket": "1", "shares": 1}} trailing"#).code(),
            Code::MalformedJson
        );
        assert_eq!(refused(r#"["x"]"#).code(), Code::ValidationFailed);
    }
}
