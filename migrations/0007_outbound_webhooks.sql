-- Outbound webhooks: endpoints the platform registers, one delivery per (endpoint, event), and a
-- log of every attempt. Deliveries are leased, not locked, while their HTTP request runs, so no
-- database transaction stays open across the network and a crashed worker's lease simply expires.

create type webhook_endpoint_status as enum ('active', 'disabled');

create table webhook_endpoints (
    id uuid primary key,
    url text not null,
    events text[] not null,
    -- The signing secrets (whsec_…): needed to sign, so kept; shown to the operator once.
    secret text not null,
    -- After a rotation, the old secret signs too until this time (24 h).
    previous_secret text,
    previous_secret_until timestamptz,
    status webhook_endpoint_status not null default 'active',
    created_at timestamptz not null,
    disabled_at timestamptz,
    constraint webhook_endpoints_events_nonempty check (cardinality(events) > 0),
    constraint webhook_endpoints_url_format check (url ~ '^https?://' and length(url) <= 2000)
);

-- Events not yet fanned out to the endpoints. A flag rather than a cursor: outbox events may
-- commit out of sequence order, and a cursor would skip the late ones.
alter table outbox_events add column fanned_out boolean not null default false;
create index outbox_events_pending_fanout_idx on outbox_events (seq) where not fanned_out;

create type webhook_delivery_status as enum ('pending', 'delivered', 'exhausted');

create table webhook_deliveries (
    id uuid primary key,
    endpoint_id uuid not null references webhook_endpoints (id),
    event_id uuid not null references outbox_events (id),
    status webhook_delivery_status not null default 'pending',
    attempts integer not null default 0,
    next_attempt_at timestamptz not null,
    leased_until timestamptz,
    created_at timestamptz not null,
    delivered_at timestamptz,
    constraint webhook_deliveries_endpoint_event_key unique (endpoint_id, event_id)
);

create index webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at) where status = 'pending';
create index webhook_deliveries_endpoint_idx on webhook_deliveries (endpoint_id, created_at);

create table webhook_attempts (
    id bigint generated always as identity primary key,
    delivery_id uuid not null references webhook_deliveries (id),
    attempted_at timestamptz not null,
    status_code integer,
    error text,
    duration_ms integer not null
);

create index webhook_attempts_delivery_idx on webhook_attempts (delivery_id, id);
