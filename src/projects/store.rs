//! The SQL for `projects` (migrations/0004_projects_investors.sql).

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::payout::{BankAccount, LegalRepresentative, PayoutDetails, StripeAccount};
use super::{Country, ImpactIndicator, NewProject, Project, ProjectFilter, ProjectStatus, Theme};

const COLUMNS: &str = "id, name, legal_name, legal_form, country, territory, themes, description, \
                       impact_indicators, status, created_at, updated_at, payout_stripe_account, \
                       payout_bank_account, payout_company_number, payout_legal_representative";

#[derive(FromRow)]
struct ProjectRow {
    id: Uuid,
    name: String,
    legal_name: String,
    legal_form: String,
    country: String,
    territory: String,
    themes: Vec<String>,
    description: String,
    impact_indicators: Json<Vec<ImpactIndicator>>,
    status: ProjectStatus,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    payout_stripe_account: Option<String>,
    payout_bank_account: Option<Json<BankAccount>>,
    payout_company_number: Option<String>,
    payout_legal_representative: Option<Json<LegalRepresentative>>,
}

impl TryFrom<ProjectRow> for Project {
    type Error = sqlx::Error;

    fn try_from(row: ProjectRow) -> Result<Self, sqlx::Error> {
        let decode = |e: super::FieldError| sqlx::Error::Decode(Box::new(e));
        Ok(Project {
            id: row.id,
            name: row.name,
            legal_name: row.legal_name,
            legal_form: row.legal_form,
            country: Country::parse(&row.country).map_err(decode)?,
            territory: row.territory,
            themes: row
                .themes
                .iter()
                .map(|t| t.parse::<Theme>())
                .collect::<Result<_, _>>()
                .map_err(decode)?,
            description: row.description,
            impact_indicators: row.impact_indicators.0,
            status: row.status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            payout: PayoutDetails {
                stripe_account: row
                    .payout_stripe_account
                    .map(|a| StripeAccount::parse("payout_stripe_account", &a))
                    .transpose()
                    .map_err(decode)?,
                bank_account: row.payout_bank_account.map(|b| b.0),
                company_number: row.payout_company_number,
                legal_representative: row.payout_legal_representative.map(|r| r.0),
            },
        })
    }
}

fn theme_names(themes: &[Theme]) -> Vec<&'static str> {
    themes.iter().map(|t| t.as_str()).collect()
}

/// Stores a new draft project.
pub async fn insert(conn: &mut PgConnection, new: &NewProject, now: DateTime<Utc>) -> Result<Project, sqlx::Error> {
    let row: ProjectRow = sqlx::query_as(&format!(
        "insert into projects (id, name, legal_name, legal_form, country, territory, themes, description,
                               impact_indicators, status, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'draft', $10, $10)
         returning {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&new.name)
    .bind(&new.legal_name)
    .bind(&new.legal_form)
    .bind(new.country.as_str())
    .bind(&new.territory)
    .bind(theme_names(&new.themes))
    .bind(&new.description)
    .bind(Json(&new.impact_indicators))
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    row.try_into()
}

/// One project, whatever its status.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Project>, sqlx::Error> {
    let row: Option<ProjectRow> = sqlx::query_as(&format!("select {COLUMNS} from projects where id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(Project::try_from).transpose()
}

/// A project's status, without the rest.
pub async fn status(conn: &mut PgConnection, id: Uuid) -> Result<Option<ProjectStatus>, sqlx::Error> {
    sqlx::query_scalar("select status from projects where id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
}

/// A project's status, its row locked until the transaction ends: offers of one project are
/// opened one at a time (offers/lifecycle.rs).
pub(crate) async fn lock_status(conn: &mut PgConnection, id: Uuid) -> Result<Option<ProjectStatus>, sqlx::Error> {
    sqlx::query_scalar("select status from projects where id = $1 for update")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
}

/// Moves a project to `to` if its status is one of `from`, in one statement: `None` when no
/// project with that id had one of those statuses.
pub(crate) async fn transition(
    conn: &mut PgConnection,
    id: Uuid,
    from: &[ProjectStatus],
    to: ProjectStatus,
    now: DateTime<Utc>,
) -> Result<Option<Project>, sqlx::Error> {
    let row: Option<ProjectRow> = sqlx::query_as(&format!(
        "update projects set status = $3, updated_at = $4 where id = $1 and status = any($2) returning {COLUMNS}"
    ))
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(Project::try_from).transpose()
}

/// Sets where a project is paid, whatever its status: `None` when there is no such project.
pub(crate) async fn set_payout(
    conn: &mut PgConnection,
    id: Uuid,
    payout: &PayoutDetails,
    now: DateTime<Utc>,
) -> Result<Option<Project>, sqlx::Error> {
    let row: Option<ProjectRow> = sqlx::query_as(&format!(
        "update projects set payout_stripe_account = $2, payout_bank_account = $3, payout_company_number = $5,
                             payout_legal_representative = $6, updated_at = $4
          where id = $1 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(payout.stripe_account.as_ref().map(StripeAccount::as_str))
    .bind(payout.bank_account.as_ref().map(Json))
    .bind(now)
    .bind(payout.company_number.as_deref())
    .bind(payout.legal_representative.as_ref().map(Json))
    .fetch_optional(&mut *conn)
    .await?;
    row.map(Project::try_from).transpose()
}

/// Projects matching `filter`, newest first, after the keyset position `after`.
pub async fn list(
    conn: &mut PgConnection,
    filter: &ProjectFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Project>, sqlx::Error> {
    // Only the predicates asked for, so the planner can use the theme and territory indexes.
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("select {COLUMNS} from projects where status = any("));
    q.push_bind(filter.statuses.clone()).push(")");
    if let Some(theme) = filter.theme {
        q.push(" and themes @> array[")
            .push_bind(theme.as_str())
            .push("]::text[]");
    }
    if let Some(territory) = &filter.territory {
        q.push(" and lower(territory) = lower(")
            .push_bind(territory.clone())
            .push(")");
    }
    crate::paging::push_newest_first(&mut q, after, limit);
    let rows: Vec<ProjectRow> = q.build_query_as().fetch_all(&mut *conn).await?;
    rows.into_iter().map(Project::try_from).collect()
}
