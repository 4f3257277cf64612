-- Issue 23 (PRODUCT.md section 10): where a project's money is paid out, set by
-- `PUT /v1/projects/{id}/payout-details` (docs/payout-details.md). A Stripe connected account
-- (`acct_…`, the destination of Connect transfers) and a bank account (Mangopay pays out by wire
-- to it: its IBAN, BIC, owner and the owner's address, which Mangopay asks for). Either, both or
-- neither. The service checks an IBAN's country format and mod-97 digits before storing it; the
-- constraints keep the shapes the code relies on.
alter table projects
    add column payout_stripe_account text,
    add column payout_bank_account jsonb,
    add constraint projects_payout_stripe_account_format
        check (payout_stripe_account ~ '^acct_[A-Za-z0-9]{1,64}$'),
    -- A missing key reads as null, which a check lets through: hence `is true`.
    add constraint projects_payout_bank_account_shape
        check (payout_bank_account is null
               or (jsonb_typeof(payout_bank_account) = 'object'
                   and payout_bank_account ->> 'iban' ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'
                   and jsonb_typeof(payout_bank_account -> 'owner_name') = 'string'
                   and jsonb_typeof(payout_bank_account -> 'owner_address') = 'object') is true);
