-- Withdrawals (PRODUCT.md section 13, docs/cheques.md): unused budget paid back to a sponsor
-- through the payment provider. The money leaves the budget when the withdrawal is asked for, in
-- the transaction that writes this row (`sponsor budget → withdrawals:<provider>:<cur>`,
-- `withdrawal.requested`), so it can no longer be issued as cheques; the provider's signed
-- `payout.paid` then pays it (`withdrawals → psp`, `withdrawal.paid`). Each row names both
-- entries; `GET /v1/ledger/verify` checks them (`withdrawals_requested`, `withdrawals_paid`) and
-- that each withdrawals account holds exactly the pending ones (`withdrawals_owed`).

create type withdrawal_status as enum ('pending', 'paid');

create table withdrawals (
    id uuid primary key,
    provider text not null,
    -- In-process providers only for now, which name the withdrawal when it is written.
    provider_withdrawal_id text not null,
    sponsor_id uuid not null references sponsors (id),
    amount numeric not null,
    currency text not null,
    status withdrawal_status not null default 'pending',
    created_at timestamptz not null,
    settled_at timestamptz,
    -- No foreign keys to the entries, as for the other settlements (0021): posted in the same
    -- transaction, never deleted, checked by verify.
    requested_entry_id uuid not null,
    paid_entry_id uuid,
    constraint withdrawals_provider_id_key unique (provider, provider_withdrawal_id),
    constraint withdrawals_amount_positive check (amount > 0),
    constraint withdrawals_currency_format check (currency ~ '^[A-Z]{3}$'),
    -- Paid once: a paid withdrawal names its entry and when, a pending one neither.
    constraint withdrawals_paid_once check ((status = 'paid') = (paid_entry_id is not null)),
    constraint withdrawals_settled_when check ((status = 'paid') = (settled_at is not null))
);

-- A sponsor's withdrawals, newest first; the sandbox's pending ones, oldest first.
create index withdrawals_sponsor_created_idx on withdrawals (sponsor_id, created_at desc, id desc);
create index withdrawals_pending_idx on withdrawals (created_at) where status = 'pending';

-- Written by the service: requested, then paid once; never deleted.
grant select, insert, update on withdrawals to crowdledger_app;
