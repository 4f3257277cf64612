-- Issue 23 (docs/payout-details.md): Mangopay keeps a project as a legal user of category OWNER,
-- which owns its offers' escrow wallets and is paid out by wire. Such a user needs the project's
-- company number and its legal representative (first and last name, birthday, nationality,
-- country of residence, e-mail); its headquarters are the payout bank account's owner address.
-- Set with the rest of the payout details; a card pledge or a payout through Mangopay without
-- them is refused (409 `payout_details_missing`). The service checks the fields before storing
-- them; the constraints keep the shapes the code relies on.
alter table projects
    add column payout_company_number text,
    add column payout_legal_representative jsonb,
    add constraint projects_payout_company_number_shape
        check (length(payout_company_number) between 1 and 64),
    -- A missing key reads as null, which a check lets through: hence `is true`.
    add constraint projects_payout_legal_representative_shape
        check (payout_legal_representative is null
               or (jsonb_typeof(payout_legal_representative) = 'object'
                   and jsonb_typeof(payout_legal_representative -> 'first_name') = 'string'
                   and jsonb_typeof(payout_legal_representative -> 'last_name') = 'string'
                   and payout_legal_representative ->> 'birthday' ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
                   and payout_legal_representative ->> 'nationality' ~ '^[A-Z]{2}$'
                   and payout_legal_representative ->> 'country_of_residence' ~ '^[A-Z]{2}$'
                   and jsonb_typeof(payout_legal_representative -> 'email') = 'string') is true);
