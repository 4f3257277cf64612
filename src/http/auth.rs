//! `Authorization: Bearer <key>` → the caller's role. Handlers state which roles they admit.

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::error::ApiError;
use crate::keys::{self, KeyHash, Role};

/// A set of roles a route admits, named by a marker type: `Auth<Operators>`, `Auth<BookReaders>`.
pub(crate) trait Allowed: Send + Sync + 'static {
    const ROLES: &'static [Role];
}

/// Operators only.
pub(crate) struct Operators;
impl Allowed for Operators {
    const ROLES: &'static [Role] = &[Role::Operator];
}

/// Those who may read the books: operators and auditors.
pub(crate) struct BookReaders;
impl Allowed for BookReaders {
    const ROLES: &'static [Role] = &[Role::Operator, Role::Auditor];
}

/// A platform's front-end acting for investors, and operators.
pub(crate) struct PlatformUsers;
impl Allowed for PlatformUsers {
    const ROLES: &'static [Role] = &[Role::Operator, Role::Platform];
}

/// Any valid key.
pub(crate) struct AnyRole;
impl Allowed for AnyRole {
    const ROLES: &'static [Role] = &[Role::Operator, Role::Platform, Role::Auditor];
}

/// An authenticated caller whose role is in `A`. As an extractor it answers 401/403 before
/// the body is read, so a caller without the role learns nothing from validation errors.
pub(crate) struct Auth<A: Allowed> {
    pub caller: Caller,
    _allowed: PhantomData<A>,
}

impl<A: Allowed, S: Send + Sync> FromRequestParts<S> for Auth<A>
where
    KeyCheck: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(A::ROLES)?;
        Ok(Auth {
            caller,
            _allowed: PhantomData,
        })
    }
}

/// Verifies keys: the bootstrap operator key from configuration, then the stored ones.
#[derive(Debug, Default)]
pub struct Authenticator {
    bootstrap: Option<KeyHash>,
}

impl Authenticator {
    pub fn new(bootstrap_operator_key: Option<&SecretString>) -> Arc<Self> {
        Arc::new(Authenticator {
            bootstrap: bootstrap_operator_key.map(|k| keys::hash(k.expose_secret())),
        })
    }
}

/// Who is calling: their role, and the stored key's id (none for the bootstrap key).
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub role: Role,
    pub key_id: Option<Uuid>,
}

impl Caller {
    /// The caller as the author of a write kept for the audit trail.
    pub(crate) fn author(&self) -> crate::audit::Author {
        crate::audit::Author {
            key_id: self.key_id,
            role: self.role,
        }
    }

    pub(crate) fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(format!(
                "this needs the {} role; the key has the {} role",
                names.join(" or "),
                self.role.as_str()
            )))
        }
    }
}

/// The key in an `Authorization: Bearer <key>` header, if the header has that form.
pub(crate) fn bearer_key(header: &HeaderValue) -> Option<&str> {
    header
        .to_str()
        .ok()
        // The scheme name is case-insensitive (RFC 9110, section 11.1).
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|k| !k.is_empty() && k.len() <= 200)
}

/// What checking a key takes from the app's state (by `FromRef`, so this module needs none of
/// the rest of it): the stored keys' pool and the bootstrap key.
#[derive(Clone)]
pub(crate) struct KeyCheck {
    pub pool: PgPool,
    pub auth: Arc<Authenticator>,
}

/// Where the audit trail (`http/audit.rs`) learns who made a request: it puts an empty slot in
/// the request, and checking the key fills it.
#[derive(Clone, Default)]
pub(crate) struct CallerSlot(Arc<OnceLock<Caller>>);

impl CallerSlot {
    pub(crate) fn get(&self) -> Option<Caller> {
        self.0.get().copied()
    }

    /// Names the caller a request's key was checked as, however it was presented.
    pub(crate) fn fill(&self, caller: Caller) {
        let _ = self.0.set(caller);
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    KeyCheck: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = check(parts, &KeyCheck::from_ref(state)).await?;
        if let Some(slot) = parts.extensions.get::<CallerSlot>() {
            let _ = slot.0.set(caller);
        }
        Ok(caller)
    }
}

/// The caller a request's key names. Every request looks its key up afresh: nothing is cached,
/// so a revoked key is refused from the moment its revocation commits.
async fn check(parts: &Parts, state: &KeyCheck) -> Result<Caller, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <api key> header"))?;
    let key = bearer_key(header)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be 'Bearer <api key>'"))?;
    caller_of_key(state, key).await
}

/// The caller `key` names, however it was presented (a bearer header, the console's session
/// cookie).
pub(crate) async fn caller_of_key(state: &KeyCheck, key: &str) -> Result<Caller, ApiError> {
    let presented = keys::hash(key);
    if let Some(bootstrap) = &state.auth.bootstrap
        && bool::from(bootstrap.ct_eq(&presented))
    {
        return Ok(Caller {
            role: Role::Operator,
            key_id: None,
        });
    }
    let mut conn = state.pool.acquire().await?;
    match keys::find_active(&mut conn, &presented).await? {
        Some((id, role)) => Ok(Caller { role, key_id: Some(id) }),
        None => Err(ApiError::unauthorized("unknown or revoked API key")),
    }
}
