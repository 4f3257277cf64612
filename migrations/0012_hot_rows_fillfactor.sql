-- Every posting updates its account's row, so a few rows (the provider's `psp` account, a hot
-- offer's escrow, the offer itself) are updated thousands of times a second in a flood. With
-- full pages each update that finds no room on its page becomes a new row version elsewhere
-- plus new entries in every index, and the indexes and heap bloat until vacuum. Pages kept
-- mostly free let each update stay on its page (a HOT update: no index entry), where the next
-- access prunes the dead versions. Applies to pages written from now on.
alter table ledger_accounts set (fillfactor = 10);
alter table offers set (fillfactor = 50);
