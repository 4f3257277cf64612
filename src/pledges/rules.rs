//! The rules of pledging and revoking (PRODUCT.md section 4, ECSP arts. 21–22).
//!
//! A pledge is checked against the offer and the investor before its transaction, then written
//! with the shortest possible hold on the offer's row: the pledge and its payment are inserted
//! first, the reservation (`update offers … shares_reserved`) comes last, just before commit.
//!
//! `max_ticket` and the risk warning apply to the investor's live pledges on the offer taken
//! together ([`TicketLimits`]). Where they could refuse a pledge, its transaction first takes the
//! investor's ticket lock on the offer and reads that total (`store::lock_ticket_totals`), so two
//! racing pledges of one investor are judged one after the other (docs/rounds.md).

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::store::{self, NewPledge};
use super::{Pledge, PledgeError, PledgeStatus, REFLECTION_PERIOD_DAYS};
use crate::audit::Author;
use crate::cheques::redeem::{self, Spend};
use crate::db::errors::ResultExt;
use crate::investors::appropriateness::{KnowledgeTest, Standing};
use crate::investors::{self, Classification, Investor, KycStatus};
use crate::money::{Amount, Money, format_amount};
use crate::offers::{self, Offer};
use crate::outbox::{self, EventType};
use crate::payments;
use crate::payments::card::Payment;
use crate::payments::provider::PaymentProvider;
use crate::projects;

/// Above this (or 5% of net worth, if higher) a non-sophisticated investor must acknowledge the
/// risk warning (ECSP art. 21(7)).
pub(crate) const RISK_WARNING_FLOOR_EUR: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);

/// The limits a pledge is held to over the investor's live pledges (pending, funded or allocated)
/// on its offer, itself included: `max_ticket`, and the risk warning (ECSP art. 21(7) speaks of
/// the amount invested in the offer) unless acknowledged. PRODUCT.md section 12.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TicketLimits {
    max_ticket: Option<Money>,
    /// For a non-sophisticated investor who did not acknowledge the risk warning.
    risk_threshold: Option<Decimal>,
}

impl TicketLimits {
    /// The limits of a pledge by `investor` on `offer`.
    pub fn of(offer: &Offer, investor: &Investor, risk_acknowledged: bool) -> Self {
        let risk_threshold =
            (investor.classification != Classification::Sophisticated && !risk_acknowledged).then(|| {
                let five_percent = investor
                    .net_worth
                    .filter(|w| w.currency() == offer.currency)
                    .map(|w| w.amount() * Decimal::new(5, 2))
                    .unwrap_or_default();
                RISK_WARNING_FLOOR_EUR.max(five_percent)
            });
        TicketLimits {
            max_ticket: offer.max_ticket,
            risk_threshold,
        }
    }

    /// Whether a limit could refuse the pledge: only then is the investor's total read, under
    /// its ticket lock.
    pub fn apply(&self) -> bool {
        self.max_ticket.is_some() || self.risk_threshold.is_some()
    }

    /// Judges a pledge of `amount` when the investor's live pledges on the offer already come to
    /// `before`.
    pub fn check(&self, before: Decimal, amount: Money) -> Result<(), PledgeError> {
        let total = before + amount.amount();
        let currency = amount.currency();
        let so_far = || {
            format!(
                "the investor's live pledges on this offer come to {} {currency}; with this {amount} they \
                 would come to {} {currency}, ",
                format_amount(before, currency),
                format_amount(total, currency)
            )
        };
        if let Some(max) = self.max_ticket
            && total > max.amount()
        {
            let detail = if before.is_zero() {
                format!("{amount} is above the maximum ticket of {max}")
            } else {
                format!("{}above the maximum ticket of {max}", so_far())
            };
            return Err(PledgeError::AboveMaxTicket(detail));
        }
        if let Some(threshold) = self.risk_threshold
            && total > threshold
        {
            let threshold = format_amount(threshold, currency);
            let detail = if before.is_zero() {
                format!("a pledge above {threshold} {currency} needs risk_acknowledged: true")
            } else {
                format!(
                    "{}above {threshold} {currency}: this pledge needs risk_acknowledged: true",
                    so_far()
                )
            };
            return Err(PledgeError::RiskWarningRequired(detail));
        }
        Ok(())
    }
}

