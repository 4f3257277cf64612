//! The one API error: `application/problem+json` (RFC 9457) with a stable machine-readable
//! `code`. Unexpected errors become opaque 500s whose cause is logged, never sent; a database out
//! of reach is a 503 `database_unavailable` with `Retry-After`.
//!
//! This file owns the HTTP side of every error: the catalogue of codes with their statuses
//! ([`Code`]), and how each domain's error becomes a problem (the `From` impls below). Domains
//! return their own `thiserror` enums and know nothing of HTTP.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::cheques::ChequeError;
use crate::fields::FieldError;
use crate::investors::InvestorError;
use crate::ledger::LedgerError;
use crate::offers::OfferError;
use crate::projects::ProjectError;
use crate::sponsors::SponsorError;

/// Declares [`Code`]: each stable code once, with its string and the status it is sent with.
macro_rules! catalogue {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $status:ident;)*) => {
        /// Every stable `code` a problem can carry, and its status: the one list. Clients act on
        /// the string, so a code is never renamed or given another meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $name,)*
        }

        impl Code {
            pub const ALL: &[Code] = &[$(Code::$name,)*];

            /// The code as sent in `code` and in `type` (`urn:crowdledger:problem:<code>`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$name => $code,)*
                }
            }

            /// The status a problem with this code is sent with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(Code::$name => StatusCode::$status,)*
                }
            }
        }
    };
}

