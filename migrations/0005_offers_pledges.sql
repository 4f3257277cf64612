-- Share offers (rounds), pledges, payments, refunds, payouts, and the outbox of events.
-- See docs/rounds.md: the hard cap is a check constraint on the offer row, so it holds whatever
-- the number of concurrent requests and serve processes.

create type offer_status as enum ('draft', 'open', 'closing', 'succeeded', 'failed', 'cancelled');
create type allocation_method as enum ('first_come', 'pro_rata', 'ballot');

create table offers (
    id uuid primary key,
    project_id uuid not null references projects (id),
    currency text not null,
    share_price numeric not null,
    -- Targets are whole numbers of shares; the money amounts are share counts × share_price.
    min_shares bigint not null,
    max_shares bigint not null,
    min_ticket numeric not null,
    max_ticket numeric,
    opens_at timestamptz not null,
    closes_at timestamptz not null,
    success_fee_rate numeric not null,
    allocation allocation_method not null,
    payment_window_seconds integer not null,
    oversubscription_limit numeric not null,
    -- Shares pledges may reserve at most: max_shares for first_come, max_shares ×
    -- oversubscription_limit for pro_rata and ballot.
    reserve_limit bigint not null,
    status offer_status not null default 'draft',
    -- Shares held by pledges that are pending payment or funded. Every pledge adds to it with one
    -- UPDATE of this row: the row lock queues concurrent pledges, the check refuses overselling.
    shares_reserved bigint not null default 0,
    -- Ballot: sha256(seed) published at open; the seed revealed at close.
    ballot_commitment text,
    ballot_seed bytea,
    created_at timestamptz not null,
    opened_at timestamptz,
    closing_at timestamptz,
    closed_at timestamptz,
    constraint offers_currency_format check (currency ~ '^[A-Z]{3}$'),
    constraint offers_share_price_positive check (share_price > 0),
    constraint offers_targets_ordered check (0 < min_shares and min_shares <= max_shares),
    constraint offers_tickets check (min_ticket > 0 and (max_ticket is null or max_ticket >= min_ticket)),
    constraint offers_window_ordered check (opens_at < closes_at),
    constraint offers_fee_rate_range check (success_fee_rate >= 0 and success_fee_rate < 1),
    constraint offers_payment_window_range check (payment_window_seconds between 60 and 604800),
    constraint offers_oversubscription_range check (oversubscription_limit >= 1 and oversubscription_limit <= 100),
    constraint offers_reserve_limit check (reserve_limit >= max_shares),
    constraint offers_shares_reserved_range check (shares_reserved >= 0),
    constraint offers_hard_cap check (shares_reserved <= reserve_limit)
);

create index offers_project_idx on offers (project_id);
create index offers_due_idx on offers (closes_at) where status in ('open', 'closing');

create type pledge_status as enum ('pending_payment', 'funded', 'allocated', 'refunded', 'cancelled', 'revoked');

create table pledges (
    id uuid primary key,
    offer_id uuid not null references offers (id),
    investor_id uuid not null references investors (id),
    -- Order of arrival: earlier pledges win (first_come) and break ties (pro_rata).
    seq bigint generated always as identity,
    shares bigint not null,
    amount numeric not null,
    currency text not null,
    funding jsonb not null,
    card_amount numeric not null,
    status pledge_status not null default 'pending_payment',
    risk_acknowledged boolean not null default false,
    -- Non-sophisticated investors may revoke until then (ECSP art. 22); null for the others.
    reflection_ends_at timestamptz,
    payment_due_at timestamptz not null,
    allocated_shares bigint,
    refunded_amount numeric,
    created_at timestamptz not null,
    funded_at timestamptz,
    ended_at timestamptz,
    constraint pledges_shares_positive check (shares > 0),
    constraint pledges_amount_positive check (amount > 0),
    constraint pledges_card_amount_range check (card_amount >= 0 and card_amount <= amount),
    constraint pledges_allocated_range check (allocated_shares is null or allocated_shares between 0 and shares)
);

create index pledges_offer_seq_idx on pledges (offer_id, seq);
create index pledges_investor_idx on pledges (investor_id);
create index pledges_payment_due_idx on pledges (payment_due_at) where status = 'pending_payment';

create type payment_status as enum ('pending', 'succeeded', 'failed', 'cancelled');

-- Card payments requested from a provider, one per pledge's card part.
create table payments (
    id uuid primary key,
    provider text not null,
    provider_payment_id text not null,
    pledge_id uuid not null references pledges (id),
    amount numeric not null,
    currency text not null,
    status payment_status not null default 'pending',
    created_at timestamptz not null,
    settled_at timestamptz,
    constraint payments_provider_id_key unique (provider, provider_payment_id),
    constraint payments_pledge_key unique (pledge_id),
    constraint payments_amount_positive check (amount > 0)
);

create type refund_status as enum ('pending', 'succeeded');

-- Money owed back to an investor's card, until the provider confirms it went back.
create table refunds (
    id uuid primary key,
    provider text not null,
    provider_refund_id text not null,
    pledge_id uuid not null references pledges (id),
    amount numeric not null,
    currency text not null,
    reason text not null,
    status refund_status not null default 'pending',
    created_at timestamptz not null,
    settled_at timestamptz,
    constraint refunds_provider_id_key unique (provider, provider_refund_id),
    constraint refunds_amount_positive check (amount > 0)
);

create index refunds_pledge_idx on refunds (pledge_id);

create type payout_status as enum ('pending', 'paid');

-- Money paid to a project after a successful round.
create table payouts (
    id uuid primary key,
    provider text not null,
    provider_payout_id text not null,
    offer_id uuid not null references offers (id),
    amount numeric not null,
    currency text not null,
    status payout_status not null default 'pending',
    created_at timestamptz not null,
    settled_at timestamptz,
    constraint payouts_provider_id_key unique (provider, provider_payout_id),
    constraint payouts_amount_positive check (amount > 0)
);

create index payouts_offer_idx on payouts (offer_id);

-- Events for the platform, written in the transaction of the change they describe; delivered
-- by the webhook worker (step 3).
create table outbox_events (
    id uuid primary key,
    seq bigint generated always as identity,
    event_type text not null,
    payload jsonb not null,
    created_at timestamptz not null,
    constraint outbox_events_type_format check (event_type ~ '^[a-z_]+\.[a-z_]+$')
);
