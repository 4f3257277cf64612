-- The ledger's invariants, checked once per statement instead of once per row (docs/ledger.md).
--
-- Until now each posting's `before insert` trigger ran two queries (its entry's transaction,
-- then an update of its account's row) and each entry's trigger stamped it: in a batch of 200
-- entries that is 600 trigger calls and 400 updates of a few hot account rows. Now:
--   * a posting may arrive with its `account_seq` and `balance_after`, computed by a writer that
--     holds its account's row lock (the service does); a posting without them gets them from the
--     account's latest posting (a psql session need not know them);
--   * once per statement, one trigger checks every new posting against its account's row (which
--     it locks): the history continues without a gap, the running balances are right, a
--     `no_overdraft` account never goes below zero, the entry was written by this transaction;
--     then it moves each account's row once, to its last posting;
--   * once per statement, the new entries are checked to carry this transaction and statement.
-- The guarantees are those of 0001: no caller can forge a running balance or add to a closed
-- entry; they are now refused instead of overwritten.

drop trigger ledger_postings_apply on ledger_postings;
drop function ledger_postings_apply();

-- For postings inserted without their place in history: the previous posting of the account,
-- this statement's included (a before-row trigger sees the rows inserted before it).
create function ledger_postings_continue() returns trigger language plpgsql as $$
declare
    normal ledger_side;
    last record;
begin
    select case when a.kind in ('asset', 'expense') then 'debit' else 'credit' end::ledger_side
      into normal
      from ledger_accounts a where a.id = new.account_id for update;
    if not found then
        raise exception 'account % does not exist', new.account_id
            using errcode = 'foreign_key_violation', constraint = 'ledger_posting_account_exists';
    end if;
    select p.account_seq, p.balance_after into last
      from ledger_postings p where p.account_id = new.account_id
     order by p.account_seq desc limit 1;
    new.account_seq := coalesce(last.account_seq, 0) + 1;
    new.balance_after := coalesce(last.balance_after, 0)
        + case when new.side = normal then new.amount else -new.amount end;
    return new;
end $$;
create trigger ledger_postings_continue before insert on ledger_postings
    for each row when (new.account_seq is null or new.balance_after is null)
    execute function ledger_postings_continue();

create function ledger_postings_apply() returns trigger language plpgsql as $$
declare
    bad record;
begin
    select p.entry_id into bad
      from new_postings p left join ledger_entries e on e.id = p.entry_id
     where e.created_xact is distinct from pg_current_xact_id()
     limit 1;
    if found then
        raise exception 'entry % is closed: postings may only be added with the entry itself', bad.entry_id
            using errcode = 'raise_exception', constraint = 'ledger_entry_closed';
    end if;
    -- In id order, as every writer locks them: concurrent statements queue, never deadlock.
    perform from ledger_accounts a
      where a.id in (select p.account_id from new_postings p)
      order by a.id for update;
    select p.account_id into bad
      from new_postings p where not exists (select from ledger_accounts a where a.id = p.account_id)
     limit 1;
    if found then
        raise exception 'account % does not exist', bad.account_id
            using errcode = 'foreign_key_violation', constraint = 'ledger_posting_account_exists';
    end if;
    select c.* into bad from (
        select p.account_id, p.account_seq, p.balance_after, a.no_overdraft,
               a.posting_count + row_number() over w as want_seq,
               a.balance + sum(case when (p.side = 'debit') = (a.kind in ('asset', 'expense'))
                                    then p.amount else -p.amount end) over w as want_balance
          from new_postings p join ledger_accounts a on a.id = p.account_id
        window w as (partition by p.account_id order by p.account_seq)
    ) c
     where c.account_seq <> c.want_seq or c.balance_after <> c.want_balance
     order by c.account_id, c.account_seq
     limit 1;
    if found then
        raise exception 'posting % of account % should be number % with balance %, not % with %',
            bad.want_seq, bad.account_id, bad.want_seq, bad.want_balance, bad.account_seq, bad.balance_after
            using errcode = 'check_violation', constraint = 'ledger_posting_running_balance';
    end if;
    select p.account_id into bad
      from new_postings p join ledger_accounts a on a.id = p.account_id
     where a.no_overdraft and p.balance_after < 0
     limit 1;
    if found then
        raise exception 'account % would go below zero', bad.account_id
            using errcode = 'check_violation', constraint = 'ledger_accounts_no_overdraft';
    end if;
    update ledger_accounts a set balance = l.balance_after, posting_count = l.account_seq
      from (select distinct on (p.account_id) p.account_id, p.account_seq, p.balance_after
              from new_postings p order by p.account_id, p.account_seq desc) l
     where a.id = l.account_id;
    return null;
end $$;
create trigger ledger_postings_apply after insert on ledger_postings
    referencing new table as new_postings
    for each statement execute function ledger_postings_apply();

-- Entries: stamped by their defaults, checked once per statement.
drop trigger ledger_entries_stamp on ledger_entries;
drop function ledger_entries_stamp();
alter table ledger_entries alter column recorded_at set default statement_timestamp();

create function ledger_entries_check_stamp() returns trigger language plpgsql as $$
declare
    bad record;
begin
    select e.reference into bad from new_entries e
     where e.created_xact <> pg_current_xact_id() or e.recorded_at <> statement_timestamp()
     limit 1;
    if found then
        raise exception 'entry % must carry the transaction and time that record it', bad.reference
            using errcode = 'check_violation', constraint = 'ledger_entry_stamp';
    end if;
    return null;
end $$;
create trigger ledger_entries_check_stamp after insert on ledger_entries
    referencing new table as new_entries
    for each statement execute function ledger_entries_check_stamp();
