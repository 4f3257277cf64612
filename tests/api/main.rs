//! The service through its HTTP API (and its binary), black-box against a real Postgres: the
//! catalogue, investors, rounds and their rules, cheques, sponsors, card disputes, webhooks in and out, the
//! access matrix, bad input, the CLI, and the production-safety findings of issue 20
//! (`security/`). One test binary, so the crate is linked once for all of them (each file was a
//! binary of its own); one module per subject, each running the real app on port 0 over a fresh
//! database.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod bad_input;
mod bad_input_props;
mod cheque_lookup;
mod cheques;
mod cli;
mod console;
mod console_browser;
mod disputes;
mod events;
mod http_api;
mod investor_protection;
mod investors;
mod keys_audit;
mod layers;
mod lists;
mod lists_money;
mod matchfunding;
mod openapi;
mod pledges_concurrency;
mod projects;
mod providers_mangopay;
mod providers_stripe;
mod refunds;
mod round_rules;
mod rounds;
mod security;
mod sponsor_statement;
mod sponsors;
mod webhook_torture;
mod webhooks_inbound;
mod webhooks_outbound;
