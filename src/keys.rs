//! API keys and their roles. A key is shown once, when created; only its SHA-256 is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::TryRngCore;
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[sqlx(type_name = "api_role", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Operator,
    /// Investors, pledges, revocations and reads, for a platform's front-end.
    Platform,
    /// Read-only access to the books.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Platform => "platform",
            Role::Auditor => "auditor",
        }
    }
}

pub(crate) type KeyHash = [u8; 32];

pub fn hash(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// A new random key: `clk_` and 256 bits from the operating system's CSPRNG.
pub fn generate() -> SecretString {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source failed");
    SecretString::from(format!("clk_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

#[derive(Debug)]
pub struct CreatedKey {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// The key itself: shown once, never stored.
    pub key: SecretString,
}

#[derive(Debug, sqlx::FromRow)]
pub struct KeyInfo {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn create(conn: &mut PgConnection, name: &str, role: Role, now: DateTime<Utc>) -> sqlx::Result<CreatedKey> {
    let key = generate();
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into api_keys (id, name, role, key_hash, key_prefix, created_at) values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(name)
    .bind(role)
    .bind(&hash(key.expose_secret())[..])
    .bind(&key.expose_secret()[..8])
    .bind(now)
    .execute(conn)
    .await?;
    Ok(CreatedKey {
        id,
        name: name.to_string(),
        role,
        key,
    })
}

/// The role of an active (not revoked) key with this hash.
pub async fn find_active(conn: &mut PgConnection, key_hash: &KeyHash) -> sqlx::Result<Option<(Uuid, Role)>> {
    sqlx::query_as("select id, role from api_keys where key_hash = $1 and revoked_at is null")
        .bind(&key_hash[..])
        .fetch_optional(conn)
        .await
}

/// Revokes a key; returns false if there is no such active key.
pub async fn revoke(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> sqlx::Result<bool> {
    let done = sqlx::query("update api_keys set revoked_at = $2 where id = $1 and revoked_at is null")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<KeyInfo>> {
    sqlx::query_as(&format!("select {COLUMNS} from api_keys order by created_at"))
        .fetch_all(conn)
        .await
}

const COLUMNS: &str = "id, name, role, key_prefix, created_at, revoked_at";

/// The keyset of `GET /v1/api-keys`: newest first.
pub(crate) type PageKey = (DateTime<Utc>, Uuid);

/// A page of keys, newest first, revoked ones included (rows for [`crate::paging::Page::of`]).
pub(crate) async fn page(
    conn: &mut PgConnection,
    request: &crate::paging::PageRequest<PageKey>,
) -> sqlx::Result<Vec<KeyInfo>> {
    let (after_at, after_id) = request.after.unzip();
    sqlx::query_as(&format!(
        "select {COLUMNS} from api_keys
          where $1::timestamptz is null or (created_at, id) < ($1, $2)
          order by created_at desc, id desc
          limit $3"
    ))
    .bind(after_at)
    .bind(after_id)
    .bind(request.fetch())
    .fetch_all(conn)
    .await
}

/// Revokes a key if it is active and returns it as it now is (revoked, at the time of its first
/// revocation); `None` if there is no such key.
pub(crate) async fn revoke_once(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<KeyInfo>> {
    let revoked = sqlx::query_as(&format!(
        "update api_keys set revoked_at = $2 where id = $1 and revoked_at is null returning {COLUMNS}"
    ))
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if revoked.is_some() {
        return Ok(revoked);
    }
    // Revoked already (perhaps just now, by a concurrent call): a statement of its own sees it.
    sqlx::query_as(&format!("select {COLUMNS} from api_keys where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}
