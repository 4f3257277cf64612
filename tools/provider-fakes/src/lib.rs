//! Local fakes of the payment providers crowdledger calls, for its tests to start on
//! `127.0.0.1:0` and point `payments.<provider>.api_base` at (issue 23, PRODUCT.md section 10).
//!
//! Each fake follows its provider's published API reference on the calls the service makes
//! (docs/providers/stripe-api.md and docs/providers/mangopay-api.md, with sources), and adds what
//! a test needs and the real provider cannot do on demand: faults on the next requests, a reply
//! held back after the work is done, state changes that send the provider's notifications
//! (Stripe's signed events, Mangopay's hooks). Those controls are plain methods on the fake's
//! handle, never HTTP routes, so no request of the service can reach them.

mod form;
mod iban;
mod local_server;
pub mod mangopay;
mod next_replies;
pub mod stripe;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

pub use form::{FormError, decode as decode_form};
pub use next_replies::HeldReply;

/// `len` random lowercase hex characters (at most 32).
pub(crate) fn token(len: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..len].to_owned()
}

/// The system clock in Unix seconds, for a fake whose test has not set its own.
pub(crate) fn system_now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds since 1970 fit in i64")
}

/// A fake's state, even after a control panicked while holding it (a test's failed expectation
/// must not turn every later call into a poisoned-lock panic).
pub(crate) fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
