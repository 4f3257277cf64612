-- Idempotency-Key: a POST's key is claimed in the same transaction as the change it makes, and
-- the response is stored with it. A concurrent duplicate waits on the primary key, then replays.

create table idempotency_keys (
    -- Whose key it is (an API key's id, or 'bootstrap'): one client's keys never collide with
    -- another's.
    scope text not null,
    key text not null,
    -- SHA-256 of the route and the canonical JSON body: the same key with another body is refused.
    fingerprint bytea not null,
    response_status smallint,
    response_body jsonb,
    created_at timestamptz not null,
    constraint idempotency_keys_pkey primary key (scope, key),
    constraint idempotency_keys_key_format check (length(key) between 1 and 255)
);

create index idempotency_keys_created_at_idx on idempotency_keys (created_at);
