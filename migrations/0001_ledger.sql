-- The double-entry ledger. Postgres itself guards its invariants, so no code path (ours, a
-- script, a psql session) can write books that do not balance. See docs/ledger.md.

create type ledger_account_kind as enum ('asset', 'liability', 'revenue', 'expense', 'equity');
create type ledger_side as enum ('debit', 'credit');

create table ledger_accounts (
    id uuid primary key,
    code text not null,
    currency text not null,
    kind ledger_account_kind not null,
    no_overdraft boolean not null default false,
    -- Balance on the account's normal side (debit for assets and expenses, credit otherwise),
    -- kept by the posting trigger so reading it is one row, not a scan.
    balance numeric not null default 0,
    -- How many postings the account has; the latest posting carries this number.
    posting_count bigint not null default 0,
    created_at timestamptz not null,
    constraint ledger_accounts_code_key unique (code),
    constraint ledger_accounts_code_format check (code ~ '^[a-z0-9][a-z0-9_.:-]{0,199}$'),
    constraint ledger_accounts_currency_format check (currency ~ '^[A-Z]{3}$'),
    constraint ledger_accounts_no_overdraft check (not no_overdraft or balance >= 0),
    -- Target of the postings' composite foreign key: a posting's currency is its account's.
    constraint ledger_accounts_id_currency_key unique (id, currency)
);

create table ledger_entries (
    id uuid primary key,
    kind text not null,
    reference text not null,
    effective_at timestamptz not null,
    recorded_at timestamptz not null default clock_timestamp(),
    metadata jsonb not null default '{}',
    reverses uuid references ledger_entries (id),
    -- The transaction that wrote the entry: postings may only be added by that same
    -- transaction, so a committed entry is closed for good. Set by a trigger, never by callers.
    created_xact xid8 not null default pg_current_xact_id(),
    constraint ledger_entries_reference_key unique (reference),
    constraint ledger_entries_reference_format check (length(reference) between 1 and 200),
    constraint ledger_entries_kind_format check (length(kind) between 1 and 100),
    constraint ledger_entries_metadata_object check (jsonb_typeof(metadata) = 'object'),
    constraint ledger_entries_not_self_reversing check (reverses is distinct from id)
);

-- An entry is reversed at most once.
create unique index ledger_entries_reverses_key on ledger_entries (reverses) where reverses is not null;

create table ledger_postings (
    id bigint generated always as identity primary key,
    entry_id uuid not null references ledger_entries (id),
    account_id uuid not null,
    side ledger_side not null,
    amount numeric not null,
    currency text not null,
    -- Position of the posting in its account's history and the account's normal-side balance
    -- right after it: running balances without a scan, fixed at insert time.
    account_seq bigint not null,
    balance_after numeric not null,
    constraint ledger_postings_account_currency_fkey
        foreign key (account_id, currency) references ledger_accounts (id, currency),
    constraint ledger_postings_amount_positive check (amount > 0),
    constraint ledger_postings_account_seq_key unique (account_id, account_seq)
);

create index ledger_postings_entry_idx on ledger_postings (entry_id);

-- Entries and postings are history: never rewritten, never removed.
create function ledger_refuse_change() returns trigger language plpgsql as $$
begin
    raise exception '% on % is not allowed: the ledger is append-only; post a reversing entry instead',
        tg_op, tg_table_name
        using errcode = 'raise_exception', constraint = 'ledger_append_only';
end $$;

create trigger ledger_entries_append_only before update or delete on ledger_entries
    for each row execute function ledger_refuse_change();
create trigger ledger_entries_no_truncate before truncate on ledger_entries
    for each statement execute function ledger_refuse_change();
create trigger ledger_postings_append_only before update or delete on ledger_postings
    for each row execute function ledger_refuse_change();
create trigger ledger_postings_no_truncate before truncate on ledger_postings
    for each statement execute function ledger_refuse_change();

create function ledger_entries_stamp() returns trigger language plpgsql as $$
begin
    new.created_xact := pg_current_xact_id();
    new.recorded_at := clock_timestamp();
    return new;
