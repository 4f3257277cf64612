-- Virtual prize cheques: value a sponsor sets aside for a contest winner, spendable only as
-- pledge funding. The value itself is the ledger account `cheque:<id>`; these rows hold what
-- the books cannot: the code's hash, the restrictions, and whether the cheque has ended.

create type cheque_status as enum ('active', 'expired', 'cancelled');

create table cheques (
    id uuid primary key,
    sponsor_id uuid not null references sponsors (id),
    -- SHA-256 of the normalised code; the code itself is shown once and never stored.
    code_hash bytea not null,
    beneficiary_name text not null,
    beneficiary_email text not null,
    face_value numeric not null,
    currency text not null,
    expires_at timestamptz not null,
    eligible_themes text[] not null default '{}',
    eligible_project_ids uuid[] not null default '{}',
    memo text,
    -- `spent` is not stored: it is an active cheque whose balance is zero, and money given back
    -- makes it active again.
    status cheque_status not null default 'active',
    created_at timestamptz not null,
    ended_at timestamptz,
    constraint cheques_code_hash_key unique (code_hash),
    constraint cheques_face_value_positive check (face_value > 0),
    constraint cheques_ended check ((status = 'active') = (ended_at is null))
);

create index cheques_due_idx on cheques (expires_at) where status = 'active';
create index cheques_sponsor_idx on cheques (sponsor_id);

-- Each use of a cheque in a pledge, and how much of it has come back.
create table cheque_redemptions (
    id uuid primary key,
    cheque_id uuid not null references cheques (id),
    pledge_id uuid not null references pledges (id),
    amount numeric not null,
    returned numeric not null default 0,
    created_at timestamptz not null,
    constraint cheque_redemptions_amount_positive check (amount > 0),
    constraint cheque_redemptions_returned_within check (returned >= 0 and returned <= amount),
    constraint cheque_redemptions_once unique (pledge_id, cheque_id)
);

create index cheque_redemptions_cheque_idx on cheque_redemptions (cheque_id);

-- Wrong cheque codes, counted per scope (`investor:<id>`, `client:<key>`), to slow guessing.
create table cheque_code_failures (
    scope text primary key,
    failures integer not null,
    last_failure_at timestamptz not null,
    blocked_until timestamptz
);
