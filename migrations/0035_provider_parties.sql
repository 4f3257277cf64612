-- Who our investors, projects and offers are at a networked provider (issue 23): a Stripe
-- customer for an investor paying by bank transfer, a Mangopay user for an investor or a project,
-- a Mangopay wallet for an offer's escrow. Created by a queued call on first need and kept, so
-- the same party is never created twice, even after the provider forgot the idempotency key
-- that created it (24 hours).
create table provider_parties (
    provider text not null,
    -- investor, project, offer
    party_kind text not null,
    party_id uuid not null,
    -- customer, user, wallet, bank_account
    role text not null,
    provider_id text not null,
    created_at timestamptz not null,
    constraint provider_parties_pkey primary key (provider, party_kind, party_id, role)
);

-- A provider that forgets an idempotency key once its first call failed (Mangopay) needs a new
-- key for the next try: the key's generation is part of it.
alter table provider_calls add column key_generation integer not null default 0;

-- Written once by the call that created the party; never updated or deleted.
grant select, insert on provider_parties to crowdledger_app;
