-- The audit trail (docs/audit-log.md): one row per write made through the API with a key,
-- saying which key did what to which object, at the service clock's time. And the index that
-- serves `GET /v1/api-keys`, newest first.

create table audit_log (
    id uuid primary key,
    -- The service clock's time when the write answered.
    at timestamptz not null,
    -- The stored key; null for the bootstrap operator key, which is not stored.
    key_id uuid,
    role api_role not null,
    method text not null,
    -- The matched path template, `/v1/projects/{id}/publish`.
    route text not null,
    -- What was written: the object a create made, else the `{id}` of the path. Text, as some
    -- ids are a provider's (the sandbox's `pay_…`). Null for a write to no object (the clock).
    object_id text,
    status int2 not null,
    constraint audit_log_method check (method in ('POST', 'PUT', 'PATCH', 'DELETE'))
);

-- `GET /v1/audit-log`, newest first, alone or filtered by object or by key.
-- One index beside the primary key (whose UUIDv7 ids follow the order rows are recorded in,
-- newest last): every pledge writes a row, and each index is work on the hot path.
create index audit_log_object on audit_log (object_id, id desc) where object_id is not null;

create index api_keys_created on api_keys (created_at desc, id desc);

-- Written and read by the service; no update: a row, once written, says what happened. Delete
-- only for the retention job, which keeps the trail unless `retention.audit_log_days` is set.
grant select, insert, delete on audit_log to crowdledger_app;
