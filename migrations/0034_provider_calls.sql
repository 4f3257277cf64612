-- Calls to networked payment providers (issue 23, docs/providers.md). The transaction that
-- writes a payment, a refund or a payout also queues the call that creates it at the provider;
-- the call is made after commit, with no transaction open, and repeated with the same
-- idempotency key until the provider answers. Until then our row has no provider id.

alter table payments alter column provider_payment_id drop not null;
alter table refunds alter column provider_refund_id drop not null;
alter table payouts alter column provider_payout_id drop not null;

-- Money the provider confirmed moved names the provider's object.
alter table payments
    add constraint payments_settled_named check (status <> 'succeeded' or provider_payment_id is not null);
alter table refunds
    add constraint refunds_settled_named check (status <> 'succeeded' or provider_refund_id is not null);
alter table payouts
    add constraint payouts_settled_named check (status <> 'paid' or provider_payout_id is not null);

create type provider_call_status as enum ('pending', 'done', 'failed', 'stuck');

create table provider_calls (
    id uuid primary key,
    provider text not null,
    -- create_payment, create_refund, create_payout, cancel_payment
    kind text not null,
    -- Our row the call is about: a payment, a refund or a payout.
    object_id uuid not null,
    -- Everything the call sends, by value: a repeat sends exactly the same request, which is
    -- what a provider's idempotency key requires, whatever became of our rows since.
    request jsonb not null,
    status provider_call_status not null default 'pending',
    attempts integer not null default 0,
    next_attempt_at timestamptz not null,
    -- Held by whoever is calling; a caller that dies loses it, and the worker repeats the call.
    leased_until timestamptz,
    first_attempt_at timestamptz,
    -- The provider's id for the object, once it answered (never a client secret).
    provider_object_id text,
    last_error text,
    created_at timestamptz not null,
    finished_at timestamptz,
    -- One creation per object and kind: the idempotency key is derived from the two.
    constraint provider_calls_once unique (kind, object_id),
    constraint provider_calls_attempts check (attempts >= 0),
    constraint provider_calls_done_named check (status <> 'done' or provider_object_id is not null
                                                 or kind = 'cancel_payment')
);

create index provider_calls_due_idx on provider_calls (next_attempt_at) where status = 'pending';

-- Every attempt, as it went: what an operator reads when a call is stuck or failed.
create table provider_call_attempts (
    id bigint generated always as identity primary key,
    call_id uuid not null references provider_calls (id),
    attempted_at timestamptz not null,
    duration_ms integer not null,
    http_status integer,
    -- done | retry | unknown | failed
    outcome text not null,
    error text
);

create index provider_call_attempts_call_idx on provider_call_attempts (call_id, id);

-- The service queues, leases and settles calls, and records attempts; it deletes neither.
grant select, insert, update on provider_calls to crowdledger_app;
grant select, insert on provider_call_attempts to crowdledger_app;
