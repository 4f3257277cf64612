-- A provider's dispute of a captured card payment (issue 22, `pledge.disputed`): when it was
-- recorded and for how much (a dispute may be for part of the payment). Recorded once: a second
-- dispute event for the same payment changes nothing here, and every event as received stays in
-- `inbound_events`. The money side (a chargeback in the ledger) comes with issue 23; until then
-- a dispute moves no money and leaves its pledge's status as it was.
alter table payments
    add column disputed_at timestamptz,
    add column disputed_amount numeric;

-- Both or neither; only captured money can be disputed, and no more of it than was paid.
alter table payments
    add constraint payments_dispute_whole check ((disputed_at is null) = (disputed_amount is null)),
    add constraint payments_dispute_captured check (disputed_at is null or status = 'succeeded'),
    add constraint payments_dispute_amount check (disputed_amount > 0 and disputed_amount <= amount);
