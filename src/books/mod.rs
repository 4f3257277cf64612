//! The books the domains keep on the ledger: which account a domain fact uses (`chart`) and the
//! domain's own checks of those books (`audit`). The ledger knows no domain words; this module
//! is where they meet it.

pub mod audit;
pub mod chart;
pub mod http;
pub mod manual;

/// The kinds of journal entry the domains post: the ledger stores a kind as text and knows
/// none of them; the audit checks (`audit`) look entries up by them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A card payment captured for a pledge: `psp → escrow`.
    PledgeFunded,
    /// A payment captured after its pledge ended, owed straight back: `psp → refunds`.
    PaymentLate,
    /// Pledge money owed back to cards: `escrow → refunds`.
    PledgeRefund,
    /// A refund the provider paid: `refunds → psp`.
    RefundPaid,
    /// A payout the provider paid to a project: `project payable → psp`.
    PayoutPaid,
    /// A succeeded round's escrow to its project and the platform's fee.
    OfferSettlement,
    /// A sponsor's deposit captured: `psp → sponsor budget`.
    DepositConfirmed,
    /// A cheque issued from its sponsor's budget.
    ChequeIssued,
    /// Cheque money spent in a pledge: `cheque → escrow`.
    ChequeRedeemed,
    /// Cheque money given back to its live cheque.
    ChequeReturned,
    /// Cheque money given back to the sponsor of a cheque that ended.
    ChequeReturnedToSponsor,
    /// What an ended cheque still held, back to its sponsor.
    ChequeEnded,
    /// Card money a lost dispute took back: `escrow → psp`, `refunds → psp` or
    /// `platform losses → psp` (docs/disputes.md).
    DisputeLost,
    /// A matchfunding pool set aside: `sponsor budget → match pool`.
    MatchPoolReserved,
    /// What an ended pool still held, back to its sponsor; or a match given back after its pool
    /// ended: `match pool → sponsor budget`, `escrow → sponsor budget`.
    MatchPoolReturned,
    /// A pledge matched: `match pool → escrow`.
    MatchApplied,
    /// A match given back to its live pool: `escrow → match pool`.
    MatchReturned,
    /// Unused budget a sponsor withdraws, owed until the provider pays it:
    /// `sponsor budget → withdrawals:<provider>`.
    WithdrawalRequested,
    /// A withdrawal the provider paid to the sponsor: `withdrawals:<provider> → psp`.
    WithdrawalPaid,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::PledgeFunded => "pledge.funded",
            EntryKind::PaymentLate => "payment.late",
            EntryKind::PledgeRefund => "pledge.refund",
            EntryKind::RefundPaid => "refund.paid",
            EntryKind::PayoutPaid => "payout.paid",
            EntryKind::OfferSettlement => "offer.settlement",
            EntryKind::DepositConfirmed => "deposit.confirmed",
            EntryKind::ChequeIssued => "cheque.issued",
            EntryKind::ChequeRedeemed => "cheque.redeemed",
            EntryKind::ChequeReturned => "cheque.returned",
            EntryKind::ChequeReturnedToSponsor => "cheque.returned_to_sponsor",
            EntryKind::ChequeEnded => "cheque.ended",
            EntryKind::DisputeLost => "dispute.lost",
            EntryKind::MatchPoolReserved => "match_pool.reserved",
            EntryKind::MatchPoolReturned => "match_pool.returned",
            EntryKind::MatchApplied => "match.applied",
            EntryKind::MatchReturned => "match.returned",
            EntryKind::WithdrawalRequested => "withdrawal.requested",
            EntryKind::WithdrawalPaid => "withdrawal.paid",
        }
    }
}

impl From<EntryKind> for String {
    fn from(kind: EntryKind) -> String {
        kind.as_str().to_string()
    }
}
