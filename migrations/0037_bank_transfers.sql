-- Bank-transfer pledges (issue 23, PRODUCT.md section 10): the investor is shown where to wire
-- the money and with which reference, and the pledge waits for it for the offer's bank-transfer
-- window (default 5 days), never past the offer's close.

alter table offers
    add column bank_transfer_window_seconds integer not null default 432000,
    -- From an hour (a same-day SEPA transfer) to 30 days.
    add constraint offers_bank_transfer_window check (bank_transfer_window_seconds between 3600 and 2592000);

-- How the investor pays through the provider, and, for a bank transfer, where to: the account,
-- its holder and the reference the provider gave (shown to the investor, not secret).
alter table payments
    add column method text not null default 'card',
    add column instructions jsonb,
    add constraint payments_method check (method in ('card', 'bank_transfer')),
    add constraint payments_instructions_bank check (instructions is null or method = 'bank_transfer');
