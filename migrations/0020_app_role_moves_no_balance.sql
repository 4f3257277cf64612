-- The service's role can no longer forge a balance (issue 20, finding 2; docs/database-roles.md).
--
-- Until now the app role held UPDATE of `balance` and `posting_count`, because the posting
-- trigger ran as the service and the service locked account rows with `select … for update`.
-- Only the guard trigger stood between that grant and a forged balance, and it refused a change
-- only at pg_trigger_depth() = 1: the service created a temporary table with its own trigger,
-- whose UPDATE of ledger_accounts ran at depth 2, and moved an account from 0 to 1,000,000 with
-- no posting. Now:
--   * the app role may create no temporary object (no table, no function, no trigger): TEMPORARY
--     is granted to PUBLIC on every new database, so it is revoked from PUBLIC here;
--   * the app role holds no UPDATE on ledger_accounts at all; the functions that lock and move
--     account rows run as their owner (security definer, with a fixed search_path), so a
--     posting still moves them, and nothing else the service runs can;
--   * the guard refuses a change of balance or posting count that does not come from the
--     posting trigger, whatever the depth, even for the owner (who could drop the trigger, but
--     will not change a balance by accident).

-- TEMPORARY: from PUBLIC on this database, and from the app role and its members, should anyone
-- have granted it to them directly. Dynamic SQL: a migration does not know its database's name.
do $$
declare
    member name;
begin
    execute format('revoke temporary on database %I from public', current_database());
    for member in
        select r.rolname from pg_roles r
         where (r.rolname = 'crowdledger_app' or pg_has_role(r.oid, 'crowdledger_app', 'member'))
           and not r.rolsuper
    loop
        execute format('revoke temporary on database %I from %I', current_database(), member);
    end loop;
    -- A migrator that is neither the database's owner nor a superuser revokes nothing (Postgres
    -- only warns): refuse to go on rather than leave the way in open.
    if exists (select from pg_roles r
                where (r.rolname = 'crowdledger_app' or pg_has_role(r.oid, 'crowdledger_app', 'member'))
                  and not r.rolsuper
                  and has_database_privilege(r.oid, current_database(), 'temporary')) then
        raise exception 'crowdledger_app (or a member) may still create temporary tables in %: run this migration as the database''s owner', current_database();
    end if;
end $$;

-- No UPDATE of accounts for the service: not the two columns postings move, not any other.
revoke update (balance, posting_count) on ledger_accounts from crowdledger_app;
revoke update on ledger_accounts from crowdledger_app;

-- The service locks the accounts a posting continues from (journal.rs), in id order as every
-- writer does. `select … for update` needs UPDATE, so the lock is taken by this function, as its
-- owner, and only the app role may call it. pg_temp last: an object of the caller's temporary
-- schema (were there one) can never stand in for a table here. PL/pgSQL, not SQL: it keeps its
-- plan for the session, where a SQL function would plan its query again on every posting.
create function ledger_lock_accounts(ids uuid[]) returns setof ledger_accounts
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp
as $$
begin
    return query select * from ledger_accounts where id = any(ids) order by id for update;
end $$;
revoke execute on function ledger_lock_accounts(uuid[]) from public;
grant execute on function ledger_lock_accounts(uuid[]) to crowdledger_app;

-- A psql session's postings without their place in history: that trigger locks the account too.
alter function ledger_postings_continue() security definer set search_path = pg_catalog, public, pg_temp;

-- The statement trigger of migration 0013, unchanged but for its last statement: it moves the
-- accounts' rows as their owner, and tells the guard (below) that this update is a posting's.
-- Trigger functions cannot be called directly, so no one can run it but an insert of postings.
create or replace function ledger_postings_apply() returns trigger
    language plpgsql security definer set search_path = pg_catalog, public, pg_temp
as $$
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
    -- Transaction-local and set back at once: only this update may move balances. (Anyone may set
    -- such a variable, but only the owner may UPDATE the table, and the owner could drop the
    -- guard anyway: it stops mistakes at any depth, the missing grant stops the service.)
    perform set_config('crowdledger.ledger_posting', 'on', true);
    update ledger_accounts a set balance = l.balance_after, posting_count = l.account_seq
      from (select distinct on (p.account_id) p.account_id, p.account_seq, p.balance_after
              from new_postings p order by p.account_id, p.account_seq desc) l
     where a.id = l.account_id;
    perform set_config('crowdledger.ledger_posting', '', true);
    return null;
end $$;

-- The guard of migration 0001, without its depth test: a balance or posting count moves only in
-- the posting trigger's update, however deep the statement that tries it.
create or replace function ledger_accounts_guard() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        raise exception 'ledger accounts are never deleted'
            using errcode = 'raise_exception', constraint = 'ledger_append_only';
    end if;
    if new.id <> old.id or new.code <> old.code or new.currency <> old.currency
       or new.kind <> old.kind or new.created_at <> old.created_at then
        raise exception 'a ledger account''s id, code, currency, kind and creation time never change'
            using errcode = 'raise_exception', constraint = 'ledger_account_immutable';
    end if;
    if (new.balance <> old.balance or new.posting_count <> old.posting_count)
       and current_setting('crowdledger.ledger_posting', true) is distinct from 'on' then
        raise exception 'a ledger account''s balance changes only through postings'
            using errcode = 'raise_exception', constraint = 'ledger_account_immutable';
    end if;
    return new;
end $$;
