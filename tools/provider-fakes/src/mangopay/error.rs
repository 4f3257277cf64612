//! Mangopay's error report and the reading of JSON bodies that produces its `param_error`s.
//!
//! Body: `{"Message", "Type", "Id", "Date", "errors"}`, `errors` spelt in lower case as the docs'
//! example spells it (docs:errors/error-report; docs/providers/mangopay-api.md section 4). A
//! `param_error` names every field at fault at once, `{"Field": "reason"}`.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

/// The `Message` of every `param_error` (docs:errors/error-report).
const PARAM_ERROR: &str = "One or several required parameters are missing or incorrect. An incorrect resource ID also raises this kind of error.";

/// An HTTP error as Mangopay answers it.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub errors: Option<Map<String, Value>>,
}

impl ApiError {
    /// 400 `param_error` naming the fields at fault.
    pub fn params(errors: Map<String, Value>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "param_error",
            message: PARAM_ERROR.to_owned(),
            errors: Some(errors),
        }
    }

    /// 400 `param_error` for one field.
    pub fn param(field: &str, reason: impl Into<String>) -> ApiError {
        let mut errors = Map::new();
        errors.insert(field.to_owned(), json!(reason.into()));
        ApiError::params(errors)
    }

    /// 404 for an id in the URL. The wording is Mangopay's as its API is seen to answer; the docs
    /// give only the type (`ressource_not_found`, with their spelling).
    pub fn not_found(ressource: &str, id: &str) -> ApiError {
        let message = format!("Cannot found the ressource {ressource} with the id={id}");
        let mut errors = Map::new();
        errors.insert("RessourceNotFound".into(), json!(message));
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "ressource_not_found",
            message,
            errors: Some(errors),
        }
    }

    /// 401: no token, an unknown one, an expired one, or wrong client credentials.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: "unauthorized",
            message: message.into(),
            errors: None,
        }
    }

    /// 409: the key was used before, whatever the first call was (docs:api-reference/overview/idempotency).
    pub fn idempotent_conflict() -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            kind: "idempotent_creation_conflict",
            message: "A resource has already been created with this Idempotency Key".into(),
            errors: None,
        }
    }

    pub fn body(&self, now: i64) -> Value {
        json!({
            "Message": self.message,
            "Type": self.kind,
            "Id": uuid::Uuid::new_v4().to_string(),
            "Date": now,
            "errors": self.errors,
        })
    }
}

/// An amount as Mangopay writes every one: `{"Currency": "EUR", "Amount": 1260}`, an integer in
/// the currency's minor unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Money {
    pub currency: String,
    pub amount: i64,
}

impl Money {
    pub fn new(currency: &str, amount: i64) -> Money {
        Money {
            currency: currency.to_owned(),
            amount,
        }
    }

    /// What a bank-wire pay-in shows until the money arrives (docs/providers/mangopay-api.md 5.4).
    pub fn placeholder() -> Money {
        Money::new("XXX", 0)
    }

    /// Reads a `Money` value back from an object the fake made.
    pub fn of(value: &Value) -> Money {
        Money::new(
            value["Currency"].as_str().unwrap_or_default(),
            value["Amount"].as_i64().unwrap_or_default(),
        )
    }

    pub fn json(&self) -> Value {
        json!({"Currency": self.currency, "Amount": self.amount})
    }
}

/// A JSON body read field by field. Each read records what is wrong with its field and returns a
/// stand-in, so that one answer names every field at fault; [`finish`](Body::finish) says
/// whether any was, and nothing read may be used before it said no.
pub(crate) struct Body<'a> {
    fields: &'a Map<String, Value>,
    errors: Map<String, Value>,
}

