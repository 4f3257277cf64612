-- The outbox becomes append-only: fan-out no longer marks each event, it moves one cursor.
--
-- Until now every event was written, then updated once (`fanned_out = true`): a flood's second
-- write of every event, never a HOT update (the flag is in a partial index's predicate), and as
-- much WAL and bloat again as the event itself. A plain sequence cursor would skip an event whose
-- transaction commits after a later one's; this cursor cannot. Each event carries the id of the
-- transaction that wrote it, and the fan-out takes events in (transaction, seq) order only below
-- its snapshot's xmin: every transaction with a lower id has ended by then, so no event can still
-- appear behind the cursor (docs/webhooks.md).

alter table outbox_events add column created_xact xid8 not null default pg_current_xact_id();

-- What the worker had not fanned out yet gets its deliveries here, as the worker would have made
-- them, due at once; everything already written is then behind the cursor.
insert into webhook_deliveries (id, endpoint_id, event_id, next_attempt_at, created_at)
select gen_random_uuid(), w.id, e.id, e.created_at, e.created_at
  from outbox_events e join webhook_endpoints w on w.status = 'active' and e.event_type = any(w.events)
 where not e.fanned_out
on conflict (endpoint_id, event_id) do nothing;

drop index outbox_events_pending_fanout_idx;
alter table outbox_events drop column fanned_out;
create index outbox_events_xact_seq_idx on outbox_events (created_xact, seq);

-- One row: the last event fanned out. Its row lock is held by the one worker fanning out.
create table outbox_cursor (
    id boolean primary key default true,
    xact xid8 not null,
    seq bigint not null,
    constraint outbox_cursor_single check (id)
);
insert into outbox_cursor (xact, seq)
values (pg_current_xact_id(), (select coalesce(max(seq), 0) from outbox_events));

-- The service appends events and moves the cursor; it never rewrites or removes an event.
revoke update, delete on outbox_events from crowdledger_app;
grant select, update on outbox_cursor to crowdledger_app;
