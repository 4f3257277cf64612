-- Every verified event from a payment provider, stored raw before anything acts on it, and
-- deduplicated by (provider, event id): a replay finds its row and changes nothing.

create type inbound_event_status as enum ('applied', 'ignored', 'quarantined');

create table inbound_events (
    id uuid primary key,
    provider text not null,
    event_id text not null,
    event_type text not null,
    -- The exact bytes whose signature was verified.
    body bytea not null,
    received_at timestamptz not null,
    status inbound_event_status not null,
    -- Why an event was ignored or quarantined.
    detail text,
    constraint inbound_events_provider_event_key unique (provider, event_id),
    constraint inbound_events_event_id_format check (length(event_id) between 1 and 255)
);

-- Operators list what was quarantined: amount or currency mismatches, unknown references.
create index inbound_events_quarantined_idx on inbound_events (received_at) where status = 'quarantined';
