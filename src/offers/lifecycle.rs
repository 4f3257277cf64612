//! Creating, opening and cancelling offers.

use chrono::{DateTime, Months, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::ballot::{self, SeedKey};
use super::{Allocation, ECSP_CAP_EUR, Offer, OfferError, OfferStatus, Terms, offer_event, store};
use crate::money::Money;
use crate::outbox::{self, EventType};
use crate::projects::{self, Project, ProjectError, ProjectStatus};

pub(crate) fn invalid_transition(offer: &Offer, action: &'static str) -> OfferError {
    OfferError::InvalidTransition {
        status: offer.status,
        action,
    }
}

/// Refuses terms that would take the project's offers of the last 12 months past €5M.
async fn check_ecsp_cap(
    conn: &mut PgConnection,
    project_id: Uuid,
    terms_max: Money,
    now: DateTime<Utc>,
) -> Result<(), OfferError> {
    let since = now.checked_sub_months(Months::new(12)).unwrap_or(now);
    let committed = store::ecsp_committed(conn, project_id, since).await?;
    if committed + terms_max.amount() > ECSP_CAP_EUR {
        return Err(OfferError::EcspCapExceeded {
            committed,
            asked: terms_max.amount(),
        });
    }
    Ok(())
}

/// The project's status, locked: opening offers of one project runs one at a time, so two
/// openings cannot both squeeze under the ECSP cap.
async fn lock_project(conn: &mut PgConnection, project_id: Uuid) -> Result<Option<ProjectStatus>, OfferError> {
    Ok(projects::store::lock_status(conn, project_id).await?)
}

pub async fn create(
    conn: &mut PgConnection,
    project_id: Uuid,
    terms: &Terms,
    now: DateTime<Utc>,
) -> Result<Offer, OfferError> {
    match lock_project(conn, project_id).await? {
        None => return Err(ProjectError::NotFound(project_id).into()),
        Some(ProjectStatus::Archived) => return Err(OfferError::ProjectArchived),
        Some(_) => {}
    }
    check_ecsp_cap(conn, project_id, terms.max_target(), now).await?;
    Ok(store::insert(conn, project_id, terms, now).await?)
}

/// Archives a draft or published project, refused (409 `project_has_open_offers`) while one of
/// its offers is open: an archived project takes no pledges. Under the project's row lock, the
/// one [`open`] takes, so an offer cannot open between the check and the archive.
pub async fn archive_project(
    conn: &mut PgConnection,
    project_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Project, OfferError> {
    let status = lock_project(conn, project_id)
        .await?
        .ok_or(ProjectError::NotFound(project_id))?;
    if status != ProjectStatus::Archived && store::has_open(conn, project_id).await? {
        return Err(OfferError::ProjectHasOpenOffers);
    }
    Ok(projects::Lifecycle::Archive.apply(conn, project_id, now).await?)
}

/// `draft → open`: the project must be published and the cap respected; a ballot publishes its
/// commitment `sha256(seed)` now, and stores only the nonce its seed is derived from with
/// `seed_key` (409 `ballot_key_missing` without one).
pub async fn open(
    conn: &mut PgConnection,
    offer_id: Uuid,
    seed_key: Option<&SeedKey>,
    now: DateTime<Utc>,
) -> Result<(), OfferError> {
    let unlocked = store::get(conn, offer_id)
        .await?
        .ok_or(OfferError::NotFound(offer_id))?;
    let project_status = lock_project(conn, unlocked.project_id).await?;
    let offer = store::lock(conn, offer_id).await?.expect("offers are never deleted");
    if offer.status != OfferStatus::Draft {
        return Err(invalid_transition(&offer, "opened"));
    }
    if project_status != Some(ProjectStatus::Published) {
        return Err(OfferError::ProjectNotPublished);
    }
    if offer.closes_at <= now {
        return Err(OfferError::ClosingTimePassed);
    }
    if offer.kiis_sha256s.is_empty() {
        return Err(OfferError::KiisMissing);
    }
    check_ecsp_cap(conn, offer.project_id, offer.max_target(), now).await?;
    if offer.allocation == Allocation::Ballot {
        let (nonce, commitment) = ballot::commit(seed_key, offer_id)?;
        store::set_ballot(conn, offer_id, &nonce, &commitment).await?;
    }
    store::set_status(conn, offer_id, OfferStatus::Open, now).await?;
    let mut event = offer_event(&offer, OfferStatus::Open);
    event["opens_at"] = serde_json::json!(offer.opens_at);
    event["closes_at"] = serde_json::json!(offer.closes_at);
    outbox::emit(conn, EventType::OfferOpened, event, now).await?;
    Ok(())
}