end $$;

create trigger ledger_entries_stamp before insert on ledger_entries
    for each row execute function ledger_entries_stamp();

-- Applies a posting to its account. The UPDATE takes the account's row lock, so concurrent
-- writers to one account queue here, each sees the balance the previous one committed, and the
-- no_overdraft check constraint refuses the first that would cross zero.
create function ledger_postings_apply() returns trigger language plpgsql as $$
declare
    entry_xact xid8;
    normal ledger_side;
begin
    select created_xact into entry_xact from ledger_entries where id = new.entry_id;
    if entry_xact is distinct from pg_current_xact_id() then
        raise exception 'entry % is closed: postings may only be added with the entry itself', new.entry_id
            using errcode = 'raise_exception', constraint = 'ledger_entry_closed';
    end if;

    update ledger_accounts a
       set balance = a.balance + case when new.side = (case when a.kind in ('asset', 'expense')
                                                            then 'debit' else 'credit' end)::ledger_side
                                      then new.amount else -new.amount end,
           posting_count = a.posting_count + 1
     where a.id = new.account_id
    returning a.balance, a.posting_count into new.balance_after, new.account_seq;
    if not found then
        raise exception 'account % does not exist', new.account_id
            using errcode = 'foreign_key_violation', constraint = 'ledger_posting_account_exists';
    end if;
    return new;
end $$;

create trigger ledger_postings_apply before insert on ledger_postings
    for each row execute function ledger_postings_apply();

-- An account's identity is fixed once created, and its balance moves only through postings.
-- pg_trigger_depth() = 1 means the statement came from a client, not from the posting trigger.
create function ledger_accounts_guard() returns trigger language plpgsql as $$
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
    if pg_trigger_depth() = 1
       and (new.balance <> old.balance or new.posting_count <> old.posting_count) then
        raise exception 'a ledger account''s balance changes only through postings'
            using errcode = 'raise_exception', constraint = 'ledger_account_immutable';
    end if;
    return new;
end $$;

create trigger ledger_accounts_guard before update or delete on ledger_accounts
    for each row execute function ledger_accounts_guard();
create trigger ledger_accounts_no_truncate before truncate on ledger_accounts
    for each statement execute function ledger_refuse_change();

create function ledger_accounts_start_empty() returns trigger language plpgsql as $$
begin
    if new.balance <> 0 or new.posting_count <> 0 then
        raise exception 'a ledger account starts with a zero balance'
            using errcode = 'raise_exception', constraint = 'ledger_account_immutable';
    end if;
    return new;
end $$;

create trigger ledger_accounts_start_empty before insert on ledger_accounts
    for each row execute function ledger_accounts_start_empty();

-- At commit, each new entry must have at least two postings and balance in every currency.
-- Deferred, because postings are inserted after their entry within the same transaction.
create function ledger_entries_check_balanced() returns trigger language plpgsql as $$
declare
    n bigint;
    bad_currency text;
begin
    select count(*) into n from ledger_postings where entry_id = new.id;
    if n < 2 then
        raise exception 'entry % has % posting(s); an entry needs at least two', new.reference, n
            using errcode = 'check_violation', constraint = 'ledger_entry_min_postings';
    end if;
    select currency into bad_currency
      from ledger_postings
     where entry_id = new.id
     group by currency
    having sum(case side when 'debit' then amount else -amount end) <> 0
     limit 1;
    if bad_currency is not null then
        raise exception 'entry % does not balance in %', new.reference, bad_currency
            using errcode = 'check_violation', constraint = 'ledger_entry_balanced';
    end if;
    return null;
end $$;

create constraint trigger ledger_entries_balanced after insert on ledger_entries
    deferrable initially deferred
    for each row execute function ledger_entries_check_balanced();

-- Prefix search on account codes (`offer:<id>:` …) whatever the database's collation.
create index ledger_accounts_code_pattern_idx on ledger_accounts (code text_pattern_ops);
