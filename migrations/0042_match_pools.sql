-- Matchfunding (PRODUCT.md section 13, docs/matchfunding.md): a sponsor reserves part of its
-- budget in a pool (`sponsor budget → match:<id>`), and each funded eligible pledge is matched
-- from it (`match:<id> → offer escrow`) up to the pool's caps. The money is the ledger account
-- `match:<id>`; these rows hold the terms and what each match became.

create table match_pools (
    id uuid primary key,
    sponsor_id uuid not null references sponsors (id),
    amount numeric not null,
    currency text not null,
    -- Euros matched per euro pledged.
    ratio numeric not null,
    max_per_pledge numeric not null,
    max_per_project numeric not null,
    -- Empty: any theme, any project (as a cheque's restrictions).
    eligible_themes text[] not null default '{}',
    eligible_project_ids uuid[] not null default '{}',
    expires_at timestamptz not null,
    created_at timestamptz not null,
    -- Set when the job returned what was left to the sponsor: the pool matches nothing more,
    -- and matches given back afterwards go to the sponsor's budget.
    ended_at timestamptz,
    returned numeric,
    constraint match_pools_positive check (amount > 0 and ratio > 0 and max_per_pledge > 0 and max_per_project > 0),
    constraint match_pools_ended check ((ended_at is null) = (returned is null))
);

create index match_pools_sponsor_idx on match_pools (sponsor_id, created_at);
create index match_pools_active_idx on match_pools (expires_at) where ended_at is null;

create type match_status as enum ('applied', 'allocated', 'returned');

-- One pledge's match: its shares are held in the sponsor's name (`holder: sponsor` on the cap
-- table) and counted toward the offer's targets like the pledge's own.
create table matches (
    id uuid primary key,
    pool_id uuid not null references match_pools (id),
    pledge_id uuid not null references pledges (id),
    offer_id uuid not null references offers (id),
    project_id uuid not null references projects (id),
    shares bigint not null,
    amount numeric not null,
    currency text not null,
    -- applied: in the offer's escrow; allocated: settled with a succeeded round (the
    -- unallocated part given back); returned: all of it given back.
    status match_status not null default 'applied',
    allocated_shares bigint,
    -- Given back to the pool while it was open, or to the sponsor once it had ended.
    returned_to_pool numeric not null default 0,
    returned_to_sponsor numeric not null default 0,
    created_at timestamptz not null,
    ended_at timestamptz,
    -- A pledge is matched once, by one pool.
    constraint matches_pledge_key unique (pledge_id),
    constraint matches_positive check (shares > 0 and amount > 0),
    constraint matches_ended check ((status = 'applied') = (ended_at is null))
);

create index matches_offer_idx on matches (offer_id) where status = 'applied';
create index matches_pool_project_idx on matches (pool_id, project_id);

-- Whether a pool may apply to the offer's pledges: set when a pool is created for the offer's
-- project, and when the offer opens under one. Card payments of such an offer are confirmed one
-- by one, offer row first, so the match is written in the funding's transaction; every other
-- offer's stay on the batched path, which takes no offer lock. Never cleared: a stale flag
-- only costs the slower path.
alter table offers add column matchable boolean not null default false;

grant select, insert, update on match_pools, matches to crowdledger_app;