catalogue! {
    // Requests.
    /// A field, parameter or body breaks a rule (the detail names it).
    ValidationFailed = "validation_failed", UNPROCESSABLE_ENTITY;
    NotFound = "not_found", NOT_FOUND;
    /// No API key, or an unknown or revoked one.
    Unauthorized = "unauthorized", UNAUTHORIZED;
    /// The key's role may not do this.
    Forbidden = "forbidden", FORBIDDEN;
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    /// A request axum could not read; sent with the status axum gives it ([`ApiError::rejected`]).
    MalformedRequest = "malformed_request", BAD_REQUEST;
    MalformedJson = "malformed_json", BAD_REQUEST;
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE;
    BodyTimeout = "body_timeout", REQUEST_TIMEOUT;
    RateLimited = "rate_limited", TOO_MANY_REQUESTS;
    IdempotencyKeyRequired = "idempotency_key_required", BAD_REQUEST;
    /// An `Idempotency-Key` (or a ledger entry's reference) used again for another request.
    IdempotencyKeyReused = "idempotency_key_reused", UNPROCESSABLE_ENTITY;
    /// A move the resource's status does not allow (an offer, a project, a cheque, an entry).
    InvalidStateTransition = "invalid_state_transition", CONFLICT;
    CurrencyMismatch = "currency_mismatch", UNPROCESSABLE_ENTITY;

    // The service itself.
    InternalError = "internal_error", INTERNAL_SERVER_ERROR;
    DatabaseUnavailable = "database_unavailable", SERVICE_UNAVAILABLE;
    StatementTimeout = "statement_timeout", SERVICE_UNAVAILABLE;
    Timeout = "timeout", SERVICE_UNAVAILABLE;
    Overloaded = "overloaded", SERVICE_UNAVAILABLE;
    NotReady = "not_ready", SERVICE_UNAVAILABLE;
    BatchLost = "batch_lost", SERVICE_UNAVAILABLE;

    // The ledger.
    EntryUnbalanced = "entry_unbalanced", UNPROCESSABLE_ENTITY;
    UnknownAccount = "unknown_account", UNPROCESSABLE_ENTITY;
    InsufficientFunds = "insufficient_funds", CONFLICT;
    AlreadyReversed = "already_reversed", CONFLICT;
    AccountExists = "account_exists", CONFLICT;

    // Offers and their rounds.
    EcspCapExceeded = "ecsp_cap_exceeded", UNPROCESSABLE_ENTITY;
    /// A project is archived only once none of its offers is open.
    ProjectHasOpenOffers = "project_has_open_offers", CONFLICT;
    BallotKeyMissing = "ballot_key_missing", CONFLICT;
    MinTargetNotReached = "min_target_not_reached", CONFLICT;
    NothingToPay = "nothing_to_pay", CONFLICT;
    /// The payout's provider needs a payout detail the project does not have yet.
    PayoutDetailsMissing = "payout_details_missing", CONFLICT;
    /// An offer opens only with a Key Investment Information Sheet (ECSP art. 23).
    KiisMissing = "kiis_missing", CONFLICT;
    /// The same document (its SHA-256) was added to the offer before.
    DocumentExists = "document_exists", CONFLICT;

    // Pledges.
    OfferNotOpen = "offer_not_open", CONFLICT;
    OfferFull = "offer_full", CONFLICT;
    BelowMinTicket = "below_min_ticket", UNPROCESSABLE_ENTITY;
    AboveMaxTicket = "above_max_ticket", UNPROCESSABLE_ENTITY;
    RiskWarningRequired = "risk_warning_required", UNPROCESSABLE_ENTITY;
    InvestorNotVerified = "investor_not_verified", UNPROCESSABLE_ENTITY;
    NotRevocable = "not_revocable", CONFLICT;
    /// A non-sophisticated investor pledges only under an appropriateness record (ECSP art. 21).
    AppropriatenessRequired = "appropriateness_required", UNPROCESSABLE_ENTITY;
    /// The investor's appropriateness record is past its `valid_until`: the platform records a
    /// new one.
    AppropriatenessExpired = "appropriateness_expired", UNPROCESSABLE_ENTITY;
    /// `kiis_sha256` is absent, or not the hash of one of the offer's current KIIS.
    KiisNotAcknowledged = "kiis_not_acknowledged", UNPROCESSABLE_ENTITY;
    /// The pledge has no reconfirmation pending, or its time to reconfirm has passed.
    NotReconfirmable = "not_reconfirmable", CONFLICT;

    // Cheques and sponsors.
    /// A cheque that cannot fund this pledge; `reason` says why.
    ChequeInvalid = "cheque_invalid", UNPROCESSABLE_ENTITY;
    TooManyAttempts = "too_many_attempts", TOO_MANY_REQUESTS;
    InsufficientSponsorBudget = "insufficient_sponsor_budget", UNPROCESSABLE_ENTITY;

    // Payment providers and webhooks.
    PaymentMismatch = "payment_mismatch", UNPROCESSABLE_ENTITY;
    RefundMismatch = "refund_mismatch", UNPROCESSABLE_ENTITY;
    PayoutMismatch = "payout_mismatch", UNPROCESSABLE_ENTITY;
    /// The provider refused or failed to create what we asked for.
    ProviderUnavailable = "provider_unavailable", BAD_GATEWAY;
    /// No provider is configured to take this money.
    PaymentProviderUnavailable = "payment_provider_unavailable", UNPROCESSABLE_ENTITY;
    /// The payment was paid, failed or was cancelled: there is nothing left to pay.
    PaymentNotPending = "payment_not_pending", CONFLICT;
    InvalidSignature = "invalid_signature", UNAUTHORIZED;
    /// A provider's notification could not be read back from its API in time; it sends it again.
    ProviderUnreachable = "provider_unreachable", SERVICE_UNAVAILABLE;
    WebhookFailed = "webhook_failed", BAD_GATEWAY;
    InvalidTarget = "invalid_target", UNPROCESSABLE_ENTITY;
    ClockNotManual = "clock_not_manual", CONFLICT;
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
use crate::webhooks::WebhookError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Code,
    detail: String,
    reason: Option<&'static str>,
    param: Option<String>,
    retry_after: Option<u64>,
    cause: Option<anyhow::Error>,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub(crate) struct Problem {
    /// A URI naming the kind of problem: `urn:crowdledger:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable code to act on, e.g. `validation_failed`, `offer_full`.
    pub code: String,
    /// For some codes, which case it is (stable too): `cheque_invalid` says `expired`, `unknown_code`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The field or query parameter at fault, when one is: `amount`, `limit`,
    /// `terms.min_ticket` (a path into the body).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

impl ApiError {
    /// A problem with `code`, sent with the code's status.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        ApiError {
            status: code.status(),
            code,
            detail: detail.into(),
            reason: None,
            param: None,
            retry_after: None,
            cause: None,
        }
    }

    /// 4xx `malformed_request`: a request axum could not read, with the status axum gives it.
    pub fn rejected(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            ..ApiError::new(Code::MalformedRequest, detail)
        }
    }

    /// Adds the problem's `reason` (set only here, by the `From` impls below).
    fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Adds a `Retry-After` header, in seconds.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn reason(&self) -> Option<&'static str> {
        self.reason
    }

    /// 422 `validation_failed`; `param` is the field the detail starts by naming, if it does
    /// (`max_ticket: must not be below min_ticket`).
    pub fn validation(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let param = field_named(&detail).map(str::to_string);
        ApiError {
            param,
            ..ApiError::new(Code::ValidationFailed, detail)
        }
    }

    /// 422 `validation_failed` naming the field or parameter at fault.
    pub fn invalid(param: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.into()),
            ..ApiError::validation(detail)
        }
    }

    /// Names the field or parameter at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(Code::NotFound, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError::new(Code::Unauthorized, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(Code::Forbidden, detail)
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        ApiError {
            cause: Some(cause.into()),
            ..ApiError::new(Code::InternalError, "an unexpected error occurred; it has been logged")
        }
    }

    /// A database error: 503 `database_unavailable` when the database could not be reached or
    /// went away mid-request, else an opaque 500. After a 503 a write may or may not have been
    /// committed (the connection can drop between COMMIT and its answer): the client retries it
    /// with the same `Idempotency-Key`, the provider with the same event id.
    pub fn database(err: sqlx::Error) -> Self {
        // Cancelled by a statement timeout (long reads run under one: ledger::read_snapshot):
        // a clear 503, not an opaque 500. Nothing was written; retrying soon is unlikely to help.
        if err.as_database_error().and_then(|e| e.code()).as_deref() == Some("57014") {
            return ApiError {
                cause: Some(err.into()),
                ..ApiError::new(
                    Code::StatementTimeout,
                    "the read took longer than the database allows (database.read_statement_timeout_ms); \
                     nothing was changed",
                )
            };
        }
        if !database_unavailable(&err) {
            return ApiError::internal(err);
        }
        ApiError {
            cause: Some(err.into()),
            ..ApiError::new(
                Code::DatabaseUnavailable,
                "the database is unavailable; retry with the same Idempotency-Key",
            )
            .retry_after(1)
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Whether Postgres rolled the transaction back to break a deadlock or a serialisation
    /// conflict (the tests' view of what `WebhookError::is_retryable` decides).
    #[cfg(test)]
    fn is_retryable(&self) -> bool {
        self.cause
            .as_ref()
            .and_then(|c| c.downcast_ref::<sqlx::Error>())
            .is_some_and(crate::db::errors::is_retryable)
    }
}

/// Whether the database was out of reach: the connection failed or broke, the pool had none to
/// give, or the server is shutting down or starting up (SQLSTATE classes 08 and 57P).
fn database_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self.cause {
            // Expected while Postgres restarts; the client is told to retry.
            Some(cause) if self.status == StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!(
                    error = format!("{cause:#}"),
                    code = self.code.as_str(),
                    "request failed"
                )
            }
            Some(cause) => tracing::error!(
                error = format!("{cause:#}"),
                code = self.code.as_str(),
                "request failed"
            ),
            None => {}
        }
        let body = Problem {
            kind: format!("urn:crowdledger:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.as_str().to_string(),
            reason: self.reason.map(str::to_string),
            param: self.param,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // Only a missing or bad API key asks for a bearer token; a bad webhook signature
        // (401 `invalid_signature`) is not answered by sending a key.
        if self.code == Code::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::database(err)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        match err.downcast::<sqlx::Error>() {
            Ok(err) => ApiError::database(err),
            Err(err) => ApiError::internal(err),
        }
    }
}

