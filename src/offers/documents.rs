//! An offer's documents: above all its Key Investment Information Sheet (ECSP art. 23), which
//! an investor reads before pledging and names by its SHA-256. Of kind `kiis`, the last added
//! of each language is current (by `seq`, the order the offer's row lock gave them); the offer's row keeps their hashes (`offers.kiis_sha256s`) so that
//! a pledge reads them with the offer. Documents are never edited (migration 0039): a new
//! version is a new document that supersedes the one before in its language.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::OfferError;
use crate::db::errors::ResultExt;
use crate::fields::FieldError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "offer_document_kind", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// The Key Investment Information Sheet: an offer opens only with one, and pledges name it.
    Kiis,
    /// Anything else the platform publishes with the offer (articles, business plan, accounts).
    Other,
}

/// A document as the operator sends it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    pub kind: DocumentKind,
    /// ISO 639-1, lower case.
    #[schema(example = "fr", pattern = "^[a-z]{2}$")]
    pub language: String,
    /// Where investors read it (http or https).
    #[schema(
        example = "https://platform.example/offers/crois-sens/kiis-fr-v1.pdf",
        max_length = 2000,
        pattern = r"^https?://[^\s\u0000-\u001f\u007f-\u009f]+$"
    )]
    pub url: String,
    /// The SHA-256 of the document's bytes, in hex: what pledges name.
    #[schema(
        example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        pattern = "^[0-9a-fA-F]{64}$"
    )]
    pub sha256: String,
}

/// A document that satisfies every rule; serialises canonically for `Idempotency-Key`.
#[derive(Debug, Serialize)]
pub struct NewDocument {
    pub kind: DocumentKind,
    pub language: String,
    pub url: String,
    pub sha256: String,
}

/// A SHA-256 in lower-case hex, as stored and compared.
pub(crate) fn parse_sha256(field: &str, value: &str) -> Result<String, FieldError> {
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FieldError(format!("{field} must be a SHA-256 in hex (64 characters)")));
    }
    Ok(value.to_ascii_lowercase())
}

impl NewDocument {
    pub fn parse(input: DocumentInput) -> Result<Self, FieldError> {
        let language = input.language.trim();
        if language.len() != 2 || !language.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(FieldError(
                "language must be an ISO 639-1 code in lower case, e.g. fr".into(),
            ));
        }
        let url = input.url.trim();
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !scheme_ok || url.chars().count() > 2000 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(FieldError(
                "url must be an http or https address of at most 2000 characters".into(),
            ));
        }
        Ok(NewDocument {
            kind: input.kind,
            language: language.to_owned(),
            url: url.to_owned(),
            sha256: parse_sha256("sha256", &input.sha256)?,
        })
    }
}

/// A document as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Document {
    pub id: Uuid,
    pub offer_id: Uuid,
    pub kind: DocumentKind,
    pub language: String,
    pub url: String,
    pub sha256: String,
    pub added_at: DateTime<Utc>,
    /// The document of its kind and language it replaced.
    pub supersedes: Option<Uuid>,
}

const COLUMNS: &str = "id, offer_id, kind, language, url, sha256, added_at, supersedes";

/// Adds a document to an offer whose row the caller has locked, and keeps the offer's current
/// KIIS hashes; returns it. 409 `document_exists` for bytes the offer has already.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    offer_id: Uuid,
    new: &NewDocument,
    now: DateTime<Utc>,
) -> Result<Document, OfferError> {
    let document: Document = sqlx::query_as(&format!(
        "insert into offer_documents (id, offer_id, kind, language, url, sha256, added_at, supersedes)
         values ($1, $2, $3, $4, $5, $6, $7,
                 (select id from offer_documents where offer_id = $2 and kind = $3 and language = $4
                   order by seq desc limit 1))
         returning {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(offer_id)
    .bind(new.kind)
    .bind(&new.language)
    .bind(&new.url)
    .bind(&new.sha256)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .on_constraint("offer_documents_once", |_| {
        OfferError::DocumentExists(new.sha256.clone())
    })?;
    if new.kind == DocumentKind::Kiis {
        sqlx::query(
            "update offers set kiis_sha256s =
                    (select array_agg(sha256 order by language)
                       from (select distinct on (language) language, sha256 from offer_documents
                              where offer_id = $1 and kind = 'kiis'
                              order by language, seq desc) latest)
              where id = $1",
        )
        .bind(offer_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(document)
}

/// An offer's documents, in the order they were added.
pub(crate) async fn of_offer(conn: &mut PgConnection, offer_id: Uuid) -> sqlx::Result<Vec<Document>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from offer_documents where offer_id = $1 order by seq"
    ))
    .bind(offer_id)
    .fetch_all(conn)
    .await
}

/// Whether the offer's KIIS with this hash was added by its last amendment (the last KIIS that
/// replaced another) or after it. By insertion order (`seq`), which the offer's row lock makes
/// the order of the amendments, whatever the clocks of the processes say.
pub(crate) async fn since_last_amendment(conn: &mut PgConnection, offer_id: Uuid, sha256: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from offer_documents d
                         where d.offer_id = $1 and d.sha256 = $2 and d.kind = 'kiis'
                           and d.seq >= coalesce((select max(seq) from offer_documents
                                                   where offer_id = $1 and kind = 'kiis' and supersedes is not null), 0))",
    )
    .bind(offer_id)
    .bind(sha256)
    .fetch_one(conn)
    .await
}