/// Whether a pledge by `investor` on `offer` counts toward totals that [`TicketLimits`] may
/// read: it does on an offer with a `max_ticket` and for a non-sophisticated investor (both
/// fixed for good), so other pledges are left out of the index those reads use (migration 0022).
fn in_ticket_totals(offer: &Offer, investor: &Investor) -> bool {
    offer.max_ticket.is_some() || investor.classification != Classification::Sophisticated
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FundingKind {
    Card,
    Cheque,
    /// Wired by the investor to the account and with the reference the pledge answers.
    BankTransfer,
}

impl FundingKind {
    /// Money paid through the payment provider (a card or a bank transfer), not a cheque.
    pub fn through_provider(self) -> bool {
        matches!(self, FundingKind::Card | FundingKind::BankTransfer)
    }
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FundingSource {
    pub kind: FundingKind,
    pub amount: Amount,
    /// For `cheque` sources: the code printed on the cheque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cheque_code: Option<String>,
}

/// Leaves the cheque's code out: a code is spendable money.
impl std::fmt::Debug for FundingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FundingSource")
            .field("kind", &self.kind)
            .field("amount", &self.amount)
            .field("cheque_code", &self.cheque_code.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PledgeRequest {
    pub investor_id: Uuid,
    /// A whole number of shares.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "crate::fields::whole")]
    pub shares: i64,
    /// Where the money comes from; the amounts add up to shares × share_price.
    #[schema(min_items = 1, max_items = 10)]
    pub funding: Vec<FundingSource>,
    /// Required (true) for a non-sophisticated investor whose live pledges on the offer, this one
    /// included, come to more than the risk-warning threshold, and for every pledge of one who
    /// failed the entry knowledge test.
    #[serde(default)]
    pub risk_acknowledged: bool,
    /// The version of the risk-warning text the investor acknowledged (with `risk_acknowledged`);
    /// the service's `investor_protection.risk_warning_version` when absent. Kept on the pledge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub risk_warning_version: Option<String>,
    /// Required: the SHA-256 of the offer's Key Investment Information Sheet the investor read,
    /// one of the offer's current versions (`GET /v1/offers/{id}/documents`); else 422
    /// `kiis_not_acknowledged`. Kept on the pledge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(required = true, pattern = "^[0-9a-fA-F]{64}$")]
    pub kiis_sha256: Option<String>,
}

pub(super) fn not_open(offer: &Offer, now: DateTime<Utc>) -> PledgeError {
    let why = if offer.status != offers::OfferStatus::Open {
        format!(
            "the offer is {}",
            serde_json::to_value(offer.status)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("closed")
        )
    } else if now < offer.opens_at {
        format!("the offer opens at {}", offer.opens_at.to_rfc3339())
    } else {
        format!("the offer closed at {}", offer.closes_at.to_rfc3339())
    };
    PledgeError::OfferNotOpen(why)
}

/// A pledge that passed every check that needs no lock.
pub struct Checked {
    offer: Offer,
    pledge: NewPledge,
    cheques: Vec<Spend>,
    limits: TicketLimits,
    /// Who pays, as a networked provider keeps payers, and how.
    payer: payments::calls::Payer,
    method: payments::calls::Method,
}

pub(super) fn offer_full(shares: i64) -> PledgeError {
    PledgeError::OfferFull(format!("the offer has no room for {shares} more shares"))
}

impl PledgeRequest {
    /// Whether all of its money comes from a card: such pledges can be judged without looking
    /// up cheques, so they go through the offer's batch (pledges/http/batcher.rs).
    pub fn card_only(&self) -> bool {
        self.funding.iter().all(|s| s.kind == FundingKind::Card)
    }
}

/// The pledge's money as asked: its amount, its part paid through the provider (`card`, by
/// `method`), and its cheque parts by code.
struct Asked<'r> {
    amount: Money,
    card: Decimal,
    method: payments::calls::Method,
    codes: Vec<(&'r str, Money)>,
    /// The current KIIS the investor read, and (non-sophisticated) the record they are judged on.
    kiis_sha256: String,
    appropriateness: Option<Standing>,
}

/// The ECSP gate before a pledge (PRODUCT.md section 12): a non-sophisticated investor pledges
/// under a valid appropriateness record (art. 21), and every pledge names a current KIIS of the
/// offer (art. 23). Both read with the offer and the investor, so no round trip of their own.
fn gate(
    offer: &Offer,
    investor: &Investor,
    req: &PledgeRequest,
    now: DateTime<Utc>,
) -> Result<(String, Option<Standing>), PledgeError> {
    let standing = if investor.classification == Classification::Sophisticated {
        None
    } else {
        match investor.appropriateness {
            None => return Err(PledgeError::AppropriatenessRequired),
            Some(standing) if standing.valid_until <= now => {
                return Err(PledgeError::AppropriatenessExpired(standing.valid_until));
            }
            standing => standing,
        }
    };
    let kiis = match req.kiis_sha256.as_deref() {
        None => {
            return Err(PledgeError::KiisNotAcknowledged(
                "kiis_sha256 is required: the SHA-256 of the offer's key investment information sheet the investor read"
                    .into(),
            ));
        }
        Some(given) => given.to_ascii_lowercase(),
    };
    if !offer.kiis_sha256s.contains(&kiis) {
        let why = if offer.kiis_sha256s.is_empty() {
            "the offer has no key investment information sheet".to_owned()
        } else {
            format!(
                "kiis_sha256 is not the hash of a current key investment information sheet of this offer (current: {})",
                offer.kiis_sha256s.join(", ")
            )
        };
        return Err(PledgeError::KiisNotAcknowledged(why));
    }
    Ok((kiis, standing))
}

/// The checks that need only the offer and the investor (`None`: there is no such investor),
/// in the order their errors take precedence.
fn admit<'r>(
    offer: &Offer,
    investor: Option<&Investor>,
    req: &'r PledgeRequest,
    now: DateTime<Utc>,
) -> Result<Asked<'r>, PledgeError> {
    if !offer.accepts_pledges(now) {
        return Err(not_open(offer, now));
    }
    if req.shares < 1 {
        return Err(PledgeError::Invalid(
            "shares must be a whole number of at least 1".into(),
        ));
    }
    if req.shares > offer.reserve_limit {
        // It would cross the cap whatever else is pledged.
        return Err(PledgeError::OfferFull(format!(
            "the offer takes at most {} shares in all",
            offer.reserve_limit
        )));
    }
    let investor = investor.ok_or_else(|| PledgeError::Invalid(format!("no investor {}", req.investor_id)))?;
    if investor.kyc_status != KycStatus::Verified {
        return Err(PledgeError::InvestorNotVerified);
    }
    let (kiis_sha256, appropriateness) = gate(offer, investor, req, now)?;
    let amount = offer.price_of(req.shares);
    if amount.amount() < offer.min_ticket.amount() {
        return Err(PledgeError::BelowMinTicket(format!(
            "{amount} is below the minimum ticket of {}",
            offer.min_ticket
        )));
    }
    // Alone above the maximum ticket: refused without reading the investor's total.
    TicketLimits {
        max_ticket: offer.max_ticket,
        risk_threshold: None,
    }
    .check(Decimal::ZERO, amount)?;

    if let Some(version) = &req.risk_warning_version
        && (version.is_empty() || version.chars().count() > 64 || version.chars().any(char::is_control))
    {
        return Err(PledgeError::Invalid(
            "risk_warning_version must be 1 to 64 characters with no control characters".into(),
        ));
    }
    if req.funding.is_empty() || req.funding.len() > 10 {
        return Err(PledgeError::Invalid("funding lists 1 to 10 sources".into()));
    }
    let mut total = Decimal::ZERO;
    let mut card = Decimal::ZERO;
    let mut method = payments::calls::Method::Card;
    let mut codes = Vec::new();
    for source in &req.funding {
        let part = Money::exact_positive(source.amount.value(), offer.currency)
            .map_err(|e| PledgeError::Invalid(format!("funding amount: {e}")))?;
        total += part.amount();
        match (source.kind, source.cheque_code.as_deref()) {
            (FundingKind::Cheque, None) => {
                return Err(PledgeError::Invalid("a cheque source needs its cheque_code".into()));
            }
            (FundingKind::Cheque, Some(code)) => codes.push((code, part)),
            (_, Some(_)) => {
                return Err(PledgeError::Invalid("only a cheque source has a cheque_code".into()));
            }
            (_, None) if card > Decimal::ZERO => {
                return Err(PledgeError::Invalid(
                    "funding has at most one card or bank_transfer source".into(),
                ));
            }
            (kind, None) => {
                card += part.amount();
                if kind == FundingKind::BankTransfer {
                    method = payments::calls::Method::BankTransfer;
                }
            }
        }
    }
    if total != amount.amount() {
        return Err(PledgeError::Invalid(format!(
            "the funding adds up to {total}, the pledge is {amount}"
        )));
    }
    Ok(Asked {
        amount,
        card,
        method,
        codes,
        kiis_sha256,
        appropriateness,
    })
}

/// The risk warning (ECSP art. 21(7)) for the pledge alone, then the pledge as it will be
/// written and the limits its investor's total on the offer is still held to.
fn settle(
    offer: &Offer,
    investor: &Investor,
    req: &PledgeRequest,
    asked: &Asked<'_>,
    cheques: &[Spend],
    now: DateTime<Utc>,
) -> Result<(NewPledge, TicketLimits), PledgeError> {
    let amount = asked.amount;
    let sophisticated = investor.classification == Classification::Sophisticated;
    if asked
        .appropriateness
        .is_some_and(|a| a.knowledge_test == KnowledgeTest::Failed)
        && !req.risk_acknowledged
    {
        return Err(PledgeError::RiskWarningRequired(
            "the investor did not pass the entry knowledge test: every pledge needs risk_acknowledged: true".into(),
        ));
    }
    let limits = TicketLimits::of(offer, investor, req.risk_acknowledged);
    limits.check(Decimal::ZERO, amount)?;

    // What is kept of the funding: kinds, amounts and which cheque, never a cheque's code.
    let mut spent = cheques.iter();
    let funding = serde_json::json!(
        req.funding
            .iter()
            .map(|s| {
                let amount = Money::new(s.amount.value(), offer.currency)
                    .map(|m| m.amount_string())
                    .unwrap_or_default();
                match s.kind {
                    FundingKind::Card | FundingKind::BankTransfer => {
                        serde_json::json!({ "kind": s.kind, "amount": amount })
                    }
                    FundingKind::Cheque => serde_json::json!({ "kind": s.kind, "amount": amount,
                                                           "cheque_id": spent.next().map(|c| c.cheque.id) }),
                }
            })
            .collect::<Vec<_>>()
    );
    let pledge = NewPledge {
        id: Uuid::now_v7(),
        offer_id: offer.id,
        investor_id: investor.id,
        shares: req.shares,
        amount,
        funding,
        card_amount: asked.card,
        risk_acknowledged: req.risk_acknowledged,
        reflection_ends_at: (!sophisticated).then(|| now + TimeDelta::days(REFLECTION_PERIOD_DAYS)),
        payment_due_at: match asked.method {
            payments::calls::Method::Card => now + TimeDelta::seconds(i64::from(offer.payment_window_seconds)),
            // A wire takes days; it is waited for until the window ends or the offer closes.
            payments::calls::Method::BankTransfer => {
                (now + TimeDelta::seconds(i64::from(offer.bank_transfer_window_seconds))).min(offer.closes_at)
            }
        },
        in_ticket_totals: in_ticket_totals(offer, investor),
        consent: super::Consent {
            kiis_sha256: Some(asked.kiis_sha256.clone()),
            risk_warning_version: if req.risk_acknowledged {
                req.risk_warning_version.clone()
            } else {
                None
            },
            appropriateness_id: asked.appropriateness.map(|a| a.id),
        },
    };
    Ok((pledge, limits))
}

/// Checks a pledge request against the offer and the investor.
pub async fn check(
    conn: &mut PgConnection,
    offer_id: Uuid,
    req: &PledgeRequest,
    now: DateTime<Utc>,
) -> Result<Checked, PledgeError> {
    let offer = offers::store::get(conn, offer_id)
        .await?
        .ok_or(PledgeError::NoOffer(offer_id))?;
    let investor = if offer.accepts_pledges(now) {
        investors::store::get(conn, req.investor_id).await?
    } else {
        None
    };
    let asked = admit(&offer, investor.as_ref(), req, now)?;
    let investor = investor.expect("admit refuses a missing investor");
    let to = redeem::Destination {
        project_id: offer.project_id,
        currency: offer.currency,
    };
    let cheques = redeem::check(conn, &asked.codes, to, now).await?;
    let (pledge, limits) = settle(&offer, &investor, req, &asked, &cheques, now)?;
    let payer = payments::calls::Payer {
        investor_id: investor.id,
        kind: match investor.kind {
            investors::InvestorKind::Natural => "natural",
            investors::InvestorKind::Legal => "legal",
        }
        .to_owned(),
        name: investor.name,
        email: investor.email,
        country: investor.country.as_str().to_owned(),
    };
    Ok(Checked {
        offer,
        pledge,
        cheques,
        limits,
        payer,
        method: asked.method,
    })
}

/// Judges a card-only pledge against an offer and investor already read (the batch's): the same
/// rules as [`check`], in the same order. The batch holds the pledge to its [`TicketLimits`].
pub(crate) fn judge_card(
    offer: &Offer,
    investor: Option<&Investor>,
    req: &PledgeRequest,
    now: DateTime<Utc>,
) -> Result<(NewPledge, TicketLimits), PledgeError> {
    let asked = admit(offer, investor, req, now)?;
    if !asked.codes.is_empty() {
        return Err(PledgeError::Unaccounted(
            "a pledge with cheques reached the card batch".into(),
        ));
    }
    let investor = investor.expect("admit refuses a missing investor");
    settle(offer, investor, req, &asked, &[], now)
}

/// Holds a checked pledge to its limits over the investor's total on the offer, writes it, its
/// payment (through `card`, the provider card money goes to) and its event, and reserves its
/// shares (last, to hold the offer's row lock as briefly as possible). Call inside a transaction.
pub(crate) async fn create(
    conn: &mut PgConnection,
    checked: Checked,
    card: Option<&dyn PaymentProvider>,
    author: Author,
    now: DateTime<Utc>,
) -> Result<Created, PledgeError> {
    let Checked {
        offer,
        pledge,
        cheques,
        limits,
        payer,
        method,
    } = checked;
    // Refused before anything is written (the handler has checked already).
    let card = match card {
        _ if pledge.card_amount.is_zero() => None,
        Some(provider) => Some(provider),
        None => return Err(payments::PaymentError::Unavailable.into()),
    };
    // A provider that keeps the project as the owner of the offer's escrow needs its legal
    // identity before the first payment into it; refused before anything is written too.
    let payee = match card {
        Some(provider) if provider.needs_payee() => {
            let project = projects::store::get(conn, offer.project_id)
                .await?
                .ok_or_else(|| PledgeError::Unaccounted(format!("offer {} has no project", offer.id)))?;
            Some(project.payout.payee(&project.legal_name)?)
        }
        _ => None,
    };
    if limits.apply() {
        // The investor's ticket lock on the offer comes before the offer's row, as in batches.
        let totals = store::lock_ticket_totals(conn, offer.id, &[pledge.investor_id]).await?;
        let before = totals.get(&pledge.investor_id).copied().unwrap_or_default();
        limits.check(before, pledge.amount)?;
    }
    let pledge = store::insert(conn, &pledge, author, now).await?;
    let payment = if let Some(provider) = card {
        let money = Money::new(pledge.card_amount, offer.currency)?;
        let of = payments::card::PaymentOf {
            pledge_id: pledge.id,
            offer_id: offer.id,
            project_id: offer.project_id,
            payer,
            method,
            payee,
        };
        Some(payments::card::create_payment(conn, provider, of, money, now).await?)
    } else {
        None
    };
    outbox::emit(
        conn,
        EventType::PledgeCreated,
        super::pledge_event(&pledge, PledgeStatus::PendingPayment),
        now,
    )
    .await?;
    let kiis: Vec<&str> = pledge.consent.kiis_sha256.as_deref().into_iter().collect();
    let reserved = offers::store::reserve(conn, offer.id, pledge.shares, &kiis)
        .await
        .on_constraint("offers_hard_cap", |_| offer_full(pledge.shares))?;
    let Some(matchable) = reserved else {
        // Closed, or its KIIS amended, since it was read: which one, as it is now.
        let now_offer = offers::store::get(conn, offer.id).await?.unwrap_or(offer);
        if now_offer.status == offers::OfferStatus::Open {
            return Err(PledgeError::KiisNotAcknowledged(
                "the offer's key investment information sheet was amended while the pledge was made: the investor reads the new version".into(),
            ));
        }
        return Err(not_open(&now_offer, now));
    };
    // Cheques are spent after the reservation: offer before ledger accounts, as everywhere.
    redeem::spend(conn, pledge.funded_by_cheques(), &cheques, now).await?;
    if pledge.card_amount.is_zero() {
        // Nothing to wait for: a pledge paid by cheques alone is funded at once.
        store::set_status(conn, pledge.id, PledgeStatus::Funded, now).await?;
        outbox::emit(
            conn,
            EventType::PledgeFunded,
            super::pledge_event(&pledge, PledgeStatus::Funded),
            now,
        )
        .await?;
        let funded = store::get(conn, pledge.id).await?.expect("just written");
        return Ok(Created {
            pledge: funded,
            payment,
            matchable,
        });
    }
    Ok(Created {
        pledge,
        payment,
        matchable,
    })
}

/// A pledge [`create`] wrote.
pub(crate) struct Created {
    pub pledge: Pledge,
    pub payment: Option<Payment>,
    /// Whether a sponsor's pool may match its offer's pledges, read under the offer's row lock:
    /// a pledge funded at once is then matched in the same transaction (`rounds::matching`).
    pub matchable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    #[test]
    fn ticket_limits_judge_the_investors_total_with_the_new_pledge() {
        let eur = Currency::parse("EUR").unwrap();
        let money = |s: &str| Money::new(s.parse().unwrap(), eur).unwrap();
        let code = |r: Result<(), PledgeError>| {
            r.err().map(|e| match e {
                PledgeError::AboveMaxTicket(_) => "above_max_ticket",
                PledgeError::RiskWarningRequired(_) => "risk_warning_required",
                _ => "another refusal",
            })
        };
        let limits = TicketLimits {
            max_ticket: Some(money("2000.00")),
            risk_threshold: Some(RISK_WARNING_FLOOR_EUR),
        };
        assert!(limits.apply());
        assert_eq!(code(limits.check(Decimal::ZERO, money("1000.00"))), None);
        assert_eq!(code(limits.check(money("250.00").amount(), money("750.00"))), None);
        // Past the threshold together, though each is under it.
        let split = limits.check(money("750.00").amount(), money("750.00")).unwrap_err();
        assert!(matches!(split, PledgeError::RiskWarningRequired(_)), "{split:?}");
        let detail = split.to_string();
        assert!(
            detail.contains("750.00 EUR") && detail.contains("1500.00 EUR"),
            "{detail}"
        );
        // max_ticket first, as for a pledge alone.
        assert_eq!(
            code(limits.check(money("1500.00").amount(), money("600.00"))),
            Some("above_max_ticket")
        );
        let acknowledged = TicketLimits {
            risk_threshold: None,
            ..limits
        };
        assert_eq!(
            code(acknowledged.check(money("1500.00").amount(), money("500.00"))),
            None
        );
        assert!(!TicketLimits::default().apply());
    }

    #[test]
    fn a_pledge_request_prints_without_its_cheque_codes() {
        let code = crate::cheques::code::generate();
        let request: PledgeRequest = serde_json::from_value(serde_json::json!({
            "investor_id": Uuid::nil(), "shares": 15,
            "funding": [{"kind": "cheque", "cheque_code": code, "amount": "100.00"},
                        {"kind": "card", "amount": "50.00"}],
        }))
        .unwrap();
        let printed = format!("{request:?} {request:#?}");
        assert!(!printed.contains(&code), "{printed}");
        assert!(printed.contains("[REDACTED]") && printed.contains("Card"), "{printed}");
    }
}