impl From<crate::money::MoneyError> for ApiError {
    fn from(err: crate::money::MoneyError) -> Self {
        ApiError::validation(err.to_string())
    }
}

/// A broken field rule (crate::fields), in any domain, is a 422.
impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        ApiError::validation(err.0)
    }
}

/// The field a rule's message is about, when it starts by naming one the way the domains write
/// them: `max_ticket: must not be below min_ticket`, `name has 1 to 200 characters`.
fn field_named(message: &str) -> Option<&str> {
    let end = message
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'))
        .unwrap_or(message.len());
    let (field, rest) = message.split_at(end);
    let first = field.chars().next()?;
    if !first.is_ascii_lowercase() {
        return None;
    }
    let verb = rest
        .strip_prefix(' ')
        .and_then(|r| r.split(' ').next())
        .unwrap_or_default();
    let names_it = rest.starts_with(':')
        || matches!(
            verb,
            "has" | "is" | "holds" | "must" | "names" | "lists" | "cannot" | "may"
        ) && !matches!(field, "a" | "an" | "the" | "this" | "it");
    names_it.then_some(field)
}

impl From<ProjectError> for ApiError {
    fn from(err: ProjectError) -> Self {
        let detail = err.to_string();
        match err {
            ProjectError::Invalid(_) => ApiError::validation(detail),
            ProjectError::NotFound(_) => ApiError::not_found(detail),
            ProjectError::InvalidTransition { .. } => ApiError::new(Code::InvalidStateTransition, detail),
            // An opaque 500 even when the database is out of reach, as these always were.
            ProjectError::Database(e) => ApiError::internal(e),
        }
    }
}

