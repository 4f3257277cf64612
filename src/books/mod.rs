//! The books the domains keep on the ledger: which account a domain fact uses (`chart`) and the
//! domain's own checks of those books (`audit`). The ledger knows no domain words; this module
//! is where they meet it.

pub mod audit;
pub mod chart;
pub mod manual;
