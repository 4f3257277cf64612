//! Production safety (issue 20, docs/security.md): each finding of the review, and a test that
//! fails if the way in it names were opened again. One module per group of findings.

mod captures;
mod cheque_codes;
mod db_role;
mod http_guards;
mod outbound;
mod production;
mod secrets;
mod ticket_totals;