impl From<InvestorError> for ApiError {
    fn from(err: InvestorError) -> Self {
        let detail = err.to_string();
        match err {
            InvestorError::Invalid(_) => ApiError::validation(detail),
            InvestorError::NotFound(_) => ApiError::not_found(detail),
            // An opaque 500 even when the database is out of reach, as these always were.
            InvestorError::Database(e) => ApiError::internal(e),
        }
    }
}

impl From<crate::offers::ballot::BallotError> for ApiError {
    fn from(err: crate::offers::ballot::BallotError) -> Self {
        use crate::offers::ballot::BallotError;
        match err {
            BallotError::KeyMissing => ApiError::new(Code::BallotKeyMissing, err.to_string()),
            BallotError::Random(_) | BallotError::SeedMismatch(_) => ApiError::internal(anyhow::Error::new(err)),
        }
    }
}

impl From<OfferError> for ApiError {
    fn from(err: OfferError) -> Self {
        use OfferError::*;
        let detail = err.to_string();
        match err {
            NotFound(_) => ApiError::not_found(detail),
            Project(e) => e.into(),
            InvalidTransition { .. } | ProjectArchived | ProjectNotPublished | ClosingTimePassed | NotSucceeded => {
                ApiError::new(Code::InvalidStateTransition, detail)
            }
            EcspCapExceeded { .. } => ApiError::new(Code::EcspCapExceeded, detail),
            ProjectHasOpenOffers => ApiError::new(Code::ProjectHasOpenOffers, detail),
            KiisMissing => ApiError::new(Code::KiisMissing, detail),
            DocumentExists(_) => ApiError::new(Code::DocumentExists, detail),
            Ballot(e) => e.into(),
            Database(e) => ApiError::database(e),
        }
    }
}

impl From<SponsorError> for ApiError {
    fn from(err: SponsorError) -> Self {
        use SponsorError::*;
        let detail = err.to_string();
        match err {
            NotFound(_) | DepositNotFound(_) | WithdrawalNotFound(_) => ApiError::not_found(detail),
            CurrencyMismatch { .. } => ApiError::new(Code::CurrencyMismatch, detail),
            DepositMismatch { .. } => ApiError::new(Code::PaymentMismatch, detail),
            InsufficientBudget { .. } => ApiError::new(Code::InsufficientSponsorBudget, detail),
            StatementMismatch { .. } => ApiError::internal(anyhow::Error::new(err)),
            Provider(e) => e.into(),
            Payment(e) => e.into(),
            Ledger(e) => e.into(),
            Database(e) => ApiError::database(e),
        }
    }
}

