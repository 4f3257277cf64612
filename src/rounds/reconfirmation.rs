//! An offer's documents, and what a new version of its Key Investment Information Sheet asks of
//! the pledges already made (ECSP art. 23, PRODUCT.md section 12): an amendment while the offer
//! is open gives every live pledge of a non-sophisticated investor `reconfirm_by` (4 days). The
//! investor reconfirms it under a current KIIS, or at that time it is revoked and its money given
//! back (an unpaid one is cancelled), its shares released, by the clock's job or by the close.
//!
//! Everything here runs under the offer's row lock, like every other move of its pledges; a
//! pledge's own reservation re-checks the KIIS it names in the update that takes that lock
//! (`offers::store::reserve`), so no pledge is made under a version an amendment just replaced.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::RoundError;
use super::ending::{cancel_pledge_because, give_back};
use crate::offers::documents::{self, Document, DocumentKind, NewDocument};
use crate::offers::{self, OfferStatus, lifecycle::invalid_transition};
use crate::outbox::{self, EventType};
use crate::payments::refunds::RefundReason;
use crate::pledges::{self, Pledge, PledgeEvent, PledgeStatus, store};

/// How long an investor has to reconfirm a pledge after an amendment.
pub(crate) const RECONFIRMATION_PERIOD_DAYS: i64 = 4;

/// Why a pledge ends when its reconfirmation lapsed, in its event.
const NOT_RECONFIRMED: &str = "not_reconfirmed";

/// Pledges looked at per pass of [`revoke_unconfirmed`].
const BATCH: i64 = 500;

/// A document added, and the amendment it made, if it made one.
pub struct Added {
    pub document: Document,
    /// Until when the pledges it concerns may be reconfirmed, and how many they are.
    pub amendment: Option<(DateTime<Utc>, usize)>,
}

/// Adds a document to a draft or open offer. A KIIS that replaces one of its language while the
/// offer is open amends it: `offer.amended`, and `pledge.reconfirmation_required` for each live
/// pledge of a non-sophisticated investor. Call inside a transaction.
pub async fn add_document(
    conn: &mut PgConnection,
    offer_id: Uuid,
    new: &NewDocument,
    now: DateTime<Utc>,
) -> Result<Added, RoundError> {
    let offer = offers::store::lock(conn, offer_id)
        .await?
        .ok_or(RoundError::NoOffer(offer_id))?;
    if !matches!(offer.status, OfferStatus::Draft | OfferStatus::Open) {
        return Err(invalid_transition(&offer, "given documents").into());
    }
    let document = documents::insert(conn, offer_id, new, now).await?;
    let Some(supersedes) = document
        .supersedes
        .filter(|_| document.kind == DocumentKind::Kiis && offer.status == OfferStatus::Open)
    else {
        return Ok(Added {
            document,
            amendment: None,
        });
    };
    // From the document's time as stored (to the microsecond), so that the reply, the events and
    // the pledges all name the same instant.
    let by = (document.added_at + TimeDelta::days(RECONFIRMATION_PERIOD_DAYS)).min(crate::clock::last_writable());
    let asked = store::ask_reconfirmation(conn, offer_id, by).await?;
    let mut event = crate::offers::offer_event(&offer, offer.status);
    for (key, value) in [
        ("document_id", serde_json::json!(document.id)),
        ("language", serde_json::json!(document.language)),
        ("url", serde_json::json!(document.url)),
        ("sha256", serde_json::json!(document.sha256)),
        ("supersedes", serde_json::json!(supersedes)),
        ("reconfirm_by", serde_json::json!(by)),
        ("pledges_to_reconfirm", serde_json::json!(asked.len())),
    ] {
        event[key] = value;
    }
    outbox::emit(conn, EventType::OfferAmended, event, now).await?;
    let events: Vec<_> = asked
        .iter()
        .map(|p| {
            (
                EventType::PledgeReconfirmationRequired,
                PledgeEvent::new(p, p.status).reconfirm_by(by),
                now,
            )
        })
        .collect();
    outbox::emit_many(conn, &events).await?;
    Ok(Added {
        amendment: Some((by, asked.len())),
        document,
    })
}

