-- A round's close updates every funded pledge (its allocation and final status), and a funding
-- updates every pending one. Neither update was ever HOT: `status` is in the predicate of the
-- overdue-payment index, and an update that touches an indexed column writes a new entry into
-- every index of the table (and, on a full page, a lock record and a row version elsewhere).
--
-- The overdue index moves to a column derived from `status`: the payment deadline while the pledge
-- waits for its money, null after. Postgres keeps it, so no code path can forget it. Only the
-- funding (or the cancel, or the expiry) changes it; later updates, a close's among them, change no
-- indexed value and can stay on their page. Free room on each page lets them. The rewrite takes
-- the table's lock for as long as it copies it (into pages already filled only half): today's
-- tables are small.
alter table pledges set (fillfactor = 50);
alter table pledges
    add column awaiting_payment_until timestamptz
        generated always as (case when status = 'pending_payment' then payment_due_at end) stored;
create index pledges_awaiting_payment_idx on pledges (awaiting_payment_until)
    where awaiting_payment_until is not null;
drop index pledges_payment_due_idx;
