-- The ECSP gate before a pledge (PRODUCT.md section 12, docs/investor-protection.md): the entry
-- knowledge test and the simulation of the ability to bear loss (art. 21), the Key Investment
-- Information Sheet of each offer (art. 23), and the consent each pledge was made under.

-- Reclassification (non-sophisticated <-> sophisticated) is an operator's decision, timestamped
-- like KYC; null until one was made (the classification given at registration stands).
alter table investors add column classification_decided_at timestamptz;

create type knowledge_test_result as enum ('passed', 'failed');

-- What the platform recorded of an investor's entry knowledge test and loss simulation. A record
-- is never edited: a new one supersedes it, so the one a pledge was judged under stays provable.
create table appropriateness_records (
    id uuid primary key,
    investor_id uuid not null references investors (id),
    knowledge_test knowledge_test_result not null,
    -- The result of the simulation of the ability to bear loss (art. 21).
    loss_capacity numeric not null,
    loss_capacity_currency text not null,
    -- Where the platform keeps the questions and the investor's answers: they are its own.
    answers_ref text not null,
    recorded_at timestamptz not null,
    -- Two years after it was recorded, by the service's clock (art. 21: reviewed every two years).
    valid_until timestamptz not null,
    recorded_by_key uuid,
    recorded_by_role api_role not null,
    constraint appropriateness_loss_capacity_not_negative check (loss_capacity >= 0),
    constraint appropriateness_currency_format check (loss_capacity_currency ~ '^[A-Z]{3}$'),
    constraint appropriateness_answers_ref_length check (length(answers_ref) between 1 and 500),
    constraint appropriateness_valid_after_recorded check (valid_until >= recorded_at)
);

-- The investor's current record is the latest; pledges read it with the investor, in one statement.
create index appropriateness_records_investor_idx
    on appropriateness_records (investor_id, recorded_at desc, id desc);

-- Records that are evidence are only ever added to (the three tables below).
create function evidence_append_only() returns trigger language plpgsql as $$
begin
    raise exception '% rows are never edited or deleted: add a new one', tg_table_name
        using errcode = 'check_violation', constraint = tg_table_name || '_append_only';
end
$$;

create trigger appropriateness_records_append_only before update or delete on appropriateness_records
    for each row execute function evidence_append_only();

grant select, insert on appropriateness_records to crowdledger_app;

create type offer_document_kind as enum ('kiis', 'other');

-- An offer's documents. Of kind `kiis`, the last added of each language is current; one that
-- follows another of its language while the offer is open is an amendment (`offer.amended`).
create table offer_documents (
    id uuid primary key,
    -- The order they were added in, under the offer's row lock: which is current, and which came
    -- after an amendment, never depends on a clock (a manual one moved back, two processes').
    seq bigint generated always as identity,
    offer_id uuid not null references offers (id),
    kind offer_document_kind not null,
    language text not null,
    url text not null,
    sha256 text not null,
    added_at timestamptz not null,
    -- The document of the same kind and language it replaces, if any.
    supersedes uuid references offer_documents (id),
    constraint offer_documents_language_format check (language ~ '^[a-z]{2}$'),
    constraint offer_documents_url_format check (url ~ '^https?://[^\s]+$' and length(url) <= 2000),
    constraint offer_documents_sha256_format check (sha256 ~ '^[0-9a-f]{64}$'),
    -- The same bytes twice are not a new version.
    constraint offer_documents_once unique (offer_id, sha256)
);

create index offer_documents_offer_idx on offer_documents (offer_id, seq);

create trigger offer_documents_append_only before update or delete on offer_documents
    for each row execute function evidence_append_only();

grant select, insert on offer_documents to crowdledger_app;

-- The hashes of the offer's current KIIS, one per language: a pledge names one of them. Kept on
-- the offer's row, which every pledge reads already, and changed under its lock with the
-- documents, so the batched pledge path reads the gate in the statement it read anyway.
alter table offers add column kiis_sha256s text[] not null default '{}';

-- The consent a pledge was made under: the KIIS it names, the risk-warning text it acknowledged
-- (when it did) and the appropriateness record it was judged under (non-sophisticated investors).
-- No foreign key to the record: the check would cost every pledge of a flood an index probe, and
-- a record is never deleted. Null for pledges made before this migration.
alter table pledges
    add column kiis_sha256 text,
    add column risk_warning_version text,
    add column appropriateness_id uuid,
    -- Set when the KIIS was amended while the pledge was live; cleared when it is reconfirmed or
    -- ended. Only its own index names it, so a funding's or a close's update stays HOT.
    add column reconfirm_by timestamptz,
    add column reconfirmed_at timestamptz;

create index pledges_reconfirm_by_idx on pledges (reconfirm_by) where reconfirm_by is not null;

-- The consent is evidence: no update changes it, whoever runs it. A column list, so only an
-- update that names one of them runs the check (the hot paths name none).
create function pledges_consent_immutable() returns trigger language plpgsql as $$
begin
    if (new.kiis_sha256, new.risk_warning_version, new.appropriateness_id, new.risk_acknowledged,
        new.created_at, new.investor_id, new.offer_id)
       is distinct from
       (old.kiis_sha256, old.risk_warning_version, old.appropriateness_id, old.risk_acknowledged,
        old.created_at, old.investor_id, old.offer_id) then
        raise exception 'the consent of pledge % is immutable', old.id
            using errcode = 'check_violation', constraint = 'pledges_consent_immutable';
    end if;
    return new;
end
$$;

create trigger pledges_consent_immutable
    before update of kiis_sha256, risk_warning_version, appropriateness_id, risk_acknowledged, created_at,
                     investor_id, offer_id on pledges
    for each row execute function pledges_consent_immutable();

-- Each reconfirmation of a pledge after an amendment: which KIIS, when.
create table pledge_reconfirmations (
    pledge_id uuid not null references pledges (id),
    kiis_sha256 text not null,
    reconfirmed_at timestamptz not null,
    primary key (pledge_id, reconfirmed_at)
);

create trigger pledge_reconfirmations_append_only before update or delete on pledge_reconfirmations
    for each row execute function evidence_append_only();

grant select, insert on pledge_reconfirmations to crowdledger_app;
