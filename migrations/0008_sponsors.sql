-- Sponsors fund a budget by deposits the payment provider confirms; cheques (step 4) draw on it.
-- The budget itself is a ledger account (sponsor:<id>:budget:<cur>), never a column here.

create table sponsors (
    id uuid primary key,
    name text not null,
    email text,
    -- A sponsor's budget, deposits and cheques are all in this one currency.
    currency text not null,
    created_at timestamptz not null,
    constraint sponsors_name_length check (char_length(name) between 1 and 200),
    constraint sponsors_email_format check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and octet_length(email) <= 254),
    constraint sponsors_currency_format check (currency ~ '^[A-Z]{3}$')
);

create type deposit_status as enum ('pending', 'succeeded', 'failed');

-- Money a sponsor pays in through the provider; credited to the budget only on confirmation.
create table deposits (
    id uuid primary key,
    provider text not null,
    provider_deposit_id text not null,
    sponsor_id uuid not null references sponsors (id),
    amount numeric not null,
    currency text not null,
    status deposit_status not null default 'pending',
    created_at timestamptz not null,
    settled_at timestamptz,
    constraint deposits_provider_id_key unique (provider, provider_deposit_id),
    constraint deposits_amount_positive check (amount > 0)
);

create index deposits_sponsor_idx on deposits (sponsor_id);
create index deposits_pending_idx on deposits (created_at) where status = 'pending';
