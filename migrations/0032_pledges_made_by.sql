-- Who made each pledge: the key (null for the bootstrap operator key) and its role. The audit
-- trail reads a pledge's creation from here instead of from a row of `audit_log` of its own
-- (docs/audit-log.md): the pledge path is the hot one, and a second row per pledge cost the
-- hot round a fifth of its pledges per second. Null role: a pledge made before this migration,
-- whose creation is in `audit_log` (or, before migration 0029, was not recorded).
alter table pledges add column made_by_key uuid, add column made_by_role api_role;