impl<'a> Body<'a> {
    pub fn new(fields: &'a Map<String, Value>) -> Body<'a> {
        Body {
            fields,
            errors: Map::new(),
        }
    }

    /// Records `reason` against `field` (the first reason a field gets is kept).
    pub fn refuse(&mut self, field: &str, reason: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_insert_with(|| json!(reason.into()));
    }

    /// Records that a required field was not sent.
    pub fn missing(&mut self, field: &str) {
        self.refuse(field, format!("The {field} field is required."));
    }

    /// A field as sent, `null` when absent, for echoing it back.
    pub fn raw(&self, name: &str) -> Value {
        self.fields.get(name).cloned().unwrap_or(Value::Null)
    }

    /// A string, `None` when absent or null (an empty one counts as absent).
    pub fn text(&mut self, name: &str) -> Option<String> {
        match self.fields.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.refuse(name, format!("The {name} field must be a string."));
                None
            }
        }
    }

    pub fn required_text(&mut self, name: &str) -> String {
        self.text(name).unwrap_or_else(|| {
            self.missing(name);
            String::new()
        })
    }

    /// A string of at most `max` characters (`Tag`: 255, `BankWireRef`: 12, `ReturnURL`: 220).
    pub fn text_at_most(&mut self, name: &str, max: usize) -> Option<String> {
        let text = self.text(name)?;
        if text.chars().count() > max {
            self.refuse(name, format!("The {name} field must be at most {max} characters long."));
        }
        Some(text)
    }

    pub fn required_text_at_most(&mut self, name: &str, max: usize) -> String {
        self.text_at_most(name, max).unwrap_or_else(|| {
            self.missing(name);
            String::new()
        })
    }

    pub fn integer(&mut self, name: &str) -> Option<i64> {
        match self.fields.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => value.as_i64().or_else(|| {
                self.refuse(name, format!("The {name} field must be an integer."));
                None
            }),
        }
    }

    pub fn required_integer(&mut self, name: &str) -> i64 {
        self.integer(name).unwrap_or_else(|| {
            if !self.errors.contains_key(name) {
                self.missing(name);
            }
            0
        })
    }

    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        match self.fields.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.refuse(name, format!("The {name} field must be true or false."));
                None
            }
        }
    }

    /// One of `allowed`, or absent.
    pub fn choice(&mut self, name: &str, allowed: &[&str]) -> Option<String> {
        let value = self.text(name)?;
        if !allowed.contains(&value.as_str()) {
            self.refuse(name, format!("The {name} field must be one of {}.", allowed.join(", ")));
        }
        Some(value)
    }

    pub fn required_choice(&mut self, name: &str, allowed: &[&str]) -> String {
        self.choice(name, allowed).unwrap_or_else(|| {
            self.missing(name);
            String::new()
        })
    }

    /// An ISO 3166-1 alpha-2 code (`FR`), or absent.
    pub fn country(&mut self, name: &str) -> Option<String> {
        let code = self.text(name)?;
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            self.refuse(
                name,
                format!("The {name} field must be a country code of two capital letters."),
            );
        }
        Some(code)
    }

    pub fn required_country(&mut self, name: &str) -> String {
        self.country(name).unwrap_or_else(|| {
            self.missing(name);
            String::new()
        })
    }

    /// An ISO 4217 code (`EUR`).
    pub fn required_currency(&mut self, name: &str) -> String {
        let code = self.required_text(name);
        if !code.is_empty() && !is_currency(&code) {
            self.refuse(name, format!("The {name} field must be a three-letter ISO 4217 code."));
        }
        code
    }

    /// A `Money` object: `Currency` three capital letters, `Amount` an integer.
    pub fn money(&mut self, name: &str) -> Option<Money> {
        let value = match self.fields.get(name) {
            None | Some(Value::Null) => return None,
            Some(Value::Object(value)) => value,
            Some(_) => {
                self.refuse(
                    name,
                    format!("The {name} field must be an object with Currency and Amount."),
                );
                return Some(Money::placeholder());
            }
        };
        let currency = value.get("Currency").and_then(Value::as_str).unwrap_or_default();
        if !is_currency(currency) {
            self.refuse(
                &format!("{name}.Currency"),
                "The Currency field must be a three-letter ISO 4217 code.",
            );
        }
        let amount = value.get("Amount").and_then(Value::as_i64);
        if amount.is_none() {
            self.refuse(
                &format!("{name}.Amount"),
                "The Amount field must be an integer in the currency's minor unit.",
            );
        }
        Some(Money::new(currency, amount.unwrap_or_default()))
    }

    pub fn required_money(&mut self, name: &str) -> Money {
        self.money(name).unwrap_or_else(|| {
            self.missing(name);
            Money::placeholder()
        })
    }

    /// An `Address` object: `AddressLine1`, `City`, `PostalCode` and `Country` required, as the
    /// API reference marks them; sent back as given.
    pub fn address(&mut self, name: &str) -> Option<Value> {
        let address = match self.fields.get(name) {
            None | Some(Value::Null) => return None,
            Some(Value::Object(address)) => address,
            Some(_) => {
                self.refuse(name, format!("The {name} field must be an address object."));
                return None;
            }
        };
        for part in ["AddressLine1", "City", "PostalCode", "Country"] {
            if address.get(part).and_then(Value::as_str).is_none_or(str::is_empty) {
                self.refuse(&format!("{name}.{part}"), format!("The {part} field is required."));
            }
        }
        Some(Value::Object(address.clone()))
    }

    pub fn required_address(&mut self, name: &str) -> Value {
        self.address(name).unwrap_or_else(|| {
            self.missing(name);
            Value::Null
        })
    }

    /// `Tag`: free text of at most 255 characters.
    pub fn tag(&mut self) -> Option<String> {
        self.text_at_most("Tag", 255)
    }

    /// `Err` with every field at fault, if any was.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::params(self.errors))
        }
    }
}

fn is_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}
