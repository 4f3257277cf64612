//! Local fakes of the payment providers crowdledger calls, for its tests to start on
//! `127.0.0.1:0` and point `payments.<provider>.api_base` at (issue 23, PRODUCT.md section 10).
//!
//! Each fake follows its provider's published API reference on the calls the service makes
//! (docs/providers/stripe-api.md, with sources), and adds what a test needs and the real
//! provider cannot do on demand: faults on the next requests, a reply held back after the work is
//! done, state changes that send the provider's signed events. Those controls are plain methods
//! on the fake's handle, never HTTP routes, so no request of the service can reach them.

mod form;
pub mod stripe;

pub use form::{FormError, decode as decode_form};
