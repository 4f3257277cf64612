-- `GET /v1/events?type=`: the outbox newest first, all of it or one type.
--
-- One index, not two: every pledge writes an event, so each index on the outbox is paid for on
-- the hot path. With the type first it serves a filtered page directly, and an unfiltered one as
-- a merge of each type's newest keys (one probe per type, a score of types; src/outbox.rs,
-- `list`). An index on (created_at, id) alone would make a rare type's page read the whole
-- outbox.
create index outbox_events_type_created_idx on outbox_events (event_type, created_at desc, id desc);