impl From<ChequeError> for ApiError {
    fn from(err: ChequeError) -> Self {
        use ChequeError::*;
        let detail = err.to_string();
        // Why a cheque cannot fund a pledge: one code, the case in `reason`.
        let invalid = |reason| ApiError::new(Code::ChequeInvalid, detail.clone()).with_reason(reason);
        match err {
            Invalid(_) | UnknownSponsor(_) => ApiError::validation(detail),
            CurrencyMismatch { .. } => ApiError::new(Code::CurrencyMismatch, detail),
            InsufficientBudget { .. } => ApiError::new(Code::InsufficientSponsorBudget, detail),
            NotFound(_) => ApiError::not_found(detail),
            UnknownCode => invalid("unknown_code"),
            Cancelled => invalid("cancelled"),
            Expired => invalid("expired"),
            WrongCurrency { .. } => invalid("currency_mismatch"),
            ProjectNotEligible => invalid("project_not_eligible"),
            ThemeNotEligible { .. } => invalid("theme_not_eligible"),
            InsufficientBalance { .. } => invalid("insufficient_balance"),
            TooManyAttempts { wait } => ApiError::new(Code::TooManyAttempts, detail).retry_after(wait),
            Unaccounted { .. } => ApiError::internal(anyhow::Error::new(err)),
            Ledger(e) => e.into(),
            Money(e) => e.into(),
            Database(e) => ApiError::database(e),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(err: LedgerError) -> Self {
        use LedgerError::*;
        let detail = err.to_string();
        match err {
            Invalid(_) | InvalidAccountCode(_) | TooFewPostings | Money(_) => ApiError::validation(detail),
            Unbalanced(_) => ApiError::new(Code::EntryUnbalanced, detail),
            CurrencyMismatch => ApiError::new(Code::CurrencyMismatch, detail),
            UnknownAccount(_) => ApiError::new(Code::UnknownAccount, detail),
            UnknownEntry(_) => ApiError::not_found(detail),
            Overdraft => ApiError::new(Code::InsufficientFunds, detail),
            ReferenceReused(_) => ApiError::new(Code::IdempotencyKeyReused, detail),
            AlreadyReversed(_) => ApiError::new(Code::AlreadyReversed, detail),
            AccountConflict(_) => ApiError::new(Code::AccountExists, detail),
            Database(e) => ApiError::database(e),
        }
    }
}

impl From<crate::books::manual::ManualError> for ApiError {
    fn from(err: crate::books::manual::ManualError) -> Self {
        use crate::books::manual::ManualError::*;
        let detail = err.to_string();
        match err {
            NotManualCode | BadReference | MemoTooLong | Nul(_) => ApiError::validation(detail),
            NotManualAccount(_) => ApiError::new(Code::UnknownAccount, detail),
            NoEntry(_) => ApiError::not_found(detail),
            NotManualEntry => ApiError::new(Code::InvalidStateTransition, detail),
            Ledger(e) => ApiError::from(e),
        }
    }
}

// Payments' errors: each case keeps the status, code and detail it had as an `ApiError`.

impl From<crate::payments::PaymentError> for ApiError {
    fn from(err: crate::payments::PaymentError) -> Self {
        use crate::payments::PaymentError::*;
        use crate::payments::provider::Object;
        let detail = err.to_string();
        match err {
            Unknown { .. } | NotConfigured(_) => ApiError::not_found(detail),
            // The sandbox's webhook under the system clock: as a path that does not exist.
            NoSuchProvider => crate::http::no_such_route(),
            Mismatch { object, .. } => {
                let code = match object {
                    Object::Payment | Object::Deposit => Code::PaymentMismatch,
                    Object::Refund => Code::RefundMismatch,
                    // Money paid out, to a project or back to a sponsor.
                    Object::Payout | Object::Withdrawal => Code::PayoutMismatch,
                };
                ApiError::new(code, detail)
            }
            NotCaptured { .. } | RefundCancelled { .. } => ApiError::new(Code::InvalidStateTransition, detail),
            Unavailable => ApiError::new(Code::PaymentProviderUnavailable, detail),
            Provider(_) => ApiError::new(Code::ProviderUnavailable, detail),
            InvalidSignature(_) => ApiError::new(Code::InvalidSignature, detail),
            Database(e) => ApiError::database(e),
            Ledger(e) => e.into(),
            Money(e) => e.into(),
        }
    }
}

/// A call to `provider` that failed: 502 `provider_unavailable`, with `Retry-After` when a
/// repeat may succeed.
pub(crate) fn provider_call_failed(provider: &str, err: crate::payments::calls::CallError) -> ApiError {
    use crate::payments::calls::CallError;
    let retry = !matches!(err, CallError::Permanent { .. });
    let error = ApiError::new(Code::ProviderUnavailable, format!("{provider}: {err}"));
    if retry { error.retry_after(5) } else { error }
}

impl From<crate::payments::provider::ProviderError> for ApiError {
    fn from(err: crate::payments::provider::ProviderError) -> Self {
        crate::payments::PaymentError::from(err).into()
    }
}

impl From<crate::batch::Lost> for ApiError {
    fn from(err: crate::batch::Lost) -> Self {
        ApiError::new(Code::BatchLost, err.to_string())
    }
}

// Webhooks' errors. Applying a provider's event runs other domains' code: what their errors
// mean to the event is judged here, where the codes are. A refusal (4xx) quarantines the event
// under `code: detail`; anything else rolls it back so that the provider delivers it again.
// Either way the error is kept whole, so that it answers the request exactly as before.

impl From<ApiError> for WebhookError {
    /// For the domains that still answer `ApiError` (rounds, sponsors' deposits): their
    /// errors become `From<TheirError> for WebhookError` here, through this one.
    fn from(err: ApiError) -> Self {
        if err.status.is_client_error() {
            WebhookError::Refused {
                note: format!("{}: {}", err.code, err.detail),
                source: Box::new(err),
            }
        } else {
            WebhookError::Failed(Box::new(err))
        }
    }
}

impl From<SponsorError> for WebhookError {
    fn from(err: SponsorError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<crate::payments::PaymentError> for WebhookError {
    fn from(err: crate::payments::PaymentError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::Refused { source: judged, .. } | WebhookError::Failed(judged) => {
                match judged.downcast::<ApiError>() {
                    Ok(err) => *err,
                    Err(other) => ApiError::internal(anyhow::Error::from_boxed(other)),
                }
            }
            WebhookError::Database(e) => ApiError::database(e),
            WebhookError::StoredMeanwhile => ApiError::internal(err),
            WebhookError::Lost(lost) => lost.into(),
        }
    }
}

/// So that a webhook event's error can carry the judgement made here, cause and all.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_ref()
            .map(|cause| cause.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<crate::pledges::PledgeError> for ApiError {
    fn from(err: crate::pledges::PledgeError) -> Self {
        use crate::pledges::PledgeError::*;
        let detail = err.to_string();
        match err {
            Invalid(_) => ApiError::validation(detail),
            NoOffer(_) => ApiError::not_found(detail),
            OfferNotOpen(_) => ApiError::new(Code::OfferNotOpen, detail),
            OfferFull(_) => ApiError::new(Code::OfferFull, detail),
            InvestorNotVerified => ApiError::new(Code::InvestorNotVerified, detail),
            BelowMinTicket(_) => ApiError::new(Code::BelowMinTicket, detail),
            AboveMaxTicket(_) => ApiError::new(Code::AboveMaxTicket, detail),
            RiskWarningRequired(_) => ApiError::new(Code::RiskWarningRequired, detail),
            AppropriatenessRequired => ApiError::new(Code::AppropriatenessRequired, detail),
            AppropriatenessExpired(_) => ApiError::new(Code::AppropriatenessExpired, detail),
            KiisNotAcknowledged(_) => ApiError::new(Code::KiisNotAcknowledged, detail).with_param("kiis_sha256"),
            PayoutDetailsMissing(_) => ApiError::new(Code::PayoutDetailsMissing, detail),
            Unaccounted(why) => ApiError::internal(anyhow::anyhow!(why)),
            Cheque(e) => e.into(),
            Payment(e) => e.into(),
            Money(e) => e.into(),
            Database(e) => ApiError::database(e),
        }
    }
}

impl From<crate::rounds::RoundError> for ApiError {
    fn from(err: crate::rounds::RoundError) -> Self {
        use crate::rounds::RoundError::*;
        let detail = err.to_string();
        match err {
            NoOffer(_) | NoPledge(_) => ApiError::not_found(detail),
            InvalidTransition(_) => ApiError::new(Code::InvalidStateTransition, detail),
            MinTargetNotReached(_) => ApiError::new(Code::MinTargetNotReached, detail),
            NotRevocable(_) => ApiError::new(Code::NotRevocable, detail),
            NotReconfirmable(_) => ApiError::new(Code::NotReconfirmable, detail),
            KiisNotAcknowledged(_) => ApiError::new(Code::KiisNotAcknowledged, detail).with_param("kiis_sha256"),
            NothingToPay => ApiError::new(Code::NothingToPay, detail),
            DisputeMismatch { .. } => ApiError::new(Code::PaymentMismatch, detail),
            PayoutDetailsMissing(_) => ApiError::new(Code::PayoutDetailsMissing, detail),
            Unaccounted(why) => ApiError::internal(anyhow::anyhow!(why)),
            Offer(e) => e.into(),
            Ballot(e) => e.into(),
            Cheque(e) => e.into(),
            Match(e) => e.into(),
            Payment(e) => e.into(),
            Ledger(e) => e.into(),
            Money(e) => e.into(),
            Database(e) => ApiError::database(e),
        }
    }
}

impl From<crate::matchfunding::MatchError> for ApiError {
    fn from(err: crate::matchfunding::MatchError) -> Self {
        use crate::matchfunding::MatchError::*;
        let detail = err.to_string();
        match err {
            Invalid(_) => ApiError::validation(detail),
            NoSponsor(_) | NotFound(_) => ApiError::not_found(detail),
            CurrencyMismatch { .. } => ApiError::new(Code::CurrencyMismatch, detail),
            InsufficientBudget { .. } => ApiError::new(Code::InsufficientSponsorBudget, detail),
            Ledger(e) => e.into(),
            Money(e) => e.into(),
            Database(e) => ApiError::database(e),
        }
    }
}

impl From<crate::rounds::RoundError> for WebhookError {
    fn from(err: crate::rounds::RoundError) -> Self {
        ApiError::from(err).into()
    }
}

#[cfg(test)]
mod field_tests {
    use super::field_named;

    #[test]
    fn the_field_a_rule_names_is_the_param() {
        assert_eq!(
            field_named("max_ticket: must not be below min_ticket"),
            Some("max_ticket")
        );
        assert_eq!(field_named("name has 1 to 200 characters"), Some("name"));
        assert_eq!(
            field_named("net_worth.amount must not be negative"),
            Some("net_worth.amount")
        );
        assert_eq!(field_named("a cheque appears twice in the funding"), None);
        assert_eq!(field_named("'x' is not a theme"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offers::ballot::{self, BallotError};

    #[test]
    fn every_code_is_one_snake_case_string_with_an_error_status() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{s}");
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{s}"
            );
        }
    }

    #[test]
    fn a_cheque_refusal_is_cheque_invalid_with_its_reason() {
        use crate::cheques::ChequeError;
        let err = ApiError::from(ChequeError::UnknownCode);
        assert_eq!(
            (err.status(), err.code(), err.reason(), err.detail()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Code::ChequeInvalid,
                Some("unknown_code"),
                "no cheque has this code"
            )
        );
        let err = ApiError::from(ChequeError::TooManyAttempts { wait: 60 });
        assert_eq!(
            (err.status(), err.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, Some(60))
        );
        let err = ApiError::from(ChequeError::UnknownSponsor(uuid::Uuid::nil()));
        assert_eq!((err.code(), err.reason()), (Code::ValidationFailed, None));
    }

    #[test]
    fn an_offer_that_cannot_move_says_its_status() {
        use crate::offers::{OfferError, OfferStatus};
        let err = ApiError::from(OfferError::InvalidTransition {
            status: OfferStatus::Succeeded,
            action: "cancelled",
        });
        assert_eq!(
            (err.status(), err.code(), err.detail()),
            (
                StatusCode::CONFLICT,
                Code::InvalidStateTransition,
                "a succeeded offer cannot be cancelled"
            )
        );
    }

    #[test]
    fn a_ballot_without_its_key_is_a_conflict_named_ballot_key_missing() {
        let err = ApiError::from(ballot::commit(None, uuid::Uuid::now_v7()).unwrap_err());
        assert_eq!(
            (err.status(), err.code()),
            (StatusCode::CONFLICT, Code::BallotKeyMissing)
        );
        let err = ApiError::from(BallotError::SeedMismatch(uuid::Uuid::nil()));
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

#[cfg(test)]
mod payment_and_webhook_error_tests {
    use super::*;
    use crate::money::{Currency, Money};
    use crate::payments::PaymentError;
    use crate::payments::provider::Object;
    use crate::webhooks::signature::SignatureError;

    fn answer(err: PaymentError) -> (StatusCode, &'static str, String) {
        let err = ApiError::from(err);
        (err.status(), err.code().as_str(), err.detail().to_owned())
    }

    #[test]
    fn payment_errors_keep_their_status_code_and_detail() {
        let paid = Money::new("9.00".parse().unwrap(), Currency::EUR).unwrap();
        let mismatch = |object| PaymentError::Mismatch {
            object,
            provider_id: "x_1".into(),
            expected: "10.00".parse().unwrap(),
            currency: "EUR".into(),
            paid,
        };
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        for (object, code, noun) in [
            (Object::Payment, "payment_mismatch", "payment"),
            (Object::Deposit, "payment_mismatch", "deposit"),
            (Object::Refund, "refund_mismatch", "refund"),
            (Object::Payout, "payout_mismatch", "payout"),
        ] {
            assert_eq!(
                answer(mismatch(object)),
                (unprocessable, code, format!("{noun} x_1 is for 10.00 EUR, not {paid}"))
            );
        }
        assert_eq!(
            answer(crate::payments::unknown("refund", "re_1")),
            (StatusCode::NOT_FOUND, "not_found", "no refund re_1".into())
        );
        assert_eq!(
            answer(PaymentError::Unavailable),
            (
                unprocessable,
                "payment_provider_unavailable",
                "no payment provider is configured to take this money (payments.card_provider)".into()
            )
        );
        assert_eq!(
            answer(PaymentError::InvalidSignature(SignatureError::NoSignature)),
            (
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                format!("webhook signature refused: {}", SignatureError::NoSignature)
            )
        );
        assert_eq!(
            answer(PaymentError::NoSuchProvider),
            (StatusCode::NOT_FOUND, "not_found", "no such route".into())
        );
        assert_eq!(
            answer(PaymentError::NotConfigured("stripe")),
            (
                StatusCode::NOT_FOUND,
                "not_found",
                "the stripe provider is not configured".into()
            )
        );
        let unsupported = crate::payments::providers::of_row("stripe")
            .create_refund(uuid::Uuid::nil(), paid)
            .unwrap_err();
        let why = unsupported.to_string();
        assert_eq!(
            answer(unsupported.into()),
            (StatusCode::BAD_GATEWAY, "provider_unavailable", why)
        );
        let timeout = answer(PaymentError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(
            (timeout.0, timeout.1),
            (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
        );
    }

    #[test]
    fn a_lost_batch_is_a_503_batch_lost() {
        let err = ApiError::from(crate::batch::Lost);
        assert_eq!(
            (err.status(), err.code().as_str(), err.detail()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "batch_lost",
                "the request's batch was interrupted; retry it (with the same Idempotency-Key, if any)"
            )
        );
    }

    /// A database error of `code` (SQLSTATE), as Postgres would send it.
    #[derive(Debug, thiserror::Error)]
    #[error("SQLSTATE {0}")]
    struct Sqlstate(&'static str);

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "a test's database error"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn deadlock() -> sqlx::Error {
        sqlx::Error::Database(Box::new(Sqlstate("40P01")))
    }

    #[test]
    fn a_refusal_quarantines_an_event_under_its_code_and_answers_as_before() {
        let refusal = crate::payments::unknown("payment", "pay_1");
        let err = WebhookError::from(refusal);
        match &err {
            WebhookError::Refused { note, .. } => assert_eq!(note, "not_found: no payment pay_1"),
            other => panic!("not a refusal: {other:?}"),
        }
        assert!(!err.is_retryable());
        let answer = ApiError::from(err);
        assert_eq!(
            (answer.status(), answer.code().as_str(), answer.detail()),
            (StatusCode::NOT_FOUND, "not_found", "no payment pay_1")
        );
        let conflict = ApiError::new(Code::InvalidStateTransition, "no").with_reason("why");
        let answer = ApiError::from(WebhookError::from(conflict));
        assert_eq!(
            (answer.status(), answer.code().as_str(), answer.reason()),
            (StatusCode::CONFLICT, "invalid_state_transition", Some("why"))
        );
    }

    #[test]
    fn a_deadlock_met_anywhere_while_receiving_an_event_is_retried() {
        assert!(ApiError::from(deadlock()).is_retryable());
        assert!(WebhookError::Database(deadlock()).is_retryable());
        // Met by a domain that answers ApiError (rounds), by payments, or by the ledger under them.
        for err in [
            WebhookError::from(ApiError::from(deadlock())),
            WebhookError::from(crate::payments::PaymentError::Database(deadlock())),
            WebhookError::from(crate::payments::PaymentError::Ledger(LedgerError::Database(deadlock()))),
        ] {
            assert!(matches!(err, WebhookError::Failed(_)), "{err:?}");
            assert!(err.is_retryable(), "{err:?}");
            let answer = ApiError::from(err);
            assert!(answer.is_retryable());
            assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        }
        let other = WebhookError::from(ApiError::from(sqlx::Error::Database(Box::new(Sqlstate("23505")))));
        assert!(!other.is_retryable());
        // A database out of reach stays a 503 with Retry-After.
        let unavailable = ApiError::from(WebhookError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(
            (
                unavailable.status(),
                unavailable.code().as_str(),
                unavailable.retry_after
            ),
            (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", Some(1))
        );
        let unavailable = ApiError::from(WebhookError::from(ApiError::from(sqlx::Error::PoolTimedOut)));
        assert_eq!(
            (
                unavailable.status(),
                unavailable.code().as_str(),
                unavailable.retry_after
            ),
            (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", Some(1))
        );
        let lost = ApiError::from(WebhookError::from(crate::batch::Lost));
        assert_eq!(
            (lost.status(), lost.code().as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "batch_lost")
        );
        let raced = ApiError::from(WebhookError::StoredMeanwhile);
        assert_eq!(raced.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
