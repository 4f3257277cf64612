-- Indexes no query uses, each written on every pledge of a flood: pledges are never looked up
-- by investor (and investors are never deleted, so the foreign key needs no index either), and
-- idempotency keys are never looked up or expired by age.
drop index pledges_investor_idx;
drop index idempotency_keys_created_at_idx;
