-- The money side of card disputes (PRODUCT.md section 10, docs/disputes.md). A provider's
-- dispute of a captured card payment becomes an object of ours: opened when the provider says so
-- (sandbox `payment.disputed`, Stripe `charge.dispute.created`), closed `won` or `lost`
-- (`dispute.closed`, `charge.dispute.closed`). A lost one names the ledger entry that booked the
-- money the bank took back (`dispute.lost`: out of `psp:<provider>`), and `GET /v1/ledger/verify`
-- checks that entry (`disputes_booked`).
--
-- `payments.disputed_at` and `disputed_amount` (0031) stay as they are: the first dispute marker
-- a pledge shows as `disputed_at`. A payment disputed before this migration has no dispute row;
-- its dispute gets one when the provider next speaks of it (a repeat of its opening, or its close,
-- which creates it closed), so nothing is guessed here.

create type dispute_status as enum ('open', 'won', 'lost');

create table disputes (
    id uuid primary key,
    payment_id uuid not null references payments (id),
    provider text not null,
    -- The provider's id for the dispute (`dp_…`): its events name it.
    provider_dispute_id text not null,
    -- What the bank disputes: all of the payment or part of it, in the payment's currency.
    amount numeric not null,
    currency text not null,
    status dispute_status not null default 'open',
    opened_at timestamptz not null,
    closed_at timestamptz,
    -- A foreign key, unlike the settlement columns of 0010, 0018 and 0021: disputes are rare, so
    -- its check costs nothing that matters, and it proves the entry exists.
    lost_entry_id uuid references ledger_entries (id),
    -- Events name a dispute by the provider's id: one row per dispute however often it is named.
    constraint disputes_provider_id_key unique (provider, provider_dispute_id),
    -- A card network allows one dispute of a charge; a second one for a payment is something an
    -- operator looks at (the event is quarantined), not a second chargeback to book.
    constraint disputes_one_per_payment unique (payment_id),
    -- Nothing disputed is nothing to book; a negative amount would book the wrong way round.
    constraint disputes_amount_positive check (amount > 0),
    constraint disputes_currency_format check (currency ~ '^[A-Z]{3}$'),
    -- Open until the provider decides it, and decided once: a closed dispute knows when.
    constraint disputes_closed_when check ((status = 'open') = (closed_at is null)),
    -- The money moves exactly when a dispute is lost: a lost dispute names the entry that booked
    -- the chargeback, any other names none (verify checks the entry itself: `disputes_booked`).
    constraint disputes_lost_booked check ((status = 'lost') = (lost_entry_id is not null))
);

-- The bank cannot take back more than was paid, nor in another currency. A check constraint
-- cannot read the payment, so a trigger does, under the same name a constraint would have.
create function disputes_within_payment() returns trigger language plpgsql as $$
begin
    if not exists (select 1 from payments p
                    where p.id = new.payment_id and p.currency = new.currency and new.amount <= p.amount
                      and p.provider = new.provider) then
        raise exception 'dispute % is for % %, more than its payment % or in another currency or provider',
            new.provider_dispute_id, new.amount, new.currency, new.payment_id
            using errcode = 'check_violation', constraint = 'disputes_within_payment';
    end if;
    return new;
end
$$;

create trigger disputes_within_payment before insert or update of payment_id, amount, currency, provider
    on disputes for each row execute function disputes_within_payment();

-- A refund still owed when its pledge's dispute is lost is not paid: the bank already gave that
-- money back to the card (docs/disputes.md). It is `cancelled`, naming the dispute that took its
-- place. Compared as text below: a value added to an enum cannot be used as one in the
-- transaction that adds it.
alter type refund_status add value 'cancelled';
alter table refunds add column cancelled_by_dispute_id uuid references disputes (id);
alter table refunds add constraint refunds_cancelled_by_dispute
    check ((status::text = 'cancelled') = (cancelled_by_dispute_id is not null));

-- The call that would create such a refund at a networked provider, withdrawn before it was made.
alter type provider_call_status add value 'cancelled';

-- Written by the service: opened, then closed once; never deleted.
grant select, insert, update on disputes to crowdledger_app;
