-- Issue 22 (PRODUCT.md section 11): lists of sponsors, their cheques and deposits, payouts and
-- webhook endpoints, each a page at a time, newest first: keyset on (created_at desc, id desc),
-- so each list gets an index in that order (after its filter column). The single-column indexes
-- the composite ones start with are dropped: every lookup they served is served by the new ones.

create index sponsors_created_idx on sponsors (created_at desc, id desc);

create index cheques_sponsor_created_idx on cheques (sponsor_id, created_at desc, id desc);
drop index cheques_sponsor_idx;

create index deposits_sponsor_created_idx on deposits (sponsor_id, created_at desc, id desc);
drop index deposits_sponsor_idx;

create index payouts_created_idx on payouts (created_at desc, id desc);
create index payouts_offer_created_idx on payouts (offer_id, created_at desc, id desc);
drop index payouts_offer_idx;

-- An operator deletes an endpoint; its deliveries and their attempts stay as history, so the row
-- stays too, marked deleted (and disabled, so neither fan-out nor delivery, which take only
-- active endpoints, ever reaches it again). Reads treat a deleted endpoint as absent.
alter table webhook_endpoints add column deleted_at timestamptz;
alter table webhook_endpoints add constraint webhook_endpoints_deleted_disabled
    check (deleted_at is null or status = 'disabled');

create index webhook_endpoints_created_idx on webhook_endpoints (created_at desc, id desc)
    where deleted_at is null;
