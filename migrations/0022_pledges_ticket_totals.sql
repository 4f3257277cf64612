-- Ticket limits over an investor's whole stake in an offer (docs/rounds.md, "Per-offer totals").
-- `max_ticket` and the ECSP risk threshold apply to an investor's live pledges on an offer taken
-- together, so a pledge they could refuse reads that total, under a per-(offer, investor) lock.
--
-- That read needs pledges by (offer, investor); migration 0016 dropped the index by investor
-- because every pledge of a flood wrote it. Only pledges such a total can concern are indexed:
-- those on an offer with a max_ticket and those of non-sophisticated investors, both fixed when
-- the pledge is made (an offer's terms and an investor's classification never change). A round of
-- sophisticated investors without a max_ticket writes no entry. The index names no column a
-- funding or a close changes, so their updates stay HOT (migration 0019); `status` is filtered on
-- the few rows it finds.
alter table pledges add column in_ticket_totals boolean not null default false;

-- Live pledges of offers still taking pledges; the others can no longer meet a new pledge.
update pledges p
   set in_ticket_totals = true
  from offers o, investors i
 where o.id = p.offer_id and i.id = p.investor_id
   and o.status = 'open' and p.status in ('pending_payment', 'funded')
   and (o.max_ticket is not null or i.classification = 'non_sophisticated');

create index pledges_ticket_totals_idx on pledges (offer_id, investor_id) where in_ticket_totals;
