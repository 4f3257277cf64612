-- Each succeeded payment names the ledger entry that captured its money (`psp → offer escrow`,
-- or a late payment's `psp → refunds`). A batch of provider confirmations is now captured in
-- one entry per provider and currency, with one posting per offer's escrow (docs/payments.md),
-- whose reference cannot name every payment; the link goes this way, as refunds name the entry
-- that owed them (0010). `GET /v1/ledger/verify` checks that each such entry moved exactly the
-- money of the payments that name it.

-- No foreign key: entries are never deleted, the id is that of an entry posted in the same
-- transaction, and a key would be checked once per payment on the hottest path.
alter table payments add column captured_entry_id uuid;

-- Payments captured before this migration, one entry each.
update payments p set captured_entry_id = e.id
  from ledger_entries e
 where e.reference = 'payment:' || p.id || ':captured';

-- Captured once: a succeeded payment names its entry, any other names none.
alter table payments add constraint payments_captured_once
    check ((status = 'succeeded') = (captured_entry_id is not null));
