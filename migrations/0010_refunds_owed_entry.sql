-- Each refund names the ledger entry that made it owed (`offer escrow → refunds`, or a late
-- payment's `psp → refunds`). A round's close owes the unallocated money of all its card pledges
-- in one entry per provider, whose reference cannot name every refund; the link goes this way.

-- No foreign key: entries are never deleted, the id is that of the entry just posted in the same
-- transaction, and a key would be checked once per refund (a third of a second in a close of
-- 100,000 pledges).
alter table refunds add column owed_entry_id uuid;

-- Refunds written before this migration, one entry each: `refund:<id>:owed`, or the late
-- payment's capture entry, which names the refund in its metadata.
update refunds r set owed_entry_id = e.id
  from ledger_entries e
 where e.reference = 'refund:' || r.id || ':owed';
update refunds r set owed_entry_id = e.id
  from ledger_entries e
 where r.owed_entry_id is null
   and e.kind = 'payment.late' and e.metadata ->> 'refund_id' = r.id::text;
