//! The ledger and the database that keeps it: the Rust API, each invariant attempted in raw SQL,
//! concurrent writers, random sequences under proptest, and the service's least-privileged
//! role. One test binary, so the crate is linked once for all of them; one module per subject.

#[path = "../common/mod.rs"]
mod common;

mod concurrency;
mod db_roles;
mod props;
mod rust_api;
mod sql;
