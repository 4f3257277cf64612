-- An account's code and currency are checked once, when it is opened: they never change
-- afterwards (ledger_accounts_guard refuses it). As check constraints they were evaluated
-- again on every balance update, that is on every posting, on the hottest rows of the books.
-- The trigger raises with the constraints' names, so callers see the same errors as before.

alter table ledger_accounts
    drop constraint ledger_accounts_code_format,
    drop constraint ledger_accounts_currency_format;

create or replace function ledger_accounts_start_empty() returns trigger language plpgsql as $$
begin
    if new.code !~ '^[a-z0-9][a-z0-9_.:-]{0,199}$' then
        raise exception 'invalid account code %', new.code
            using errcode = 'check_violation', constraint = 'ledger_accounts_code_format';
    end if;
    if new.currency !~ '^[A-Z]{3}$' then
        raise exception 'invalid account currency %', new.currency
            using errcode = 'check_violation', constraint = 'ledger_accounts_currency_format';
    end if;
    if new.balance <> 0 or new.posting_count <> 0 then
        raise exception 'a ledger account starts with a zero balance'
            using errcode = 'raise_exception', constraint = 'ledger_account_immutable';
    end if;
    return new;
end $$;
