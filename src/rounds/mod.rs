//! A round's money moves: what carries a pledge's money through its round's life, from the
//! provider's confirmation to the round's end. Funding on confirmation (`funding`), cancelling,
//! revoking, expiry and refunds (`ending`), closing and allocation (`closing`), paying the
//! project out (`payouts`). The state machine lives here, above the domains it moves (offers,
//! pledges, payments, cheques), so those take ids and small types and import none of it.

pub mod closing;
pub mod ending;
pub mod funding;
pub mod payouts;
