-- The service's own database role (docs/database-roles.md). `crowdledger serve` logs in as a
-- member of crowdledger_app; migrations run as the tables' owner. The app role owns nothing, so
-- it cannot ALTER a table, drop or disable a trigger, or grant itself more; it is no superuser,
-- so it cannot set session_replication_role = replica (which skips triggers). On the journal it
-- may only read and add: no UPDATE, DELETE or TRUNCATE on ledger_entries or ledger_postings.
--
-- A later migration that creates a table must grant crowdledger_app what the service needs on
-- it, in the same migration; tests/db_roles.rs fails for any table of schema public left out.
-- (ALTER DEFAULT PRIVILEGES would grant too much, by default, to tables not yet thought about.)

-- Roles are cluster-wide: another database of the cluster, migrating at the same moment, or
-- scripts/lib/pg.sh may have created it. Checked first, so a migrator without CREATEROLE passes
-- once the role exists.
do $$
begin
    if not exists (select from pg_roles where rolname = 'crowdledger_app') then
        create role crowdledger_app nologin;
    end if;
exception
    when duplicate_object or unique_violation then null;
end $$;

grant usage on schema public to crowdledger_app;

-- `serve` refuses to start on a schema that is behind the binary: it reads the migrations.
grant select on _sqlx_migrations to crowdledger_app;

-- The journal: read and append, never rewrite.
grant select, insert on ledger_entries, ledger_postings to crowdledger_app;

-- Accounts are opened, and their balance and posting count move with each posting (the statement
-- trigger ledger_postings_apply runs as the service, and the service locks the rows with
-- `select … for update`, which needs UPDATE). Only those two columns: the guard trigger already
-- refuses other changes to the identity columns, and the column grant also keeps `no_overdraft`
-- as it was opened.
grant select, insert on ledger_accounts to crowdledger_app;
grant update (balance, posting_count) on ledger_accounts to crowdledger_app;

-- No sequence privileges: identity columns draw from their own sequences without them.

-- The domain's tables: the service reads and writes them.
grant select, insert, update, delete on
    api_keys,
    idempotency_keys,
    projects,
    investors,
    offers,
    pledges,
    payments,
    refunds,
    payouts,
    outbox_events,
    inbound_events,
    webhook_endpoints,
    webhook_deliveries,
    webhook_attempts,
    sponsors,
    deposits,
    cheques,
    cheque_redemptions,
    cheque_code_failures
to crowdledger_app;
