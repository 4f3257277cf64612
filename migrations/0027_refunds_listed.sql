-- Refunds are objects of the API (issue 22, PRODUCT.md section 11): `GET /v1/refunds` lists
-- them newest first, by offer, pledge or status, and a pledge shows what it was given back.
--
-- 1. A refund names its offer, so an offer's refunds are found without a join through pledges.
-- No foreign key: it is the offer of the refund's pledge (which has one), written with it, and
-- a key would be checked once per refund of a round's close (as 0010 and 0018 chose).
alter table refunds add column offer_id uuid;

update refunds r set offer_id = p.offer_id
  from pledges p
 where p.id = r.pledge_id;

alter table refunds alter column offer_id set not null;

-- 2. The lists' keyset order, `(created_at, id)` descending, alone and after each filter an
-- index can serve (a pledge has a refund or two: `refunds_pledge_idx` finds them).
create index refunds_created_idx on refunds (created_at, id);
create index refunds_offer_created_idx on refunds (offer_id, created_at, id);
create index refunds_status_created_idx on refunds (status, created_at, id);

-- 3. `pledges.refunded_amount` is all the money given back to a pledge (card refunds and cheque
-- money returned to its cheques). It was written only by a round's allocation, so a revoked
-- pledge, or one refunded in full when its round failed or was cancelled, showed null. They
-- were given back their whole amount.
update pledges set refunded_amount = amount
 where status in ('revoked', 'refunded') and refunded_amount is null;

-- Card money that arrived after its pledge ended was owed straight back.
update pledges p set refunded_amount = coalesce(p.refunded_amount, 0) + r.total
  from (select pledge_id, sum(amount) as total from refunds
         where reason in ('payment_after_failure', 'payment_after_pledge_ended')
         group by pledge_id) r
 where p.id = r.pledge_id;
