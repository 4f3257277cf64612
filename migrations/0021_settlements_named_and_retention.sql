-- Verify's blind spots (issue 20, finding 10).
--
-- 1. Refunds, payouts and deposits name the ledger entry that settled them, as payments name
-- their capture entry (0018): a refund the provider paid back (`refunds → psp`, `refund.paid`), a
-- payout the provider paid (`project payable → psp`, `payout.paid`), a deposit the provider
-- received (`psp → sponsor budget`, `deposit.confirmed`). Until now nothing tied these rows to
-- their entries, so a refund marked paid without its entry (or an entry without its refund)
-- passed verify. Postgres refuses a settled row without its entry; `GET /v1/ledger/verify`
-- checks that the entry exists and moved exactly that money between the right accounts
-- (`refunds_paid`, `payouts_paid`, `deposits_captured`).
--
-- No foreign keys: entries are never deleted, the id is that of an entry posted in the same
-- transaction, and a key would be checked on every settlement (as 0010 and 0018 chose).

alter table refunds add column paid_entry_id uuid;
alter table payouts add column paid_entry_id uuid;
alter table deposits add column captured_entry_id uuid;

-- Rows settled before this migration, one entry each, found by the references the code gives.
update refunds r set paid_entry_id = e.id
  from ledger_entries e
 where r.status = 'succeeded' and e.reference = 'refund:' || r.id || ':paid';
update payouts p set paid_entry_id = e.id
  from ledger_entries e
 where p.status = 'paid' and e.reference = 'payout:' || p.id || ':paid';
update deposits d set captured_entry_id = e.id
  from ledger_entries e
 where d.status = 'succeeded' and e.reference = 'deposit:' || d.id || ':captured';

-- Settled once: a settled row names its entry, any other names none.
alter table refunds add constraint refunds_paid_once
    check ((status = 'succeeded') = (paid_entry_id is not null));
alter table payouts add constraint payouts_paid_once
    check ((status = 'paid') = (paid_entry_id is not null));
alter table deposits add constraint deposits_captured_once
    check ((status = 'succeeded') = (captured_entry_id is not null));

-- 2. Retention (docs/reliability.md): the background job deletes idempotency keys, inbound
-- events and webhook attempts older than their configured age, in bounded batches, by these
-- times. BRIN, not B-tree: these tables are appended to in time order, a BRIN index is a few
-- pages whatever their size, and an insert costs it next to nothing (0016 dropped the B-tree on
-- idempotency_keys.created_at because every pledge of a flood wrote it). The service's role
-- already holds DELETE on the three tables (0014).
create index idempotency_keys_created_at_brin on idempotency_keys using brin (created_at);
create index inbound_events_received_at_brin on inbound_events using brin (received_at);
create index webhook_attempts_attempted_at_brin on webhook_attempts using brin (attempted_at);