/// Keeps a pledge whose offer's KIIS was amended: the investor read `kiis_sha256`, a current
/// version added by the amendment or since. Refused (409 `not_reconfirmable`) when no reconfirmation is pending or its time has
/// passed; 422 `kiis_not_acknowledged` for a hash that is not current, or from before the amendment.
pub async fn reconfirm(
    conn: &mut PgConnection,
    pledge_id: Uuid,
    kiis_sha256: &str,
    now: DateTime<Utc>,
) -> Result<Pledge, RoundError> {
    let unlocked = store::get(conn, pledge_id)
        .await?
        .ok_or(RoundError::NoPledge(pledge_id))?;
    let offer = offers::store::lock(conn, unlocked.offer_id)
        .await?
        .expect("offers are never deleted");
    let pledge = store::lock(conn, pledge_id).await?.expect("pledges are never deleted");
    let Some(by) = pledge.reconfirm_by else {
        return Err(RoundError::NotReconfirmable(
            "the pledge has no reconfirmation pending: its offer's KIIS was not amended since it was made or last reconfirmed"
                .into(),
        ));
    };
    if !matches!(pledge.status, PledgeStatus::PendingPayment | PledgeStatus::Funded) {
        return Err(RoundError::NotReconfirmable(format!(
            "the pledge has ended ({})",
            serde_json::to_value(pledge.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        )));
    }
    if now >= by {
        return Err(RoundError::NotReconfirmable(format!(
            "the time to reconfirm the pledge ended at {}",
            by.to_rfc3339()
        )));
    }
    if !offer.kiis_sha256s.iter().any(|h| h == kiis_sha256) {
        return Err(RoundError::KiisNotAcknowledged(format!(
            "kiis_sha256 is not the hash of a current key investment information sheet of this offer (current: {})",
            offer.kiis_sha256s.join(", ")
        )));
    }
    // The amended version, or a later one: a version current since before the amendment (in
    // another language, say) is not what the investor is asked to read.
    if !documents::since_last_amendment(conn, offer.id, kiis_sha256).await? {
        return Err(RoundError::KiisNotAcknowledged(
            "kiis_sha256 names a version from before the offer's last amendment: the investor reconfirms under the amended one"
                .into(),
        ));
    }
    store::record_reconfirmation(conn, pledge_id, kiis_sha256, now).await?;
    outbox::emit(
        conn,
        EventType::PledgeReconfirmed,
        serde_json::to_value(PledgeEvent::new(&pledge, pledge.status).reconfirmed(kiis_sha256))
            .expect("a pledge event serialises"),
        now,
    )
    .await?;
    Ok(store::get(conn, pledge_id).await?.expect("pledges are never deleted"))
}

/// Ends a live pledge whose time to reconfirm has passed: an unpaid one is cancelled, a funded
/// one revoked and all its money given back; its shares return to the offer. The caller holds
/// the offer's and the pledge's locks.
pub(crate) async fn end_unconfirmed(
    conn: &mut PgConnection,
    pledge: &Pledge,
    now: DateTime<Utc>,
) -> Result<(), RoundError> {
    match pledge.status {
        PledgeStatus::PendingPayment => cancel_pledge_because(conn, pledge, Some(NOT_RECONFIRMED), now).await?,
        PledgeStatus::Funded => {
            give_back(conn, pledge, pledge.amount.amount(), RefundReason::NotReconfirmed, now).await?;
            super::matching::give_back(conn, &[pledge.id], super::matching::Why::NotReconfirmed, now).await?;
            store::end_given_back(conn, &[pledge.id], PledgeStatus::Revoked, now).await?;
            offers::store::release(conn, pledge.offer_id, pledge.shares).await?;
            outbox::emit(
                conn,
                EventType::PledgeRevoked,
                serde_json::to_value(PledgeEvent::new(pledge, PledgeStatus::Revoked).because(NOT_RECONFIRMED))
                    .expect("a pledge event serialises"),
                now,
            )
            .await?;
        }
        _ => {}
    }
    store::clear_reconfirmation(conn, pledge.id).await?;
    Ok(())
}

/// The clock's job: ends every pledge whose time to reconfirm has passed at `now`, each in a
/// transaction of its own under its offer's and its own locks (re-checked there, so several
/// processes running it end each once). Returns how many it ended.
pub(crate) async fn revoke_unconfirmed(pool: &PgPool, now: DateTime<Utc>) -> Result<usize, RoundError> {
    let mut ended = 0;
    loop {
        let due = {
            let mut conn = pool.acquire().await?;
            store::reconfirmation_lapsed(&mut conn, now, BATCH).await?
        };
        if due.is_empty() {
            return Ok(ended);
        }
        for (pledge_id, offer_id) in &due {
            let mut tx = pool.begin().await?;
            offers::store::lock(&mut tx, *offer_id).await?;
            let pledge = store::lock(&mut tx, *pledge_id)
                .await?
                .expect("pledges are never deleted");
            if pledge.reconfirm_by.is_some_and(|by| by <= now) {
                if matches!(pledge.status, PledgeStatus::PendingPayment | PledgeStatus::Funded) {
                    ended += 1;
                }
                end_unconfirmed(&mut tx, &pledge, now).await?;
            }
            tx.commit().await?;
        }
        if (due.len() as i64) < BATCH {
            return Ok(ended);
        }
    }
}

/// Whether a pledge still waits for its investor's reconfirmation at `now` (its offer cannot
/// settle until it is reconfirmed or ended).
pub(crate) fn awaiting(pledge: &pledges::Pledge, now: DateTime<Utc>) -> bool {
    pledge.reconfirm_by.is_some_and(|by| by > now)
}
