-- A stored response is kept as the exact JSON text that was sent, not as jsonb: a replay
-- answers the same bytes, and a flood's keys are stored without Postgres parsing every body
-- into jsonb's binary form (docs/performance.md).
alter table idempotency_keys alter column response_body type text using response_body::text;
