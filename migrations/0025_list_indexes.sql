-- The lists of issue 22 (PRODUCT.md section 11, "Pages"): each is read newest first, a page at a
-- time, by keyset on (created_at desc, id desc) after its filter, so each has an index in that
-- order. None names a column a funding, a close or a KYC decision changes, so those updates stay
-- HOT (migration 0019).

-- An investor's own pledges (`GET /v1/investors/{id}/pledges`, and the holdings, which start
-- from them): stays fast with millions of pledges stored. The one index this adds to a pledge's
-- insert; migration 0016 dropped the bare `investor_id` one, which this serves too.
create index pledges_investor_created_idx on pledges (investor_id, created_at desc, id desc);

-- `GET /v1/offers` and `GET /v1/projects/{id}/offers` (`?project_id=`). The project's composite
-- also serves what `offers_project_idx` did (its leading column), so it replaces it.
create index offers_created_idx on offers (created_at desc, id desc);
create index offers_project_created_idx on offers (project_id, created_at desc, id desc);
drop index offers_project_idx;

-- `GET /v1/investors?email=`: an address matched ignoring case; unfiltered pages by creation.
create index investors_created_idx on investors (created_at desc, id desc);
create index investors_email_idx on investors (lower(email));

-- `GET /v1/projects`, newest first.
create index projects_created_idx on projects (created_at desc, id desc);
