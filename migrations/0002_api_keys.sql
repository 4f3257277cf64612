-- API keys. Only a SHA-256 of each key is stored: keys are 256-bit random tokens, so a fast hash
-- is as safe as a slow one and keeps authentication one indexed lookup.

create type api_role as enum ('operator', 'platform', 'auditor');

create table api_keys (
    id uuid primary key,
    name text not null,
    role api_role not null,
    key_hash bytea not null,
    -- The key's first characters, to recognise it in a list without revealing it.
    key_prefix text not null,
    created_at timestamptz not null,
    revoked_at timestamptz,
    constraint api_keys_key_hash_key unique (key_hash),
    constraint api_keys_name_format check (length(name) between 1 and 100),
    constraint api_keys_key_hash_length check (length(key_hash) = 32)
);
