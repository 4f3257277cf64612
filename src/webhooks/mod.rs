//! Webhooks in and out: signatures of inbound provider events, and the events we send to
//! operators' endpoints (outbox fan-out, leased delivery with retries, and what a delivery may
//! reach).

mod error;
pub mod guard;
pub mod http;
pub mod inbound;
pub mod outbound;
pub mod signature;

pub use error::WebhookError;
