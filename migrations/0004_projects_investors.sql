-- The project catalogue and the investors who pledge. The Rust types (src/projects,
-- src/investors) parse every field before it gets here; these checks repeat the rules so that no
-- other writer (a script, a later module) can store what the API would refuse.

create type project_status as enum ('draft', 'published', 'archived');

create table projects (
    id uuid primary key,
    name text not null,
    legal_name text not null,
    legal_form text not null,
    -- ISO 3166-1 alpha-2; the list of assigned codes is checked in Rust, the shape here.
    country text not null,
    -- Free text ("Pays de Brest", "Hauts-de-France"), matched case-insensitively when listing.
    territory text not null,
    -- Kept in the order given; Rust refuses duplicates.
    themes text[] not null,
    description text not null,
    -- [{name, unit, baseline, target}], baseline and target as decimal strings.
    impact_indicators jsonb not null,
    status project_status not null default 'draft',
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint projects_name_length check (char_length(name) between 1 and 200),
    constraint projects_legal_name_length check (char_length(legal_name) between 1 and 200),
    constraint projects_legal_form_length check (char_length(legal_form) between 1 and 200),
    constraint projects_country_format check (country ~ '^[A-Z]{2}$'),
    constraint projects_territory_length check (char_length(territory) between 1 and 200),
    -- `<@` is false for a null element, so this also refuses nulls.
    constraint projects_themes_known check (
        array_ndims(themes) = 1
        and cardinality(themes) between 1 and 8
        and themes <@ array['employment', 'environment', 'culture', 'waste', 'health', 'inclusion', 'energy',
                            'mobility']::text[]
    ),
    constraint projects_description_length check (char_length(description) <= 20000),
    -- jsonb_array_length raises on a non-array, so test the type first.
    constraint projects_impact_indicators_array check (
        case when jsonb_typeof(impact_indicators) = 'array' then jsonb_array_length(impact_indicators) <= 20
             else false end
    )
);

-- Listing by theme (`themes @> array[$1]`) and by territory (`lower(territory) = lower($1)`).
create index projects_themes_idx on projects using gin (themes);
create index projects_territory_idx on projects (lower(territory));

create type investor_kind as enum ('natural', 'legal');
-- ECSP art. 2(1)(j) and annex II: the default protects the investor.
create type investor_classification as enum ('non_sophisticated', 'sophisticated');
create type kyc_status as enum ('pending', 'verified', 'rejected');

create table investors (
    id uuid primary key,
    kind investor_kind not null,
    name text not null,
    email text not null,
    country text not null,
    classification investor_classification not null default 'non_sophisticated',
    kyc_status kyc_status not null default 'pending',
    -- Declared net worth, used for the ECSP risk-warning threshold (5% of it); optional.
    net_worth numeric,
    net_worth_currency text,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    -- When an operator last set kyc_status.
    kyc_decided_at timestamptz,
    constraint investors_name_length check (char_length(name) between 1 and 200),
    -- Only the shape: whether the address works is the platform's business.
    constraint investors_email_format check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and octet_length(email) <= 254),
    constraint investors_country_format check (country ~ '^[A-Z]{2}$'),
    constraint investors_net_worth_nonnegative check (net_worth >= 0),
    constraint investors_net_worth_currency_format check (net_worth_currency ~ '^[A-Z]{3}$'),
    -- An amount without its currency means nothing, and the reverse.
    constraint investors_net_worth_pair check ((net_worth is null) = (net_worth_currency is null)),
    -- A verified or rejected investor was decided on by someone, at some time.
    constraint investors_kyc_decided check (kyc_status = 'pending' or kyc_decided_at is not null)
);
