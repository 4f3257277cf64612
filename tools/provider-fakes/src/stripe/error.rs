//! Stripe's error bodies and the reading of form parameters that produces them.
//!
//! Body: `{"error": {"type", "code"?, "message", "param"?, "doc_url"?}}` (docs.stripe.com/api/errors,
//! stripe-node `src/Error.ts`). Message texts follow the ones Stripe's API is seen to send where a
//! source shows them (`Missing required param: amount.`); others are close paraphrases.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

/// An error as Stripe answers it.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub message: String,
    pub param: Option<String>,
    /// Whether the idempotency layer keeps this answer: Stripe saves a result only once the
    /// endpoint "started executing", not when the parameters failed validation
    /// (docs.stripe.com/api/idempotent_requests).
    pub saved: bool,
}

impl ApiError {
    /// A parameter that fails validation: 400, not saved under the idempotency key.
    pub fn invalid(param: &str, code: Option<&'static str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code,
            message: message.into(),
            param: Some(param.to_owned()),
            saved: false,
        }
    }

    pub fn missing(param: &str) -> ApiError {
        ApiError::invalid(
            param,
            Some("parameter_missing"),
            format!("Missing required param: {param}."),
        )
    }

    pub fn unknown(param: &str) -> ApiError {
        ApiError::invalid(
            param,
            Some("parameter_unknown"),
            format!("Received unknown parameter: {param}"),
        )
    }

    /// An object named in the URL or in a parameter that does not exist. Stripe answers 404 for
    /// the URL's id and 400 for a parameter's (`No such customer: 'cus_…'`).
    pub fn no_such(object: &str, id: &str, param: &str, in_url: bool) -> ApiError {
        let mut error = ApiError::invalid(param, Some("resource_missing"), format!("No such {object}: '{id}'"));
        if in_url {
            error.status = StatusCode::NOT_FOUND;
        }
        error
    }

    /// A request that was valid but that the objects' state refuses (over-refund, empty
    /// balance, cancelling a succeeded intent): the endpoint ran, so its answer is saved.
    pub fn refused(code: &'static str, param: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: Some(code),
            message: message.into(),
            param: param.map(str::to_owned),
            saved: true,
        }
    }

    /// A key reused for another request: another endpoint or other parameters. 400, the status
    /// docs/providers/stripe-api.md settles on (stripe-node maps 400 and 404 of this type alike).
    pub fn idempotency(key: &str) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "idempotency_error",
            code: None,
            message: format!(
                "Keys for idempotent requests can only be used with the same parameters they were first \
                 used with. Try using a key other than '{key}' if you meant to execute a different request."
            ),
            param: None,
            saved: false,
        }
    }

    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("type".into(), json!(self.kind));
        if let Some(code) = self.code {
            error.insert("code".into(), json!(code));
            error.insert(
                "doc_url".into(),
                json!(format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )),
            );
        }
        error.insert("message".into(), json!(self.message));
        if let Some(param) = &self.param {
            error.insert("param".into(), json!(param));
        }
        json!({ "error": error })
    }
}

/// A decoded form body, read the way Stripe reads it: every value arrives as a string, an empty
/// one means "not set" (docs/providers/stripe-api.md section 2).
pub(crate) struct Params<'a>(pub &'a Map<String, Value>);

impl Params<'_> {
    /// Refuses the first top-level key the endpoint does not take, as Stripe does.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(ApiError::unknown(unknown)),
            None => Ok(()),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| v != "")
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid(
                name,
                None,
                format!("Invalid string: {name} must be a string, not an object or a list"),
            )),
        }
    }

    pub fn required_string(&self, name: &str) -> Result<String, ApiError> {
        self.string(name)?.ok_or_else(|| ApiError::missing(name))
    }

    pub fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.string(name)? else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|_| {
            ApiError::invalid(
                name,
                Some("parameter_invalid_integer"),
                format!("Invalid integer: {text}"),
            )
        })
    }

    pub fn required_integer(&self, name: &str) -> Result<i64, ApiError> {
        self.integer(name)?.ok_or_else(|| ApiError::missing(name))
    }

    /// An amount in minor units, above zero when given (Stripe: "Invalid positive integer").
    pub fn positive_integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.integer(name)? {
            Some(n) if n <= 0 => Err(ApiError::invalid(
                name,
                Some("parameter_invalid_integer"),
                "Invalid positive integer",
            )),
            n => Ok(n),
        }
    }

    pub fn boolean(&self, name: &str) -> Result<bool, ApiError> {
        match self.string(name)?.as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::invalid(name, None, format!("Invalid boolean: {other}"))),
        }
    }

    /// One of `allowed`, or absent.
    pub fn choice(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.string(name)? {
            Some(value) if !allowed.contains(&value.as_str()) => Err(ApiError::invalid(
                name,
                None,
                format!("Invalid {name}: must be one of {}", allowed.join(", ")),
            )),
            value => Ok(value),
        }
    }

    /// A list of strings sent as `name[0]=…` or `name[]=…`.
    pub fn strings(&self, name: &str) -> Result<Vec<String>, ApiError> {
        match self.0.get(name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                Ok(items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            }
            Some(_) => Err(ApiError::invalid(
                name,
                None,
                format!("Invalid array: {name} must be a list of strings"),
            )),
        }
    }

    /// A nested object (`name[key]=…`), `{}` when absent or sent empty.
    pub fn object(&self, name: &str) -> Result<Map<String, Value>, ApiError> {
        match self.0.get(name) {
            None => Ok(Map::new()),
            Some(Value::String(s)) if s.is_empty() => Ok(Map::new()),
            Some(Value::Object(map)) => Ok(map.clone()),
            Some(_) => Err(ApiError::invalid(name, None, format!("Invalid object: {name}"))),
        }
    }

    /// `metadata[key]=value`: string values only; a key sent empty removes it.
    pub fn metadata(&self) -> Result<Map<String, Value>, ApiError> {
        let mut metadata = self.object("metadata")?;
        if let Some((key, _)) = metadata.iter().find(|(_, v)| !v.is_string()) {
            return Err(ApiError::invalid(
                &format!("metadata[{key}]"),
                None,
                "Invalid metadata: values must be strings",
            ));
        }
        metadata.retain(|_, v| v != "");
        Ok(metadata)
    }
}
