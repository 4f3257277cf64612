//! Webhooks in and out: signatures of inbound provider events and of the events we send to
//! operators' endpoints.

pub mod signature;
